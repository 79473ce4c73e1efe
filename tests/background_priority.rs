//! Asynchronous mode leaves the CPU to the pipeline (src/priority.rs,
//! src/model/backend/threads.rs): a model loaded for the background has
//! ONNX Runtime pool threads at background priority and computes the same
//! masks as one loaded for the foreground, whose threads keep the process's
//! priority; an asynchronous stream's worker and a suggestion run niced.
//! One test: other tests' threads in this binary would blur the counts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{load_rgb, tiny_bundle};
use samclipseg::priority::{BACKGROUND_NICE, this_thread_nice, thread_nice_values};
use samclipseg::{
    BackendOptions, Frame, FrameSettings, InferenceState, PackedLayout, PostprocessOptions,
    Request, Sam3Model, Segmenter, Stream,
};

/// Threads of this process at background priority, by name.
fn niced_threads() -> Vec<String> {
    let background = this_thread_nice() + BACKGROUND_NICE;
    thread_nice_values()
        .into_iter()
        .filter(|(_, nice)| *nice >= background.min(19))
        .map(|(tid, _)| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect()
}

fn load(background: bool) -> Sam3Model {
    let options = BackendOptions {
        intra_threads: 2,
        background,
        ..BackendOptions::default()
    };
    Sam3Model::load(tiny_bundle(), &options).unwrap()
}

#[test]
fn background_threads_run_nicer_and_compute_the_same() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let (data, w, h) = load_rgb(&tiny_bundle().join("golden/astronaut.png"));
    let frame = Frame::packed(&data, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let opts = PostprocessOptions {
        threshold: 0.3,
        ..PostprocessOptions::default()
    };
    let caller = this_thread_nice();
    assert_eq!(niced_threads(), Vec::<String>::new(), "nothing niced yet");

    let foreground = load(false);
    assert_eq!(
        niced_threads(),
        Vec::<String>::new(),
        "a foreground model's pool threads keep the process's priority"
    );
    let background = load(true);
    // Two threads per session: the caller and one pool thread; three
    // engines (text encoder, image encoder, decoder).
    let niced = niced_threads();
    assert!(
        niced.len() >= 3,
        "each engine of a background model has its pool thread niced: {niced:?}"
    );
    let want = foreground.segment(&frame, &["a person"], &opts).unwrap();
    let got = background.segment(&frame, &["a person"], &opts).unwrap();
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.mask, g.query), (&w.mask, w.query));
        assert!((g.score - w.score).abs() < 1e-6);
    }
    assert_eq!(
        this_thread_nice(),
        caller,
        "loading left the caller's priority alone"
    );

    // The asynchronous stream's worker is background work whatever the model.
    let before = niced_threads().len();
    let mut stream = Stream::new(Segmenter::new(Arc::new(foreground)), true).unwrap();
    let request = Request::new("a person", "", opts.clone(), 0.5);
    let settings = FrameSettings {
        max_latency: Duration::from_secs(30),
        ..FrameSettings::default()
    };
    let r = stream.frame(&frame, Some(0), &request, &settings).unwrap();
    assert_eq!(r.state, InferenceState::Fresh);
    let niced = niced_threads();
    assert_eq!(niced.len(), before + 1, "{niced:?}");
    assert!(niced.iter().any(|n| n == "samclipseg-infe"), "{niced:?}");

    // A suggestion runs on a niced thread of its own, and the caller keeps
    // its priority.
    let source = stream.handle().suggest_source().unwrap();
    let vocabulary = vec!["a person".to_string(), "a cat".to_string()];
    let top = source
        .model
        .suggest(&source.features, &vocabulary, 1)
        .unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(this_thread_nice(), caller);
}
