//! On a CPU with AVX2 but without bf16 or VNNI (its flags replaced through
//! SAMCLIPSEG_CPU_FLAGS before anything reads them: the only test of this
//! binary), `precision=auto` runs the toy bundle's dynamic int8 engines on
//! ONNX Runtime's CPU provider and says so, and an explicit bf16 is an
//! element error saying why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{harness_on, load_rgba, toy_bundle};
use gst::prelude::*;
use samclipseg::Precision;

#[test]
fn on_avx2_without_vnni_auto_is_dynamic_int8_and_bf16_is_refused() {
    // SAFETY: this binary's only test sets it before any thread reads it.
    unsafe {
        std::env::set_var(
            samclipseg::model::precision::CPU_FLAGS_VAR,
            "fpu sse4_2 avx2 fma",
        )
    };
    let scene = load_rgba(&toy_bundle().join("golden/scene.png"));
    let mut h = harness_on(&toy_bundle(), &[("precision", &Precision::Auto)]);
    h.set_src_caps(scene.caps("RGBA"));
    h.push_and_pull(scene.rgba_buffer(0)).unwrap();
    let in_use = h.element().unwrap().property::<String>("precision-in-use");
    assert!(
        in_use.starts_with("int8 (auto: ")
            && in_use.contains("no AMX, AVX512-BF16 or VNNI but avx2")
            && in_use.contains("dynamic int8 engines on ONNX Runtime's CPU provider"),
        "{in_use}"
    );
    drop(h);

    common::init();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! samclipseg bundle=\"{}\" precision=bf16 ! fakesink",
        toy_bundle().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let _ = p.set_state(gst::State::Playing);
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Error])
        .expect("an element error");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    let text = err.error().to_string();
    assert!(
        text.contains("precision=bf16") && text.contains("no AMX-BF16"),
        "{text}"
    );
    p.set_state(gst::State::Null).unwrap();
}
