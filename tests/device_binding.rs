//! Engine outputs stay where the engines run (IoBinding): what crosses between
//! host and engine memory per frame, counted on the cpu backend with the same
//! code a GPU backend runs, and results equal to the all-host path bit for bit.

mod common;

use std::sync::Arc;

use common::{load_rgb, tiny_bundle};
use samclipseg::gpu::memory::{DeviceMemory, Transfers};
use samclipseg::model::backend::{Engine, Input};
use samclipseg::model::bundle::EngineRole;
use samclipseg::model::sam3::DecoderOutput;
use samclipseg::model::tensor::{TensorF32, TensorI64};
use samclipseg::{
    BackendOptions, Frame, ImageFeatures, InferenceState, PackedLayout, PostprocessOptions,
    Sam3Model, Segmenter, TextFeatures,
};

// The tiny bundle: 112 x 112 input, 32-token context, 20 queries, 32 x 32 masks.
const PIXEL_BYTES: u64 = 3 * 112 * 112 * 4;
const MASK_BYTES_PER_PROMPT: u64 = 32 * 8;
const SMALL_OUTPUT_BYTES_PER_PROMPT: u64 = (20 + 20 * 4 + 1) * 4;
const ONE_MASK_BYTES: u64 = 32 * 32 * 4;
const TEXT_FEATURE_BYTES_PER_PROMPT: u64 = 32 * 32 * 4;

fn model() -> Sam3Model {
    Sam3Model::load(tiny_bundle(), &BackendOptions::default()).unwrap()
}

fn photo() -> (Vec<u8>, usize, usize) {
    load_rgb(&tiny_bundle().join("golden/astronaut.png"))
}

fn delta(before: Transfers, after: Transfers) -> [u64; 3] {
    [
        after.host_to_device - before.host_to_device,
        after.device_to_host - before.device_to_host,
        after.device_to_device - before.device_to_device,
    ]
}

/// The decoder run the old way: host tensors in, every output copied out.
fn host_decoder(
    m: &Sam3Model,
    image: &ImageFeatures,
    texts: &[Arc<TextFeatures>],
) -> DecoderOutput {
    let options = BackendOptions::default();
    let memory = Arc::new(DeviceMemory::new(&options).unwrap());
    let role = EngineRole::Decoder;
    let engine = Engine::load(
        role,
        &m.bundle().engine_path(role),
        m.manifest().engine(role),
        &options,
        memory,
    )
    .unwrap();
    let levels = image.to_host().unwrap();
    let parts: Vec<TensorF32> = texts.iter().map(|t| t.to_host().unwrap()).collect();
    let features = TensorF32::concat(&parts.iter().collect::<Vec<_>>()).unwrap();
    let mask = TensorI64::new(
        vec![texts.len(), 32],
        texts
            .iter()
            .flat_map(|t| t.tokens.mask.iter().copied())
            .collect(),
    );
    let mut inputs: Vec<(&str, Input)> = ["fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2"]
        .into_iter()
        .zip(&levels)
        .map(|(n, t)| (n, Input::F32(t)))
        .collect();
    inputs.push(("text_features", Input::F32(&features)));
    inputs.push(("attention_mask", Input::I64(&mask)));
    let mut out = engine
        .run(
            &inputs,
            &["pred_logits", "pred_boxes", "pred_masks", "presence_logits"],
        )
        .unwrap()
        .into_iter();
    DecoderOutput {
        pred_logits: out.next().unwrap(),
        pred_boxes: out.next().unwrap(),
        pred_masks: out.next().unwrap(),
        presence_logits: out.next().unwrap(),
    }
}

fn assert_same(a: &DecoderOutput, b: &DecoderOutput) {
    assert_eq!(a.pred_logits, b.pred_logits, "pred_logits");
    assert_eq!(a.pred_boxes, b.pred_boxes, "pred_boxes");
    assert_eq!(a.pred_masks, b.pred_masks, "pred_masks");
    assert_eq!(a.presence_logits, b.presence_logits, "presence_logits");
}

#[test]
fn decoder_binds_features_and_copies_back_only_the_kept_masks() {
    let m = model();
    let (rgb, w, h) = photo();
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let opts = PostprocessOptions::default();
    let texts = m.encode_texts(&["a person"]).unwrap();

    let t0 = m.transfers();
    let image = m.encode_image(&frame).unwrap();
    let t1 = m.transfers();
    assert_eq!(
        delta(t0, t1),
        [PIXEL_BYTES, 0, 0],
        "the pixels go in, the features stay"
    );

    let out = m.decode_on_device(&image, &texts).unwrap();
    let t2 = m.transfers();
    assert_eq!(
        delta(t1, t2),
        [MASK_BYTES_PER_PROMPT, SMALL_OUTPUT_BYTES_PER_PROMPT, 0],
        "image and text features are bound where they are; only the attention \
         mask goes in and only logits, boxes and presence come back"
    );
    assert_eq!(out.pred_masks.shape(), [1, 20, 32, 32]);

    let instances = m
        .postprocess_on_device(&out, &texts, (w, h), &opts)
        .unwrap();
    let t3 = m.transfers();
    assert!(
        !instances.is_empty() && instances.len() < 20,
        "the photo keeps some queries but not all: {}",
        instances.len()
    );
    assert_eq!(
        delta(t2, t3),
        [0, instances.len() as u64 * ONE_MASK_BYTES, 0],
        "only the kept masks come back"
    );

    // Exactly what the all-host path gives.
    let host = out.to_host().unwrap();
    assert_eq!(
        delta(t3, m.transfers()),
        [0, 20 * ONE_MASK_BYTES, 0],
        "to_host copies every mask, and says so in the counters"
    );
    assert_same(&host, &host_decoder(&m, &image, &texts));
    // The kept masks read alone give what a copy of every mask gives.
    // (`segment` is these same calls in a row: comparing it would prove nothing.)
    assert_eq!(m.postprocess(&host, &texts, (w, h), &opts), instances);

    // A cap copies only the masks it keeps.
    let capped = PostprocessOptions {
        max_instances: 1,
        threshold: 0.0,
        ..opts.clone()
    };
    let before = m.transfers();
    let one = m
        .postprocess_on_device(&out, &texts, (w, h), &capped)
        .unwrap();
    assert_eq!(delta(before, m.transfers()), [0, ONE_MASK_BYTES, 0]);
    assert_eq!(one, m.postprocess(&host, &texts, (w, h), &capped));
}

#[test]
fn text_cache_serves_features_without_uploading_them() {
    let m = model();
    let (rgb, w, h) = photo();
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let image = m.encode_image(&frame).unwrap();

    let t0 = m.transfers();
    let texts = m.encode_texts(&["a person", "a red ball"]).unwrap();
    let t1 = m.transfers();
    assert_eq!(
        delta(t0, t1),
        [2 * 2 * MASK_BYTES_PER_PROMPT, 0, 0],
        "token ids and masks go in, the features stay"
    );
    let runs = m.engine_runs();
    let again = m.encode_texts(&["A person", "a red  ball"]).unwrap();
    assert_eq!(m.engine_runs(), runs, "served from the cache");
    assert_eq!(
        delta(t1, m.transfers()),
        [0, 0, 0],
        "nothing uploaded again"
    );
    assert!(texts.iter().zip(&again).all(|(a, b)| Arc::ptr_eq(a, b)));

    // The prompts of one encoder batch, in order: its output is bound as is.
    let t2 = m.transfers();
    let out = m.decode_on_device(&image, &texts).unwrap();
    assert_eq!(
        delta(t2, m.transfers()),
        [
            2 * MASK_BYTES_PER_PROMPT,
            2 * SMALL_OUTPUT_BYTES_PER_PROMPT,
            0
        ]
    );
    assert_same(&out.to_host().unwrap(), &host_decoder(&m, &image, &texts));

    // Another order (or prompts from different batches) is gathered in device
    // memory once, then reused while the prompts stay the same.
    let swapped = vec![texts[1].clone(), texts[0].clone()];
    for round in 0..2 {
        let t = m.transfers();
        let out = m.decode_on_device(&image, &swapped).unwrap();
        let gathered = if round == 0 {
            2 * TEXT_FEATURE_BYTES_PER_PROMPT
        } else {
            0
        };
        assert_eq!(
            delta(t, m.transfers()),
            [
                2 * MASK_BYTES_PER_PROMPT,
                2 * SMALL_OUTPUT_BYTES_PER_PROMPT,
                gathered
            ],
            "round {round}"
        );
        assert_same(&out.to_host().unwrap(), &host_decoder(&m, &image, &swapped));
    }

    // Reading a prompt's features copies just its row.
    let t3 = m.transfers();
    let row = texts[1].to_host().unwrap();
    assert_eq!(row.shape, [1, 32, 32]);
    assert_eq!(
        delta(t3, m.transfers()),
        [0, TEXT_FEATURE_BYTES_PER_PROMPT, 0]
    );
}

#[test]
fn a_still_picture_uploads_nothing_but_the_attention_mask() {
    let m = Arc::new(model());
    let (rgb, w, h) = photo();
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let opts = PostprocessOptions::default();
    let mut seg = Segmenter::new(m.clone());
    seg.process(&frame, &["a person"], &opts, 4.0).unwrap();
    seg.process(&frame, &["a red ball"], &opts, 4.0).unwrap();

    // Cached prompt, cached picture: only the decoder runs.
    let t = m.transfers();
    let (instances, state) = seg.process(&frame, &["a person"], &opts, 4.0).unwrap();
    assert_eq!(state, InferenceState::ReusedImageFeatures);
    assert_eq!(
        delta(t, m.transfers()),
        [
            MASK_BYTES_PER_PROMPT,
            SMALL_OUTPUT_BYTES_PER_PROMPT + instances.len() as u64 * ONE_MASK_BYTES,
            0
        ]
    );
    assert_eq!(instances, m.segment(&frame, &["a person"], &opts).unwrap());
}

fn host_engine(m: &Sam3Model, role: EngineRole) -> Engine {
    let options = BackendOptions::default();
    Engine::load(
        role,
        &m.bundle().engine_path(role),
        m.manifest().engine(role),
        &options,
        Arc::new(DeviceMemory::new(&options).unwrap()),
    )
    .unwrap()
}

#[test]
fn bound_encoder_outputs_equal_host_outputs() {
    let m = model();
    let (rgb, w, h) = photo();
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let pixels =
        samclipseg::image::preprocess::preprocess(&frame, &m.manifest().preprocess).unwrap();
    let image = m.encode_pixels(&pixels, (w, h)).unwrap();
    let host = host_engine(&m, EngineRole::ImageEncoder)
        .run(
            &[("pixel_values", Input::F32(&pixels))],
            &["fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2"],
        )
        .unwrap();
    assert_eq!(image.to_host().unwrap(), host);

    let prompts = ["a person", "a cup of coffee", "cat"];
    let texts = m.encode_texts(&prompts).unwrap();
    let tokens: Vec<_> = prompts.iter().map(|p| m.tokenize(p).unwrap()).collect();
    let ids = TensorI64::new(
        vec![3, 32],
        tokens.iter().flat_map(|t| t.ids.clone()).collect(),
    );
    let mask = TensorI64::new(
        vec![3, 32],
        tokens.iter().flat_map(|t| t.mask.clone()).collect(),
    );
    let host = host_engine(&m, EngineRole::TextEncoder)
        .run(
            &[
                ("input_ids", Input::I64(&ids)),
                ("attention_mask", Input::I64(&mask)),
            ],
            &["text_features"],
        )
        .unwrap()
        .remove(0);
    for (p, t) in texts.iter().enumerate() {
        assert_eq!(t.to_host().unwrap().data, host.item(p), "{}", prompts[p]);
    }

    // Reading past the end is an error, not a stray copy.
    let level = &image.levels()[0];
    let mut buf = vec![0f32; 2];
    let err = level
        .read(level.len() - 1, &mut buf)
        .unwrap_err()
        .to_string();
    assert!(err.contains("reading elements"), "{err}");
}
