//! GPU check: the CUDA kernels against their CPU twins at 640x360, 1080p and
//! 4K for every input layout, with timings; then the CUDA and TensorRT
//! backends on a bundle. Run by tests/gpu-check.sh; by hand:
//!
//!     cargo run --release --example gpu_check -- [BUNDLE] [--runs N] [--cpu-runs N]
//!
//! Exit status: 0 all kernel comparisons passed, and every GPU backend whose
//! libraries are present loaded, ran, gathered swapped prompts on the device
//! and gave the CPU backend's kept instances, scores and masks within its
//! arithmetic's tolerance; a backend (or the kernels) whose libraries are
//! absent is reported as skipped, never failed. Skipped means the error is
//! `samclipseg::Error::MissingLibrary` (`Error::is_missing_library`), by its
//! variant, never by its message: every other error is a failure. 1 a
//! comparison failed, or a backend whose libraries are present failed to load
//! or to run; 2 bad arguments; 77 no CUDA driver, nothing compared.
//!
//! `--strict-gpu` builds the GPU sessions in strict mode (no node on the CPU).
//! `--backends-only` skips the kernels and runs the backends even without a
//! driver: on a machine without a GPU, the CPU backend runs and the GPU
//! backends are skipped for their missing libraries (what this check decides
//! there, seen without a GPU).

#[path = "../tests/gpu_common/mod.rs"]
mod gpu_common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use gpu_common::{
    Layout, MAIN_LAYOUTS, OwnedFrame, Rng, diff_f32, diff_u8, mask_logits, photo_rgb,
};
use samclipseg::gpu::{GpuKernels, driver_present};
use samclipseg::image::frame::{Frame, PackedLayout, YuvMatrix};
use samclipseg::image::postprocess::mask_from_logits;
use samclipseg::image::preprocess::preprocess;
use samclipseg::image::render::{Canvas, alpha_from_logits};
use samclipseg::model::bundle::PreprocessSpec;
use samclipseg::model::tensor::TensorF32;
use samclipseg::{BackendKind, BackendOptions, Mask, PostprocessOptions, Sam3Model};

const SIZES: [(usize, usize); 3] = [(640, 360), (1920, 1080), (3840, 2160)];
/// SAM 3's real input and mask sizes.
const INPUT_SIZE: u32 = 1008;
const MASK_SIZE: (usize, usize) = (288, 288);
const MASKS: usize = 3;
const EXIT_NO_DRIVER: u8 = 77;

struct Args {
    bundle: PathBuf,
    runs: usize,
    cpu_runs: usize,
    strict: bool,
    backends_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        bundle: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sam3"),
        runs: 20,
        cpu_runs: 3,
        strict: false,
        backends_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut count = |name: &str| -> Result<usize, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{name}: `{v}` is not a positive whole number"))
        };
        match arg.as_str() {
            "--runs" => a.runs = count("--runs")?,
            "--cpu-runs" => a.cpu_runs = count("--cpu-runs")?,
            "--strict-gpu" => a.strict = true,
            "--backends-only" => a.backends_only = true,
            "-h" | "--help" => {
                return Err(
                    "usage: gpu_check [BUNDLE] [--runs 20] [--cpu-runs 3] [--strict-gpu] [--backends-only]".into(),
                );
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => a.bundle = s.into(),
        }
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `f` `n` times; median wall milliseconds and the last result.
fn time<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut ms = Vec::with_capacity(n);
    let mut last = None;
    for _ in 0..n {
        let t = Instant::now();
        last = Some(f());
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (median(ms), last.expect("n > 0"))
}

/// One line of the table.
struct Row {
    what: String,
    max_diff: f64,
    mismatch: f64,
    kernel_ms: f64,
    gpu_ms: f64,
    cpu_ms: f64,
    ok: bool,
}

fn print_header() {
    println!(
        "{:<36} {:>9} {:>10} {:>10} {:>10} {:>9} {:>8}  result",
        "kernel / layout / size",
        "max diff",
        "mismatch",
        "kernel ms",
        "GPU ms",
        "CPU ms",
        "speed-up"
    );
}

fn print_row(r: &Row) {
    println!(
        "{:<36} {:>9.3e} {:>9.5}% {:>10.3} {:>10.3} {:>9.2} {:>7.1}x  {}",
        r.what,
        r.max_diff,
        r.mismatch * 100.0,
        r.kernel_ms,
        r.gpu_ms,
        r.cpu_ms,
        r.cpu_ms / r.gpu_ms,
        if r.ok { "ok" } else { "FAIL" }
    );
}

fn sam3_spec() -> PreprocessSpec {
    PreprocessSpec {
        image_size: INPUT_SIZE,
        resample: "bilinear".into(),
        rescale_factor: 1.0 / 255.0,
        image_mean: [0.5; 3],
        image_std: [0.5; 3],
    }
}

fn check_preprocess(k: &mut GpuKernels, a: &Args, photo: &Path, rows: &mut Vec<Row>) {
    let spec = sam3_spec();
    let mut rng = Rng::new(1);
    for (w, h) in SIZES {
        let rgb = photo_rgb(photo, w, h);
        for layout in MAIN_LAYOUTS {
            // Padded strides, as GStreamer gives for many sizes.
            let f = OwnedFrame::from_rgb(&rgb, w, h, layout, 64, YuvMatrix::Bt709, &mut rng);
            let frame = f.frame();
            let what = format!("preprocess {:<5} {w}x{h}", layout.name());
            let (cpu_ms, cpu) = time(a.cpu_runs, || preprocess(&frame, &spec));
            let row = (|| -> samclipseg::Result<Row> {
                let cpu = cpu?;
                k.preprocess(&frame, &spec)?; // warm-up: buffers and tables
                let mut kernel = Vec::new();
                let (gpu_ms, gpu) = time(a.runs, || {
                    let r = k.preprocess(&frame, &spec);
                    kernel.push(k.last_kernel_ms() as f64);
                    r
                });
                let (max, n) = diff_f32(&gpu?.data, &cpu.data);
                Ok(Row {
                    what: what.clone(),
                    max_diff: max as f64,
                    mismatch: n as f64 / cpu.data.len() as f64,
                    kernel_ms: median(kernel),
                    gpu_ms,
                    cpu_ms,
                    // Bit-exact by design: one differing value fails.
                    ok: n == 0,
                })
            })();
            push(rows, what, row);
        }
    }
}

fn check_masks(k: &mut GpuKernels, a: &Args, rows: &mut Vec<Row>) {
    let mut rng = Rng::new(2);
    let per = MASK_SIZE.0 * MASK_SIZE.1;
    for (w, h) in SIZES {
        let logits = mask_logits(MASKS, MASK_SIZE.0, MASK_SIZE.1, &mut rng);
        let what = format!("masks x{MASKS} 288->{w}x{h}");
        let (cpu_ms, cpu) = time(a.cpu_runs, || {
            logits
                .chunks_exact(per)
                .map(|m| mask_from_logits(m, MASK_SIZE, (w, h), 0.5))
                .collect::<Vec<_>>()
        });
        let row = (|| -> samclipseg::Result<Row> {
            k.masks_from_logits(&logits, MASK_SIZE, (w, h), 0.5)?;
            let mut kernel = Vec::new();
            let (gpu_ms, gpu) = time(a.runs, || {
                let r = k.masks_from_logits(&logits, MASK_SIZE, (w, h), 0.5);
                kernel.push(k.last_kernel_ms() as f64);
                r
            });
            let (mut max, mut n) = (0u8, 0usize);
            for (g, c) in gpu?.iter().zip(&cpu) {
                let (m, d) = diff_u8(&g.data, &c.data);
                (max, n) = (max.max(m), n + d);
            }
            let share = n as f64 / (MASKS * w * h) as f64;
            Ok(Row {
                what: what.clone(),
                max_diff: max as f64,
                mismatch: share,
                kernel_ms: median(kernel),
                gpu_ms,
                cpu_ms,
                // Only pixels whose probability sits on the threshold may differ.
                ok: share <= 1e-4,
            })
        })();
        push(rows, what, row);

        for layout in [PackedLayout::Rgba, PackedLayout::Bgra] {
            let what = format!(
                "alpha x{MASKS} {:<5} {w}x{h}",
                format!("{layout:?}").to_uppercase()
            );
            let stride = w * 4 + 64;
            let base: Vec<u8> = (0..stride * h).map(|_| rng.byte()).collect();
            let mut cpu = base.clone();
            let (cpu_ms, _) = time(a.cpu_runs, || {
                cpu.copy_from_slice(&base);
                alpha_from_logits(
                    &mut packed_canvas(&mut cpu, w, h, stride, layout),
                    &logits,
                    MASK_SIZE,
                    0.5,
                )
            });
            let row = (|| -> samclipseg::Result<Row> {
                let mut gpu = base.clone();
                k.alpha_from_logits(
                    &mut packed_canvas(&mut gpu, w, h, stride, layout),
                    &logits,
                    MASK_SIZE,
                    0.5,
                )?;
                let mut kernel = Vec::new();
                let (gpu_ms, r) = time(a.runs, || {
                    gpu.copy_from_slice(&base);
                    let r = k.alpha_from_logits(
                        &mut packed_canvas(&mut gpu, w, h, stride, layout),
                        &logits,
                        MASK_SIZE,
                        0.5,
                    );
                    kernel.push(k.last_kernel_ms() as f64);
                    r
                });
                r?;
                let (max, n) = diff_u8(&gpu, &cpu);
                let share = n as f64 / (w * h) as f64;
                Ok(Row {
                    what: what.clone(),
                    max_diff: max as f64,
                    mismatch: share,
                    kernel_ms: median(kernel),
                    gpu_ms,
                    cpu_ms,
                    ok: share <= 1e-4,
                })
            })();
            push(rows, what, row);
        }
    }
}

fn packed_canvas(
    data: &mut [u8],
    width: usize,
    height: usize,
    stride: usize,
    layout: PackedLayout,
) -> Canvas<'_> {
    Canvas {
        data,
        width,
        height,
        stride,
        layout,
    }
}

fn push(rows: &mut Vec<Row>, what: String, row: samclipseg::Result<Row>) {
    let row = row.unwrap_or_else(|e| {
        println!("{what}: FAIL: {e}");
        Row {
            what,
            max_diff: f64::NAN,
            mismatch: f64::NAN,
            kernel_ms: f64::NAN,
            gpu_ms: f64::NAN,
            cpu_ms: f64::NAN,
            ok: false,
        }
    });
    print_row(&row);
    rows.push(row);
}

/// Two prompts encoded in one batch and decoded in the other order, so that
/// the decoder's text features are gathered in device memory (`gather_rows`).
/// On the tiny bundle's frame the first keeps 7 queries and the second none,
/// every score at least 0.09 from the threshold.
const SWAP_PROMPTS: [&str; 2] = ["a helmet", "a red ball"];
/// Largest difference from the CPU backend's decoder logits that passes:
/// CUDA may use TF32 matrix products on recent GPUs, and TensorRT runs in
/// FP16 by default, so each gets the tolerance its arithmetic allows.
fn cpu_tolerance(kind: BackendKind) -> f32 {
    match kind {
        BackendKind::TensorRt => 1e-1,
        BackendKind::Cuda => 1e-2,
        _ => 1e-3,
    }
}

/// Smallest intersection over union of a kept instance's mask with the CPU
/// backend's that passes: only pixels on a mask's edge may flip when the
/// logits differ by the arithmetic's rounding.
fn mask_iou_tolerance(kind: BackendKind) -> f64 {
    match kind {
        BackendKind::TensorRt => 0.95,
        _ => 0.99,
    }
}

/// What the GPU backends are compared with: the CPU backend's results.
struct Reference {
    scores: Vec<f32>,
    swapped: Swapped,
}

/// The decoder's results for [`SWAP_PROMPTS`] in swapped order.
struct Swapped {
    pred_logits: TensorF32,
    presence_logits: TensorF32,
    /// (prompt index, query) of each kept instance.
    kept: Vec<(usize, usize)>,
    /// Each kept instance's mask at the frame's size, in the order of `kept`.
    masks: Vec<Mask>,
}

/// Intersection over union of two binary masks; 1 for two empty masks, 0 for
/// masks of different sizes.
fn mask_iou(a: &Mask, b: &Mask) -> f64 {
    if (a.width, a.height) != (b.width, b.height) {
        return 0.0;
    }
    let (mut inter, mut union) = (0usize, 0usize);
    for (x, y) in a.data.iter().zip(&b.data) {
        let (x, y) = (*x != 0, *y != 0);
        inter += (x && y) as usize;
        union += (x || y) as usize;
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Largest absolute difference; infinite (never NaN) for different shapes or a NaN.
fn max_diff(a: &TensorF32, b: &TensorF32) -> f32 {
    if a.shape != b.shape {
        return f32::INFINITY;
    }
    a.data.iter().zip(&b.data).fold(0.0, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() { f32::INFINITY } else { m.max(d) }
    })
}

/// Decodes [`SWAP_PROMPTS`] swapped through the device path (text features
/// gathered in device memory, only the kept masks copied back); the results,
/// and what went wrong on the way. The instances from the kept-mask copies
/// are checked against those from a full copy of every mask (a different
/// read of device memory, not the same function twice).
fn decode_swapped(
    model: &Sam3Model,
    frame: &Frame,
    opts: &PostprocessOptions,
) -> samclipseg::Result<(Swapped, Vec<String>)> {
    let texts = model.encode_texts(&SWAP_PROMPTS)?;
    let swapped = [texts[1].clone(), texts[0].clone()];
    let image = model.encode_image(frame)?;
    let size = (frame.width, frame.height);
    let before = model.transfers();
    let device = model.decode_on_device(&image, &swapped)?;
    let gathered = model.transfers().device_to_device - before.device_to_device;
    let instances = model.postprocess_on_device(&device, &swapped, size, opts)?;
    let host = device.to_host()?;
    let mut problems = Vec::new();
    if gathered == 0 {
        problems.push("the swapped prompts were not gathered on the device".to_string());
    }
    if instances != model.postprocess(&host, &swapped, size, opts) {
        problems.push(
            "the kept masks copied back alone give other instances than a copy of every mask"
                .into(),
        );
    }
    let swapped = Swapped {
        pred_logits: host.pred_logits,
        presence_logits: host.presence_logits,
        kept: instances
            .iter()
            .map(|i| (i.prompt_index, i.query))
            .collect(),
        masks: instances.into_iter().map(|i| i.mask).collect(),
    };
    Ok((swapped, problems))
}

/// Loads the bundle on `kind` and segments one frame; prints the timing or
/// the exact error. Once a frame has run, decodes two prompts in swapped
/// order and checks the results against the CPU's (`cpu`): scores, kept
/// instances and their masks. Returns this backend's results (the reference,
/// for the CPU), and whether a check failed: only a GPU backend whose
/// libraries are missing is skipped; any other error is a failure.
fn run_backend(
    kind: BackendKind,
    bundle: &Path,
    photo: &Path,
    cpu: Option<&Reference>,
    strict: bool,
) -> (Option<Reference>, bool) {
    let name = kind.name();
    let options = BackendOptions {
        kind,
        strict: strict && kind != BackendKind::Cpu,
        ..Default::default()
    };
    let t = Instant::now();
    let model = match Sam3Model::load(bundle, &options) {
        Ok(m) => m,
        Err(e) if kind != BackendKind::Cpu && e.is_missing_library() => {
            println!("backend {name:<8}: skipped: {e}");
            return (None, false);
        }
        Err(e) => {
            println!("backend {name:<8}: FAIL: did not load: {e}");
            return (None, true);
        }
    };
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let rgb = photo_rgb(photo, 640, 360);
    let mut rng = Rng::new(9);
    let f = OwnedFrame::from_rgb(
        &rgb,
        640,
        360,
        Layout::Packed(PackedLayout::Rgba),
        0,
        YuvMatrix::Bt601,
        &mut rng,
    );
    let frame = f.frame();
    let opts = PostprocessOptions::default();
    let t = Instant::now();
    let first = model.segment(&frame, &["a person"], &opts);
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    if let Err(e) = first {
        println!("backend {name:<8}: FAIL: loaded in {load_ms:.0} ms, segment failed: {e}");
        return (None, true);
    }
    // Steady state of a stream: image encoder and decoder every frame, the
    // prompt's text features from the cache.
    let (ms, r) = time(5, || model.segment(&frame, &["a person"], &opts));
    let scores: Vec<f32> = match r {
        Ok(v) => v.iter().map(|i| i.score).collect(),
        Err(e) => {
            println!("backend {name:<8}: FAIL: segment failed: {e}");
            return (None, true);
        }
    };
    let vs_cpu = match cpu.map(|c| &c.scores) {
        Some(c) if c.len() == scores.len() => format!(
            ", {} instances, scores within {:.2e} of the CPU's",
            scores.len(),
            c.iter()
                .zip(&scores)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max)
        ),
        Some(c) => format!(", {} instances (the CPU found {})", scores.len(), c.len()),
        None => format!(", {} instances", scores.len()),
    };
    println!(
        "backend {name:<8}: ok: load {load_ms:.0} ms, first frame {first_ms:.1} ms, then {ms:.2} ms a frame (median){vs_cpu}"
    );

    // The engines ran, so their libraries are there: from here on a
    // disagreement or an error is a failure.
    let (swapped, mut problems) = match decode_swapped(&model, &frame, &opts) {
        Ok(r) => r,
        Err(e) => {
            println!("backend {name:<8}: swapped prompts: FAIL: {e}");
            print_transfers(name, &model);
            return (None, true);
        }
    };
    let vs_cpu = match cpu {
        Some(c) => {
            let logits = max_diff(&swapped.pred_logits, &c.swapped.pred_logits);
            let presence = max_diff(&swapped.presence_logits, &c.swapped.presence_logits);
            let tolerance = cpu_tolerance(kind);
            for (what, d) in [("pred_logits", logits), ("presence_logits", presence)] {
                if d > tolerance {
                    problems.push(format!(
                        "{what} differ from the CPU's by up to {d:.3e} (more than {tolerance:.0e})"
                    ));
                }
            }
            let mut worst_iou = 1.0f64;
            if swapped.kept != c.swapped.kept {
                problems.push(format!(
                    "kept instances (prompt, query) {:?}, the CPU kept {:?}",
                    swapped.kept, c.swapped.kept
                ));
            } else {
                let min_iou = mask_iou_tolerance(kind);
                for ((k, m), cm) in swapped
                    .kept
                    .iter()
                    .zip(&swapped.masks)
                    .zip(&c.swapped.masks)
                {
                    let iou = mask_iou(m, cm);
                    worst_iou = worst_iou.min(iou);
                    if iou < min_iou {
                        problems.push(format!(
                            "the mask of instance (prompt, query) {k:?} overlaps the CPU's by IoU {iou:.4} (less than {min_iou})"
                        ));
                    }
                }
            }
            format!(
                ", pred_logits within {logits:.2e} and presence within {presence:.2e} of the CPU's, masks IoU >= {worst_iou:.4}"
            )
        }
        None => ", not compared with the CPU (no CPU results)".into(),
    };
    let failed = !problems.is_empty();
    if failed {
        println!(
            "backend {name:<8}: swapped prompts: FAIL: {}",
            problems.join("; ")
        );
    } else {
        println!(
            "backend {name:<8}: swapped prompts: ok: gathered on the device, kept-mask copies = full copy, {} kept instances{vs_cpu}",
            swapped.kept.len()
        );
    }
    print_transfers(name, &model);
    (Some(Reference { scores, swapped }), failed)
}

fn print_transfers(name: &str, model: &Sam3Model) {
    let t = model.transfers();
    println!(
        "backend {name:<8}: transfers since loading: {} B host to device, {} B device to host, {} B device to device",
        t.host_to_device, t.device_to_host, t.device_to_device
    );
}

fn provider_note() {
    let Some(dir) = samclipseg::model::runtime::library_path().and_then(Path::parent) else {
        return;
    };
    for (what, lib) in [
        ("CUDA", "libonnxruntime_providers_cuda.so"),
        ("TensorRT", "libonnxruntime_providers_tensorrt.so"),
    ] {
        let present = dir.join(lib).exists();
        println!(
            "ONNX Runtime {what} execution provider library ({lib}) {} in {}",
            if present { "present" } else { "not present" },
            dir.display()
        );
    }
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let photo =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sam3/golden/astronaut.png");
    let mut failed = false;
    match GpuKernels::new(0) {
        _ if a.backends_only => println!("kernels: not compared (--backends-only)"),
        Err(e) if !driver_present() => {
            println!("no GPU: skipped: kernel comparisons ({e})");
            println!("no GPU: skipped: CUDA and TensorRT backends");
            return ExitCode::from(EXIT_NO_DRIVER);
        }
        Err(e) if e.is_missing_library() => {
            println!("kernels: skipped: {e}");
        }
        Err(e) => {
            println!(
                "kernels: FAIL: a CUDA driver is installed but the kernels did not start: {e}"
            );
            failed = true;
        }
        Ok(mut k) => {
            println!(
                "kernels on {}: GPU ms = median of {} calls including copies to and from the host; kernel ms = device time of the kernels alone; CPU ms = the CPU twin, median of {}",
                k.device_name(),
                a.runs,
                a.cpu_runs
            );
            print_header();
            let mut rows = Vec::new();
            check_preprocess(&mut k, &a, &photo, &mut rows);
            check_masks(&mut k, &a, &mut rows);
            let bad = rows.iter().filter(|r| !r.ok).count();
            println!(
                "kernels: {} of {} comparisons passed",
                rows.len() - bad,
                rows.len()
            );
            failed |= bad > 0;
        }
    }

    println!("backends on bundle {}:", a.bundle.display());
    let (cpu, cpu_failed) = run_backend(BackendKind::Cpu, &a.bundle, &photo, None, false);
    failed |= cpu_failed;
    provider_note();
    for kind in [BackendKind::Cuda, BackendKind::TensorRt] {
        failed |= run_backend(kind, &a.bundle, &photo, cpu.as_ref(), a.strict).1;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
