//! The reduced precisions the committed bundles ship (src/precision.rs) held
//! to stated tolerances against fp32 on the toy model's shapes scene: the
//! same instances kept, their masks and scores close.
//!
//! bf16 and int8 run only where this CPU has them natively; elsewhere the
//! test says so and checks that asking for them is refused.

use std::path::PathBuf;

#[path = "common/fidelity.rs"]
mod fidelity;

use samclipseg::image::file::OwnedImage;
use samclipseg::model::precision::{CpuCaps, Int8Files, choose};
use std::sync::Arc;

use samclipseg::{
    BackendOptions, Instance, PostprocessOptions, Precision, Sam3Model, shared_model,
};

fn toy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy-shapes-sam3")
}

const PROMPTS: [&str; 6] = [
    "red circle",
    "blue square",
    "green triangle",
    "white square",
    "shape",
    "yellow circle",
];

fn load(precision: Precision) -> Arc<Sam3Model> {
    let options = BackendOptions {
        precision,
        intra_threads: 2,
        ..Default::default()
    };
    let model = shared_model(&toy(), &options).unwrap();
    assert_eq!(
        model.precision().precision,
        precision,
        "{:?}",
        model.precision()
    );
    model
}

fn segment(model: &Sam3Model, prompt: &str) -> Vec<Instance> {
    let picture = OwnedImage::open(&toy().join("golden/scene.png")).unwrap();
    let frame = picture.frame().unwrap();
    let d = &model.manifest().decoder;
    let opts = PostprocessOptions {
        threshold: d.default_threshold,
        mask_threshold: d.mask_threshold,
        ..Default::default()
    };
    model.segment(&frame, &[prompt], &opts).unwrap()
}

#[test]
fn each_shipped_precision_keeps_fp32s_instances() {
    let caps = CpuCaps::detect();
    let bundle = samclipseg::Bundle::open(toy()).unwrap();
    assert!(
        bundle.has_variant("int8"),
        "the toy bundle ships int8 engines"
    );
    for p in [Precision::Bf16, Precision::Int8] {
        if choose(p, &caps, Int8Files::BOTH, false).is_err() {
            eprintln!(
                "this CPU cannot run {p} natively ({}): skipped",
                caps.evidence
            );
            continue;
        }
        let (fp32, reduced) = (load(Precision::Fp32), load(p));
        for prompt in PROMPTS {
            let want = segment(&fp32, prompt);
            let got = segment(&reduced, prompt);
            fidelity::assert_keeps_fp32s_instances(&format!("{p} {prompt:?}"), &want, &got);
        }
    }
}

#[test]
fn auto_runs_what_this_cpu_and_bundle_allow() {
    let caps = CpuCaps::detect();
    let options = BackendOptions {
        precision: Precision::Auto,
        ..Default::default()
    };
    let model = shared_model(&toy(), &options).unwrap();
    let expected = choose(Precision::Auto, &caps, Int8Files::BOTH, false).unwrap();
    assert_eq!(
        model.precision().precision,
        expected.precision,
        "{:?}",
        model.precision()
    );
    assert!(
        model.precision().reason.starts_with("auto"),
        "{:?}",
        model.precision()
    );
}
