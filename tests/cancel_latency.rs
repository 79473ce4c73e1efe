//! How soon a cancelled image-encoder run returns, on the slow bundle
//! (seconds a run), outside GStreamer: what the element's stop test relies on.
//!
//! ONNX Runtime checks the terminate flag before each operator, so a cancel
//! waits for the operator in progress. On a warm session this bundle's
//! longest (a softmax over 4 x 5184 x 5184 attention scores) takes ~60 ms.
//! In a session's first two runs the first global attention's matmul writes
//! that ~430 MB into memory the CPU arena has not touched yet, and takes
//! 0.2-1 s alone (ONNX Runtime's profiler, 1 thread, Intel Xeon): a cancel
//! then can be that late. The warm-up runs below are those two and two more.

use std::path::Path;
use std::time::{Duration, Instant};

use samclipseg::stream::run_control::{self, RunControl};
use samclipseg::{BackendOptions, Error, Frame, PackedLayout, Sam3Model};

fn slow_model() -> Sam3Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/slow-sam3");
    let options = BackendOptions {
        intra_threads: 1,
        ..BackendOptions::default()
    };
    Sam3Model::load(dir, &options).unwrap()
}

#[test]
fn a_cancelled_encoder_run_returns_soon() {
    let model = slow_model();
    let (w, h) = (96, 64);
    let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    let frame = Frame::packed(&data, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let mut full = Duration::ZERO;
    for i in 0..4 {
        let start = Instant::now();
        model.encode_image(&frame).unwrap();
        full = start.elapsed();
        eprintln!("warm-up run {i}: {full:?}");
    }
    for share in [0.15, 0.35, 0.55, 0.7] {
        // A run that ends before the cancel measured nothing (the machine got
        // faster than the warm-up said): time a full run again and retry.
        let mut attempts = 0;
        let (out, late, delay) = loop {
            let control = RunControl::new();
            let delay = full.mul_f64(share);
            let canceller = {
                let control = control.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    control.cancel();
                    Instant::now()
                })
            };
            let start = Instant::now();
            let out = run_control::scoped(&control, || model.encode_image(&frame));
            let returned = Instant::now();
            let cancelled = canceller.join().unwrap();
            attempts += 1;
            if out.is_ok() && cancelled >= returned && attempts < 3 {
                full = returned - start;
                eprintln!("the run ended before the cancel at {delay:?}; full run now {full:?}");
                continue;
            }
            break (out, returned.saturating_duration_since(cancelled), delay);
        };
        eprintln!("full run {full:?}; cancelled at {delay:?}: returned {late:?} later");
        assert!(matches!(out, Err(Error::Cancelled)), "{:?}", out.err());
        assert!(
            late < Duration::from_millis(300),
            "the run went on {late:?} after the cancel (a full run takes {full:?})"
        );
    }
}
