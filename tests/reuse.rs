//! Reuse of image features and results on still pictures, and shared models.

mod common;

use std::sync::Arc;

use common::{load_rgb, tiny_bundle};
use samclipseg::{
    BackendOptions, Frame, InferenceState, PackedLayout, PostprocessOptions, Segmenter,
    shared_model,
};

fn photo() -> (Vec<u8>, usize, usize) {
    load_rgb(&tiny_bundle().join("golden/astronaut.png"))
}

fn frame(data: &[u8], w: usize, h: usize) -> Frame<'_> {
    Frame::packed(data, w, h, w * 3, PackedLayout::Rgb).unwrap()
}

/// The photo with deterministic noise of about +-3 levels, like a still camera.
fn noisy(data: &[u8], seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(747796405).wrapping_add(1);
    data.iter()
        .map(|v| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (*v as i32 + (s % 7) as i32 - 3).clamp(0, 255) as u8
        })
        .collect()
}

fn options() -> PostprocessOptions {
    PostprocessOptions::default()
}

#[test]
fn still_picture_reuses_features_then_result() {
    let model = shared_model(&tiny_bundle(), &BackendOptions::default()).unwrap();
    let (data, w, h) = photo();
    let mut seg = Segmenter::new(model.clone());

    let (first, s1) = seg
        .process(&frame(&data, w, h), &["a person"], &options(), 4.0)
        .unwrap();
    assert_eq!(s1, InferenceState::Fresh);
    assert!(
        !first.is_empty(),
        "the golden photo keeps instances for this prompt"
    );
    let fresh = seg.last_times().unwrap();
    assert!(fresh.text_ms > 0.0 && fresh.image_ms > 0.0 && fresh.decode_ms > 0.0);

    let n1 = noisy(&data, 1);
    let (again, s2) = seg
        .process(&frame(&n1, w, h), &["a person"], &options(), 4.0)
        .unwrap();
    assert_eq!(
        s2,
        InferenceState::ReusedResult,
        "sensor noise must count as still"
    );
    assert_eq!(again, first);
    assert_eq!(seg.last_times().unwrap().total_ms(), 0.0, "nothing ran");

    // A prompt change on a still picture decodes the cached features again.
    let (other, s3) = seg
        .process(&frame(&n1, w, h), &["a red ball"], &options(), 4.0)
        .unwrap();
    assert_eq!(s3, InferenceState::ReusedImageFeatures);
    let reused = seg.last_times().unwrap();
    assert!(reused.image_ms == 0.0 && reused.decode_ms > 0.0);
    let direct = model
        .segment(&frame(&data, w, h), &["a red ball"], &options())
        .unwrap();
    assert_eq!(other, direct, "reused features must give the fresh result");

    // So does a threshold change.
    let lower = PostprocessOptions {
        threshold: 0.3,
        ..options()
    };
    let (_, s4) = seg
        .process(&frame(&data, w, h), &["a red ball"], &lower, 4.0)
        .unwrap();
    assert_eq!(s4, InferenceState::ReusedImageFeatures);
}

#[test]
fn something_moving_in_is_a_fresh_frame() {
    let model = shared_model(&tiny_bundle(), &BackendOptions::default()).unwrap();
    let (data, w, h) = photo();
    let mut seg = Segmenter::new(model);
    seg.process(&frame(&data, w, h), &["a person"], &options(), 4.0)
        .unwrap();
    let mut moved = data.clone();
    for y in 20..60 {
        for x in 20..50 {
            moved[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[250, 250, 250]);
        }
    }
    let (_, state) = seg
        .process(&frame(&moved, w, h), &["a person"], &options(), 4.0)
        .unwrap();
    assert_eq!(state, InferenceState::Fresh);
}

#[test]
fn reuse_threshold_zero_always_runs_the_model() {
    let model = shared_model(&tiny_bundle(), &BackendOptions::default()).unwrap();
    let (data, w, h) = photo();
    let mut seg = Segmenter::new(model);
    for _ in 0..3 {
        let (_, state) = seg
            .process(&frame(&data, w, h), &["a person"], &options(), 0.0)
            .unwrap();
        assert_eq!(state, InferenceState::Fresh);
    }
}

#[test]
fn elements_with_the_same_bundle_share_one_model() {
    let opts = BackendOptions {
        intra_threads: 1,
        ..Default::default()
    };
    let a = shared_model(&tiny_bundle(), &opts).unwrap();
    let b = shared_model(&tiny_bundle().join("../tiny-sam3"), &opts).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let other_threads = shared_model(
        &tiny_bundle(),
        &BackendOptions {
            intra_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!Arc::ptr_eq(&a, &other_threads));
    let weak = Arc::downgrade(&a);
    drop((a, b));
    assert!(
        weak.upgrade().is_none(),
        "the model is freed when its last user lets go"
    );
}
