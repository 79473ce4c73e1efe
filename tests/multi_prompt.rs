//! Several phrases in one pass, negative phrases, stable ids and suggestions,
//! on the tiny bundle and a real photo.

mod common;

use common::{load_rgb, tiny_bundle};
use samclipseg::prompt::request::{alpha_without_negatives, resolve};
use samclipseg::prompt::suggest::{DEFAULT_VOCABULARY, parse_vocabulary};
use samclipseg::prompt::syntax::PromptSet;
use samclipseg::stream::Tracker;
use samclipseg::{BackendOptions, Frame, PackedLayout, PostprocessOptions, Sam3Model};

fn model() -> Sam3Model {
    Sam3Model::load(tiny_bundle(), &BackendOptions::default()).unwrap()
}

fn options(threshold: f32) -> PostprocessOptions {
    PostprocessOptions {
        threshold,
        ..Default::default()
    }
}

#[test]
fn three_phrases_cost_one_image_encoder_and_one_decoder_run() {
    let m = model();
    let (rgb, w, h) = load_rgb(&tiny_bundle().join("golden/chelsea.png"));
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let set = PromptSet::parse("cat; a person; a cup of coffee", "");
    let before = m.engine_runs();
    let instances = m.segment(&frame, &set.texts(), &options(0.5)).unwrap();
    let after = m.engine_runs();
    assert_eq!(
        after[0] - before[0],
        1,
        "one text-encoder batch for three new phrases"
    );
    assert_eq!(after[1] - before[1], 1, "one image-encoder run");
    assert_eq!(after[2] - before[2], 1, "one decoder run");
    // Labels and indices follow the phrases, and each phrase's instances are
    // those of a run with that phrase alone.
    for (p, phrase) in set.texts().iter().enumerate() {
        let mine: Vec<_> = instances.iter().filter(|i| i.prompt_index == p).collect();
        assert!(mine.iter().all(|i| i.label == *phrase));
        let alone = m.segment(&frame, &[phrase], &options(0.5)).unwrap();
        assert_eq!(mine.len(), alone.len(), "{phrase}");
        for (a, b) in mine.iter().zip(&alone) {
            assert!(
                (a.score - b.score).abs() < 1e-5,
                "{phrase}: {} vs {}",
                a.score,
                b.score
            );
            assert_eq!(a.mask, b.mask);
        }
    }
    assert!(
        instances.iter().any(|i| i.prompt_index == 0)
            && instances.iter().any(|i| i.prompt_index == 1)
    );
}

#[test]
fn a_negative_phrase_removes_what_it_covers() {
    let m = model();
    let (rgb, w, h) = load_rgb(&tiny_bundle().join("golden/astronaut.png"));
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let plain = PromptSet::parse("a person", "");
    let (alone, _) = resolve(
        &plain,
        m.segment(&frame, &plain.texts(), &options(0.5)).unwrap(),
        0.5,
        0.5,
    );
    assert!(!alone.is_empty());

    // The tiny model's "cat" instances cover much of the picture: as a negative they must remove some.
    let set = PromptSet::parse("a person; -cat", "");
    let run = m.segment(&frame, &set.texts(), &options(0.5)).unwrap();
    let (kept, negatives) = resolve(&set, run, 0.5, 0.5);
    assert!(!negatives.is_empty(), "the negative phrase found something");
    assert!(
        kept.len() < alone.len(),
        "kept {} of {}",
        kept.len(),
        alone.len()
    );
    for inst in &kept {
        assert!(samclipseg::prompt::request::covered_share(&inst.mask, &negatives) < 0.5);
    }
    let dropped: Vec<_> = alone
        .iter()
        .filter(|a| !kept.iter().any(|k| k.query == a.query))
        .collect();
    assert!(
        dropped
            .iter()
            .all(|d| samclipseg::prompt::request::covered_share(&d.mask, &negatives) >= 0.5)
    );
    let alpha = alpha_without_negatives(&kept, &negatives, w, h);
    for (i, a) in alpha.iter().enumerate() {
        if negatives.iter().any(|n| n.mask.data[i] != 0) {
            assert_eq!(*a, 0, "pixel {i} of a negative instance left in the alpha");
        }
    }
}

#[test]
fn ids_are_stable_on_a_still_clip_and_a_slowly_moving_one() {
    let m = model();
    let (rgb, w, h) = load_rgb(&tiny_bundle().join("golden/astronaut.png"));
    let mut tracker = Tracker::new(3, 0.0);
    let mut first_ids = None;
    for shift in [0usize, 0, 2, 4, 6] {
        // The photo shifted right by `shift` pixels: an object moving a few pixels a frame.
        let mut moved = rgb.clone();
        for y in 0..h {
            let row = &rgb[y * w * 3..(y + 1) * w * 3];
            let out = &mut moved[y * w * 3..(y + 1) * w * 3];
            out[shift * 3..].copy_from_slice(&row[..(w - shift) * 3]);
        }
        let frame = Frame::packed(&moved, w, h, w * 3, PackedLayout::Rgb).unwrap();
        let mut instances = m.segment(&frame, &["a person"], &options(0.5)).unwrap();
        instances.sort_by_key(|i| i.query);
        let ids = tracker.update(&mut instances);
        match &first_ids {
            None => first_ids = Some(ids),
            Some(f) => {
                let same = ids.iter().filter(|id| f.contains(id)).count();
                assert!(
                    same * 10 >= ids.len() * 8,
                    "ids changed at shift {shift}: {f:?} -> {ids:?}"
                );
            }
        }
    }
    // Absent for longer than the patience: new ids.
    for _ in 0..4 {
        tracker.update(&mut []);
    }
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let mut instances = m.segment(&frame, &["a person"], &options(0.5)).unwrap();
    let ids = tracker.update(&mut instances);
    let first = first_ids.unwrap();
    assert!(
        ids.iter().all(|id| !first.contains(id)),
        "{ids:?} reuses {first:?}"
    );
}

#[test]
fn suggestions_are_the_top_presence_scores() {
    let m = model();
    let (rgb, w, h) = load_rgb(&tiny_bundle().join("golden/coffee.png"));
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let image = m.encode_image(&frame).unwrap();
    let vocabulary: Vec<String> = parse_vocabulary(DEFAULT_VOCABULARY)
        .into_iter()
        .take(40)
        .collect();
    let top = m.suggest(&image, &vocabulary, 5).unwrap();
    assert_eq!(top.len(), 5);
    let phrases: Vec<&str> = vocabulary.iter().map(String::as_str).collect();
    let scores = m.presence_scores(&image, &phrases).unwrap();
    let mut expected: Vec<(f32, &str)> = scores
        .iter()
        .copied()
        .zip(phrases.iter().copied())
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (s, (score, phrase)) in top.iter().zip(expected) {
        assert_eq!(s.phrase, phrase);
        assert_eq!(s.presence, score);
    }
    assert!(top.windows(2).all(|w| w[0].presence >= w[1].presence));
    // Each phrase's presence equals a decoder run with that phrase alone.
    let texts = m.encode_texts(&[top[0].phrase.as_str()]).unwrap();
    let alone = m.decode(&image, &texts).unwrap();
    let p = samclipseg::image::postprocess::sigmoid(alone.presence_logits.data[0]);
    assert!((p - top[0].presence).abs() < 1e-5);
}
