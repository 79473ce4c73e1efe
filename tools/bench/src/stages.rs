//! Part A: the core library stage by stage, each on the previous stage's
//! output as a frame with a new prompt goes through, with the reference's
//! passes interleaved when it runs.

use std::sync::Arc;
use std::time::Instant;

use gstsamclipseg::{InferenceState, SamClipSegMeta, Segmentation};
use samclipseg::image::render::{Canvas, union_mask};
use samclipseg::model::precision::{self, CpuCaps};
use samclipseg::{
    BackendKind, BackendOptions, Frame, Instance, PackedLayout, PostprocessOptions, Precision,
};

use crate::args::Args;
use crate::error::BoxResult;
use crate::photo::{HEIGHT, WIDTH};
use crate::reference::{Reference, Servers};
use crate::stats::{Stats, ms, stats};

/// The element's default `reuse-threshold`, for the stages that reuse a still picture.
const REUSE_THRESHOLD: f32 = samclipseg::FrameSettings::DEFAULT.reuse_threshold;

/// What part A times, in pass order: (row label, bench_reference.py stage key
/// or "" when the reference has no such stage).
pub const STAGES: [(&str, &str); 10] = [
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

/// Times of one pass, in `STAGES` order.
pub type PassTimes = [f64; STAGES.len()];

/// One pass on one progress line: each stage's first word and its time.
pub fn pass_line(t: &PassTimes) -> String {
    STAGES
        .iter()
        .zip(t)
        .map(|((name, _), v)| format!("{} {}", name.split(' ').next().unwrap_or(name), ms(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One precision of ours: its stage statistics and the instances it kept.
pub struct OursRun {
    pub precision: Precision,
    /// What `precision=auto` runs on this CPU with this bundle.
    pub is_auto: bool,
    pub rows: Vec<Stats>,
    pub kept: usize,
}

impl OursRun {
    /// The column's name: `ours int8 (auto)`.
    pub fn label(&self) -> String {
        let auto = if self.is_auto { " (auto)" } else { "" };
        format!("ours {}{auto}", self.precision)
    }
}

/// A reduced precision's instances against fp32's on the bench photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Fidelity {
    pub precision: Precision,
    pub kept: usize,
    pub kept_fp32: usize,
    /// Over the instances matched to fp32's (each to its best mask overlap).
    pub min_mask_iou: f64,
    pub max_score_change: f32,
}

/// Each fp32 instance matched with the reduced-precision instance whose mask
/// overlaps it most.
fn fidelity(precision: Precision, got: &[Instance], fp32: &[Instance]) -> Fidelity {
    let mut min_mask_iou = if fp32.is_empty() { 1.0 } else { f64::MAX };
    let mut max_score_change = 0f32;
    for w in fp32 {
        let best = got
            .iter()
            .map(|g| {
                (
                    samclipseg::stream::mask_iou(&g.mask, &w.mask) as f64,
                    (g.score - w.score).abs(),
                )
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((0.0, w.score));
        min_mask_iou = min_mask_iou.min(best.0);
        max_score_change = max_score_change.max(best.1);
    }
    Fidelity {
        precision,
        kept: got.len(),
        kept_fp32: fp32.len(),
        min_mask_iou,
        max_score_change,
    }
}

/// Part A's result: each precision of ours, and the references to compare
/// with (empty without `--reference`).
pub struct PartA {
    pub ours: Vec<OursRun>,
    /// Each reduced precision against fp32 (when both ran).
    pub fidelity: Vec<Fidelity>,
    pub references: Vec<Reference>,
}

/// The bundle on the CPU at `precision` with the bench's threads, its
/// loading time printed.
pub fn load_on_cpu(a: &Args, precision: Precision) -> BoxResult<Arc<samclipseg::Sam3Model>> {
    let options = BackendOptions {
        kind: BackendKind::Cpu,
        intra_threads: a.threads,
        precision,
        ..Default::default()
    };
    let t = Instant::now();
    let model = Arc::new(samclipseg::Sam3Model::load(&a.bundle, &options)?);
    eprintln!(
        "[bench] loaded {} in {precision} in {:.1} s",
        a.bundle.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(model)
}

/// Runs part A: per precision one warm-up pass, then `--iters` timed passes
/// of each, interleaved with each other and with the references'.
pub fn run(a: &Args, rgba: &[u8], png: &std::path::Path) -> BoxResult<PartA> {
    let caps = CpuCaps::detect();
    let int8 = precision::Int8Files::of(&samclipseg::Bundle::open(&a.bundle)?);
    let auto = precision::choose(Precision::Auto, &caps, int8, false)?;
    println!(
        "Precisions: {} on this CPU: {}.",
        auto.precision, auto.reason
    );
    let frame = Frame::packed(rgba, WIDTH, HEIGHT, WIDTH * 4, PackedLayout::Rgba)?;
    let mut ours = Vec::new();
    for &p in &a.precisions {
        if let Err(e) = precision::choose(p, &caps, int8, false) {
            println!("(ours {p} skipped: {e})");
            continue;
        }
        let model = load_on_cpu(a, p)?;
        let mask_threshold = model.manifest().decoder.mask_threshold;
        ours.push(Ours {
            precision: p,
            segmenter: samclipseg::Segmenter::new(model.clone()),
            primed: false,
            model,
            frame,
            rgba,
            prompt: &a.prompt,
            mask_threshold,
            runs: vec![Vec::with_capacity(a.iters()); STAGES.len()],
            kept: 0,
            last: Vec::new(),
        });
    }
    let mut servers = Servers::start(a, png, caps.bf16)?;
    for o in &mut ours {
        let (warm, _) = o.pass()?;
        eprintln!(
            "[bench] our {} warm-up pass: {}",
            o.precision,
            pass_line(&warm)
        );
    }
    for i in 1..=a.iters() {
        for o in &mut ours {
            let (t, k) = o.pass()?;
            o.kept = k;
            eprintln!("[bench] our {} pass {i}: {}", o.precision, pass_line(&t));
            for (r, v) in o.runs.iter_mut().zip(t) {
                r.push(v);
            }
        }
        servers.pass()?;
    }
    println!(
        "ONNX Runtime: {}.",
        samclipseg::model::runtime::library_path().map_or("?".into(), |p| p.display().to_string())
    );
    let fidelity = ours
        .iter()
        .find(|o| o.precision == Precision::Fp32)
        .map(|fp32| {
            ours.iter()
                .filter(|o| o.precision != Precision::Fp32)
                .map(|o| fidelity(o.precision, &o.last, &fp32.last))
                .collect()
        })
        .unwrap_or_default();
    Ok(PartA {
        ours: ours
            .into_iter()
            .map(|o| OursRun {
                precision: o.precision,
                is_auto: o.precision == auto.precision,
                rows: o.runs.into_iter().map(stats).collect(),
                kept: o.kept,
            })
            .collect(),
        fidelity,
        references: servers.finish(a)?,
    })
}

/// The element's metadata for `instances`: ids as a tracker gives them, masks
/// cropped to their rectangles and a `SamClipSegMeta` on a buffer.
fn attach_meta(instances: &mut [Instance], prompt: &str) -> BoxResult<gst::Buffer> {
    let mut buffer = gst::Buffer::new();
    for (id, inst) in (1..).zip(instances.iter_mut()) {
        inst.id = id;
    }
    // The element's own conversion, so that the stage times what the element does.
    let seg = Segmentation::from_instances(
        prompt,
        InferenceState::Fresh,
        None,
        instances,
        WIDTH,
        HEIGHT,
    );
    SamClipSegMeta::add(buffer.make_mut(), seg)?;
    Ok(buffer)
}

/// Stage times of one pass: `lap(i)` stores the time since the last lap or restart.
struct Laps {
    t: PassTimes,
    clock: Instant,
}

impl Laps {
    fn new() -> Laps {
        Laps {
            t: [0.0; STAGES.len()],
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
    precision: Precision,
    /// The instances of the last pass (threshold 0.5, smoothness 3).
    last: Vec<Instance>,
    runs: Vec<Vec<f64>>,
    kept: usize,
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
    fn pass(&mut self) -> BoxResult<(PassTimes, usize)> {
        let prompts = [self.prompt];
        if !self.primed {
            self.segmenter
                .process(&self.frame, &prompts, &self.opts(3), REUSE_THRESHOLD)?;
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
        let pixels =
            samclipseg::image::preprocess::preprocess(&self.frame, &m.manifest().preprocess)?;
        laps.lap(2);
        let image = m.encode_pixels(&pixels, (WIDTH, HEIGHT))?;
        laps.lap(3);
        let out = m.decode(&image, &texts)?;
        laps.lap(4);
        let mut instances = m.postprocess(&out, &texts, (WIDTH, HEIGHT), &opts(3));
        laps.lap(5);
        std::hint::black_box(m.postprocess(&out, &texts, (WIDTH, HEIGHT), &opts(1)));
        laps.lap(6);
        std::hint::black_box(attach_meta(&mut instances, self.prompt)?);
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
        let (_, state) =
            self.segmenter
                .process(&self.frame, &prompts, &self.opts(3), REUSE_THRESHOLD)?;
        laps.lap(9);
        if state != samclipseg::InferenceState::ReusedResult {
            return Err(format!(
                "the Segmenter did not reuse its result for the same picture and prompt ({state})"
            )
            .into());
        }
        let kept = instances.len();
        self.last = instances;
        Ok((laps.t, kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_line_names_each_stage_by_its_first_word() {
        let mut t = [1.0; STAGES.len()];
        t[3] = 250.0;
        let line = pass_line(&t);
        assert!(
            line.starts_with("tokenise 1.00, text 1.00, preprocess 1.00, image 250,"),
            "{line}"
        );
        assert_eq!(line.split(", ").count(), STAGES.len());
    }
}
