//! The element's `precision` property: auto by default, what it chose in
//! `precision-in-use`, and the toy model still right on that path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{harness_on, load_rgba, toy_bundle};
use gst::prelude::*;
use gstsamclipseg::OutputMode;
use samclipseg::Precision;
use samclipseg::model::precision::{CpuCaps, Int8Files, choose};

#[test]
fn auto_is_the_default_and_says_what_it_runs() {
    common::init();
    let e = gst::ElementFactory::make("samclipseg").build().unwrap();
    assert_eq!(e.property::<Precision>("precision"), Precision::Auto);
    assert_eq!(e.property::<String>("precision-in-use"), "");
    let spec = e.find_property("precision-in-use").unwrap();
    assert!(!spec.flags().contains(glib::ParamFlags::WRITABLE));

    let expected = choose(Precision::Auto, &CpuCaps::detect(), Int8Files::BOTH, false).unwrap();
    let mut h = harness_on(
        &toy_bundle(),
        &[
            ("precision", &Precision::Auto),
            ("prompt", &"red circle"),
            ("output-mode", &OutputMode::Alpha),
        ],
    );
    let scene = load_rgba(&toy_bundle().join("golden/scene.png"));
    h.set_src_caps(scene.caps("RGBA"));
    let out = h.push_and_pull(scene.rgba_buffer(0)).unwrap();
    let in_use = h.element().unwrap().property::<String>("precision-in-use");
    assert!(
        in_use.starts_with(&format!("{} (auto", expected.precision)),
        "{in_use} vs {expected:?}"
    );
    // The fast path still finds the red circle (object 1 of the truth map).
    let ids = image::open(toy_bundle().join("golden/scene-ids.png"))
        .unwrap()
        .to_luma8();
    let map = out.map_readable().unwrap();
    let (mut inter, mut union) = (0, 0);
    for (px, id) in map.chunks_exact(4).zip(ids.as_raw()) {
        let (a, b) = (px[3] > 127, *id == 1);
        inter += (a && b) as usize;
        union += (a || b) as usize;
    }
    let iou = inter as f64 / union as f64;
    assert!(
        iou >= 0.8,
        "{in_use}: alpha IoU with the red circle {iou:.3}"
    );
}
