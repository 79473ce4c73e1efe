//! The tracker bench (`--video`, `make bench-video`; engines/BENCHMARK.md,
//! "Tracker bench"): a frame's parts with exactly N live objects (backbone,
//! detector, tracker per object) through the core's SAM 3 video loop
//! ([`samclipseg::VideoTracker`]), beside the detector-only path on the same
//! frames, and the same in PyTorch (`engines/bench_video_reference.py`:
//! transformers' `Sam3VideoModel` streaming) for the ratio.
//!
//! N objects, on both sides: the bench bundle's loop thresholds are low
//! enough that the first frame's detections outnumber 16, and the object
//! cap is N (`VideoLimits::max_objects` here, `max_num_objects` there), so
//! frame 0 creates N objects and no later frame adds one (streaming mode
//! removes none). Every frame's count is checked on both sides; a count
//! other than N is an error, never a figure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use samclipseg::model::precision::CpuCaps;
use samclipseg::stream::{VideoLimits, VideoTracker};
use samclipseg::{Frame, PackedLayout, PostprocessOptions};

use crate::args::{Args, repo};
use crate::error::BoxResult;
use crate::photo::{HEIGHT, WIDTH};
use crate::stats::{Stats, ms, stats};

/// What a frame is split into, in report order (JSON keys of the reference).
pub const PARTS: [&str; 5] = ["backbone", "detector", "propagate", "tracker", "total"];

/// Pixels the picture moves left per frame: every frame is a new picture
/// (nothing is reused), and the objects move a little.
const PAN_PX: usize = 8;

/// One path's frames: the parts' times (ms, `PARTS` order) and the objects
/// it held after each frame.
#[derive(Debug, Clone, Default)]
pub struct PathRun {
    pub frames: Vec<[f64; PARTS.len()]>,
    pub objects: Vec<usize>,
}

impl PathRun {
    /// Medians (and p90) of each part over the frames after `warmup`.
    pub fn stats(&self, warmup: usize) -> Vec<Stats> {
        (0..PARTS.len())
            .map(|p| stats(self.frames.iter().skip(warmup).map(|f| f[p]).collect()))
            .collect()
    }
}

/// Ours or the reference: the detector-only path and one run per N.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub detector_only: PathRun,
    pub tracked: Vec<(usize, PathRun)>,
    /// Versions and settings, for the report.
    pub summary: String,
}

pub struct VideoBench {
    pub warmup: usize,
    pub frames: usize,
    pub ours: Side,
    pub reference: Option<Side>,
}

/// The clip: the bench photo panned left by `PAN_PX` per frame (wrapping
/// round), as RGBA frames and as `frame-NN.png` under `dir` for the reference.
fn write_frames(rgba: &[u8], count: usize, dir: &Path) -> BoxResult<Vec<Vec<u8>>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for old in std::fs::read_dir(dir)? {
        let p = old?.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("frame-") && n.ends_with(".png"))
        {
            std::fs::remove_file(&p)?;
        }
    }
    let row = WIDTH * 4;
    let mut frames = Vec::with_capacity(count);
    for f in 0..count {
        let shift = (f * PAN_PX % WIDTH) * 4;
        let mut px = Vec::with_capacity(rgba.len());
        for y in 0..HEIGHT {
            let r = &rgba[y * row..(y + 1) * row];
            px.extend_from_slice(&r[shift..]);
            px.extend_from_slice(&r[..shift]);
        }
        let img = image::RgbaImage::from_raw(WIDTH as u32, HEIGHT as u32, px.clone())
            .ok_or("frame buffer of the wrong size")?;
        let png = dir.join(format!("frame-{f:02}.png"));
        image::DynamicImage::ImageRgba8(img)
            .to_rgb8()
            .save(&png)
            .map_err(|e| format!("cannot write {}: {e}", png.display()))?;
        frames.push(px);
    }
    Ok(frames)
}

fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Our side: the model in `--video-precision` (fp32 by default, as PyTorch runs).
fn run_ours(a: &Args, frames: &[Vec<u8>]) -> BoxResult<Side> {
    let model = crate::stages::load_on_cpu(a, a.video_precision)?;
    let spec = &model.manifest().preprocess;
    // Preprocessing is outside the clock on both sides: the reference's
    // processor runs before its forward.
    let pixels = frames
        .iter()
        .map(|px| {
            let frame = Frame::packed(px, WIDTH, HEIGHT, WIDTH * 4, PackedLayout::Rgba)?;
            samclipseg::image::preprocess::preprocess(&frame, spec)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let texts = model.encode_texts(&[a.prompt.as_str()])?;
    let opts = PostprocessOptions {
        threshold: 0.5,
        mask_threshold: model.manifest().decoder.mask_threshold,
        smoothness: 1,
        max_instances: 0,
    };

    let mut side = Side {
        summary: format!(
            "ONNX Runtime {}, {} ({}; {}), {} intra-op threads",
            samclipseg::model::runtime::library_path()
                .map_or("?".into(), |p| p.display().to_string()),
            model.precision().precision,
            model.precision().reason,
            model
                .tracker_precision()
                .unwrap_or_else(|| "no video tracker".into()),
            a.threads
        ),
        ..Default::default()
    };
    for (f, px) in pixels.iter().enumerate() {
        let t0 = Instant::now();
        let image = model.encode_pixels(px, (WIDTH, HEIGHT))?;
        let backbone = since(t0);
        let t1 = Instant::now();
        let out = model.decode(&image, &texts)?;
        let kept = model.postprocess(&out, &texts, (WIDTH, HEIGHT), &opts);
        let detector = since(t1);
        let row = [backbone, detector, 0.0, 0.0, backbone + detector];
        eprintln!(
            "[bench] ours detector-only frame {f}: {} instances; {}",
            kept.len(),
            frame_line(&row)
        );
        side.detector_only.frames.push(row);
        side.detector_only.objects.push(kept.len());
    }
    for &n in &a.video_objects {
        let limits = VideoLimits {
            max_objects: Some(n),
            ..Default::default()
        };
        let mut tracker = VideoTracker::new(model.clone(), limits)?;
        let mut run = PathRun::default();
        for (f, px) in pixels.iter().enumerate() {
            let t0 = Instant::now();
            let image = model.encode_pixels(px, (WIDTH, HEIGHT))?;
            let backbone = since(t0);
            let step = tracker.step(&image, &texts, true)?;
            let st = tracker.last_step_times();
            let row = [
                backbone,
                f64::from(st.detect_ms),
                f64::from(st.propagate_ms),
                f64::from(st.tracker_ms()),
                backbone + f64::from(st.total_ms),
            ];
            let live = step.object_ids.len();
            eprintln!(
                "[bench] ours N={n} frame {f}: {live} objects; {}",
                frame_line(&row)
            );
            if live != n {
                return Err(format!(
                    "N={n}: frame {f} holds {live} objects, not {n}: the bundle's detections do not \
                     give {n} objects on these frames (lower its thresholds in make_bench_sam3.py \
                     VIDEO_LOOP, or ask for fewer with --video-objects)"
                )
                .into());
            }
            run.frames.push(row);
            run.objects.push(live);
        }
        side.tracked.push((n, run));
    }
    Ok(side)
}

fn frame_line(row: &[f64; PARTS.len()]) -> String {
    PARTS
        .iter()
        .zip(row)
        .map(|(p, v)| format!("{p} {}", ms(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reference's JSON (bench_video_reference.py) as a `Side`.
fn read_reference(path: &Path, counts: &[usize]) -> BoxResult<Side> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the reference timings {}: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not JSON from bench_video_reference.py: {e}",
            path.display()
        )
    })?;
    let path_run = |key: &str| -> BoxResult<PathRun> {
        let frames = v["runs"][key].as_array().ok_or_else(|| {
            format!(
                "{}: no run {key:?} in \"runs\" (written for other object counts?)",
                path.display()
            )
        })?;
        let mut run = PathRun::default();
        for fr in frames {
            let mut row = [0.0; PARTS.len()];
            for (r, p) in row.iter_mut().zip(PARTS) {
                *r = fr[p].as_f64().ok_or_else(|| {
                    format!("{}: run {key:?}: a frame has no {p}", path.display())
                })?;
            }
            run.frames.push(row);
            run.objects
                .push(fr["objects"].as_u64().unwrap_or(0) as usize);
        }
        Ok(run)
    };
    let mut side = Side {
        detector_only: path_run("detector-only")?,
        summary: format!(
            "torch {}, transformers {}, Sam3VideoModel streaming, {} attention, {}, {} threads",
            v["torch"].as_str().unwrap_or("?"),
            v["transformers"].as_str().unwrap_or("?"),
            v["attn"].as_str().unwrap_or("?"),
            v["dtype"].as_str().unwrap_or("float32"),
            v["threads"].as_u64().unwrap_or(0)
        ),
        ..Default::default()
    };
    for &n in counts {
        side.tracked.push((n, path_run(&n.to_string())?));
    }
    Ok(side)
}

/// PyTorch's fastest configuration beside ours: bf16 where ours runs a
/// reduced precision and the CPU has bf16 natively (elsewhere PyTorch would
/// emulate it, slower than its fp32), else fp32 as ours.
fn reference_dtype(a: &Args) -> &'static str {
    if a.video_precision != samclipseg::Precision::Fp32 && CpuCaps::detect().bf16 {
        "bfloat16"
    } else {
        "float32"
    }
}

/// Runs engines/bench_video_reference.py on the same frames; its progress goes to stderr.
fn run_reference(a: &Args, frames_dir: &Path) -> BoxResult<PathBuf> {
    let json = a.work.join("video-reference.json");
    let counts: Vec<String> = a.video_objects.iter().map(|n| n.to_string()).collect();
    let script = repo().join("engines/bench_video_reference.py");
    let status = Command::new(&a.python)
        .arg(&script)
        .arg(&a.bundle)
        .arg("--frames")
        .arg(frames_dir)
        .args(["--objects", &counts.join(",")])
        .args(["--warmup", &a.video_warmup.to_string()])
        .args(["--threads", &a.threads.to_string()])
        .args(["--prompt", &a.prompt])
        .args(["--dtype", reference_dtype(a)])
        .arg("--json")
        .arg(&json)
        .status()
        .map_err(|e| {
            format!(
                "cannot run {} {}: {e}",
                a.python.display(),
                script.display()
            )
        })?;
    if !status.success() {
        return Err(format!(
            "{} failed ({status}); its messages are above",
            script.display()
        )
        .into());
    }
    Ok(json)
}

/// Runs the tracker bench: writes the clip, times ours, then (with
/// `--reference`) the reference on the same frames.
pub fn run(a: &Args, rgba: &[u8]) -> BoxResult<VideoBench> {
    let manifest = samclipseg::Bundle::open(&a.bundle)?.manifest;
    if manifest.tracker.is_none() {
        return Err(format!(
            "{} has no tracker engines ([tracker] in bundle.toml): build the tracker bench bundle \
             with `.venv/bin/python engines/make_bench_sam3.py --tracker` (engines/work/bench-video) \
             and pass it with --bundle",
            a.bundle.display()
        )
        .into());
    }
    let warmup = a.video_warmup as usize;
    let count = warmup + a.video_frames as usize;
    let dir = a.work.join("video-frames");
    let frames = write_frames(rgba, count, &dir)?;
    println!(
        "Clip: {count} frames ({}/frame-NN.png): the bench photo panned {PAN_PX} px left per frame; \
         the first {warmup} fill the memory bank (not counted), medians over the last {}.",
        dir.display(),
        a.video_frames
    );
    let ours = run_ours(a, &frames)?;
    // No busy check here: the load average now counts our own run's threads.
    let reference = if a.reference {
        let json = run_reference(a, &dir)?;
        Some(read_reference(&json, &a.video_objects)?)
    } else {
        None
    };
    Ok(VideoBench {
        warmup,
        frames: count,
        ours,
        reference,
    })
}

/// The report: one table per side, and the ratio ours / PyTorch per path.
pub fn report(out: &mut String, b: &VideoBench) -> std::fmt::Result {
    use std::fmt::Write;

    writeln!(
        out,
        "\n### Tracker bench: a frame's parts with N objects (medians over {} frames, ms)\n",
        b.frames - b.warmup
    )?;
    let sides: Vec<(&str, &Side)> = std::iter::once(("ours", &b.ours))
        .chain(b.reference.iter().map(|r| ("PyTorch", r)))
        .collect();
    for (name, side) in &sides {
        writeln!(out, "{name}: {}.\n", side.summary)?;
        writeln!(
            out,
            "| path | objects per frame | backbone | detector | propagate | tracker | tracker per object | total (p90) |"
        )?;
        writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|")?;
        for (label, n, run) in paths(side) {
            let s = run.stats(b.warmup);
            let per_object = match n {
                Some(n) => ms(s[3].median / n as f64),
                None => "-".into(),
            };
            writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} | {per_object} | {} ({}) |",
                objects_line(&run.objects),
                ms(s[0].median),
                ms(s[1].median),
                ms(s[2].median),
                ms(s[3].median),
                ms(s[4].median),
                ms(s[4].p90)
            )?;
        }
        writeln!(out)?;
    }
    if let Some(r) = &b.reference {
        writeln!(
            out,
            "| path | ours total | PyTorch total | ours / PyTorch | backbone ratio | detector ratio | tracker ratio |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|---:|")?;
        for ((label, _, o), (_, _, p)) in paths(&b.ours).into_iter().zip(paths(r)) {
            let (o, p) = (o.stats(b.warmup), p.stats(b.warmup));
            let ratio = |i: usize| {
                if p[i].median > 0.0 {
                    format!("{:.2}", o[i].median / p[i].median)
                } else {
                    "-".into()
                }
            };
            writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} | {} |",
                ms(o[4].median),
                ms(p[4].median),
                ratio(4),
                ratio(0),
                ratio(1),
                ratio(3)
            )?;
        }
    }
    writeln!(
        out,
        "\nbackbone: the image encoder (ViT, the detector's FPN, the tracker's neck); detector: \
         decoder, scores and NMS (detector-only path: decoder and post-processing at 0.5); \
         propagate: memory attention and mask decoder of every object; tracker: the frame \
         minus backbone and detector (propagation, association and update rules, memory \
         encoder); objects per frame: the objects held after each frame (detector-only \
         path: the instances kept at 0.5); preprocessing is outside the clock on both sides."
    )?;
    Ok(())
}

/// (label, N or None for the detector-only path, run) in report order.
fn paths(side: &Side) -> Vec<(String, Option<usize>, &PathRun)> {
    std::iter::once(("detector only".to_string(), None, &side.detector_only))
        .chain(
            side.tracked
                .iter()
                .map(|(n, r)| (format!("tracker, N = {n}"), Some(*n), r)),
        )
        .collect()
}

/// "16 x 12" when every frame held 16; else the list.
fn objects_line(objects: &[usize]) -> String {
    match objects.first() {
        Some(&first) if objects.iter().all(|&o| o == first) => {
            format!("{first} (all {} frames)", objects.len())
        }
        _ => format!("{objects:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_pan_left_and_wrap() {
        let mut rgba = vec![0u8; WIDTH * HEIGHT * 4];
        rgba[0] = 7; // pixel (0, 0)
        let dir = std::env::temp_dir().join(format!("bench-video-frames-{}", std::process::id()));
        let frames = write_frames(&rgba, 2, &dir).expect("frames written");
        assert_eq!(frames[0], rgba);
        // (0, 0) moved PAN_PX left: wrapped round to the end of row 0
        assert_eq!(frames[1][(WIDTH - PAN_PX) * 4], 7);
        assert!(dir.join("frame-01.png").is_file());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn medians_skip_the_warmup_frames() {
        let run = PathRun {
            frames: vec![[100.0; PARTS.len()], [1.0; PARTS.len()], [3.0; PARTS.len()]],
            objects: vec![4, 4, 4],
        };
        assert_eq!(run.stats(1)[0].median, 2.0);
        assert_eq!(objects_line(&run.objects), "4 (all 3 frames)");
        assert_eq!(objects_line(&[1, 2]), "[1, 2]");
    }
}
