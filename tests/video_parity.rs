//! SAM 3's streaming video loop (`samclipseg::stream::VideoTracker`) against
//! transformers' own run of `Sam3VideoModel.forward(frame=...)` on the tiny
//! video bundle's golden clip (engines/make_tiny_sam3_video.py wrote
//! golden/video.json and golden/video.safetensors; engines/reference_video.py
//! is the spec the Rust loop ports). Then the bounds: the same clip looped
//! for hundreds of frames, with and without the optional limits.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use common::load_rgb;
use samclipseg::stream::{VideoLimits, VideoStep, VideoTracker};
use samclipseg::{BackendOptions, Frame, ImageFeatures, PackedLayout, Sam3Model, TextFeatures};

fn video_bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sam3-video")
}

struct Clip {
    model: Arc<Sam3Model>,
    golden: serde_json::Value,
    arrays: Vec<u8>,
    texts: Vec<Arc<TextFeatures>>,
    /// Each golden frame's features and size.
    frames: Vec<(ImageFeatures, usize, usize)>,
}

fn clip() -> Clip {
    let dir = video_bundle();
    let model = Arc::new(
        Sam3Model::load(&dir, &BackendOptions::default()).expect("the tiny video bundle loads"),
    );
    assert!(model.has_tracker());
    let gdir = dir.join("golden");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(gdir.join("video.json")).unwrap()).unwrap();
    let arrays = std::fs::read(gdir.join("video.safetensors")).unwrap();
    let prompt = golden["prompt"].as_str().unwrap();
    let tokens = model.tokenize(prompt).unwrap();
    let ids: Vec<i64> = serde_json::from_value(golden["input_ids"].clone()).unwrap();
    let mask: Vec<i64> = serde_json::from_value(golden["attention_mask"].clone()).unwrap();
    assert_eq!(tokens.ids, ids, "token ids of {prompt:?}");
    assert_eq!(tokens.mask, mask, "attention mask of {prompt:?}");
    let texts = model.encode_texts(&[prompt]).unwrap();
    let frames = golden["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|fr| {
            let (rgb, w, h) = load_rgb(&gdir.join(fr["image"].as_str().unwrap()));
            let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
            // reference_video.py feeds (img / 255 - 0.5) / 0.5, CHW, at the
            // bundle's size: the preprocessing must give the same tensor.
            let size = model.manifest().preprocess.image_size as usize;
            assert_eq!((w, h), (size, size), "golden frames are at the input size");
            let ours =
                samclipseg::image::preprocess::preprocess(&frame, &model.manifest().preprocess)
                    .unwrap();
            assert_eq!(ours.shape, vec![1, 3, h, w]);
            for (i, v) in ours.data.iter().enumerate() {
                let (c, p) = (i / (w * h), i % (w * h));
                let want = ((f64::from(rgb[p * 3 + c]) / 255.0 - 0.5) / 0.5) as f32;
                assert!((v - want).abs() <= 1e-6, "pixel value {i}: {v} vs {want}");
            }
            (model.encode_image(&frame).unwrap(), w, h)
        })
        .collect();
    Clip {
        model,
        golden,
        arrays,
        texts,
        frames,
    }
}

/// A golden array: (shape, bytes).
fn array(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<u8>) {
    let st = safetensors::SafeTensors::deserialize(bytes).expect("video.safetensors parses");
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    (t.shape().to_vec(), t.data().to_vec())
}

#[derive(Debug, Default)]
struct Worst {
    score: f32,
    tracker_score: f32,
    low_res: f32,
    /// Low-res logits more than 1e-3 apart and not a hole-filling flip.
    low_res_off: usize,
    iou: f64,
    instances: usize,
}

/// Runs the clip and returns the problems found on each frame and the worst figures.
fn run_parity(c: &Clip) -> (Vec<String>, Worst) {
    let mut tracker = VideoTracker::new(c.model.clone(), VideoLimits::default()).unwrap();
    let mut problems = Vec::new();
    let mut worst = Worst {
        iou: 1.0,
        ..Default::default()
    };
    for (fr, (features, w, h)) in c.golden["frames"].as_array().unwrap().iter().zip(&c.frames) {
        let f = fr["frame"].as_u64().unwrap();
        let step = tracker.step(features, &c.texts, true).unwrap();
        assert_eq!(step.frame, f);
        let mut bad = |p: String| problems.push(format!("frame {f}: {p}"));
        let ids = |k: &str| -> Vec<u64> { serde_json::from_value(fr[k].clone()).unwrap() };
        if step.object_ids != ids("object_ids") {
            bad(format!(
                "object ids {:?} != {:?}",
                step.object_ids,
                ids("object_ids")
            ));
        }
        let mask_ids: Vec<u64> = step.outputs.iter().map(|o| o.id).collect();
        if mask_ids != ids("mask_ids") {
            bad(format!("mask ids {mask_ids:?} != {:?}", ids("mask_ids")));
        } else {
            let (shape, bytes) = array(&c.arrays, &format!("frame{f:02}_low_res_masks"));
            let reference: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let n = shape[1] * shape[2];
            for (k, o) in step.outputs.iter().enumerate() {
                let want = fr["scores"][o.id.to_string()].as_f64().unwrap() as f32;
                worst.score = worst.score.max((o.score - want).abs());
                if (o.score - want).abs() > 1e-4 {
                    bad(format!("score of {}: {} vs {want}", o.id, o.score));
                }
                for (a, b) in o.mask_logits.iter().zip(&reference[k * n..(k + 1) * n]) {
                    let d = (a - b).abs();
                    worst.low_res = worst.low_res.max(d);
                    // hole filling turns a pixel near 0 into +-0.1 on one side only
                    let flip = [a, b].iter().any(|v| (v.abs() - 0.1).abs() < 1e-6);
                    if d > 1e-3 && !flip {
                        worst.low_res_off += 1;
                    }
                }
            }
        }
        for (id, want) in fr["tracker_scores"].as_object().unwrap() {
            let want = want.as_f64().unwrap() as f32;
            match step.outputs.iter().find(|o| o.id.to_string() == *id) {
                Some(o) => {
                    worst.tracker_score = worst.tracker_score.max((o.tracker_score - want).abs());
                    if (o.tracker_score - want).abs() > 1e-4 {
                        bad(format!(
                            "tracker score of {id}: {} vs {want}",
                            o.tracker_score
                        ));
                    }
                }
                None => bad(format!("no tracker score for {id}")),
            }
        }
        let instances = step.postprocess(*w, *h);
        let out_ids: Vec<u64> = instances.iter().map(|i| i.query as u64).collect();
        if out_ids != ids("output_ids") {
            bad(format!("output ids {out_ids:?} != {:?}", ids("output_ids")));
        } else {
            let (_, packed) = array(&c.arrays, &format!("frame{f:02}_masks"));
            let row = w.div_ceil(8);
            for (k, inst) in instances.iter().enumerate() {
                assert_eq!(inst.id, inst.query as u64 + 1);
                let (mut inter, mut union) = (0usize, 0usize);
                for y in 0..*h {
                    for x in 0..*w {
                        let byte = packed[(k * h + y) * row + x / 8];
                        let r = byte >> (7 - x % 8) & 1 == 1;
                        let o = inst.mask.data[y * w + x] != 0;
                        inter += usize::from(r && o);
                        union += usize::from(r || o);
                    }
                }
                let iou = if union == 0 {
                    1.0
                } else {
                    inter as f64 / union as f64
                };
                worst.iou = worst.iou.min(iou);
                worst.instances += 1;
                if iou < 0.99 {
                    bad(format!("mask IoU of {}: {iou:.4}", inst.query));
                }
            }
        }
        println!("frame {f:2}: ids {:?} out {out_ids:?}", step.object_ids);
    }
    (problems, worst)
}

#[test]
fn the_video_loop_matches_transformers_on_the_golden_clip() {
    let c = clip();
    let (problems, worst) = run_parity(&c);
    println!(
        "worst: |score diff| {:.2e}, |tracker score diff| {:.2e}, |low-res logit diff| {:.2e} \
         ({} values > 1e-3 apart that are not hole-filling flips), min mask IoU {:.4} over {} masks",
        worst.score,
        worst.tracker_score,
        worst.low_res,
        worst.low_res_off,
        worst.iou,
        worst.instances
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(worst.instances > 0);
    // Loose on logits (float noise through bf16 memories, see docs/video-tracker.md):
    // a few values, never a pattern.
    assert!(
        worst.low_res_off <= 64,
        "{} low-res logits off",
        worst.low_res_off
    );
    // Batched objects: fewer memory-attention runs than object-frames.
    let runs = c.model.tracker_engine_runs().unwrap();
    println!(
        "tracker engine runs (memory attention, mask decoder, mask prompt, memory encoder): {runs:?}"
    );
}

/// The ids of the objects that left in `step` (held before, not after).
fn removed(before: &[u64], step: &VideoStep) -> Vec<u64> {
    before
        .iter()
        .filter(|id| !step.object_ids.contains(id))
        .copied()
        .collect()
}

#[test]
fn the_loop_stays_bounded_over_hundreds_of_frames() {
    let c = clip();
    let frames = 192;
    let spec = c.model.manifest().tracker.clone().unwrap();
    // The most one object may hold: ring memories + conditioning memories,
    // recent + conditioning pointers (fp32), plus bookkeeping.
    let memory = spec.memory_dim * spec.feature_size * spec.feature_size * 4;
    let pointer = spec.hidden_size * 4;
    let per_object = |cond: usize| {
        (spec.num_maskmem - 1 + cond) * memory + (spec.max_object_pointers - 1 + cond) * pointer
    };
    for (name, limits) in [
        ("default", VideoLimits::default()),
        (
            "max_cond_frames 1, lost_frames 1",
            VideoLimits {
                max_cond_frames: Some(1),
                lost_frames: Some(1),
                ..Default::default()
            },
        ),
    ] {
        let cond = limits.max_cond_frames.unwrap_or(spec.max_cond_frame_num);
        let max_objects = limits.max_objects.unwrap_or(spec.max_num_objects);
        let mut tracker = VideoTracker::new(c.model.clone(), limits).unwrap();
        let (mut bytes, mut objects) = (Vec::new(), Vec::new());
        let (mut created, mut gone) = (BTreeSet::new(), BTreeSet::new());
        let mut most_cond = 0;
        for i in 0..frames {
            let before = tracker.object_ids();
            let (features, _, _) = &c.frames[i % c.frames.len()];
            let step = tracker.step(features, &c.texts, true).unwrap();
            for id in removed(&before, &step) {
                // only an object lost for lost_frames frames leaves, with an empty mask
                assert!(limits.lost_frames.is_some(), "{name}: object {id} removed");
                let o = step.outputs.iter().find(|o| o.id == id).unwrap();
                assert!(
                    !o.mask_logits.iter().any(|v| *v > 0.0),
                    "{name}: {id} left with a mask"
                );
                gone.insert(id);
            }
            for id in &step.object_ids {
                assert!(!gone.contains(id), "{name}: a removed id {id} came back");
                created.insert(*id);
            }
            assert!(tracker.objects() <= max_objects, "{name}");
            let held = tracker.conditioning_frames();
            assert!(held.iter().all(|n| *n <= cond), "{name}");
            most_cond = most_cond.max(held.into_iter().max().unwrap_or(0));
            assert!(
                tracker.state_bytes() <= tracker.objects() * (per_object(cond) + 4096),
                "{name}: {} bytes for {} objects",
                tracker.state_bytes(),
                tracker.objects()
            );
            bytes.push(tracker.state_bytes());
            objects.push(tracker.objects());
        }
        // Stopped growing: the largest state of the last third is exactly
        // that of the middle third.
        let third = frames / 3;
        let peak = |r: std::ops::Range<usize>| *bytes[r].iter().max().unwrap();
        let peak_objects = |r: std::ops::Range<usize>| *objects[r].iter().max().unwrap();
        println!(
            "{name}: state {} bytes (peak of frames {third}..{}: {}, of the last {third}: {}), \
             {} objects held at the end, {} created, {} removed, at most {most_cond} \
             conditioning frames held by an object",
            bytes[frames - 1],
            2 * third,
            peak(third..2 * third),
            peak(frames - third..frames),
            objects[frames - 1],
            created.len(),
            gone.len()
        );
        assert_eq!(
            peak(third..2 * third),
            peak(frames - third..frames),
            "{name}"
        );
        assert_eq!(
            peak_objects(third..2 * third),
            peak_objects(frames - third..frames),
            "{name}"
        );
        if limits.lost_frames.is_some() {
            assert!(
                !gone.is_empty(),
                "{name}: the clip loses objects, none was removed"
            );
        } else {
            assert!(gone.is_empty());
        }
        tracker.reset();
        assert_eq!((tracker.objects(), tracker.state_bytes()), (0, 0));
        let step = tracker.step(&c.frames[0].0, &c.texts, true).unwrap();
        assert_eq!(step.frame, 0);
        assert_eq!(
            step.object_ids.first(),
            Some(&0),
            "ids restart at 0 after reset"
        );
    }
}

#[test]
fn propagation_only_adds_no_objects() {
    let c = clip();
    let mut tracker = VideoTracker::new(c.model.clone(), VideoLimits::default()).unwrap();
    let first = tracker.step(&c.frames[0].0, &c.texts, true).unwrap();
    assert!(!first.object_ids.is_empty());
    for (features, _, _) in &c.frames[1..6] {
        let step = tracker.step(features, &c.texts, false).unwrap();
        assert_eq!(step.object_ids, first.object_ids);
    }
}

#[test]
fn a_bundle_without_a_tracker_is_refused_with_a_reason() {
    let model =
        Arc::new(Sam3Model::load(common::tiny_bundle(), &BackendOptions::default()).unwrap());
    assert!(!model.has_tracker());
    let err = VideoTracker::new(model, VideoLimits::default())
        .err()
        .expect("no tracker")
        .to_string();
    assert!(
        err.contains("no video tracker") && err.contains("--tracker"),
        "{err}"
    );
}
