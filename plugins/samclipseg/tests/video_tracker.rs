//! Property `tracker`: SAM 3's video tracker through the element, on the tiny
//! video bundle's golden clip (transformers' streaming run, written by
//! engines/make_tiny_sam3_video.py): the metas carry SAM 3's object ids and
//! masks frame by frame, `inference-interval` runs the detector on every N-th
//! frame only, and a bundle without tracker engines is refused clearly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{harness_on, init, load_rgba, tiny_bundle};
use gst::prelude::*;
use gstsamclipseg::{InferenceState, SamClipSegMeta, TrackerMode};

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
