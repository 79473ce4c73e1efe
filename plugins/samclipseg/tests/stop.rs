//! Stopping an asynchronous element while a slow run is in progress returns
//! at once and the run is really abandoned: the inference thread is gone, not
//! left to finish in the background. Its own test binary, so that no other
//! test's inference thread is alive beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::slow::{results, slow_pipeline, wait_for};
use gst::prelude::*;

/// Threads of this process named like the worker (names are cut at 15 bytes).
fn inference_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "samclipseg-infe")
        .count()
}

#[test]
fn stopping_abandons_the_run_in_progress() {
    let (p, _seg, seen) = slow_pipeline("prompt=\"a person\"");
    p.set_state(gst::State::Playing).unwrap();
    // ONNX Runtime checks the terminate flag between operators. On a warm
    // session this bundle's longest is ~60 ms; in a session's first two runs
    // the first global attention writes ~430 MB its arena has not yet touched
    // and takes 0.2-1 s alone (tests/cancel_latency.rs measures both). The
    // stop comes in the fourth run.
    wait_for(&seen, Duration::from_secs(60), "three results", |s| {
        results(s, "a person") >= 3
    });
    assert_eq!(inference_threads(), 1);
    // Frames keep coming, so the next run has started by now.
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    p.set_state(gst::State::Null).unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "stopping took {took:?}");
    // Left to finish on its own, the run would keep the thread for a second
    // or more (1.2-2.5 s a frame, 300 ms of it gone).
    let deadline = Instant::now() + Duration::from_millis(300);
    while inference_threads() > 0 {
        assert!(
            Instant::now() < deadline,
            "the inference thread outlived the stop by {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "the inference thread was gone {:?} after the stop",
        start.elapsed()
    );
}
