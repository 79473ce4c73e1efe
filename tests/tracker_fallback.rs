//! Under `precision=auto`, a video tracker engine that OpenVINO's provider
//! refuses at run time moves to its fp32 file on ONNX Runtime, and tracking
//! goes on. OpenVINO refuses the mask prompt's inputs (on the bench and the
//! toy bundles), so this binary puts every tracker engine on OpenVINO
//! (SAMCLIPSEG_TRACKER_BF16_ENGINES, set before anything reads it: the only
//! test here) and tracks the toy occlusion clip. On a CPU with native bf16
//! the mask prompt must fall back; elsewhere `auto` runs the tracker in fp32
//! and nothing can fall back (then only the tracking is checked).

use std::path::PathBuf;
use std::sync::Arc;

use samclipseg::image::file::OwnedImage;
use samclipseg::model::precision::TRACKER_BF16_VAR;
use samclipseg::stream::{VideoLimits, VideoTracker};
use samclipseg::{BackendOptions, Precision, Sam3Model};

#[test]
fn an_engine_openvino_refuses_moves_to_fp32_and_tracking_goes_on() {
    // SAFETY: this binary's only test sets it before any thread reads it.
    unsafe {
        std::env::set_var(
            TRACKER_BF16_VAR,
            "tracker_memory_attention tracker_mask_decoder tracker_mask_prompt tracker_memory_encoder",
        )
    };
    let toy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy-shapes-video");
    let options = BackendOptions {
        precision: Precision::Auto,
        intra_threads: 2,
        ..Default::default()
    };
    let model = Arc::new(Sam3Model::load(&toy, &options).unwrap());
    let on_openvino = model.tracker_precision().unwrap().contains("mask prompt");
    let texts = model.encode_texts(&["red circle"]).unwrap();
    let mut tracker = VideoTracker::new(model.clone(), VideoLimits::default()).unwrap();
    let mut tracked = 0;
    for n in 0.. {
        let path = toy.join(format!("golden/occlusion/frame-{n:02}.png"));
        if !path.exists() {
            break;
        }
        let picture = OwnedImage::open(&path).unwrap();
        let features = model.encode_image(&picture.frame().unwrap()).unwrap();
        let step = tracker.step(&features, &texts, true).unwrap();
        tracked += usize::from(!step.object_ids.is_empty());
    }
    assert!(tracked >= 10, "objects on {tracked} frames of the clip");
    let fallbacks = model.tracker_fallbacks();
    if on_openvino {
        assert!(
            fallbacks.contains(&"tracker_mask_prompt"),
            "the mask prompt ran on OpenVINO: {fallbacks:?} ({:?})",
            model.tracker_precision()
        );
    } else {
        assert!(fallbacks.is_empty(), "{fallbacks:?}");
    }
}
