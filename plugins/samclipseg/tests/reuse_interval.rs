//! Reuse on still pictures, `inference-interval` and asynchronous mode: the
//! inference state and source timestamp each buffer's metadata states, and
//! one buffer out per buffer in, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{harness, photo};
use gst::prelude::*;
use gstsamclipseg::{InferenceState, SamClipSegMeta};

/// A photo with a bright square at `x`: a picture that moved.
fn moved_buffer(p: &common::Photo, n: u64, x: usize) -> gst::Buffer {
    let mut rgba = p.rgba.clone();
    for y in 10..50 {
        for xx in x..x + 30 {
            let o = (y * p.width + xx) * 4;
            rgba[o..o + 3].copy_from_slice(&[250, 250, 250]);
        }
    }
    let mut buf = gst::Buffer::from_slice(rgba);
    let b = buf.get_mut().unwrap();
    b.set_pts(gst::ClockTime::from_mseconds(40 * n));
    buf
}

/// Pushes buffers and returns (pts, state, source pts, instance count) per output buffer.
fn run(
    h: &mut gst_check::Harness,
    buffers: Vec<gst::Buffer>,
    mut before_each: impl FnMut(&mut gst_check::Harness, usize),
) -> Vec<(
    Option<gst::ClockTime>,
    InferenceState,
    Option<gst::ClockTime>,
    usize,
)> {
    let mut out = Vec::new();
    for (i, b) in buffers.into_iter().enumerate() {
        before_each(h, i);
        let buf = h.push_and_pull(b).unwrap();
        let meta = SamClipSegMeta::from_buffer(&buf).expect("every buffer carries the meta");
        out.push((
            buf.pts(),
            meta.state(),
            meta.source_pts(),
            meta.instances().len(),
        ));
    }
    out
}

fn ms(v: u64) -> Option<gst::ClockTime> {
    Some(gst::ClockTime::from_mseconds(v))
}

#[test]
fn still_picture_reuses_the_result_and_a_prompt_change_only_decodes() {
    let p = photo("astronaut.png");
    let mut h = harness(&[("prompt", &"a person")]);
    h.set_src_caps(p.caps("RGBA"));
    let buffers = (0..5).map(|n| p.rgba_buffer(n)).collect();
    let got = run(&mut h, buffers, |h, i| {
        if i == 3 {
            h.element().unwrap().set_property("prompt", "cat");
        }
    });
    let states: Vec<_> = got.iter().map(|g| g.1).collect();
    assert_eq!(
        states,
        [
            InferenceState::Fresh,
            InferenceState::ReusedResult,
            InferenceState::ReusedResult,
            InferenceState::ReusedImageFeatures,
            InferenceState::ReusedResult,
        ]
    );
    // Every result came from the picture of the first frame.
    assert!(got.iter().all(|g| g.2 == ms(0)), "{got:?}");
    assert!(got[0].3 > 0);
}

#[test]
fn reuse_threshold_zero_runs_every_frame_and_motion_is_fresh() {
    let p = photo("astronaut.png");
    let mut h = harness(&[("prompt", &"a person"), ("reuse-threshold", &0.0f32)]);
    h.set_src_caps(p.caps("RGBA"));
    let got = run(
        &mut h,
        (0..3).map(|n| p.rgba_buffer(n)).collect(),
        |_, _| {},
    );
    assert!(got.iter().all(|g| g.1 == InferenceState::Fresh));
    assert_eq!(
        got.iter().map(|g| g.2).collect::<Vec<_>>(),
        [ms(0), ms(40), ms(80)]
    );

    let mut h = harness(&[("prompt", &"a person")]);
    h.set_src_caps(p.caps("RGBA"));
    let moving = (0..3)
        .map(|n| moved_buffer(&p, n, 20 + 60 * n as usize))
        .collect();
    let got = run(&mut h, moving, |_, _| {});
    assert!(got.iter().all(|g| g.1 == InferenceState::Fresh), "{got:?}");
}

#[test]
fn inference_interval_repeats_the_last_result_until_the_prompt_changes() {
    let p = photo("astronaut.png");
    let mut h = harness(&[
        ("prompt", &"a person"),
        ("reuse-threshold", &0.0f32),
        ("inference-interval", &3u32),
    ]);
    h.set_src_caps(p.caps("RGBA"));
    let buffers = (0..8).map(|n| p.rgba_buffer(n)).collect();
    let got = run(&mut h, buffers, |h, i| {
        if i == 7 {
            h.element().unwrap().set_property("prompt", "cat");
        }
    });
    use InferenceState::{Fresh, ReusedResult};
    let states: Vec<_> = got.iter().map(|g| g.1).collect();
    assert_eq!(
        states,
        [
            Fresh,
            ReusedResult,
            ReusedResult,
            Fresh,
            ReusedResult,
            ReusedResult,
            Fresh,
            Fresh
        ]
    );
    let sources: Vec<_> = got.iter().map(|g| g.2).collect();
    assert_eq!(
        sources,
        [
            ms(0),
            ms(0),
            ms(0),
            ms(120),
            ms(120),
            ms(120),
            ms(240),
            ms(280)
        ]
    );
    assert_eq!(
        got[1].3, got[0].3,
        "repeated frames carry the same instances"
    );
}

#[test]
fn asynchronous_mode_with_enough_latency_gives_every_frame_its_own_result() {
    let p = photo("astronaut.png");
    let mut h = harness(&[
        ("prompt", &"a person"),
        ("reuse-threshold", &0.0f32),
        ("asynchronous", &true),
        ("max-latency", &20_000u32),
    ]);
    h.set_src_caps(p.caps("RGBA"));
    let got = run(
        &mut h,
        (0..4).map(|n| p.rgba_buffer(n)).collect(),
        |_, _| {},
    );
    for g in &got {
        assert_eq!(g.1, InferenceState::Fresh, "{got:?}");
        assert_eq!(g.2, g.0, "the result is the frame's own");
    }
    let reference = common::reference(&p, "a person", 0.5, 3, 0);
    assert_eq!(got[0].3, reference.len());
}

#[test]
fn asynchronous_mode_without_waiting_passes_every_frame_in_order() {
    let p = photo("astronaut.png");
    let mut h = harness(&[
        ("prompt", &"a person"),
        ("reuse-threshold", &0.0f32),
        ("asynchronous", &true),
        ("max-latency", &0u32),
    ]);
    h.set_src_caps(p.caps("RGBA"));
    let n = 30;
    let got = run(
        &mut h,
        (0..n).map(|i| p.rgba_buffer(i)).collect(),
        |_, _| {
            // Roughly a 25 fps source, so that the worker finishes some frames.
            std::thread::sleep(std::time::Duration::from_millis(20));
        },
    );
    assert_eq!(got.len(), n as usize);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.0, ms(40 * i as u64), "order and timestamps kept");
        match g.1 {
            InferenceState::Pending => assert_eq!((g.2, g.3), (None, 0), "{g:?}"),
            _ => assert!(
                g.2.is_some_and(|s| Some(s) <= g.0),
                "a result from the future: {g:?}"
            ),
        }
    }
    assert!(
        got.iter().any(|g| g.1 != InferenceState::Pending),
        "no result finished within {n} frames: {got:?}"
    );
}

#[test]
fn inference_interval_repeats_multi_phrase_results_too() {
    let p = photo("chelsea.png");
    let mut h = harness(&[
        ("prompt", &"cat; a person"),
        ("reuse-threshold", &0.0f32),
        ("inference-interval", &2u32),
    ]);
    h.set_src_caps(p.caps("RGBA"));
    let got = run(
        &mut h,
        (0..4).map(|n| p.rgba_buffer(n)).collect(),
        |_, _| {},
    );
    use InferenceState::{Fresh, ReusedResult};
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        [Fresh, ReusedResult, Fresh, ReusedResult]
    );
    assert_eq!(got[1].3, got[0].3);
}
