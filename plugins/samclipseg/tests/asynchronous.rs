//! Asynchronous mode through the element while a slow run is in progress
//! (tests/fixtures/slow-sam3: seconds per frame, made by
//! engines/make_slow_sam3.py): a prompt change, a seek and a stop. Plus what
//! gap buffers and empty prompts carry. The rules themselves are tested in
//! the core (tests/stream_rules.rs); these show the element keeps them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::slow::{assert_own_prompt, has_result, meta, recorded, slow_pipeline, wait_for};
use common::{harness, init, photo};
use gst::prelude::*;
use gstsamclipseg::{InferenceState, OutputMode, Segmentation};

#[test]
fn a_slow_run_is_abandoned_by_a_prompt_change_a_seek_and_a_stop() {
    let (p, seg, seen) = slow_pipeline("prompt=\"a person\"");
    p.set_state(gst::State::Playing).unwrap();
    let limit = Duration::from_secs(60);
    let start = Instant::now();
    wait_for(&seen, limit, "first result", |s| has_result(s, "a person"));
    eprintln!("first result after {:?}", start.elapsed());

    // A new prompt while the next run of the old one is going: frames are
    // pending (no instances) until the new prompt's own result arrives.
    seg.set_property("prompt", "a cat; a dog");
    let mark = seen.lock().unwrap().len();
    wait_for(&seen, limit, "result for the new prompt", |s| {
        has_result(&s[mark..], "a cat; a dog")
    });
    {
        let s = seen.lock().unwrap();
        let after: Vec<&Segmentation> = s[mark..]
            .iter()
            .filter(|m| m.prompt == "a cat; a dog")
            .collect();
        assert_eq!(
            after[0].state,
            InferenceState::Pending,
            "the old result came back"
        );
        for m in s.iter() {
            assert_own_prompt(m);
        }
    }

    // A flushing seek far ahead while a run is in progress: no frame after
    // it carries a picture from before it.
    let mark = seen.lock().unwrap().len();
    let target = gst::ClockTime::from_seconds(1000);
    p.seek_simple(gst::SeekFlags::FLUSH, target).unwrap();
    wait_for(&seen, limit, "result after the seek", |s| {
        s[mark..]
            .iter()
            .any(|m| m.state != InferenceState::Pending && m.source_pts >= Some(target))
    });
    {
        let s = seen.lock().unwrap();
        // Frames after the first one stamped past the seek position.
        let first_new = s[mark..]
            .iter()
            .position(|m| m.source_pts >= Some(target) || m.state == InferenceState::Pending)
            .unwrap();
        for m in &s[mark + first_new..] {
            assert!(
                m.state == InferenceState::Pending || m.source_pts >= Some(target),
                "a result from before the seek: {m:?}"
            );
        }
    }

    // Stopping while the next run is in progress does not wait for it.
    let start = Instant::now();
    p.set_state(gst::State::Null).unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "stopping took {took:?}");
}

#[test]
fn a_gap_buffer_is_marked_and_its_alpha_cleared() {
    let p = photo("astronaut.png");
    let mut h = harness(&[("prompt", &"a person"), ("output-mode", &OutputMode::Alpha)]);
    h.set_src_caps(p.caps("RGBA"));
    let mut buf = p.rgba_buffer(0);
    buf.get_mut().unwrap().set_flags(gst::BufferFlags::GAP);
    let out = h.push_and_pull(buf).unwrap();
    let seg = meta(&out);
    assert_eq!((seg.state, seg.instances.len()), (InferenceState::Gap, 0));
    assert_eq!(seg.source_pts, None);
    let map = out.map_readable().unwrap();
    assert!(
        map.chunks(4).all(|px| px[3] == 0),
        "a gap's alpha says \"no object\" everywhere"
    );
    drop(map);
    // The next real frame is segmented as usual.
    let out = h.push_and_pull(p.rgba_buffer(1)).unwrap();
    assert_eq!(meta(&out).state, InferenceState::Fresh);
}

#[test]
fn an_empty_prompt_is_no_prompt_not_fresh() {
    let p = photo("astronaut.png");
    for mode in [OutputMode::Meta, OutputMode::Alpha] {
        let mut h = harness(&[("prompt", &" ; -a cat"), ("output-mode", &mode)]);
        h.set_src_caps(p.caps("RGBA"));
        let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
        let seg = meta(&out);
        assert_eq!(
            (seg.state, seg.instances.len()),
            (InferenceState::NoPrompt, 0)
        );
        assert_eq!(seg.state.nick(), "no-prompt");
    }
}

#[test]
fn suggest_works_in_both_modes_while_frames_keep_flowing() {
    for asynchronous in [false, true] {
        init();
        let p = gst::parse::launch(&format!(
            "videotestsrc pattern=ball ! video/x-raw,format=RGBA,width=96,height=64 \
             ! samclipseg name=seg bundle=\"{}\" precision=fp32 prompt=\"a person\" asynchronous={asynchronous} \
               max-latency=1000 reuse-threshold=0 ! fakesink sync=false",
            common::tiny_bundle().display()
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let seg = p.by_name("seg").unwrap();
        let seen = recorded(&seg);
        p.set_state(gst::State::Playing).unwrap();
        wait_for(&seen, Duration::from_secs(60), "a result", |s| {
            has_result(s, "a person")
        });
        let before = seen.lock().unwrap().len();
        let s = seg.emit_by_name::<gst::Structure>("suggest", &[&5u32]);
        let during = seen.lock().unwrap().len() - before;
        p.set_state(gst::State::Null).unwrap();
        assert!(!s.has_field("error"), "asynchronous={asynchronous}: {s}");
        assert_eq!(s.get::<gst::List>("phrases").unwrap().len(), 5);
        // Hundreds of phrases were ranked; frames went on meanwhile.
        assert!(
            during >= 3,
            "asynchronous={asynchronous}: {during} frames passed while suggest ran"
        );
    }
}
