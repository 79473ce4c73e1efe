//! Mask arithmetic of SAM 3's video loop, as transformers computes it: IoU of
//! masks > 0, greedy mask NMS, hole filling with 8-connected components.
//! A mask is a square plane of logits, row-major.

/// Pixels > 0.
pub(crate) fn binary(mask: &[f32]) -> Vec<bool> {
    mask.iter().map(|v| *v > 0.0).collect()
}

/// A detection's mask as the tracker takes it: 1 where the logit is >= 0.5,
/// else 0 (a threshold on logits, as transformers writes it).
pub(crate) fn detection_prompt(logits: &[f32]) -> impl Iterator<Item = f32> + '_ {
    logits.iter().map(|v| if *v >= 0.5 { 1.0 } else { 0.0 })
}

pub(crate) fn any_positive(mask: &[f32]) -> bool {
    mask.iter().any(|v| *v > 0.0)
}

/// IoU of every `a` with every `b` ([a][b]): intersection over union, the
/// union clamped to 1 (two empty masks: 0), in f32 as the reference.
pub(crate) fn iou_matrix(a: &[Vec<bool>], b: &[Vec<bool>]) -> Vec<Vec<f32>> {
    let area = |m: &Vec<bool>| m.iter().filter(|v| **v).count();
    let (area_a, area_b): (Vec<usize>, Vec<usize>) =
        (a.iter().map(area).collect(), b.iter().map(area).collect());
    a.iter()
        .zip(&area_a)
        .map(|(ma, sa)| {
            b.iter()
                .zip(&area_b)
                .map(|(mb, sb)| {
                    let inter = ma.iter().zip(mb).filter(|(x, y)| **x && **y).count();
                    let union = (sa + sb - inter).max(1);
                    inter as f32 / union as f32
                })
                .collect()
        })
        .collect()
}

/// Indices sorted by score, best first; ties keep their order (numpy's
/// stable argsort of -score, torch.topk on distinct values).
pub(crate) fn best_first(indices: &mut [usize], score: impl Fn(usize) -> f32) {
    indices.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
}

/// `nms_masks`: among the detections with prob > `prob_threshold`, greedy by
/// prob; one is dropped when its mask IoU with a kept one exceeds
/// `iou_threshold`. `masks[q]` is read only for those above the threshold.
pub(crate) fn nms(
    probs: &[f32],
    masks: &dyn Fn(usize) -> Vec<bool>,
    prob_threshold: f32,
    iou_threshold: f32,
) -> Vec<bool> {
    let valid: Vec<usize> = (0..probs.len())
        .filter(|&q| probs[q] > prob_threshold)
        .collect();
    let binaries: Vec<Vec<bool>> = valid.iter().map(|&q| masks(q)).collect();
    let ious = iou_matrix(&binaries, &binaries);
    let mut order: Vec<usize> = (0..valid.len()).collect();
    best_first(&mut order, |i| probs[valid[i]]);
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        if kept.iter().all(|&j| ious[i][j] <= iou_threshold) {
            kept.push(i);
        }
    }
    let mut keep = vec![false; probs.len()];
    for i in kept {
        keep[valid[i]] = true;
    }
    keep
}

/// For each pixel, the size of its 8-connected component of `set` pixels
/// (0 outside `set`).
fn component_sizes(set: &[bool], side: usize) -> Vec<usize> {
    let mut label = vec![usize::MAX; set.len()];
    let mut sizes: Vec<usize> = Vec::new();
    let mut stack = Vec::new();
    for start in 0..set.len() {
        if !set[start] || label[start] != usize::MAX {
            continue;
        }
        let id = sizes.len();
        let mut size = 0;
        label[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let (y, x) = ((p / side) as isize, (p % side) as isize);
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let (ny, nx) = (y + dy, x + dx);
                    if ny < 0 || nx < 0 || ny >= side as isize || nx >= side as isize {
                        continue;
                    }
                    let q = ny as usize * side + nx as usize;
                    if set[q] && label[q] == usize::MAX {
                        label[q] = id;
                        stack.push(q);
                    }
                }
            }
        }
        sizes.push(size);
    }
    label
        .iter()
        .map(|&l| if l == usize::MAX { 0 } else { sizes[l] })
        .collect()
}

/// `fill_holes_in_mask_scores` on one square mask of logits: background
/// components (<= 0) of at most `max_area` pixels become 0.1, then
/// foreground components of at most min(`max_area`, half the foreground)
/// become -0.1. Returns whether anything changed.
pub(crate) fn fill_holes(mask: &mut [f32], side: usize, max_area: usize) -> bool {
    if max_area == 0 || mask.is_empty() {
        return false;
    }
    let mut changed = false;
    let background: Vec<bool> = mask.iter().map(|v| *v <= 0.0).collect();
    for (v, size) in mask.iter_mut().zip(component_sizes(&background, side)) {
        if size > 0 && size <= max_area {
            *v = 0.1;
            changed = true;
        }
    }
    let foreground = binary(mask);
    let limit = (foreground.iter().filter(|v| **v).count() / 2).min(max_area);
    for (v, size) in mask.iter_mut().zip(component_sizes(&foreground, side)) {
        if size > 0 && size <= limit {
            *v = -0.1;
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_filled_and_specks_removed_with_diagonal_neighbours() {
        // 5x5: a ring of foreground around one background pixel, and a
        // two-pixel speck touching only diagonally.
        let side = 6;
        let mut m = vec![-1.0f32; side * side];
        for (y, x) in [
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 0),
            (1, 2),
            (2, 0),
            (2, 1),
            (2, 2),
        ] {
            m[y * side + x] = 1.0;
        }
        m[4 * side + 4] = 1.0;
        m[5 * side + 5] = 1.0;
        assert!(fill_holes(&mut m, side, 2));
        assert_eq!(m[side + 1], 0.1, "the hole is filled");
        assert_eq!(
            m[4 * side + 4],
            -0.1,
            "the diagonal speck is one component of 2"
        );
        assert_eq!(m[5 * side + 5], -0.1);
        assert_eq!(m[0], 1.0, "the ring (9 pixels) stays");
        assert_eq!(m[3 * side + 3], -1.0, "the large background stays");
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_masks() {
        let a = vec![true, true, false, false];
        let b = vec![true, true, true, false];
        let c = vec![false, false, false, true];
        let masks = [a, b, c];
        let probs = [0.6, 0.9, 0.7];
        let keep = nms(&probs, &|q| masks[q].clone(), 0.5, 0.5);
        assert_eq!(keep, vec![false, true, true]);
        let ious = iou_matrix(&masks[..1], &masks[1..2]);
        assert!((ious[0][0] - 2.0 / 3.0).abs() < 1e-6);
    }
}
