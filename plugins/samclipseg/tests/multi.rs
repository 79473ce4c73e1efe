//! Several phrases, negative phrases, stable ids and the `suggest` action,
//! through the element, against the core library on the same photo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{harness, model, photo};
use gst::prelude::*;
use gstsamclipseg::SamClipSegMeta;
use samclipseg::PostprocessOptions;
use samclipseg::prompt::request;
use samclipseg::prompt::suggest::{DEFAULT_VOCABULARY, parse_vocabulary};
use samclipseg::prompt::syntax::PromptSet;

fn opts(threshold: f32) -> PostprocessOptions {
    PostprocessOptions {
        threshold,
        mask_threshold: model().manifest().decoder.mask_threshold,
        smoothness: 1,
        max_instances: 0,
    }
}

#[test]
fn three_phrases_are_labelled_with_their_phrase_and_index() {
    let p = photo("chelsea.png");
    let mut h = harness(&[
        ("prompt", &"cat; a person:0.55; a cup of coffee"),
        ("smoothness", &1u32),
    ]);
    h.set_src_caps(p.caps("RGBA"));
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let meta = SamClipSegMeta::from_buffer(&out).unwrap();

    let set = PromptSet::parse("cat; a person:0.55; a cup of coffee", "");
    let run = model()
        .segment(&p.frame(), &set.texts(), &opts(0.5))
        .unwrap();
    let (expected, _) = request::resolve(&set, run, 0.5, 0.5);
    assert_eq!(meta.instances().len(), expected.len());
    for (got, want) in meta.instances().iter().zip(&expected) {
        assert_eq!(got.phrase_index as usize, want.prompt_index);
        assert_eq!(got.label, set.positives[want.prompt_index].text);
        assert!((got.score - want.score).abs() < 1e-5);
    }
    assert!(meta.instances().iter().any(|i| i.phrase_index == 0));
    // The per-phrase threshold applies: no "a person" instance at or under 0.55.
    assert!(
        meta.instances()
            .iter()
            .filter(|i| i.phrase_index == 1)
            .all(|i| i.score > 0.55)
    );
    let rois: Vec<String> = out
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|r| r.roi_type().to_string())
        .collect();
    assert_eq!(rois.len(), expected.len());
    assert!(
        rois.iter()
            .all(|r| r == "cat" || r == "a person" || r == "a cup of coffee")
    );
}

#[test]
fn negative_phrase_removes_instances_and_alpha_pixels() {
    let p = photo("astronaut.png");
    let mut h = harness(&[
        ("prompt", &"a person"),
        ("negative-prompt", &"cat"),
        ("smoothness", &1u32),
        ("output-mode", &gstsamclipseg::OutputMode::Alpha),
    ]);
    h.set_src_caps(p.caps("RGBA"));
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let meta = SamClipSegMeta::from_buffer(&out).unwrap();

    let set = PromptSet::parse("a person", "cat");
    let run = model()
        .segment(&p.frame(), &set.texts(), &opts(0.5))
        .unwrap();
    let (kept, negatives) = request::resolve(&set, run, 0.5, 0.5);
    let alone = model()
        .segment(&p.frame(), &["a person"], &opts(0.5))
        .unwrap();
    assert!(
        !negatives.is_empty() && kept.len() < alone.len(),
        "the negative must remove something here"
    );
    assert_eq!(meta.instances().len(), kept.len());
    assert!(meta.instances().iter().all(|i| i.label == "a person"));

    let alpha = request::alpha_without_negatives(&kept, &negatives, p.width, p.height);
    let map = out.map_readable().unwrap();
    for (i, px) in map.chunks_exact(4).enumerate() {
        assert_eq!(px[3], alpha[i], "alpha of pixel {i}");
    }
}

#[test]
fn ids_stay_on_a_moving_clip_and_renew_after_an_absence_longer_than_patience() {
    let p = photo("astronaut.png");
    let mut h = harness(&[
        ("prompt", &"a person"),
        ("reuse-threshold", &0.0f32),
        ("max-instances", &3u32),
        ("track-patience", &2u32),
    ]);
    h.set_src_caps(p.caps("RGBA"));
    let shifted = |n: u64, shift: usize| {
        let mut rgba = p.rgba.clone();
        for y in 0..p.height {
            let row = p.rgba[y * p.width * 4..(y + 1) * p.width * 4].to_vec();
            rgba[y * p.width * 4 + shift * 4..(y + 1) * p.width * 4]
                .copy_from_slice(&row[..(p.width - shift) * 4]);
        }
        let mut b = gst::Buffer::from_slice(rgba);
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(40 * n));
        b
    };
    let ids = |b: &gst::Buffer| -> Vec<u64> {
        let mut v: Vec<u64> = SamClipSegMeta::from_buffer(b)
            .unwrap()
            .instances()
            .iter()
            .map(|i| i.id)
            .collect();
        v.sort();
        v
    };
    let first = ids(&h.push_and_pull(shifted(0, 0)).unwrap());
    assert!(!first.is_empty());
    for (n, shift) in [(1, 0), (2, 2), (3, 4)] {
        let got = ids(&h.push_and_pull(shifted(n, shift)).unwrap());
        assert_eq!(got, first, "ids at shift {shift}");
    }
    // Nothing found for 3 frames (> patience 2): the same objects come back with new ids.
    h.element().unwrap().set_property("threshold", 1.0f32);
    for n in 4..7 {
        assert!(ids(&h.push_and_pull(shifted(n, 4)).unwrap()).is_empty());
    }
    h.element().unwrap().set_property("threshold", 0.5f32);
    let again = ids(&h.push_and_pull(shifted(7, 4)).unwrap());
    assert_eq!(again.len(), first.len());
    assert!(
        again.iter().all(|id| !first.contains(id)),
        "{first:?} then {again:?}"
    );
}

#[test]
fn suggest_returns_the_core_ranking_for_the_current_frame() {
    let p = photo("coffee.png");
    let mut h = harness(&[("prompt", &"a cup of coffee")]);
    h.set_src_caps(p.caps("RGBA"));
    h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let element = h.element().unwrap();
    let s = element.emit_by_name::<gst::Structure>("suggest", &[&5u32]);
    assert!(!s.has_field("error"), "{s}");
    let phrases: Vec<String> = s
        .get::<gst::List>("phrases")
        .unwrap()
        .iter()
        .map(|v| v.get::<String>().unwrap())
        .collect();
    let scores: Vec<f64> = s
        .get::<gst::List>("scores")
        .unwrap()
        .iter()
        .map(|v| v.get::<f64>().unwrap())
        .collect();

    let image = model().encode_image(&p.frame()).unwrap();
    let expected = model()
        .suggest(&image, &parse_vocabulary(DEFAULT_VOCABULARY), 5)
        .unwrap();
    assert_eq!(
        phrases,
        expected
            .iter()
            .map(|e| e.phrase.clone())
            .collect::<Vec<_>>()
    );
    for (a, b) in scores.iter().zip(&expected) {
        assert!((*a as f32 - b.presence).abs() < 1e-5);
    }
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
}
