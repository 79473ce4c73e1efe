//! The samclipseg benchmark: per-stage times of the core library, frames per
//! second through real GStreamer pipelines, and the PyTorch reference side by
//! side. `make bench` builds the bench bundle and runs this; by hand:
//!
//!     .venv/bin/python engines/make_bench_sam3.py          # once: engines/work/bench
//!     cargo run --release -p gst-plugin-samclipseg --example bench -- --reference
//!
//! Options (defaults in brackets):
//!
//!     --bundle DIR           engine bundle [engines/work/bench]
//!     --threads N            intra-op threads of ONNX Runtime and of PyTorch [2]
//!     --iters N              timed runs per stage, after one warm-up [10]
//!     --prompt TEXT          ["a person"]
//!     --fresh-frames N       frames of the fresh-frames pipeline [10]
//!     --still-frames N       frames of the still-picture pipeline [100]
//!     --prompt-frames N      frames of the prompt-change pipeline [60]
//!     --share-frames N       frames per element of the 1-vs-4-elements pipelines [4]
//!     --work DIR             where the 1280x720 photo and reference JSON go [out/bench]
//!     --reference            run engines/bench_reference.py (PyTorch) and compare
//!     --reference-json FILE  compare with a JSON that bench_reference.py wrote earlier
//!     --python PATH          Python for --reference [.venv/bin/python]
//!     --skip-stages          skip part A (and the comparison)
//!     --skip-pipelines       skip part B
//!
//! Timings on a shared machine are noisy: compare ratios measured in one run.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use gstsamclipseg::{InferenceState, SamClipSegMeta, Segmentation};
use samclipseg::render::{Canvas, union_mask};
use samclipseg::{BackendKind, BackendOptions, Frame, Instance, PackedLayout, PostprocessOptions};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const WIDTH: usize = 1280;
const HEIGHT: usize = 720;
/// The prompts the prompt-change pipeline cycles through, one per 10 frames.
const PROMPTS: [&str; 3] = ["a person", "a cat", "a red car"];

#[derive(Debug, Clone)]
struct Args {
    bundle: PathBuf,
    threads: usize,
    iters: usize,
    prompt: String,
    fresh_frames: u32,
    still_frames: u32,
    prompt_frames: u32,
    share_frames: u32,
    work: PathBuf,
    reference: bool,
    reference_json: Option<PathBuf>,
    python: PathBuf,
    skip_stages: bool,
    skip_pipelines: bool,
    /// Internal: run the sharing pipeline with this many elements and print one line.
    child_share: Option<usize>,
}

fn usage() -> String {
    let doc = include_str!("bench.rs");
    doc.lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn parse_args() -> BoxResult<Args> {
    let repo = Path::new(REPO);
    let mut a = Args {
        bundle: repo.join("engines/work/bench"),
        threads: 2,
        iters: 10,
        prompt: "a person".into(),
        fresh_frames: 10,
        still_frames: 100,
        prompt_frames: 60,
        share_frames: 4,
        work: repo.join("out/bench"),
        reference: false,
        reference_json: None,
        python: repo.join(".venv/bin/python"),
        skip_stages: false,
        skip_pipelines: false,
        child_share: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("option {flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "--bundle" => a.bundle = value()?.into(),
            "--threads" => a.threads = number(&flag, &value()?)?,
            "--iters" => a.iters = number(&flag, &value()?)?,
            "--prompt" => a.prompt = value()?,
            "--fresh-frames" => a.fresh_frames = number(&flag, &value()?)?,
            "--still-frames" => a.still_frames = number(&flag, &value()?)?,
            "--prompt-frames" => a.prompt_frames = number(&flag, &value()?)?,
            "--share-frames" => a.share_frames = number(&flag, &value()?)?,
            "--work" => a.work = value()?.into(),
            "--reference" => a.reference = true,
            "--reference-json" => a.reference_json = Some(value()?.into()),
            "--python" => a.python = value()?.into(),
            "--skip-stages" => a.skip_stages = true,
            "--skip-pipelines" => a.skip_pipelines = true,
            "--child-share" => a.child_share = Some(number(&flag, &value()?)?),
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?} (see --help)").into()),
        }
    }
    if a.iters == 0 {
        return Err("--iters must be at least 1".into());
    }
    if !a.bundle.join("bundle.toml").is_file() {
        return Err(format!(
            "{} holds no bundle.toml: build the bench bundle first with \
             `.venv/bin/python engines/make_bench_sam3.py` (or `make bench`), or pass --bundle DIR",
            a.bundle.display()
        )
        .into());
    }
    Ok(a)
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> BoxResult<T> {
    v.parse()
        .map_err(|_| format!("option {flag} needs a whole number, got {v:?}").into())
}

// ---------------------------------------------------------------- statistics

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    p90: f64,
}

fn stats(mut ms: Vec<f64>) -> Stats {
    if ms.is_empty() {
        return Stats {
            median: f64::NAN,
            p90: f64::NAN,
        };
    }
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    // Nearest rank, as bench_reference.py computes it.
    let p90 = ms[((0.9 * n as f64).ceil() as usize).max(1) - 1];
    Stats { median, p90 }
}

// ---------------------------------------------------------------- machine

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Prints a warning when other work keeps the CPUs busy (the 1-minute load
/// average is above half the CPU count): then every timing is inflated.
fn warn_if_busy(when: &str) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load1: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    if load1 > 0.5 * cpus as f64 {
        println!(
            "\n**The machine was busy {when}** (load average {load1:.2} on {cpus} CPUs before it ran anything): \
             absolute times are inflated and noisy; compare ratios measured in this run only.\n"
        );
    }
}

/// A `/proc/self/status` field in kB (VmRSS, VmHWM).
fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------- the photo

/// The fixture's astronaut scaled to 1280x720, as RGBA; also saved as an RGB
/// PNG under `work` for the pipelines and the PyTorch reference.
fn bench_photo(work: &Path) -> BoxResult<(Vec<u8>, PathBuf)> {
    let src = Path::new(REPO).join("tests/fixtures/tiny-sam3/golden/astronaut.png");
    let img = image::open(&src)
        .map_err(|e| format!("cannot read the bench photo {}: {e}", src.display()))?
        .to_rgb8();
    let scaled = image::imageops::resize(
        &img,
        WIDTH as u32,
        HEIGHT as u32,
        image::imageops::FilterType::Triangle,
    );
    std::fs::create_dir_all(work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let png = work.join("astronaut-1280x720.png");
    scaled
        .save(&png)
        .map_err(|e| format!("cannot write {}: {e}", png.display()))?;
    let rgba = image::DynamicImage::ImageRgb8(scaled).to_rgba8().into_raw();
    Ok((rgba, png))
}

// ---------------------------------------------------------------- part A

/// What part A times, in pass order: (row label, bench_reference.py stage key
/// or "" when the reference has no such stage).
const STAGES: [(&str, &str); 10] = [
    ("tokenise", "tokenise"),
    ("text encoder (uncached, batch 1)", "text_encoder"),
    ("preprocess (1280x720 RGBA -> tensor)", "preprocess"),
    ("image encoder", "image_encoder"),
    ("decoder (1 prompt)", "decoder"),
    ("post-process (threshold 0.5, smoothness 3)", ""),
    (
        "post-process (smoothness 1: no closing, as the reference)",
        "postprocess",
    ),
    ("metadata (crop masks, attach meta)", ""),
    ("alpha (union of masks, write alpha)", ""),
    ("reused result (Segmenter: same picture and prompt)", ""),
];

/// The element's metadata for `instances`: masks cropped to their rectangles
/// (as the element's result module does) and a `SamClipSegMeta` on a buffer.
fn attach_meta(instances: &[Instance], prompt: &str) -> BoxResult<gst::Buffer> {
    let mut buffer = gst::Buffer::new();
    let ids: Vec<u64> = (1..=instances.len() as u64).collect();
    // The element's own conversion, so that the stage times what the element does.
    let seg = Segmentation::from_instances(
        prompt,
        InferenceState::Fresh,
        None,
        instances,
        &ids,
        WIDTH,
        HEIGHT,
    );
    SamClipSegMeta::add(buffer.make_mut(), seg)?;
    Ok(buffer)
}

/// Stage times of one pass: `lap(i)` stores the time since the last lap or restart.
struct Laps {
    t: [f64; 10],
    clock: Instant,
}

impl Laps {
    fn new() -> Laps {
        Laps {
            t: [0.0; 10],
            clock: Instant::now(),
        }
    }

    fn lap(&mut self, i: usize) {
        self.t[i] = self.clock.elapsed().as_secs_f64() * 1e3;
        self.clock = Instant::now();
    }

    /// Starts the next stage's clock, leaving out untimed work.
    fn restart(&mut self) {
        self.clock = Instant::now();
    }
}

struct Ours<'a> {
    model: Arc<samclipseg::Sam3Model>,
    /// Primed with one frame, then asked for the same frame and prompt again.
    segmenter: samclipseg::Segmenter,
    primed: bool,
    frame: Frame<'a>,
    rgba: &'a [u8],
    prompt: &'a str,
    mask_threshold: f32,
}

impl Ours<'_> {
    fn opts(&self, smoothness: u32) -> PostprocessOptions {
        PostprocessOptions {
            threshold: 0.5,
            mask_threshold: self.mask_threshold,
            smoothness,
            max_instances: 0,
        }
    }

    /// Every stage once, each on the previous stage's output, as a frame with
    /// a new prompt goes through; ms per stage in `STAGES` order, and the
    /// number of instances kept.
    fn pass(&mut self) -> BoxResult<([f64; 10], usize)> {
        let prompts = [self.prompt];
        if !self.primed {
            self.segmenter
                .process(&self.frame, &prompts, &self.opts(3))?;
            self.primed = true;
        }
        let mut laps = Laps::new();
        let m = &self.model;
        let opts = |smoothness| self.opts(smoothness);
        let tokens = m.tokenize(self.prompt)?;
        laps.lap(0);
        std::hint::black_box(m.run_text_encoder(std::slice::from_ref(&tokens))?);
        laps.lap(1);
        // The decoder takes the cached form of the same features (not timed).
        let texts = m.encode_texts(&[self.prompt])?;
        laps.restart();
        let pixels = samclipseg::preprocess::preprocess(&self.frame, &m.manifest().preprocess)?;
        laps.lap(2);
        let image = m.encode_pixels(&pixels, (WIDTH, HEIGHT))?;
        laps.lap(3);
        let out = m.decode(&image, &texts)?;
        laps.lap(4);
        let instances = m.postprocess(&out, &texts, (WIDTH, HEIGHT), &opts(3));
        laps.lap(5);
        std::hint::black_box(m.postprocess(&out, &texts, (WIDTH, HEIGHT), &opts(1)));
        laps.lap(6);
        std::hint::black_box(attach_meta(&instances, self.prompt)?);
        laps.lap(7);
        let mut pixels_out = self.rgba.to_vec();
        laps.restart();
        let alpha = union_mask(&instances, WIDTH, HEIGHT);
        let mut canvas = Canvas {
            data: &mut pixels_out,
            width: WIDTH,
            height: HEIGHT,
            stride: WIDTH * 4,
            layout: PackedLayout::Rgba,
        };
        if !canvas.write_alpha(&alpha) {
            return Err("RGBA has no alpha channel?".into());
        }
        laps.lap(8);
        let (_, state) = self
            .segmenter
            .process(&self.frame, &prompts, &self.opts(3))?;
        laps.lap(9);
        if state != samclipseg::InferenceState::ReusedResult {
            return Err(format!(
                "the Segmenter did not reuse its result for the same picture and prompt ({})",
                state.name()
            )
            .into());
        }
        Ok((laps.t, instances.len()))
    }
}

/// The PyTorch reference running `bench_reference.py --serve`: one pass of
/// its stages per request, so that its passes alternate with ours.
struct ReferenceServer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    json: PathBuf,
}

impl ReferenceServer {
    fn start(a: &Args, png: &Path) -> BoxResult<ReferenceServer> {
        use std::io::BufRead;
        let json = a.work.join("reference.json");
        let script = Path::new(REPO).join("engines/bench_reference.py");
        eprintln!(
            "[bench] starting the PyTorch reference: {} {}",
            a.python.display(),
            script.display()
        );
        let mut child = Command::new(&a.python)
            .arg(&script)
            .arg(&a.bundle)
            .args(["--threads", &a.threads.to_string()])
            .arg("--image")
            .arg(png)
            .args(["--prompt", &a.prompt])
            .arg("--json")
            .arg(&json)
            .arg("--serve")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}); install the Python tooling with `make engines-deps`",
                    a.python.display()
                )
            })?;
        let stdin = child.stdin.take().ok_or("no stdin pipe to the reference")?;
        let stdout = child
            .stdout
            .take()
            .ok_or("no stdout pipe from the reference")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line == "READY" || line.starts_with("PASS ") {
                    if tx.send(line).is_err() {
                        break;
                    }
                } else {
                    // Its progress goes to our stderr; the tables stay on stdout.
                    eprintln!("{line}");
                }
            }
        });
        let mut server = ReferenceServer {
            child,
            stdin,
            lines,
            json,
        };
        server.expect_line("READY")?;
        Ok(server)
    }

    fn expect_line(&mut self, prefix: &str) -> BoxResult<String> {
        match self.lines.recv() {
            Ok(line) if line.starts_with(prefix) => Ok(line),
            Ok(line) => Err(format!("unexpected line from the reference: {line}").into()),
            Err(_) => {
                let status = self.child.wait()?;
                Err(format!(
                    "engines/bench_reference.py stopped ({status}); its messages are above"
                )
                .into())
            }
        }
    }

    fn pass(&mut self) -> BoxResult<()> {
        use std::io::Write;
        writeln!(self.stdin, "pass")?;
        self.stdin.flush()?;
        self.expect_line("PASS ")?;
        Ok(())
    }

    /// Ends the reference; it writes its JSON, which this returns.
    fn finish(mut self) -> BoxResult<PathBuf> {
        use std::io::Write;
        writeln!(self.stdin, "done")?;
        drop(self.stdin);
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("engines/bench_reference.py failed ({status})").into());
        }
        Ok(self.json)
    }
}

/// Part A, with the reference's passes interleaved when it runs.
fn part_a(a: &Args, rgba: &[u8], png: &Path) -> BoxResult<(Vec<Stats>, usize, Option<Reference>)> {
    let options = BackendOptions {
        kind: BackendKind::Cpu,
        intra_threads: a.threads,
        ..Default::default()
    };
    let t = Instant::now();
    let model = Arc::new(samclipseg::Sam3Model::load(&a.bundle, &options)?);
    eprintln!(
        "[bench] loaded {} in {:.1} s",
        a.bundle.display(),
        t.elapsed().as_secs_f64()
    );
    let mask_threshold = model.manifest().decoder.mask_threshold;
    let mut ours = Ours {
        segmenter: samclipseg::Segmenter::new(model.clone(), 3.0),
        primed: false,
        model,
        frame: Frame::packed(rgba, WIDTH, HEIGHT, WIDTH * 4, PackedLayout::Rgba)?,
        rgba,
        prompt: &a.prompt,
        mask_threshold,
    };
    let mut server = if a.reference && a.reference_json.is_none() {
        Some(ReferenceServer::start(a, png)?)
    } else {
        None
    };
    let (warm, _) = ours.pass()?;
    eprintln!("[bench] our warm-up pass: {}", pass_line(&warm));
    let mut runs: Vec<Vec<f64>> = vec![Vec::with_capacity(a.iters); STAGES.len()];
    let mut kept = 0;
    for i in 1..=a.iters {
        let (t, k) = ours.pass()?;
        kept = k;
        eprintln!("[bench] our pass {i}: {}", pass_line(&t));
        for (r, v) in runs.iter_mut().zip(t) {
            r.push(v);
        }
        if let Some(s) = server.as_mut() {
            s.pass()?;
        }
    }
    println!(
        "ONNX Runtime: {}.",
        samclipseg::runtime::library_path().map_or("?".into(), |p| p.display().to_string())
    );
    let reference = match (&a.reference_json, server) {
        (Some(path), _) => Some(read_reference(path)?),
        (None, Some(s)) => Some(read_reference(&s.finish()?)?),
        (None, None) => None,
    };
    Ok((runs.into_iter().map(stats).collect(), kept, reference))
}

fn pass_line(t: &[f64; 10]) -> String {
    STAGES
        .iter()
        .zip(t)
        .map(|((name, _), v)| format!("{} {}", name.split(' ').next().unwrap_or(name), ms(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_stages(rows: &[Stats], iters: usize) {
    println!("\n### Part A: stages, ours (median and p90 of {iters} passes after one warm-up)\n");
    println!("| stage | median ms | p90 ms |");
    println!("|---|---:|---:|");
    for ((name, _), s) in STAGES.iter().zip(rows) {
        println!("| {name} | {} | {} |", ms(s.median), ms(s.p90));
    }
}

fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

// ---------------------------------------------------------------- part C

struct Reference {
    stages: BTreeMap<String, Stats>,
    summary: String,
}

fn read_reference(path: &Path) -> BoxResult<Reference> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the reference timings {}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not JSON from bench_reference.py: {e}",
            path.display()
        )
    })?;
    let mut stages = BTreeMap::new();
    if let Some(obj) = v["stages"].as_object() {
        for (k, s) in obj {
            if let (Some(median), Some(p90)) = (s["median_ms"].as_f64(), s["p90_ms"].as_f64()) {
                stages.insert(k.clone(), Stats { median, p90 });
            }
        }
    }
    if stages.is_empty() {
        return Err(format!("{} has no stage timings", path.display()).into());
    }
    let summary = format!(
        "PyTorch {} / transformers {}, attention {}, {} threads, {} passes{}, {} instance(s) kept",
        v["torch"].as_str().unwrap_or("?"),
        v["transformers"].as_str().unwrap_or("?"),
        v["attention"].as_str().unwrap_or("?"),
        v["threads"],
        v["iters"],
        if v["interleaved"].as_bool() == Some(true) {
            " alternating with ours"
        } else {
            ""
        },
        v["kept"],
    );
    Ok(Reference { stages, summary })
}

fn print_comparison(rows: &[Stats], reference: &Reference, ours_kept: usize) {
    println!("\n### Part C: ours vs the PyTorch reference (medians)\n");
    println!(
        "Reference: {}; ours kept {ours_kept} instance(s).\n",
        reference.summary
    );
    println!("| stage | ours ms | PyTorch ms | PyTorch / ours |");
    println!("|---|---:|---:|---:|");
    for ((name, key), s) in STAGES.iter().zip(rows) {
        match reference.stages.get(*key) {
            Some(r) => println!(
                "| {name} | {} | {} | {:.2} |",
                ms(s.median),
                ms(r.median),
                r.median / s.median
            ),
            None => println!("| {name} | {} | - | - |", ms(s.median)),
        }
    }
    let sum = |keys: &[&str]| -> (f64, f64) {
        let ours = keys
            .iter()
            .filter_map(|k| STAGES.iter().position(|(_, key)| key == k))
            .map(|i| rows[i].median)
            .sum();
        let theirs = keys
            .iter()
            .filter_map(|k| reference.stages.get(*k))
            .map(|s| s.median)
            .sum();
        (ours, theirs)
    };
    let frame = ["preprocess", "image_encoder", "decoder", "postprocess"];
    let all = [
        "tokenise",
        "text_encoder",
        "preprocess",
        "image_encoder",
        "decoder",
        "postprocess",
    ];
    for (label, keys) in [
        (
            "**whole frame, text cached** (preprocess + image encoder + decoder + post-process)",
            &frame[..],
        ),
        (
            "**whole frame, new prompt** (+ tokenise + text encoder)",
            &all[..],
        ),
    ] {
        let (o, r) = sum(keys);
        println!("| {label} | {} | {} | {:.2} |", ms(o), ms(r), r / o);
    }
}

// ---------------------------------------------------------------- part B

#[derive(Debug, Default, Clone)]
struct PipelineRun {
    frames: u64,
    /// From the first buffer entering an element to the last leaving one.
    seconds: f64,
    /// From the first buffer leaving an element to the last: the steady rate
    /// without the first frame (which is always fresh).
    steady_seconds: f64,
    fresh: u64,
    reused_features: u64,
    reused_result: u64,
    rss_before_kb: u64,
    rss_started_kb: u64,
    hwm_kb: u64,
}

impl PipelineRun {
    fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }

    fn steady_fps(&self) -> f64 {
        self.frames.saturating_sub(1) as f64 / self.steady_seconds.max(1e-9)
    }
}

#[derive(Default)]
struct Clock {
    first_in: Option<Instant>,
    first_out: Option<Instant>,
    last_out: Option<Instant>,
}

/// What a pipeline case does besides counting.
#[derive(Clone, Copy, PartialEq)]
enum Extra {
    None,
    /// A square moves across the picture: every frame differs.
    MovingSquare,
    /// The prompt changes every 10 frames, cycling through `PROMPTS`.
    PromptChange,
}

fn element_props(a: &Args, reuse: Option<f32>, has_reuse: bool) -> String {
    let mut p = format!(
        "bundle=\"{}\" threads={} prompt=\"{}\" threshold=0.5 smoothness=3",
        a.bundle.display(),
        a.threads,
        a.prompt
    );
    if let (Some(r), true) = (reuse, has_reuse) {
        p.push_str(&format!(" reuse-threshold={r}"));
    }
    p
}

fn pipeline_desc(png: &Path, frames: u32, elements: usize, props: &str) -> String {
    let mut d = format!(
        "filesrc location=\"{}\" ! pngdec ! videoconvert ! video/x-raw,format=RGBA,width={WIDTH},height={HEIGHT} \
         ! imagefreeze name=frz num-buffers={frames} ! tee name=t",
        png.display()
    );
    for i in 0..elements {
        d.push_str(&format!(
            " t. ! queue max-size-buffers=2 ! samclipseg name=seg{i} {props} ! fakesink name=sink{i} sync=false"
        ));
    }
    d
}

/// Draws a 160x160 square whose position and colour depend on `i` into an
/// RGBA buffer.
fn draw_square(buffer: &mut gst::BufferRef, stride: usize, i: u64) {
    let Ok(mut map) = buffer.map_writable() else {
        return;
    };
    let data = map.as_mut_slice();
    let side = 160;
    let x0 = (i as usize * 97) % (WIDTH - side);
    let y0 = (i as usize * 53) % (HEIGHT - side);
    let colour = [(i * 40 % 256) as u8, (255 - i * 40 % 256) as u8, 128, 255];
    for y in y0..y0 + side {
        let row = y * stride;
        for x in x0..x0 + side {
            let o = row + x * 4;
            if let Some(px) = data.get_mut(o..o + 4) {
                px.copy_from_slice(&colour);
            }
        }
    }
}

fn run_pipeline(
    a: &Args,
    png: &Path,
    frames: u32,
    elements: usize,
    reuse: Option<f32>,
    extra: Extra,
) -> BoxResult<PipelineRun> {
    let has_reuse = has_property("reuse-threshold");
    let desc = pipeline_desc(png, frames, elements, &element_props(a, reuse, has_reuse));
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the bench pipeline is not a gst::Pipeline")?;
    let clock = Arc::new(Mutex::new(Clock::default()));
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());

    for i in 0..elements {
        let seg = pipeline
            .by_name(&format!("seg{i}"))
            .ok_or("no samclipseg element in the bench pipeline")?;
        let seg_sink = seg.static_pad("sink").ok_or("samclipseg has no sink pad")?;
        let c = clock.clone();
        let seg_weak = seg.downgrade();
        let seen = AtomicU64::new(0);
        seg_sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Ok(mut c) = c.lock() {
                c.first_in.get_or_insert_with(Instant::now);
            }
            let n = seen.fetch_add(1, Ordering::Relaxed);
            if extra == Extra::PromptChange
                && n.is_multiple_of(10)
                && let Some(seg) = seg_weak.upgrade()
            {
                seg.set_property("prompt", PROMPTS[(n / 10) as usize % PROMPTS.len()]);
            }
            gst::PadProbeReturn::Ok
        });
        let sink_pad = pipeline
            .by_name(&format!("sink{i}"))
            .and_then(|s| s.static_pad("sink"))
            .ok_or("no fakesink pad in the bench pipeline")?;
        let c = clock.clone();
        let counts = counts.clone();
        sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let slot = match SamClipSegMeta::from_buffer(buffer).map(|m| m.state()) {
                    Some(InferenceState::Fresh) => 0,
                    Some(InferenceState::ReusedImageFeatures) => 1,
                    Some(InferenceState::ReusedResult) => 2,
                    // No meta, or a state this bench does not expect (pending).
                    _ => 3,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
            }
            if let Ok(mut c) = c.lock() {
                let now = Instant::now();
                c.first_out.get_or_insert(now);
                c.last_out = Some(now);
            }
            gst::PadProbeReturn::Ok
        });
    }
    if extra == Extra::MovingSquare {
        let pad = pipeline
            .by_name("frz")
            .and_then(|f| f.static_pad("src"))
            .ok_or("no imagefreeze src pad")?;
        let n = AtomicU64::new(0);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let stride = pad
                .current_caps()
                .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
                .map_or(WIDTH * 4, |v| v.stride()[0] as usize);
            if let Some(buffer) = info.buffer_mut() {
                // imagefreeze pushes the same memory each time: copy, then draw.
                draw_square(buffer.make_mut(), stride, n.fetch_add(1, Ordering::Relaxed));
            }
            gst::PadProbeReturn::Ok
        });
    }

    let mut run = PipelineRun {
        rss_before_kb: proc_status_kb("VmRSS:"),
        ..Default::default()
    };
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    let result = (|| -> BoxResult<()> {
        pipeline.set_state(gst::State::Paused)?;
        // Prerolled: every element started (model loaded) and holds a frame.
        let (res, _, _) = pipeline.state(gst::ClockTime::from_seconds(600));
        if res.is_err() {
            return Err(bus_error(&bus).unwrap_or_else(|| "the pipeline did not preroll".into()));
        }
        run.rss_started_kb = proc_status_kb("VmRSS:");
        pipeline.set_state(gst::State::Playing)?;
        loop {
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(1)) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Eos(..) => break Ok(()),
                gst::MessageView::Error(e) => {
                    break Err(format!("{}: {}", e.error(), e.debug().unwrap_or_default()).into());
                }
                _ => {}
            }
        }
    })();
    run.hwm_kb = proc_status_kb("VmHWM:");
    pipeline.set_state(gst::State::Null)?;
    result?;
    let c = clock.lock().map_err(|_| "clock lock poisoned")?;
    let span = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    run.seconds = span(c.first_in, c.last_out);
    run.steady_seconds = span(c.first_out, c.last_out);
    run.fresh = counts[0].load(Ordering::Relaxed);
    run.reused_features = counts[1].load(Ordering::Relaxed);
    run.reused_result = counts[2].load(Ordering::Relaxed);
    run.frames =
        run.fresh + run.reused_features + run.reused_result + counts[3].load(Ordering::Relaxed);
    Ok(run)
}

fn bus_error(bus: &gst::Bus) -> Option<Box<dyn Error>> {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(format!("{}: {}", e.error(), e.debug().unwrap_or_default()).into());
        }
    }
    None
}

fn has_property(name: &str) -> bool {
    gst::ElementFactory::make("samclipseg")
        .build()
        .map(|e| e.find_property(name).is_some())
        .unwrap_or(false)
}

/// Runs the sharing case in a fresh process, so that its memory is its own.
fn share_child(a: &Args, elements: usize) -> BoxResult<PipelineRun> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg("--child-share")
        .arg(elements.to_string())
        .arg("--bundle")
        .arg(&a.bundle)
        .args(["--threads", &a.threads.to_string()])
        .args(["--share-frames", &a.share_frames.to_string()])
        .args(["--prompt", &a.prompt])
        .arg("--work")
        .arg(&a.work)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("the {elements}-element run failed ({})", out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("SHARE_RESULT "))
        .ok_or("the sharing run printed no result")?;
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Ok(PipelineRun {
        frames: field("frames") as u64,
        seconds: field("seconds"),
        steady_seconds: field("steady_seconds"),
        fresh: field("fresh") as u64,
        reused_features: field("reused_features") as u64,
        reused_result: field("reused_result") as u64,
        rss_before_kb: field("rss_before_kb") as u64,
        rss_started_kb: field("rss_started_kb") as u64,
        hwm_kb: field("hwm_kb") as u64,
    })
}

fn child_main(a: &Args, elements: usize) -> BoxResult<()> {
    let png = a.work.join("astronaut-1280x720.png");
    if !png.is_file() {
        return Err(format!("{} is missing (the parent bench writes it)", png.display()).into());
    }
    let r = run_pipeline(
        a,
        &png,
        a.share_frames,
        elements,
        Some(0.0),
        Extra::MovingSquare,
    )?;
    println!(
        "SHARE_RESULT frames={} seconds={} steady_seconds={} fresh={} reused_features={} reused_result={} \
         rss_before_kb={} rss_started_kb={} hwm_kb={}",
        r.frames,
        r.seconds,
        r.steady_seconds,
        r.fresh,
        r.reused_features,
        r.reused_result,
        r.rss_before_kb,
        r.rss_started_kb,
        r.hwm_kb
    );
    Ok(())
}

fn part_b(a: &Args, png: &Path) -> BoxResult<()> {
    let has_reuse = has_property("reuse-threshold");
    if !has_reuse {
        println!(
            "\n(The element has no `reuse-threshold` property in this build: every frame runs the model.)"
        );
    }
    let cases: [(&str, u32, Option<f32>, Extra); 3] = [
        (
            "fresh frames (moving square, reuse-threshold=0)",
            a.fresh_frames,
            Some(0.0),
            Extra::MovingSquare,
        ),
        (
            "still picture, reuse on (reuse-threshold default)",
            a.still_frames,
            None,
            Extra::None,
        ),
        (
            "still picture, prompt change every 10 frames (3 prompts)",
            a.prompt_frames,
            None,
            Extra::PromptChange,
        ),
    ];
    let mut results = Vec::new();
    for (name, frames, reuse, extra) in cases {
        eprintln!("[bench] pipeline: {name}, {frames} frames");
        let r = run_pipeline(a, png, frames, 1, reuse, extra)?;
        eprintln!("[bench]   {:.2} frames/s", r.fps());
        results.push((name.to_string(), r));
    }
    let mut share = Vec::new();
    for n in [1, 4] {
        eprintln!(
            "[bench] pipeline: {n} element(s) sharing the bundle, {} frames each (separate process)",
            a.share_frames
        );
        let r = share_child(a, n)?;
        eprintln!("[bench]   {:.2} frames/s in all", r.fps());
        share.push((n, r));
    }

    println!(
        "\n### Part B: pipelines (1280x720 RGBA, `... ! samclipseg threads={} ! fakesink sync=false`)\n",
        a.threads
    );
    println!(
        "frames/s = frames / (first buffer into samclipseg .. last buffer out); \
         steady = (frames - 1) / (first buffer out .. last buffer out), i.e. without the first (always fresh) frame.\n"
    );
    println!(
        "| case | frames | seconds | frames/s | steady frames/s | fresh | reused-image-features | reused-result |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let row = |name: &str, r: &PipelineRun| {
        println!(
            "| {name} | {} | {:.1} | {:.2} | {:.2} | {} | {} | {} |",
            r.frames,
            r.seconds,
            r.fps(),
            r.steady_fps(),
            r.fresh,
            r.reused_features,
            r.reused_result
        );
    };
    for (name, r) in &results {
        row(name, r);
    }
    for (n, r) in &share {
        row(
            &format!("{n} element(s) after a tee, one shared bundle, fresh frames (all elements)"),
            r,
        );
    }
    if let (Some((_, fresh)), Some((_, still)), Some((_, change))) =
        (results.first(), results.get(1), results.get(2))
    {
        let x = |r: &PipelineRun| r.fps() / fresh.fps().max(1e-9);
        let xs = |r: &PipelineRun| r.steady_fps() / fresh.steady_fps().max(1e-9);
        println!(
            "\nReuse speed-up in this run, vs fresh frames: still picture {:.1}x ({:.0}x steady); \
             prompt change every 10 frames {:.1}x ({:.1}x steady).",
            x(still),
            xs(still),
            x(change),
            xs(change)
        );
    }
    if let (Some((_, one)), Some((_, four))) = (share.first(), share.get(1)) {
        println!(
            "\n#### Memory, 1 vs 4 elements sharing the bundle (each in its own process; VmRSS / VmHWM)\n"
        );
        println!(
            "| elements | RSS before start MB | RSS after start (prerolled) MB | peak RSS MB | aggregate frames/s |"
        );
        println!("|---:|---:|---:|---:|---:|");
        for (n, r) in [(1, one), (4, four)] {
            println!(
                "| {n} | {:.0} | {:.0} | {:.0} | {:.2} |",
                mb(r.rss_before_kb),
                mb(r.rss_started_kb),
                mb(r.hwm_kb),
                r.fps()
            );
        }
        let first = one.rss_started_kb.saturating_sub(one.rss_before_kb);
        let extra_started = four.rss_started_kb as f64 - one.rss_started_kb as f64;
        let extra_peak = four.hwm_kb as f64 - one.hwm_kb as f64;
        println!(
            "\nFirst element (model loaded, one frame): +{:.0} MB; each further element: {:+.0} MB after start, \
             {:+.0} MB at peak ({:.1}% / {:.1}% of the first).",
            mb(first),
            extra_started / 3.0 / 1024.0,
            extra_peak / 3.0 / 1024.0,
            100.0 * extra_started / 3.0 / first.max(1) as f64,
            100.0 * extra_peak / 3.0 / first.max(1) as f64,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- main

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> BoxResult<()> {
    let a = parse_args()?;
    gst::init()?;
    gstsamclipseg::plugin_register_static()?;
    if let Some(n) = a.child_share {
        return child_main(&a, n);
    }
    let (rgba, png) = bench_photo(&a.work)?;
    let manifest = samclipseg::Bundle::open(&a.bundle)?.manifest;
    println!("## samclipseg benchmark\n");
    println!(
        "Machine: {}, {} logical CPUs; load average at start {}.",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    warn_if_busy("when the bench started");
    println!(
        "Bundle: {} ({}), image {} px, {} queries, masks {}x{}; {} intra-op threads (ONNX Runtime CPU).",
        manifest.bundle.name,
        a.bundle.display(),
        manifest.preprocess.image_size,
        manifest.decoder.num_queries,
        manifest.decoder.mask_size,
        manifest.decoder.mask_size,
        a.threads,
    );
    println!(
        "Input: tests/fixtures/tiny-sam3/golden/astronaut.png scaled to {WIDTH}x{HEIGHT} ({}), prompt {:?}.",
        png.display(),
        a.prompt
    );

    if !a.skip_stages {
        let (rows, kept, reference) = part_a(&a, &rgba, &png)?;
        print_stages(&rows, a.iters);
        if let Some(r) = reference {
            print_comparison(&rows, &r, kept);
        }
    }
    if !a.skip_pipelines {
        part_b(&a, &png)?;
    }
    println!(
        "\nLoad average at the end: {} (this bench's own threads included).",
        load_average()
    );
    Ok(())
}
