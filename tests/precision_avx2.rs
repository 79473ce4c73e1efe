//! On a CPU with AVX2 but no VNNI, AMX or bf16 (AMD Zen 2/3, older Intel),
//! `precision=auto` and `precision=int8` run the bundle's dynamic int8 image
//! encoder on ONNX Runtime's CPU provider, for real, and keep fp32's
//! instances on the toy scene. The CPU's flags are replaced
//! (SAMCLIPSEG_CPU_FLAGS) before anything reads them, so this runs the AVX2
//! branch on any machine: the only test of this binary, so no other thread
//! sees the variable. ONNX Runtime picks its kernels from CPUID, so where the
//! kernel offers CPUID faulting the test runs itself again under
//! tools/cpuid-mask (CPUID without AVX-512, VNNI, BF16 or AMX): the AVX2
//! kernels' arithmetic (`vpmaddubsw`, which saturates) is then what keeps
//! fp32's instances, on any x86 machine. Elsewhere (no faulting: an AVX2-only
//! CPU runs those kernels anyway) it runs once, as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/avx2_shim.rs"]
mod avx2_shim;
#[path = "common/fidelity.rs"]
mod fidelity;

/// Set in the run under the shim.
const UNDER_SHIM: &str = "SAMCLIPSEG_TEST_UNDER_AVX2_SHIM";

use samclipseg::image::file::OwnedImage;
use samclipseg::model::precision::{CPU_FLAGS_VAR, INT8_DYNAMIC, Int8Route};
use samclipseg::{BackendOptions, Instance, PostprocessOptions, Precision, Sam3Model};

const PROMPTS: [&str; 4] = ["red circle", "blue square", "green triangle", "shape"];

#[test]
fn an_avx2_cpu_runs_the_dynamic_int8_engines() {
    if std::env::var_os(UNDER_SHIM).is_none()
        && cfg!(target_arch = "x86_64")
        && avx2_shim::cpuid_faulting()
    {
        let shim = avx2_shim::build(Path::new(env!("CARGO_TARGET_TMPDIR")));
        let out = avx2_shim::under(
            Command::new(std::env::current_exe().unwrap()).args([
                "--exact",
                "an_avx2_cpu_runs_the_dynamic_int8_engines",
                "--nocapture",
            ]),
            &shim,
        )
        .env(UNDER_SHIM, "1")
        .output()
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        // The shim refuses (exit 3) where the kernel lists the flag but this
        // process may not use it (a seccomp filter on arch_prctl): then the
        // test runs as it is, below.
        if !(out.status.code() == Some(3) && text.contains("no CPUID faulting")) {
            assert!(out.status.success(), "under tools/cpuid-mask: {text}");
            assert!(text.contains("1 passed"), "{text}");
            return;
        }
        eprintln!("tools/cpuid-mask refused here ({text}); running on this CPU's kernels");
    }
    #[cfg(target_arch = "x86_64")]
    if std::env::var_os(UNDER_SHIM).is_some() {
        assert!(
            !std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx2"),
            "the shim shows CPUID AVX2 without AVX-512"
        );
    }
    // SAFETY: this binary's only test sets it before any thread reads it.
    unsafe { std::env::set_var(CPU_FLAGS_VAR, "fpu sse4_2 avx f16c avx2 fma") };
    let toy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy-shapes-sam3");
    let bundle = samclipseg::Bundle::open(&toy).unwrap();
    assert!(
        bundle.has_variant(INT8_DYNAMIC),
        "{}: the toy bundle ships a dynamic int8 image encoder \
         (engines/quantize_bundle.py --kinds dynamic)",
        toy.display()
    );
    let load = |precision| {
        Sam3Model::load(
            &toy,
            &BackendOptions {
                precision,
                intra_threads: 2,
                ..Default::default()
            },
        )
    };
    let auto = load(Precision::Auto).unwrap();
    let choice = auto.precision();
    assert_eq!(
        (choice.precision, choice.int8),
        (Precision::Int8, Some(Int8Route::Dynamic)),
        "{choice:?}"
    );
    assert!(
        choice.reason.starts_with("auto: ")
            && choice.reason.contains("avx2")
            && choice.reason.contains("ONNX Runtime's CPU provider"),
        "{choice:?}"
    );
    // On ONNX Runtime, not OpenVINO: a cancelled frame stops between nodes.
    assert!(!auto.runs_on_openvino());
    let asked = load(Precision::Int8).unwrap();
    assert_eq!(asked.precision().int8, Some(Int8Route::Dynamic));
    assert!(
        asked.precision().reason.starts_with("asked for"),
        "{:?}",
        asked.precision()
    );
    let e = load(Precision::Bf16).err().map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("no AMX-BF16")),
        "{e:?}"
    );

    let fp32 = load(Precision::Fp32).unwrap();
    let picture = OwnedImage::open(&toy.join("golden/scene.png")).unwrap();
    let frame = picture.frame().unwrap();
    let d = &fp32.manifest().decoder;
    let opts = PostprocessOptions {
        threshold: d.default_threshold,
        mask_threshold: d.mask_threshold,
        ..Default::default()
    };
    let segment =
        |m: &Sam3Model, prompt| -> Vec<Instance> { m.segment(&frame, &[prompt], &opts).unwrap() };
    let mut largest_change = 0f32;
    for prompt in PROMPTS {
        let want = segment(&fp32, prompt);
        let got = segment(&auto, prompt);
        assert_eq!(got, segment(&asked, prompt), "auto and int8 run the same");
        let what = format!("dynamic int8 {prompt:?}");
        largest_change =
            largest_change.max(fidelity::assert_keeps_fp32s_instances(&what, &want, &got));
    }
    // The int8 file really ran: its scores are not fp32's bit for bit.
    assert!(
        largest_change > 0.0,
        "every score equals fp32's exactly: the dynamic int8 file did not run"
    );
}
