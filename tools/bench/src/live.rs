//! Part E: a live source through the element. A live 1080p60 `videotestsrc`
//! (a moving ball: every frame differs) into `fakesink sync=true`, timed from
//! PLAYING to EOS: the real-time factor is that wall time over the video's own
//! duration (1.00 = the source kept real time). Each output mode in
//! asynchronous mode (and, on the toy bundle, synchronous mode) with the
//! element's default properties,
//! beside the same pipeline with `identity` in the element's place, in one run.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use gstsamclipseg::{InferenceState, SamClipSegMeta};

use crate::error::BoxResult;

/// One live pipeline run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveRun {
    pub label: String,
    pub frames: u64,
    /// Wall time from PLAYING to EOS over the video's duration.
    pub real_time_factor: f64,
    /// Frames that carried a result (fresh or an earlier frame's), and how
    /// many distinct model results those were.
    pub with_result: u64,
    pub results: u64,
    pub pending: u64,
}

/// The cases of one bundle: (label, element, or None for `identity`).
/// Synchronous mode only where asked: there every frame waits for a model
/// run, so a slow bundle's source runs at the model's pace by design (300
/// frames of the medium bundle would take a quarter of an hour).
fn cases(bundle: &Path, prompt: &str, synchronous: bool) -> Vec<(String, Option<String>)> {
    let mut v = vec![("no samclipseg (identity)".to_string(), None)];
    let modes: &[bool] = if synchronous { &[false, true] } else { &[true] };
    for &asynchronous in modes {
        for mode in ["meta", "alpha", "overlay"] {
            v.push((
                format!(
                    "{}, {mode}",
                    if asynchronous { "asynchronous" } else { "synchronous" }
                ),
                Some(format!(
                    "samclipseg bundle=\"{}\" prompt=\"{prompt}\" output-mode={mode} asynchronous={asynchronous}",
                    bundle.display()
                )),
            ));
        }
    }
    v
}

/// Runs every case on `bundle`, `frames` frames each; synchronous mode too
/// when `synchronous`.
pub fn run(bundle: &Path, prompt: &str, frames: u32, synchronous: bool) -> BoxResult<Vec<LiveRun>> {
    let mut out = Vec::new();
    for (label, element) in cases(bundle, prompt, synchronous) {
        eprintln!("[bench] live: {label}, {frames} frames");
        let r = run_one(&label, element.as_deref(), frames)?;
        eprintln!("[bench]   real-time factor {:.3}", r.real_time_factor);
        out.push(r);
    }
    Ok(out)
}

const FPS: u32 = 60;

fn run_one(label: &str, element: Option<&str>, frames: u32) -> BoxResult<LiveRun> {
    let middle = element.unwrap_or("identity");
    let desc = format!(
        "videotestsrc is-live=true pattern=ball num-buffers={frames} \
         ! video/x-raw,width=1920,height=1080,framerate={FPS}/1 ! {middle} ! fakesink name=sink sync=true"
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the live pipeline is not a gst::Pipeline")?;
    #[derive(Default)]
    struct Seen {
        frames: u64,
        with_result: u64,
        pending: u64,
        sources: HashSet<u64>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let pad = pipeline
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .ok_or("no fakesink pad in the live pipeline")?;
    let s = seen.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let (Some(buffer), Ok(mut s)) = (info.buffer(), s.lock()) {
            s.frames += 1;
            if let Some(meta) = SamClipSegMeta::from_buffer(buffer) {
                if meta.state() == InferenceState::Pending {
                    s.pending += 1;
                } else {
                    s.with_result += 1;
                    let source = meta
                        .source_pts()
                        .or(buffer.pts())
                        .map_or(0, |t| t.nseconds());
                    s.sources.insert(source);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    // A live source does not preroll: the model loads in READY -> PAUSED,
    // before the clock starts.
    pipeline.set_state(gst::State::Paused)?;
    let _ = pipeline.state(gst::ClockTime::from_seconds(600));
    let start = Instant::now();
    pipeline.set_state(gst::State::Playing)?;
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(1)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(..) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(format!("{}: {}", e.error(), e.debug().unwrap_or_default()));
            }
            _ => {}
        }
    };
    let wall = start.elapsed().as_secs_f64();
    pipeline.set_state(gst::State::Null)?;
    result?;
    let s = seen.lock().map_err(|_| "probe lock poisoned")?;
    Ok(LiveRun {
        label: label.to_string(),
        frames: s.frames,
        real_time_factor: wall / (frames as f64 / FPS as f64),
        with_result: s.with_result,
        results: s.sources.len() as u64,
        pending: s.pending,
    })
}
