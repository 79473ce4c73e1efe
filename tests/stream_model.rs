//! The stream layer on the real tiny bundle: its results are the model's, in
//! both modes; suggestions run beside it; cancelled controls stop real
//! engine runs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{load_rgb, tiny_bundle};
use samclipseg::prompt::suggest::{DEFAULT_VOCABULARY, parse_vocabulary};
use samclipseg::stream::run_control::{self, RunControl};
use samclipseg::{
    BackendOptions, Error, Frame, FrameSettings, InferenceState, PackedLayout, PostprocessOptions,
    Request, Sam3Model, Segmenter, Stream, shared_model,
};

fn model() -> Arc<Sam3Model> {
    shared_model(&tiny_bundle(), &BackendOptions::default()).unwrap()
}

fn photo() -> (Vec<u8>, usize, usize) {
    load_rgb(&tiny_bundle().join("golden/astronaut.png"))
}

fn frame(data: &[u8], w: usize, h: usize) -> Frame<'_> {
    Frame::packed(data, w, h, w * 3, PackedLayout::Rgb).unwrap()
}

fn request(prompt: &str) -> Request {
    let options = PostprocessOptions {
        threshold: 0.3,
        ..PostprocessOptions::default()
    };
    Request::new(prompt, "", options, 0.5)
}

/// The photo shifted right by `dx` pixels: a moving picture.
fn shifted(data: &[u8], w: usize, dx: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    for (row_out, row_in) in out.chunks_mut(w * 3).zip(data.chunks(w * 3)) {
        row_out[dx * 3..].copy_from_slice(&row_in[..(w - dx) * 3]);
    }
    out
}

#[test]
fn a_stream_carries_the_models_own_result_in_both_modes() {
    let (data, w, h) = photo();
    let req = request("a person; a cat");
    // The model directly: one run, then the request's thresholds.
    let mut direct = Segmenter::new(model());
    let texts = req.texts();
    let (raw, _) = direct
        .process(&frame(&data, w, h), &texts, &req.model_options(), 0.0)
        .unwrap();
    let (expected, _) = req.resolve(raw);
    assert!(!expected.is_empty(), "the photo keeps instances at 0.3");

    for asynchronous in [false, true] {
        let mut stream = Stream::new(Segmenter::new(model()), asynchronous).unwrap();
        let settings = FrameSettings {
            max_latency: Duration::from_secs(30),
            ..FrameSettings::default()
        };
        let r = stream
            .frame(&frame(&data, w, h), Some(5), &req, &settings)
            .unwrap();
        assert_eq!(
            r.state,
            InferenceState::Fresh,
            "asynchronous={asynchronous}"
        );
        assert_eq!(r.source_pts, Some(5));
        assert_eq!(r.instances.len(), expected.len());
        for (got, want) in r.instances.iter().zip(&expected) {
            assert_eq!(
                (&got.label, got.query, &got.mask),
                (&want.label, want.query, &want.mask)
            );
            assert!((got.score - want.score).abs() < 1e-6);
            assert!(got.id > 0, "tracked instances have ids");
        }
    }
}

#[test]
fn suggestions_run_beside_a_stream_in_both_modes() {
    let (data, w, h) = photo();
    let vocabulary = parse_vocabulary(DEFAULT_VOCABULARY);
    for asynchronous in [false, true] {
        let mut stream = Stream::new(Segmenter::new(model()), asynchronous).unwrap();
        let settings = FrameSettings {
            max_latency: Duration::from_secs(30),
            ..FrameSettings::default()
        };
        let req = request("a person");
        stream
            .frame(&frame(&data, w, h), Some(0), &req, &settings)
            .unwrap();
        let source = stream
            .handle()
            .suggest_source()
            .expect("features after a frame");
        let vocab = vocabulary.clone();
        let ranking =
            std::thread::spawn(move || source.model.suggest(&source.features, &vocab, 5).unwrap());
        // Moving frames (image encoder and decoder each) while it ranks
        // hundreds of phrases: no lock is held for the whole ranking.
        let mut during = 0;
        let mut n = 1u64;
        while !ranking.is_finished() {
            let moved = shifted(&data, w, (n as usize * 3) % 40 + 1);
            let r = stream
                .frame(&frame(&moved, w, h), Some(n), &req, &settings)
                .unwrap();
            assert_eq!(r.state, InferenceState::Fresh);
            during += 1;
            n += 1;
        }
        let top = ranking.join().unwrap();
        assert_eq!(top.len(), 5);
        assert!(
            during >= 3,
            "asynchronous={asynchronous}: only {during} frames passed while suggest ran"
        );
    }
}

#[test]
fn a_cancelled_control_stops_real_engine_runs() {
    let (data, w, h) = photo();
    let mut seg = Segmenter::new(model());
    let control = RunControl::new();
    let req = request("a person");
    // Under a live control the engines run through its run options.
    let ok = run_control::scoped(&control, || {
        seg.process(&frame(&data, w, h), &req.texts(), &req.model_options(), 0.0)
    });
    assert!(ok.is_ok());
    // Cancelled from another thread while runs go on: they stop with
    // Cancelled (the terminate flag or the check before a run), nothing else.
    let canceller = {
        let control = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            control.cancel();
        })
    };
    let mut n = 0;
    let err = loop {
        let moved = shifted(&data, w, n % 40 + 1);
        let out = run_control::scoped(&control, || {
            seg.process(
                &frame(&moved, w, h),
                &req.texts(),
                &req.model_options(),
                0.0,
            )
        });
        match out {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 10_000, "the cancel never took effect");
    };
    canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled), "{err}");
    // A later run under a fresh control works: nothing was left half-done.
    let fresh = RunControl::new();
    let again = run_control::scoped(&fresh, || {
        seg.process(&frame(&data, w, h), &req.texts(), &req.model_options(), 0.0)
    });
    assert!(again.is_ok());
}
