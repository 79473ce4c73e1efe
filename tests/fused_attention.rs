//! The fused attention that `engines/fuse_attention.py` writes into the dynamic
//! int8 variant (ONNX Runtime's `com.microsoft.MultiHeadAttention`, its CPU
//! flash attention) runs in the Rust core's ONNX Runtime and still matches
//! PyTorch: the tiny bundle with its image encoder and decoder fused at every
//! attention (`--min-tokens 0`; tests/fixtures/fused-attention), held to
//! tests/parity.rs's tolerances against the same golden outputs.

mod common;

use common::tiny_bundle_copy;
use samclipseg::{BackendOptions, Sam3Model};

const ENGINE_ATOL: f32 = 1e-4;
const ENGINE_RTOL: f32 = 1e-4;

fn contains_fused_attention(path: &std::path::Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let needle = b"MultiHeadAttention";
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn fused_engines_match_pytorch() {
    let dir = tiny_bundle_copy("fused-attention");
    let fused =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fused-attention");
    for engine in ["image_encoder.onnx", "decoder.onnx"] {
        assert!(
            contains_fused_attention(&fused.join(engine)),
            "{}: no MultiHeadAttention node; regenerate with engines/fuse_attention.py --min-tokens 0",
            fused.join(engine).display()
        );
        std::fs::copy(fused.join(engine), dir.join(engine)).unwrap();
    }
    let m = Sam3Model::load(&dir, &BackendOptions::default()).expect("the fused tiny bundle loads");
    common::assert_engines_match_goldens(&m, ENGINE_ATOL, ENGINE_RTOL, "fused ");
}
