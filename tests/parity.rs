//! Parity with the PyTorch reference on the tiny bundle: every stage of the
//! Rust pipeline against the golden outputs `engines/make_tiny_sam3.py` wrote
//! from `Sam3Model` and `Sam3Processor` on the same weights and photos.
//! Tolerances are those stated in engines/README.md.

mod common;

use std::sync::Arc;

use common::{Golden, cases, compare, load_rgb, tiny_bundle};
use samclipseg::{BackendOptions, Frame, PackedLayout, PostprocessOptions, Sam3Model};

/// ONNX Runtime vs PyTorch, per engine output.
const ENGINE_ATOL: f32 = 1e-4;
const ENGINE_RTOL: f32 = 1e-4;

fn model() -> Sam3Model {
    Sam3Model::load(tiny_bundle(), &BackendOptions::default()).expect("tiny bundle loads")
}

#[test]
fn preprocessing_matches_the_processor_exactly() {
    let m = model();
    for case in cases() {
        let g = Golden::open(&case.case);
        let (rgb, w, h) = load_rgb(&tiny_bundle().join("golden").join(&case.image));
        assert_eq!((w, h), (case.image_width, case.image_height));
        let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
        let ours =
            samclipseg::image::preprocess::preprocess(&frame, &m.manifest().preprocess).unwrap();
        let reference = g.f32("pixel_values");
        assert_eq!(ours.shape, reference.shape);
        let worst = compare("pixel_values", &ours.data, &reference.data, 1e-6, 0.0);
        println!("{}: pixel_values max diff {worst}", case.case);
    }
}

#[test]
fn token_ids_match_the_processor() {
    let m = model();
    for case in cases() {
        let g = Golden::open(&case.case);
        let ids = g.i64("input_ids");
        let mask = g.i64("attention_mask");
        for (p, prompt) in case.prompts.iter().enumerate() {
            let t = m.tokenize(prompt).unwrap();
            assert_eq!(t.ids, ids.item(p), "{}: ids of {prompt:?}", case.case);
            assert_eq!(t.mask, mask.item(p), "{}: mask of {prompt:?}", case.case);
        }
    }
}

#[test]
fn engines_match_pytorch() {
    common::assert_engines_match_goldens(&model(), ENGINE_ATOL, ENGINE_RTOL, "");
}

#[test]
fn final_instances_match_post_process_instance_segmentation() {
    let m = model();
    let mut kept_total = 0;
    let mut queries_total = 0;
    for case in cases() {
        let g = Golden::open(&case.case);
        let (rgb, w, h) = load_rgb(&tiny_bundle().join("golden").join(&case.image));
        let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
        let prompts: Vec<&str> = case.prompts.iter().map(String::as_str).collect();
        let opts = PostprocessOptions {
            threshold: case.threshold,
            mask_threshold: m.manifest().decoder.mask_threshold,
            ..Default::default()
        };
        let mut ours = m.segment(&frame, &prompts, &opts).unwrap();
        // The reference keeps queries in query order; ours are sorted by score.
        ours.sort_by_key(|i| (i.prompt_index, i.query));
        queries_total += prompts.len() * m.manifest().decoder.num_queries;

        for p in 0..prompts.len() {
            let scores = g.f32(&format!("result_{p}_scores"));
            let boxes = g.f32(&format!("result_{p}_boxes"));
            let masks = g.mask(&format!("result_{p}_masks"));
            let mine: Vec<_> = ours.iter().filter(|i| i.prompt_index == p).collect();
            assert_eq!(
                mine.len(),
                scores.data.len(),
                "{} prompt {p}: {} instances kept, reference kept {}",
                case.case,
                mine.len(),
                scores.data.len()
            );
            kept_total += mine.len();
            for (k, inst) in mine.iter().enumerate() {
                let ctx = format!("{} prompt {p} instance {k}", case.case);
                assert!(
                    (inst.score - scores.data[k]).abs() <= 1e-4,
                    "{ctx}: score {} vs {}",
                    inst.score,
                    scores.data[k]
                );
                for (a, b) in inst.bbox.iter().zip(boxes.item(k)) {
                    assert!(
                        (a - b).abs() <= 0.5,
                        "{ctx}: box {:?} vs {:?}",
                        inst.bbox,
                        boxes.item(k)
                    );
                }
                let reference = masks.item(k);
                assert_eq!(reference.len(), w * h, "{ctx}: mask size");
                let inter = inst
                    .mask
                    .data
                    .iter()
                    .zip(reference)
                    .filter(|(a, b)| **a != 0 && **b != 0)
                    .count();
                let union = inst
                    .mask
                    .data
                    .iter()
                    .zip(reference)
                    .filter(|(a, b)| **a != 0 || **b != 0)
                    .count();
                let iou = if union == 0 {
                    1.0
                } else {
                    inter as f64 / union as f64
                };
                assert!(iou >= 0.99, "{ctx}: mask IoU {iou}");
            }
        }
    }
    // The fixture is only a meaningful test if the threshold keeps some queries but not all.
    assert!(kept_total > 0, "no instance kept in any golden case");
    assert!(
        kept_total < queries_total,
        "every query kept: the threshold tests nothing"
    );
}

#[test]
fn text_features_are_cached_per_normalised_prompt() {
    let m = model();
    let a = m.encode_texts(&["a person"]).unwrap();
    let b = m.encode_texts(&["  A   Person "]).unwrap();
    assert!(
        Arc::ptr_eq(&a[0], &b[0]),
        "second lookup should hit the cache"
    );
    let batch = m.encode_texts(&["a person", "a cat", "a cat"]).unwrap();
    assert!(Arc::ptr_eq(&batch[0], &a[0]));
    assert!(Arc::ptr_eq(&batch[1], &batch[2]));
}
