//! The element on the bundle trained on the shapes world, where the right
//! answer is known: the generator's masks (tests/fixtures/toy-shapes-sam3/golden)
//! are the truth the element's metadata and alpha channel must match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{
    Photo, alpha_mask, bundle_copy_of, edit_bundle_manifest, harness_on, iou, load_rgba,
    placed_mask, toy_bundle,
};
use gst::prelude::*;
use gstsamclipseg::{OutputMode, SamClipSegMeta};

fn golden(name: &str) -> PathBuf {
    toy_bundle().join("golden").join(name)
}

/// Pixels of object `id` in an instance-id map written by engines/shapes_world.py.
fn truth(ids_png: &str, id: u8) -> Vec<bool> {
    let ids = image::open(golden(ids_png)).unwrap().to_luma8();
    let mask: Vec<bool> = ids.as_raw().iter().map(|v| *v == id).collect();
    assert!(mask.iter().any(|v| *v), "{ids_png} has no object {id}");
    mask
}

/// The union of the metadata's instance masks, placed at their rectangles.
fn meta_mask(buf: &gst::Buffer, width: usize, height: usize) -> (Vec<bool>, Vec<String>) {
    let meta = SamClipSegMeta::from_buffer(buf).expect("every buffer carries the metadata");
    let mut full = vec![false; width * height];
    let mut labels = Vec::new();
    for inst in meta.instances() {
        labels.push(inst.label.clone());
        for (f, m) in full.iter_mut().zip(placed_mask(inst, width, height)) {
            *f |= m;
        }
    }
    (full, labels)
}

fn toy_harness(prompt: &str) -> gst_check::Harness {
    let mut h = harness_on(
        &toy_bundle(),
        &[("prompt", &prompt), ("output-mode", &OutputMode::Alpha)],
    );
    let p = scene();
    h.set_src_caps(p.caps("RGBA"));
    h
}

fn scene() -> Photo {
    load_rgba(&golden("scene.png"))
}

#[test]
fn red_circle_masks_exactly_the_red_circle() {
    let p = scene();
    let mut h = toy_harness("red circle");
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let (mask, labels) = meta_mask(&out, p.width, p.height);
    assert_eq!(
        labels,
        vec!["red circle".to_string()],
        "one instance, the red circle"
    );
    let red_circle = truth("scene-ids.png", 1);
    let m = iou(&mask, &red_circle);
    assert!(m >= 0.8, "metadata mask IoU with the red circle {m:.3}");
    let a = iou(&alpha_mask(&out), &red_circle);
    assert!(a >= 0.8, "alpha channel IoU with the red circle {a:.3}");
}

#[test]
fn a_prompt_with_no_match_yields_no_instance() {
    let p = scene();
    for prompt in [
        "yellow triangle",
        "green circle",
        "blue shape", /* present: control */
    ] {
        let mut h = toy_harness(prompt);
        let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
        let (mask, labels) = meta_mask(&out, p.width, p.height);
        if prompt == "blue shape" {
            let m = iou(&mask, &truth("scene-ids.png", 2));
            assert!(
                m >= 0.8,
                "control: `blue shape` finds the blue square (IoU {m:.3})"
            );
        } else {
            assert!(
                labels.is_empty(),
                "`{prompt}` matches nothing, got {labels:?}"
            );
            assert!(
                alpha_mask(&out).iter().all(|v| !v),
                "`{prompt}`: alpha must be empty"
            );
        }
    }
}

#[test]
fn changing_the_prompt_moves_the_mask_on_the_next_frame() {
    let p = scene();
    let mut h = toy_harness("red circle");
    let first = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let (mask, _) = meta_mask(&first, p.width, p.height);
    assert!(iou(&mask, &truth("scene-ids.png", 1)) >= 0.8);

    h.element().unwrap().set_property("prompt", "blue square");
    let second = h.push_and_pull(p.rgba_buffer(1)).unwrap();
    let (mask, labels) = meta_mask(&second, p.width, p.height);
    // At the calibrated threshold (0.2) the toy model may keep a second,
    // near-identical query on the same square; the masks' union is checked.
    assert!(
        !labels.is_empty() && labels.iter().all(|l| l == "blue square"),
        "{labels:?}"
    );
    let square = iou(&mask, &truth("scene-ids.png", 2));
    assert!(
        square >= 0.8,
        "after the change the mask is the blue square (IoU {square:.3})"
    );
    assert!(
        iou(&mask, &truth("scene-ids.png", 1)) < 0.05,
        "and no longer the red circle"
    );
    assert!(iou(&alpha_mask(&second), &truth("scene-ids.png", 2)) >= 0.8);
}

/// Per frame of the moving-shapes clip: IoU of the element's "red circle"
/// mask (metadata, alpha) with the circle, and whether anything was kept.
fn follow_red_circle() -> Vec<(f64, f64, bool)> {
    let clip = golden("clip");
    let frames = (0..)
        .take_while(|f| clip.join(format!("frame-{f:03}.png")).exists())
        .count();
    assert!(frames >= 20, "the clip has {frames} frames");
    let mut h = toy_harness("red circle");
    (0..frames)
        .map(|f| {
            let p = load_rgba(&clip.join(format!("frame-{f:03}.png")));
            let out = h.push_and_pull(p.rgba_buffer(f as u64)).unwrap();
            let (mask, labels) = meta_mask(&out, p.width, p.height);
            let circle = truth(&format!("clip/ids-{f:03}.png"), 1);
            (
                iou(&mask, &circle),
                iou(&alpha_mask(&out), &circle),
                !labels.is_empty(),
            )
        })
        .collect()
}

/// What the toy model achieves on the clip: whenever it keeps a mask, the mask
/// is the moving circle, in the metadata and the alpha channel alike. The
/// model before issue 18 missed the circle on one frame; the retrained one
/// keeps it on all 24 (the next test); the count guards against regressions.
#[test]
fn every_kept_mask_follows_the_moving_red_circle() {
    let per_frame = follow_red_circle();
    let found: Vec<usize> = (0..per_frame.len()).filter(|f| per_frame[*f].2).collect();
    for &f in &found {
        let (m, a, _) = per_frame[f];
        assert!(
            m >= 0.7 && a >= 0.7,
            "frame {f}: IoU with the red circle: metadata {m:.3}, alpha {a:.3}"
        );
    }
    eprintln!("red circle kept on frames {found:?} of {}", per_frame.len());
    assert!(
        found.len() >= 22,
        "the red circle was kept on {} of {} frames (24 when the bundle was retrained)",
        found.len(),
        per_frame.len()
    );
}

/// Issue 9's target: the circle on every frame. The first toy model missed it
/// on frame 6 of 24 (its query scored 0.15, under that bundle's threshold
/// 0.2); the model fine-tuned for issue 18 keeps it on every frame.
#[test]
fn the_mask_follows_the_moving_red_circle_on_every_frame() {
    for (f, (m, a, _)) in follow_red_circle().into_iter().enumerate() {
        assert!(
            m >= 0.7 && a >= 0.7,
            "frame {f}: IoU with the red circle: metadata {m:.3}, alpha {a:.3}"
        );
    }
}

/// A copy of the toy bundle whose calibrated `decoder.default_threshold` is `value`.
fn toy_bundle_with_default_threshold(name: &str, value: f32) -> PathBuf {
    let dir = bundle_copy_of(&toy_bundle(), name);
    let manifest = std::fs::read_to_string(dir.join("bundle.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.starts_with("default_threshold = "))
        .expect("the toy bundle.toml has a default_threshold line");
    edit_bundle_manifest(
        &dir,
        &format!("{line}\n"),
        &format!("default_threshold = {value}\n"),
    );
    dir
}

/// The instances the element reports for "red circle" on the scene, on this
/// bundle with these extra properties.
fn red_circle_instances(
    bundle: &std::path::Path,
    props: &[(&str, &dyn ToValue)],
) -> Vec<gstsamclipseg::SegmentedInstance> {
    let p = scene();
    let mut all: Vec<(&str, &dyn ToValue)> = vec![("prompt", &"red circle")];
    all.extend_from_slice(props);
    let mut h = harness_on(bundle, &all);
    h.set_src_caps(p.caps("RGBA"));
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let meta = SamClipSegMeta::from_buffer(&out).expect("every buffer carries the metadata");
    meta.instances().to_vec()
}

/// With `threshold` left at its default (-1) the bundle's calibrated
/// `decoder.default_threshold` filters the instances; an explicit value wins,
/// and setting -1 while playing goes back to the bundle's.
#[test]
fn the_bundles_calibrated_threshold_applies_unless_the_property_is_set() {
    let p = scene();
    let circle = truth("scene-ids.png", 1);
    // A score is at most 1 and an instance must score above the threshold:
    // a bundle calibrated at 1.0 keeps nothing.
    let strict = toy_bundle_with_default_threshold("toy-threshold-1", 1.0);
    let mut h = harness_on(&strict, &[("prompt", &"red circle")]);
    assert_eq!(h.element().unwrap().property::<f32>("threshold"), -1.0);
    h.set_src_caps(p.caps("RGBA"));
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let (_, labels) = meta_mask(&out, p.width, p.height);
    assert!(
        labels.is_empty(),
        "bundle threshold 1.0 keeps nothing, got {labels:?}"
    );

    // The property set explicitly overrides the bundle, from the next frame.
    h.element().unwrap().set_property("threshold", 0.5f32);
    let out = h.push_and_pull(p.rgba_buffer(1)).unwrap();
    let (mask, labels) = meta_mask(&out, p.width, p.height);
    assert_eq!(labels, vec!["red circle".to_string()]);
    let m = iou(&mask, &circle);
    assert!(m >= 0.8, "threshold=0.5 keeps the red circle (IoU {m:.3})");

    // Back to -1: the bundle's 1.0 again.
    h.element().unwrap().set_property("threshold", -1.0f32);
    let out = h.push_and_pull(p.rgba_buffer(2)).unwrap();
    let (_, labels) = meta_mask(&out, p.width, p.height);
    assert!(labels.is_empty(), "threshold -1 again, got {labels:?}");

    // Set before start, the explicit value holds from the first frame.
    let kept = red_circle_instances(&strict, &[("threshold", &0.5f32)]);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].label, "red circle");
}

/// The calibrated value itself is used, not merely "something strict": a
/// bundle threshold just above the red circle's score drops it, one a little
/// below keeps it.
#[test]
fn the_bundle_threshold_is_compared_with_the_instance_score() {
    let reference = red_circle_instances(&toy_bundle(), &[("threshold", &0.5f32)]);
    assert_eq!(reference.len(), 1, "{reference:?}");
    let score = reference[0].score;
    assert!(score > 0.5 && score <= 1.0, "score {score}");

    let above = (score + 1e-3).min(1.0);
    let dropped = red_circle_instances(
        &toy_bundle_with_default_threshold("toy-threshold-above", above),
        &[],
    );
    assert!(
        dropped.is_empty(),
        "bundle threshold {above} > score {score}: nothing kept, got {dropped:?}"
    );

    let below = (score - 0.05).max(0.5);
    let kept = red_circle_instances(
        &toy_bundle_with_default_threshold("toy-threshold-below", below),
        &[],
    );
    assert!(
        kept.iter()
            .any(|i| i.label == "red circle" && (i.score - score).abs() < 1e-3),
        "bundle threshold {below} < score {score}: the red circle kept, got {kept:?}"
    );
}

/// The committed frames of the independent evaluation set
/// (engines/independent_shapes.py: drawn by other code than the training
/// world, with its own palette, backgrounds and truth), in
/// tests/fixtures/independent-shapes: the first frame with three or more
/// objects of the 336 px test set (a red square and two blue squares over a
/// grey photo crop) and of the 640x360 one (a blue circle, triangle and square
/// over a colour gradient; the element stretches it to the model's square
/// input). truth.json has their objects and prompts.
fn independent(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/independent-shapes")
        .join(name)
}

/// Pixels of the objects `ids` in an instance-id map of the independent set.
fn independent_truth(ids_png: &str, ids: &[u8]) -> Vec<bool> {
    let map = image::open(independent(ids_png)).unwrap().to_luma8();
    let mask: Vec<bool> = map.as_raw().iter().map(|v| ids.contains(v)).collect();
    assert!(mask.iter().any(|v| *v), "{ids_png} has none of {ids:?}");
    mask
}

/// The element at the bundle's calibrated threshold on a frame nobody trained
/// the toy model for: each prompt of the frame's truth is answered with masks
/// whose union covers exactly the objects it names (IoU >= 0.75, the issue's
/// mean-IoU target for this set), in the metadata and the alpha channel, and
/// the prompt naming nothing present keeps nothing.
fn segment_independent_frame(size: &str, prompts: &[(&str, &[u8])]) {
    let p = load_rgba(&independent(&format!("frame-{size}.png")));
    let dims = format!("{}x{}", p.width, p.height);
    assert!(dims == size || dims == format!("{size}x{size}"), "{dims}");
    for &(prompt, ids) in prompts {
        let mut h = harness_on(
            &toy_bundle(),
            &[("prompt", &prompt), ("output-mode", &OutputMode::Alpha)],
        );
        h.set_src_caps(p.caps("RGBA"));
        let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
        let (mask, labels) = meta_mask(&out, p.width, p.height);
        if ids.is_empty() {
            assert!(
                labels.is_empty(),
                "{size}: `{prompt}` names nothing in the frame, got {labels:?}"
            );
            assert!(
                alpha_mask(&out).iter().all(|v| !v),
                "{size}: `{prompt}`: alpha must be empty"
            );
            continue;
        }
        let want = independent_truth(&format!("ids-{size}.png"), ids);
        let m = iou(&mask, &want);
        let a = iou(&alpha_mask(&out), &want);
        eprintln!(
            "{size}: `{prompt}`: {} instances, IoU metadata {m:.3}, alpha {a:.3}",
            labels.len()
        );
        assert!(
            labels.iter().all(|l| l == prompt),
            "{size}: `{prompt}`: labels {labels:?}"
        );
        assert!(
            m >= 0.75 && a >= 0.75,
            "{size}: `{prompt}`: IoU with objects {ids:?}: metadata {m:.3}, alpha {a:.3}"
        );
    }
}

/// Colour + shape, a colour with two instances, and a no-match prompt.
#[test]
fn a_square_frame_drawn_by_other_code_is_segmented_by_prompt() {
    segment_independent_frame(
        "336",
        &[
            ("red square", &[2]),
            ("blue shape", &[1, 3]),
            ("red triangle", &[]),
        ],
    );
}

/// A 16:9 camera frame: a shape prompt among three objects of one colour,
/// the colour with all three, and a no-match prompt.
#[test]
fn a_wide_frame_drawn_by_other_code_is_segmented_by_prompt() {
    segment_independent_frame(
        "640x360",
        &[
            ("triangle", &[2]),
            ("blue shape", &[1, 2, 3]),
            ("red circle", &[]),
        ],
    );
}
