//! The element in real pipelines: errors on the bus, metadata through queue,
//! tee, identity and videoconvert, one buffer out per buffer in across seeks,
//! resolution changes and state cycles, and the bus messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;
use gstsamclipseg::{SamClipSegMeta, Segmentation};

const TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(120);

fn launch(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

fn by_name(p: &gst::Pipeline, name: &str) -> gst::Element {
    p.by_name(name)
        .unwrap_or_else(|| panic!("no element {name}"))
}

/// One record per buffer crossing a pad.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    pts: Option<gst::ClockTime>,
    meta: Option<Segmentation>,
    rois: usize,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(element: &gst::Element, pad: &str) -> Log {
    let log: Log = Arc::default();
    let l = log.clone();
    element
        .static_pad(pad)
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer() {
                l.lock().unwrap().push(Seen {
                    pts: buf.pts(),
                    meta: SamClipSegMeta::from_buffer(buf).map(|m| m.segmentation().clone()),
                    rois: buf
                        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                        .count(),
                });
            }
            gst::PadProbeReturn::Ok
        });
    log
}

fn take(log: &Log) -> Vec<Seen> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// Waits for EOS or an error; returns the error, if any, and every element
/// message seen before.
fn wait_eos(p: &gst::Pipeline) -> (Option<glib::Error>, Vec<gst::Structure>) {
    let bus = p.bus().unwrap();
    let mut messages = Vec::new();
    loop {
        let msg = bus.timed_pop(TIMEOUT).expect("pipeline finished in time");
        match msg.view() {
            gst::MessageView::Eos(_) => return (None, messages),
            gst::MessageView::Error(e) => {
                eprintln!("error: {} ({:?})", e.error(), e.debug());
                return (Some(e.error()), messages);
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    messages.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
}

fn play_to_eos(p: &gst::Pipeline) -> Vec<gst::Structure> {
    p.set_state(gst::State::Playing).unwrap();
    let (err, messages) = wait_eos(p);
    assert!(err.is_none(), "{err:?}");
    messages
}

fn photo_source(name: &str, format: &str, buffers: u32) -> String {
    format!(
        "filesrc location=\"{}\" ! pngdec ! videoconvert ! video/x-raw,format={format} \
         ! imagefreeze num-buffers={buffers}",
        photo_path(name).display()
    )
}

/// fp32: these pipelines are compared with the core library's exact path.
fn seg(props: &str) -> String {
    format!(
        "samclipseg name=seg bundle=\"{}\" precision=fp32 {props}",
        tiny_bundle().display()
    )
}

#[test]
fn missing_bundle_fails_with_an_error_naming_the_path() {
    let missing = "/nonexistent/samclipseg-bundle";
    let p = launch(&format!(
        "videotestsrc num-buffers=1 ! samclipseg name=seg bundle={missing} ! fakesink"
    ));
    assert!(p.set_state(gst::State::Playing).is_err());
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(TIMEOUT, &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert_eq!(msg.src().unwrap().name(), "seg");
    assert!(
        err.error().matches(gst::ResourceError::NotFound),
        "{:?}",
        err.error()
    );
    let text = err.error().to_string();
    assert!(text.contains(missing), "{text}");
    assert!(
        text.contains("export_sam3.py"),
        "says how to build one: {text}"
    );
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn unavailable_backend_fails_with_a_clear_error() {
    let p = launch(&format!(
        "videotestsrc num-buffers=1 ! {} ! fakesink",
        seg("backend=cuda")
    ));
    assert!(p.set_state(gst::State::Playing).is_err());
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(TIMEOUT, &[gst::MessageType::Error])
        .unwrap();
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert!(err.error().matches(gst::LibraryError::Init));
    assert!(err.error().to_string().contains("cuda"), "{}", err.error());
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn meta_survives_queue_tee_identity_videoconvert_and_videoscale() {
    let p = launch(&format!(
        "{} ! {} ! queue ! tee name=t \
         t. ! queue ! identity ! fakesink name=a \
         t. ! queue ! videoconvert ! video/x-raw,format=BGRA ! identity ! fakesink name=b \
         t. ! queue ! videoscale ! video/x-raw,width=414,height=602 ! fakesink name=c",
        photo_source("astronaut.png", "RGBA", 3),
        seg("prompt=\"a person\" max-instances=2"),
    ));
    let produced = record(&by_name(&p, "seg"), "src");
    let a = record(&by_name(&p, "a"), "sink");
    let b = record(&by_name(&p, "b"), "sink");
    let c = record(&by_name(&p, "c"), "sink");
    play_to_eos(&p);
    p.set_state(gst::State::Null).unwrap();

    let produced = take(&produced);
    assert_eq!(produced.len(), 3);
    let first = produced[0].meta.as_ref().unwrap();
    assert!(!first.instances.is_empty());
    assert_eq!(produced[0].rois, first.instances.len());
    assert_eq!(take(&a), produced, "through queue ! tee ! identity");
    assert_eq!(take(&b), produced, "through videoconvert (same size)");

    // videoscale scales the meta with the picture (2x each way).
    let scaled = take(&c);
    assert_eq!(scaled.len(), 3);
    for (s, o) in scaled.iter().zip(&produced) {
        let (s, o) = (s.meta.as_ref().unwrap(), o.meta.as_ref().unwrap());
        assert_eq!((s.frame_width, s.frame_height), (414, 602));
        assert_eq!(s.instances.len(), o.instances.len());
        for (si, oi) in s.instances.iter().zip(&o.instances) {
            assert_eq!(si.rect(), (oi.x * 2, oi.y * 2, oi.width * 2, oi.height * 2));
            let area = |m: &[u8]| m.iter().filter(|v| **v != 0).count();
            assert_eq!(area(&si.mask), 4 * area(&oi.mask));
            assert_eq!(si.bbox, oi.bbox.map(|v| v * 2.0));
            assert_eq!(si.mask.len(), (si.width * si.height) as usize);
        }
    }
}

#[test]
fn flushing_seek_keeps_one_buffer_out_per_buffer_in() {
    let p = launch(&format!(
        "videotestsrc num-buffers=6 ! video/x-raw,format=RGBx,width=96,height=64,framerate=25/1 \
         ! {} ! fakesink name=sink",
        seg("prompt=cat max-instances=1 smoothness=1"),
    ));
    let seg_el = by_name(&p, "seg");
    let inputs = record(&seg_el, "sink");
    let outputs = record(&seg_el, "src");

    // Prerolled in PAUSED, the streaming thread waits in the sink: no buffer
    // is inside samclipseg when the flush comes.
    p.set_state(gst::State::Paused).unwrap();
    let (res, _, _) = p.state(TIMEOUT);
    res.unwrap();
    p.seek_simple(
        gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
        gst::ClockTime::from_mseconds(80),
    )
    .unwrap();
    play_to_eos(&p);
    p.set_state(gst::State::Null).unwrap();

    let (inputs, outputs) = (take(&inputs), take(&outputs));
    let in_pts: Vec<_> = inputs.iter().map(|s| s.pts).collect();
    let out_pts: Vec<_> = outputs.iter().map(|s| s.pts).collect();
    assert_eq!(out_pts, in_pts);
    assert_eq!(
        in_pts[..2],
        [
            Some(gst::ClockTime::ZERO),
            Some(gst::ClockTime::from_mseconds(80))
        ],
        "the seek restarted the stream at 80 ms"
    );
    assert!(outputs.iter().all(|s| s.meta.is_some()));
}

#[test]
fn resolution_change_mid_stream() {
    let p = launch(&format!(
        "appsrc name=src format=time ! {} ! fakesink name=sink",
        seg("prompt=\"a person\" max-instances=2 smoothness=1")
    ));
    let outputs = record(&by_name(&p, "seg"), "src");
    let src = by_name(&p, "src");
    p.set_state(gst::State::Playing).unwrap();
    let photos = [photo("astronaut.png"), photo("chelsea.png")];
    let mut n = 0;
    for ph in &photos {
        for _ in 0..2 {
            let sample = gst::Sample::builder()
                .buffer(&ph.rgba_buffer(n))
                .caps(&ph.caps("RGBA"))
                .build();
            let ret = src.emit_by_name::<gst::FlowReturn>("push-sample", &[&sample]);
            assert_eq!(ret, gst::FlowReturn::Ok);
            n += 1;
        }
    }
    let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    let (err, _) = wait_eos(&p);
    assert!(err.is_none());
    p.set_state(gst::State::Null).unwrap();

    let outputs = take(&outputs);
    assert_eq!(outputs.len(), 4);
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(out.pts, Some(gst::ClockTime::from_mseconds(40 * i as u64)));
        let ph = &photos[i / 2];
        let meta = out.meta.as_ref().unwrap();
        assert_eq!(
            (meta.frame_width, meta.frame_height),
            (ph.width as u32, ph.height as u32)
        );
        for inst in &meta.instances {
            assert!(inst.x + inst.width <= ph.width as u32);
            assert!(inst.y + inst.height <= ph.height as u32);
            assert_eq!(inst.mask.len(), (inst.width * inst.height) as usize);
        }
        assert_eq!(
            meta.instances.len(),
            reference(ph, "a person", 0.5, 1, 2).len()
        );
    }
}

#[test]
fn state_cycles_restart_cleanly() {
    let p = launch(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,format=I420,width=81,height=61 ! {} ! fakesink",
        seg("prompt=cat max-instances=1 smoothness=1")
    ));
    let seg_el = by_name(&p, "seg");
    let inputs = record(&seg_el, "sink");
    let outputs = record(&seg_el, "src");
    let check = || {
        let (i, o) = (take(&inputs), take(&outputs));
        assert_eq!(i.len(), 3);
        assert_eq!(
            i.iter().map(|s| s.pts).collect::<Vec<_>>(),
            o.iter().map(|s| s.pts).collect::<Vec<_>>()
        );
        assert!(o.iter().all(|s| {
            s.meta
                .as_ref()
                .is_some_and(|m| m.frame_width == 81 && m.prompt == "cat")
        }));
    };

    play_to_eos(&p);
    check();
    // READY releases the model; reload properties apply again.
    p.set_state(gst::State::Ready).unwrap();
    seg_el.set_property("threads", 1u32);
    assert_eq!(seg_el.property::<u32>("threads"), 1);
    p.set_state(gst::State::Paused).unwrap();
    p.state(TIMEOUT).0.unwrap();
    p.set_state(gst::State::Playing).unwrap();
    p.set_state(gst::State::Paused).unwrap();
    play_to_eos(&p);
    check();
    p.set_state(gst::State::Null).unwrap();
    play_to_eos(&p);
    check();
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn alpha_mode_refuses_rgb_in_a_pipeline() {
    init();
    // Caps known when linking: the link itself is refused.
    let err = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB ! {} ! fakesink",
        seg("output-mode=alpha")
    ))
    .expect_err("RGB cannot link to alpha mode");
    assert!(err.to_string().contains("seg"), "{err}");

    // Caps only known when data flows: a not-negotiated error.
    let p = launch(&format!(
        "appsrc name=src format=time ! {} ! fakesink",
        seg("output-mode=alpha")
    ));
    p.set_state(gst::State::Playing).unwrap();
    let src = by_name(&p, "src");
    let ph = photo("astronaut.png");
    src.set_property("caps", ph.caps("RGB"));
    let _ =
        src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&gst::Buffer::from_slice(ph.rgb())]);
    let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    let (err, _) = wait_eos(&p);
    let err = err.expect("negotiation fails");
    assert!(err.matches(gst::StreamError::Failed) || err.matches(gst::CoreError::Negotiation));
    p.set_state(gst::State::Null).unwrap();

    // The same picture in RGBA is fine.
    let p = launch(&format!(
        "appsrc name=src format=time ! {} ! fakesink",
        seg("output-mode=alpha")
    ));
    p.set_state(gst::State::Playing).unwrap();
    let src = by_name(&p, "src");
    src.set_property("caps", ph.caps("RGBA"));
    let _ = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&ph.rgba_buffer(0)]);
    let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    let (err, _) = wait_eos(&p);
    assert!(err.is_none());
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn post_messages_describe_each_frame() {
    let p = launch(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=80,height=60,framerate=25/1 ! {} ! fakesink",
        seg("prompt=cat max-instances=2 smoothness=1 post-messages=true")
    ));
    let outputs = record(&by_name(&p, "seg"), "src");
    let messages = play_to_eos(&p);
    p.set_state(gst::State::Null).unwrap();
    let messages: Vec<_> = messages
        .into_iter()
        .filter(|s| s.name() == gstsamclipseg::MESSAGE_NAME)
        .collect();
    let outputs = take(&outputs);
    assert_eq!(messages.len(), 3);
    assert_eq!(outputs.len(), 3);
    for (m, out) in messages.iter().zip(&outputs) {
        let pts = m.get::<gst::ClockTime>("timestamp").unwrap();
        assert_eq!(Some(pts), out.pts);
        assert_eq!(m.get::<gst::ClockTime>("running-time").unwrap(), pts);
        assert_eq!(m.get::<gst::ClockTime>("stream-time").unwrap(), pts);
        assert_eq!(m.get::<&str>("prompt").unwrap(), "cat");
        assert_eq!(m.get::<&str>("state").unwrap(), "fresh");
        // A fresh frame ran every stage; their times add up to the run's.
        let stage = |name: &str| m.get::<f64>(name).unwrap();
        for name in ["text-ms", "image-ms", "decode-ms", "post-ms"] {
            assert!(stage(name) >= 0.0, "{name}: {}", stage(name));
        }
        assert!(stage("image-ms") > 0.0 && stage("decode-ms") > 0.0);
        let meta = out.meta.as_ref().unwrap();
        let list = m.get::<gst::List>("instances").unwrap();
        assert_eq!(list.len(), meta.instances.len());
        for (v, inst) in list.iter().zip(&meta.instances) {
            let s = v.get::<gst::Structure>().unwrap();
            assert_eq!(s.get::<&str>("label").unwrap(), "cat");
            assert_eq!(s.get::<f64>("score").unwrap(), inst.score as f64);
            let rect = (
                s.get::<u32>("x").unwrap(),
                s.get::<u32>("y").unwrap(),
                s.get::<u32>("width").unwrap(),
                s.get::<u32>("height").unwrap(),
            );
            assert_eq!(rect, inst.rect());
            assert!(!s.has_field("mask"));
        }
    }
}
