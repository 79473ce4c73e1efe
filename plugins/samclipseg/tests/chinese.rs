//! Prompts in Chinese through the element, on the toy bundle: every phrase
//! of its vocabulary in Chinese gives the same masks as the English phrase,
//! labelled as typed; `prompt-in-use` shows what the text encoder got; a
//! word the dictionaries lack is one warning on the bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Photo, harness_on, load_rgba, toy_bundle};
use gst::glib;
use gst::prelude::*;
use gstsamclipseg::SamClipSegMeta;

/// The toy vocabulary (tests/fixtures/toy-shapes-sam3/vocabulary.txt) as a
/// Chinese user would type it: simplified, traditional, with 的, a measure
/// word, full-width punctuation.
const VOCABULARY: &[(&str, &str)] = &[
    ("红色圆形", "red circle"),
    ("红色正方形", "red square"),
    ("红色三角形", "red triangle"),
    ("绿色圆形", "green circle"),
    ("绿色的正方形", "green square"),
    ("绿色三角形", "green triangle"),
    ("蓝色圆形", "blue circle"),
    ("蓝色正方形", "blue square"),
    ("蓝色的三角形", "blue triangle"),
    ("黄色圆形", "yellow circle"),
    ("黄色正方形", "yellow square"),
    ("一个黄色三角形", "yellow triangle"),
    ("白色圆形", "white circle"),
    ("白色正方形", "white square"),
    ("白色三角形", "white triangle"),
    ("圆形", "circle"),
    ("正方形", "square"),
    ("三角形", "triangle"),
    ("紅色形狀", "red shape"),
    ("綠色形狀", "green shape"),
    ("藍色的形狀", "blue shape"),
    ("黃色形狀", "yellow shape"),
    ("白色形状", "white shape"),
];

fn scene() -> Photo {
    load_rgba(&toy_bundle().join("golden").join("scene.png"))
}

/// What an instance is, but its label: compared across the two languages.
type Found = Vec<(u32, u32, u32, u32, u32, Vec<u8>)>;

fn run(h: &mut gst_check::Harness, p: &Photo, n: u64, prompt: &str) -> (Found, Vec<String>) {
    h.element().unwrap().set_property("prompt", prompt);
    let out = h.push_and_pull(p.rgba_buffer(n)).unwrap();
    let meta = SamClipSegMeta::from_buffer(&out).expect("every buffer carries the metadata");
    assert_eq!(meta.prompt(), prompt, "the meta states the prompt as typed");
    let found = meta
        .instances()
        .iter()
        .map(|i| {
            (
                i.x,
                i.y,
                i.width,
                i.height,
                i.score.to_bits(),
                i.mask.to_vec(),
            )
        })
        .collect();
    let labels = meta.instances().iter().map(|i| i.label.clone()).collect();
    (found, labels)
}

#[test]
fn every_toy_phrase_in_chinese_gives_the_english_masks_labelled_as_typed() {
    assert_eq!(
        VOCABULARY.len(),
        std::fs::read_to_string(toy_bundle().join("vocabulary.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count(),
        "every phrase of the toy vocabulary"
    );
    let p = scene();
    let mut h = harness_on(&toy_bundle(), &[("smoothness", &1u32)]);
    h.set_src_caps(p.caps("RGBA"));
    let mut n = 0;
    let mut found_any = 0;
    for (zh, en) in VOCABULARY {
        let (english, en_labels) = run(&mut h, &p, n, en);
        let (chinese, zh_labels) = run(&mut h, &p, n + 1, zh);
        n += 2;
        assert_eq!(
            h.element().unwrap().property::<String>("prompt-in-use"),
            *en,
            "{zh}"
        );
        assert!(en_labels.iter().all(|l| l == en));
        assert!(
            zh_labels.iter().all(|l| l == zh),
            "{zh}: labelled as typed, got {zh_labels:?}"
        );
        assert_eq!(
            chinese, english,
            "{zh} and {en}: the same instances and masks"
        );
        found_any += usize::from(!english.is_empty());
    }
    // The scene holds a red circle and a blue square at least: the
    // comparison is not between empty results only.
    assert!(found_any >= 4, "only {found_any} phrases found anything");
}

#[test]
fn chinese_punctuation_and_prompt_in_use() {
    let p = scene();
    let mut h = harness_on(&toy_bundle(), &[("smoothness", &1u32)]);
    h.set_src_caps(p.caps("RGBA"));
    let e = h.element().unwrap();
    assert_eq!(e.property::<String>("prompt-in-use"), "");
    let (mixed, labels) = run(&mut h, &p, 0, "红色圆形；蓝色正方形：０.１，－三角形");
    assert_eq!(
        e.property::<String>("prompt-in-use"),
        "red circle; blue square; -triangle"
    );
    let (english, _) = run(&mut h, &p, 1, "red circle; blue square:0.1; -triangle");
    assert_eq!(mixed, english);
    assert!(labels.contains(&"红色圆形".to_string()), "{labels:?}");
    assert!(labels.contains(&"蓝色正方形".to_string()), "{labels:?}");
    e.set_property("negative-prompt", "白色 circle、黄色");
    assert_eq!(
        e.property::<String>("prompt-in-use"),
        "red circle; blue square; -triangle; -white circle; -yellow"
    );
    let spec = e.find_property("prompt-in-use").unwrap();
    assert!(!spec.flags().contains(glib::ParamFlags::WRITABLE));
}

#[test]
fn an_unknown_word_is_one_warning_on_the_bus_naming_it_and_what_was_sent() {
    let p = scene();
    let mut h = harness_on(&toy_bundle(), &[("smoothness", &1u32)]);
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    h.set_src_caps(p.caps("RGBA"));
    // U+4DB5, a rare character of CJK extension A: in neither dictionary.
    let odd = "红色\u{4DB5}圆形";
    let (with_odd, labels) = run(&mut h, &p, 0, odd);
    let (plain, _) = run(&mut h, &p, 1, "red circle");
    let (again, _) = run(&mut h, &p, 2, odd);
    assert_eq!(with_odd, plain, "the known words are still segmented");
    assert_eq!(again, plain);
    assert!(labels.iter().all(|l| l == odd));
    let mut warnings = Vec::new();
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Warning]) {
        if let gst::MessageView::Warning(w) = msg.view() {
            warnings.push(w.error().to_string());
        }
    }
    assert_eq!(
        warnings.len(),
        1,
        "one warning per prompt value: {warnings:?}"
    );
    let w = &warnings[0];
    assert!(
        w.contains("\"\u{4DB5}\"") && w.contains("sent \"red circle\""),
        "names the word and what was sent: {w}"
    );
}

fn suggestions(e: &gst::Element, k: u32) -> Vec<(String, f64)> {
    let s = e.emit_by_name::<gst::Structure>("suggest", &[&k]);
    assert!(!s.has_field("error"), "{s}");
    let phrases = s.get::<gst::List>("phrases").unwrap();
    let scores = s.get::<gst::List>("scores").unwrap();
    phrases
        .iter()
        .zip(scores.iter())
        .map(|(p, s)| (p.get::<String>().unwrap(), s.get::<f64>().unwrap()))
        .collect()
}

#[test]
fn suggest_answers_in_chinese_for_a_chinese_prompt_or_vocabulary() {
    let p = scene();
    let mut h = harness_on(&toy_bundle(), &[("smoothness", &1u32)]);
    h.set_src_caps(p.caps("RGBA"));
    let e = h.element().unwrap();
    run(&mut h, &p, 0, "red circle");
    let english = suggestions(&e, 5);
    run(&mut h, &p, 1, "红色圆形");
    let chinese = suggestions(&e, 5);
    // The built-in vocabulary's Chinese phrases, scored with their English.
    let zh_of: std::collections::HashMap<&str, &str> =
        samclipseg::prompt::suggest::DEFAULT_VOCABULARY_ZH
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .collect();
    assert_eq!(chinese.len(), english.len());
    for ((zh, zs), (en, es)) in chinese.iter().zip(&english) {
        assert_eq!(
            zh_of.get(en.as_str()),
            Some(&zh.as_str()),
            "{chinese:?} / {english:?}"
        );
        assert!((zs - es).abs() < 1e-6);
    }

    // A vocabulary file in Chinese: answered as written, scored in English.
    let dir = std::env::temp_dir().join(format!("samclipseg-zh-vocab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (zh_file, en_file) = (dir.join("zh.txt"), dir.join("en.txt"));
    let zh: Vec<&str> = VOCABULARY.iter().map(|(zh, _)| *zh).collect();
    let en: Vec<&str> = VOCABULARY.iter().map(|(_, en)| *en).collect();
    std::fs::write(&zh_file, zh.join("\n")).unwrap();
    std::fs::write(&en_file, en.join("\n")).unwrap();
    e.set_property("vocabulary", en_file.to_string_lossy().into_owned());
    run(&mut h, &p, 2, "red circle");
    let english = suggestions(&e, 4);
    e.set_property("vocabulary", zh_file.to_string_lossy().into_owned());
    let chinese = suggestions(&e, 4);
    let _ = std::fs::remove_dir_all(&dir);
    let pair: std::collections::HashMap<&str, &str> = VOCABULARY.iter().copied().collect();
    for ((zh, zs), (en, es)) in chinese.iter().zip(&english) {
        assert_eq!(
            pair.get(zh.as_str()),
            Some(&en.as_str()),
            "{chinese:?} / {english:?}"
        );
        assert!((zs - es).abs() < 1e-6);
    }
}
