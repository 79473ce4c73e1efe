//! The fused attention that `engines/fuse_attention.py` writes into the dynamic
//! int8 variant (ONNX Runtime's `com.microsoft.MultiHeadAttention`, its CPU
//! flash attention) runs in the Rust core's ONNX Runtime and still matches
//! PyTorch: the tiny bundle with its image encoder and decoder fused at every
//! attention (`--min-tokens 0`; tests/fixtures/fused-attention), held to
//! tests/parity.rs's tolerances against the same golden outputs.

mod common;

use common::{Golden, cases, compare, tiny_bundle_copy};
use samclipseg::model::tensor::TensorF32;
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
    for case in cases() {
        let g = Golden::open(&case.case);
        let prompts: Vec<&str> = case.prompts.iter().map(String::as_str).collect();
        let texts = m.encode_texts(&prompts).unwrap();
        let image = m
            .encode_pixels(
                &g.f32("pixel_values"),
                (case.image_width, case.image_height),
            )
            .unwrap();
        for (name, ours) in ["fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2"]
            .iter()
            .zip(&image.to_host().unwrap())
        {
            let reference = g.f32(name);
            assert_eq!(ours.shape[1..], reference.shape[1..], "{name} shape");
            let worst = compare(
                name,
                &ours.data,
                reference.item(0),
                ENGINE_ATOL,
                ENGINE_RTOL,
            );
            println!("{}: fused {name} max diff {worst}", case.case);
        }
        let out = m.decode(&image, &texts).unwrap();
        let pairs: [(&str, &TensorF32); 4] = [
            ("pred_logits", &out.pred_logits),
            ("pred_boxes", &out.pred_boxes),
            ("pred_masks", &out.pred_masks),
            ("presence_logits", &out.presence_logits),
        ];
        for (name, ours) in pairs {
            let reference = g.f32(name);
            assert_eq!(ours.shape, reference.shape, "{name} shape");
            let worst = compare(name, &ours.data, &reference.data, ENGINE_ATOL, ENGINE_RTOL);
            println!("{}: fused {name} max diff {worst}", case.case);
        }
    }
}
