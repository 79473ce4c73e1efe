//! `precision=auto` on a CPU without bf16, VNNI or AVX2 runs fp32, exactly,
//! even though the toy bundle has both kinds of int8 engines; an explicit
//! bf16 or int8 there is refused with a reason. The CPU's flags are replaced
//! (SAMCLIPSEG_CPU_FLAGS) before anything reads them: the only test of this
//! binary, so no other thread sees it. (tests/precision_avx2.rs: a CPU with
//! AVX2.)

use std::path::PathBuf;

use samclipseg::image::file::OwnedImage;
use samclipseg::model::precision::CPU_FLAGS_VAR;
use samclipseg::{BackendOptions, PostprocessOptions, Precision, Sam3Model};

#[test]
fn a_cpu_without_bf16_vnni_or_avx2_runs_fp32() {
    // SAFETY: this binary's only test sets it before any thread reads it.
    unsafe { std::env::set_var(CPU_FLAGS_VAR, "fpu sse4_2 avx") };
    let toy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy-shapes-sam3");
    let load = |precision| {
        Sam3Model::load(
            &toy,
            &BackendOptions {
                precision,
                ..Default::default()
            },
        )
    };
    let auto = load(Precision::Auto).unwrap();
    assert_eq!(auto.precision().precision, Precision::Fp32);
    assert!(
        auto.precision()
            .reason
            .contains("no AMX, AVX512-BF16 or VNNI nor AVX2"),
        "{:?}",
        auto.precision()
    );
    let fp32 = load(Precision::Fp32).unwrap();
    let picture = OwnedImage::open(&toy.join("golden/scene.png")).unwrap();
    let frame = picture.frame().unwrap();
    let opts = PostprocessOptions::default();
    assert_eq!(
        auto.segment(&frame, &["red circle"], &opts).unwrap(),
        fp32.segment(&frame, &["red circle"], &opts).unwrap(),
        "auto on this CPU is fp32, number for number"
    );
    for p in [Precision::Bf16, Precision::Int8] {
        let e = load(p).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains(&format!("precision={p}")) && e.contains("this CPU has no"),
            "{p}: {e}"
        );
    }
}
