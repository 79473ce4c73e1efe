//! Asynchronous pipelines on the slow bundle (tests/fixtures/slow-sam3,
//! seconds a frame), and what their buffers carried.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstsamclipseg::{InferenceState, SamClipSegMeta, Segmentation};

use super::init;

pub fn slow_bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/slow-sam3")
}

pub fn meta(buf: &gst::BufferRef) -> Segmentation {
    SamClipSegMeta::from_buffer(buf)
        .expect("every buffer carries the meta")
        .segmentation()
        .clone()
}

/// Every instance answers the prompt the frame was segmented for.
pub fn assert_own_prompt(seg: &Segmentation) {
    let phrases: Vec<&str> = seg.prompt.split(';').map(str::trim).collect();
    for inst in &seg.instances {
        assert_eq!(
            phrases.get(inst.phrase_index as usize),
            Some(&inst.label.as_str()),
            "another prompt's instance: {seg:?}"
        );
    }
    if seg.state == InferenceState::Pending {
        assert!(seg.instances.is_empty(), "{seg:?}");
    }
}

/// precision=fp32: these tests abandon runs in progress, which ONNX Runtime's
/// CPU provider ends between nodes; an OpenVINO engine runs to its end.
pub fn slow_pipeline(props: &str) -> (gst::Pipeline, gst::Element, Arc<Mutex<Vec<Segmentation>>>) {
    init();
    let p = gst::parse::launch(&format!(
        "videotestsrc pattern=ball ! video/x-raw,format=RGBA,width=96,height=64,framerate=25/1 \
         ! samclipseg name=seg bundle=\"{}\" asynchronous=true max-latency=0 threshold=0 threads=1 \
         precision=fp32 {props} \
         ! fakesink sync=true",
        slow_bundle().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let seg = p.by_name("seg").unwrap();
    let seen = recorded(&seg);
    (p, seg, seen)
}

/// The metas of the buffers leaving `seg`, as they pass.
pub fn recorded(seg: &gst::Element) -> Arc<Mutex<Vec<Segmentation>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    seg.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer() {
                sink.lock().unwrap().push(meta(buf));
            }
            gst::PadProbeReturn::Ok
        });
    seen
}

/// Waits until `f` holds on what came out; fails after `limit`.
pub fn wait_for(
    seen: &Mutex<Vec<Segmentation>>,
    limit: Duration,
    what: &str,
    f: impl Fn(&[Segmentation]) -> bool,
) {
    let start = Instant::now();
    while !f(&seen.lock().unwrap()) {
        assert!(start.elapsed() < limit, "no {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A computed result for `prompt`, not a pending frame.
fn is_result(m: &Segmentation, prompt: &str) -> bool {
    m.prompt == prompt && m.state != InferenceState::Pending
}

pub fn has_result(s: &[Segmentation], prompt: &str) -> bool {
    s.iter().any(|m| is_result(m, prompt))
}

/// How many runs' results for `prompt` came out (told apart by the frame
/// each looked at; a result rides on every buffer until the next).
pub fn results(s: &[Segmentation], prompt: &str) -> usize {
    let mut pts: Vec<_> = s
        .iter()
        .filter(|m| is_result(m, prompt))
        .map(|m| m.source_pts)
        .collect();
    pts.dedup();
    pts.len()
}
