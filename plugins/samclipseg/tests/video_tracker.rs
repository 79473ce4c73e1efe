//! Property `tracker`: SAM 3's video tracker through the element, on the tiny
//! video bundle's golden clip (transformers' streaming run, written by
//! engines/make_tiny_sam3_video.py): the metas carry SAM 3's object ids and
//! masks frame by frame, `inference-interval` runs the detector on every N-th
//! frame only, and a bundle without tracker engines is refused clearly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{alpha_mask, harness_on, init, iou, load_rgba, placed_mask, tiny_bundle};
use gst::prelude::*;
use gstsamclipseg::{InferenceState, OutputMode, SamClipSegMeta, TrackerMode};
use samclipseg::Precision;

fn video_bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-sam3-video")
}

/// One golden frame: what transformers' post-processing kept.
struct Golden {
    image: PathBuf,
    /// SAM 3's object ids of the masks kept, ascending.
    output_ids: Vec<u64>,
    /// Their masks' pixel counts.
    output_pixels: Vec<u64>,
}

fn golden() -> (String, Vec<Golden>) {
    let dir = video_bundle().join("golden");
    let text = std::fs::read_to_string(dir.join("video.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let numbers = |x: &serde_json::Value| -> Vec<u64> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect()
    };
    let frames = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Golden {
            image: dir.join(f["image"].as_str().unwrap()),
            output_ids: numbers(&f["output_ids"]),
            output_pixels: numbers(&f["output_mask_pixels"]),
        })
        .collect();
    (v["prompt"].as_str().unwrap().to_string(), frames)
}

/// What one output buffer's meta says: (state, [(id, mask pixels)]).
type Seen = (InferenceState, Vec<(u64, u64)>);

fn run_clip(props: &[(&str, &dyn ToValue)], frames: &[Golden]) -> Vec<Seen> {
    let mut h = harness_on(&video_bundle(), props);
    let first = load_rgba(&frames[0].image);
    h.set_src_caps(first.caps("RGBA"));
    frames
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let p = load_rgba(&f.image);
            let buf = h.push_and_pull(p.rgba_buffer(n as u64)).unwrap();
            let meta = SamClipSegMeta::from_buffer(&buf).expect("every buffer carries the meta");
            let mut objects: Vec<(u64, u64)> = meta
                .instances()
                .iter()
                .map(|i| (i.id, i.mask.iter().filter(|v| **v != 0).count() as u64))
                .collect();
            objects.sort();
            (meta.state(), objects)
        })
        .collect()
}

#[test]
fn sam3_tracker_gives_transformers_object_ids_and_masks_frame_by_frame() {
    let (prompt, frames) = golden();
    // threshold 0: every object the tracker outputs is shown (its score is
    // its detection score at creation, which the golden run does not filter).
    let seen = run_clip(
        &[
            ("prompt", &prompt),
            ("tracker", &TrackerMode::Sam3),
            ("threshold", &0.0f32),
            ("smoothness", &1u32),
        ],
        &frames,
    );
    let mut checked = 0;
    for (n, (f, (state, objects))) in frames.iter().zip(&seen).enumerate() {
        assert_eq!(*state, InferenceState::Fresh, "frame {n}");
        // The element numbers SAM 3's object ids from 1 (0 means untracked).
        let ids: Vec<u64> = objects.iter().map(|o| o.0 - 1).collect();
        assert_eq!(ids, f.output_ids, "frame {n}: object ids");
        for ((_, got), want) in objects.iter().zip(&f.output_pixels) {
            let diff = got.abs_diff(*want) as f64;
            assert!(
                diff <= 2.0 + 0.01 * *want as f64,
                "frame {n}: mask of {got} pixels, transformers {want}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "the clip shows objects: {checked} masks");
}

#[test]
fn auto_picks_sam3_on_a_video_bundle_and_overlap_links_detections_instead() {
    let (prompt, frames) = golden();
    let frames = &frames[..8];
    let base: [(&str, &dyn ToValue); 3] = [
        ("prompt", &prompt),
        ("threshold", &0.0f32),
        ("smoothness", &1u32),
    ];
    let sam3 = run_clip(
        &[base[0], base[1], base[2], ("tracker", &TrackerMode::Sam3)],
        frames,
    );
    let auto = run_clip(&base, frames);
    assert_eq!(auto, sam3, "auto = sam3 on a bundle with tracker engines");
    let overlap = run_clip(
        &[
            base[0],
            base[1],
            base[2],
            ("tracker", &TrackerMode::Overlap),
        ],
        frames,
    );
    assert_ne!(
        overlap, sam3,
        "the overlap tracker shows the detector's masks"
    );
    assert!(overlap.iter().any(|(_, o)| !o.is_empty()));
}

#[test]
fn inference_interval_runs_the_detector_every_nth_frame_and_tracks_between() {
    let (prompt, frames) = golden();
    let seen = run_clip(
        &[
            ("prompt", &prompt),
            ("tracker", &TrackerMode::Sam3),
            ("inference-interval", &4u32),
            ("threshold", &0.0f32),
        ],
        &frames,
    );
    let states: Vec<InferenceState> = seen.iter().map(|s| s.0).collect();
    let want: Vec<InferenceState> = (0..frames.len())
        .map(|n| {
            if n % 4 == 0 {
                InferenceState::Fresh
            } else {
                InferenceState::Tracked
            }
        })
        .collect();
    assert_eq!(states, want);
    // Objects found on frame 0 are carried (with their ids) onto frames 1-3.
    let first: Vec<u64> = seen[0].1.iter().map(|o| o.0).collect();
    assert!(!first.is_empty());
    for s in &seen[1..4] {
        for (id, _) in &s.1 {
            assert!(
                first.contains(id),
                "no new object between detections: {s:?}"
            );
        }
    }
}

#[test]
fn tracker_sam3_on_a_bundle_without_tracker_engines_is_an_element_error() {
    init();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! samclipseg name=seg bundle=\"{}\" tracker=sam3 \
         prompt=cat ! fakesink",
        tiny_bundle().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    assert!(p.set_state(gst::State::Playing).is_err());
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert_eq!(msg.src().unwrap().name(), "seg");
    let text = err.error().to_string();
    assert!(text.contains("tracker=sam3"), "{text}");
    assert!(text.contains("export_sam3.py --tracker"), "{text}");
    p.set_state(gst::State::Null).unwrap();
}

// ---------------------------------------------------------------------------
// The toy video bundle (issue 28, item 5): a tracker trained on the shapes
// world (engines/train_toy_tracker.py) on its occlusion clip
// (engines/shapes_world.py occlusion_clip: the red circle passes wholly
// behind the green square), with the element's defaults but the tracker
// and track-patience.

/// Both modes keep a lost object this many results. The element's default,
/// 5, drops the SAM 3 loop's circle on frame 9: its mask is empty on frames
/// 5-9 (the circle is partly hidden on 5 and reappears with 62 pixels on 9)
/// and comes back on frame 10. The same for overlap, so that the two differ
/// in the tracker only.
const TOY_PATIENCE: u32 = 10;

fn toy_video_bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/toy-shapes-video")
}

/// The clip's frames and the red circle's visible pixels on each
/// (golden/occlusion/frame-NN.png and circle-NN.png).
fn occlusion_clip() -> Vec<(common::Photo, Vec<bool>)> {
    let dir = toy_video_bundle().join("golden").join("occlusion");
    let mut clip = Vec::new();
    for n in 0.. {
        let frame = dir.join(format!("frame-{n:02}.png"));
        if !frame.exists() {
            break;
        }
        let truth = image::open(dir.join(format!("circle-{n:02}.png")))
            .unwrap()
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(|v| v > 127)
            .collect();
        clip.push((load_rgba(&frame), truth));
    }
    assert!(
        clip.len() >= 10,
        "the occlusion clip has {} frames",
        clip.len()
    );
    clip
}

/// Fewer visible pixels than this and the circle counts as hidden (as the
/// training's and engines/toy_tracker_demo.py's "visible").
const VISIBLE_PX: usize = 6;

/// What the element said about the circle on one frame.
#[derive(Debug)]
struct OnCircle {
    /// The circle's visible pixels.
    visible: usize,
    /// The id whose mask overlaps the circle most, and that IoU (None: no
    /// mask touches it).
    best: Option<(u64, f64)>,
    /// IoU of the alpha channel (alpha > 127) with the circle.
    alpha_iou: f64,
}

fn run_occlusion(tracker: TrackerMode, precision: Precision) -> Vec<OnCircle> {
    let clip = occlusion_clip();
    let mut h = harness_on(
        &toy_video_bundle(),
        &[
            ("prompt", &"red circle"),
            ("tracker", &tracker),
            ("track-patience", &TOY_PATIENCE),
            ("output-mode", &OutputMode::Alpha),
            ("precision", &precision),
        ],
    );
    h.set_src_caps(clip[0].0.caps("RGBA"));
    clip.iter()
        .enumerate()
        .map(|(n, (p, truth))| {
            let buf = h.push_and_pull(p.rgba_buffer(n as u64)).unwrap();
            let meta = SamClipSegMeta::from_buffer(&buf).expect("every buffer carries the meta");
            let mut ids = Vec::new();
            for inst in meta.instances() {
                ids.push((inst.id, iou(&placed_mask(inst, p.width, p.height), truth)));
            }
            let best = ids
                .iter()
                .filter(|(_, v)| *v > 0.0)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .copied();
            OnCircle {
                visible: truth.iter().filter(|v| **v).count(),
                best,
                alpha_iou: iou(&alpha_mask(&buf), truth),
            }
        })
        .collect()
}

/// (the last frame before the hide on which the circle is visible, the
/// first after it): the clip hides the circle wholly for at least 2 frames.
fn hide(seen: &[OnCircle]) -> (usize, usize) {
    let hidden: Vec<usize> = (0..seen.len()).filter(|&n| seen[n].visible == 0).collect();
    assert!(
        hidden.len() >= 2 && hidden.windows(2).all(|w| w[1] == w[0] + 1),
        "the circle is wholly hidden on >= 2 frames in a row: {hidden:?}"
    );
    let before = (0..hidden[0])
        .rev()
        .find(|&n| seen[n].visible >= VISIBLE_PX)
        .unwrap();
    let back = (hidden[hidden.len() - 1]..seen.len())
        .find(|&n| seen[n].visible >= VISIBLE_PX)
        .expect("the circle comes back");
    (before, back)
}

#[test]
fn toy_occlusion_sam3_keeps_the_red_circle_id_and_its_mask_is_back_within_a_frame() {
    assert_sam3_keeps_the_circle(&run_occlusion(TrackerMode::Sam3, Precision::Fp32));
}

/// At `auto`, where the CPU has bf16 natively (AMX, AVX512-BF16), the image
/// encoder and the tracker's memory attention and mask decoder run in bf16 on
/// OpenVINO (the bundle has no int8 files); the tracker must keep the circle
/// as in fp32, every frame's IoU with the circle within 0.02 of fp32's (0.007
/// at most measured on an AMX Xeon). Where
/// the CPU has no native bf16, `auto` runs this bundle in fp32 and the two
/// runs are the same.
#[test]
fn toy_occlusion_sam3_at_auto_precision_tracks_as_fp32_does() {
    let auto = run_occlusion(TrackerMode::Sam3, Precision::Auto);
    assert_sam3_keeps_the_circle(&auto);
    let fp32 = run_occlusion(TrackerMode::Sam3, Precision::Fp32);
    let circle = |s: &OnCircle| s.best.map_or(0.0, |b| b.1);
    for (n, (a, f)) in auto.iter().zip(&fp32).enumerate() {
        assert!(
            (circle(a) - circle(f)).abs() <= 0.02 && (a.alpha_iou - f.alpha_iou).abs() <= 0.02,
            "frame {n}: auto {a:?}, fp32 {f:?}"
        );
    }
}

/// `precision-in-use` says where the tracker's engines run: its memory
/// attention and mask decoder in bf16 where auto runs the image encoder in
/// bf16 on OpenVINO, else the whole tracker in fp32.
#[test]
fn precision_in_use_names_the_video_tracker_s_precision() {
    use samclipseg::model::precision::{CpuCaps, Int8Files, choose};
    let h = harness_on(
        &toy_video_bundle(),
        &[
            ("precision", &Precision::Auto),
            ("tracker", &TrackerMode::Sam3),
        ],
    );
    let in_use = h.element().unwrap().property::<String>("precision-in-use");
    let caps = CpuCaps::detect();
    let auto = choose(Precision::Auto, &caps, Int8Files::NONE, false).unwrap();
    let expected = match auto.tracker_hint(&caps) {
        Some(_) => {
            "; video tracker's memory attention and mask decoder in bf16 on OpenVINO, the rest fp32"
        }
        None => "; video tracker in fp32",
    };
    assert!(
        in_use.ends_with(expected),
        "{in_use:?} should end with {expected:?}"
    );
    let fp32 = harness_on(&toy_video_bundle(), &[("tracker", &TrackerMode::Sam3)]);
    let in_use = fp32
        .element()
        .unwrap()
        .property::<String>("precision-in-use");
    assert!(in_use.ends_with("; video tracker in fp32"), "{in_use:?}");
}

fn assert_sam3_keeps_the_circle(seen: &[OnCircle]) {
    let (_, back) = hide(seen);
    let first = seen
        .iter()
        .find_map(|s| s.best)
        .expect("the circle is found")
        .0;
    for (n, s) in seen.iter().enumerate() {
        if let Some((id, v)) = s.best {
            assert_eq!(
                id, first,
                "frame {n}: the circle under id {id} (IoU {v:.2}), not {first}: {seen:?}"
            );
        }
    }
    // Back within a frame: the alpha channel is on the circle again (IoU >=
    // 0.25: as it emerges from behind the square the mask first covers part
    // of it; 0.28 measured on frame 10, 0.61 on 11) on its first visible
    // frame after the hide or the next.
    assert!(
        seen[back].alpha_iou >= 0.25 || seen[back + 1].alpha_iou >= 0.25,
        "alpha IoU on frames {back}, {}: {:.2}, {:.2}: {seen:?}",
        back + 1,
        seen[back].alpha_iou,
        seen[back + 1].alpha_iou
    );
    // And it stays: from then on every frame shows the circle (under its
    // first id, checked above), the last one well (IoU >= 0.5).
    for (n, s) in seen.iter().enumerate().skip(back + 1) {
        assert!(
            s.best.is_some(),
            "frame {n}: no mask on the circle: {seen:?}"
        );
    }
    let last = seen.last().unwrap().best.unwrap();
    assert!(
        last.1 >= 0.5,
        "last frame: id {}, IoU {:.2}: {seen:?}",
        last.0,
        last.1
    );
}

#[test]
fn toy_occlusion_overlap_tracker_gives_the_red_circle_a_new_id_after_the_hide() {
    let seen = run_occlusion(TrackerMode::Overlap, Precision::Fp32);
    let (before, back) = hide(&seen);
    let (old, _) = seen[before]
        .best
        .or_else(|| seen[..before].iter().rev().find_map(|s| s.best))
        .expect("the detector finds the circle before the hide");
    // After it is back, the detector finds it again, under another id.
    let after: Vec<(usize, u64)> = seen
        .iter()
        .enumerate()
        .skip(back)
        .filter_map(|(n, s)| s.best.map(|b| (n, b.0)))
        .collect();
    assert!(
        !after.is_empty(),
        "the detector finds the circle after the hide: {seen:?}"
    );
    assert!(
        after.iter().all(|(_, id)| *id != old),
        "the overlap tracker loses the circle's id {old}: {after:?}"
    );
}
