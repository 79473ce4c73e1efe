//! The rules of SAM 3's streaming step that decide, from masks and scores,
//! which detections are new, which tracks matched, and which tracked masks
//! are suppressed (transformers' `Sam3VideoModel`; docs/video-tracker.md,
//! steps 4 and 8). Each keeps transformers' quirks, said where they are.

use super::masks::{binary, iou_matrix};
use crate::model::bundle::TrackerSpec;

/// What a suppressed or shrunk mask is set to before memory encoding.
pub(crate) const NO_OBJ_LOGIT: f32 = -10.0;
/// `last_occluded` of an object never occluded.
pub(crate) const NEVER_OCCLUDED: i64 = -1;

/// `_associate_det_trk`'s answer.
#[derive(Debug, Default)]
pub(crate) struct Association {
    /// Detections that become new objects, ascending.
    pub new: Vec<usize>,
    /// Non-empty tracks no detection reaches at `trk_assoc_iou_thresh`.
    pub unmatched: Vec<usize>,
    /// Tracks some detection reaches at `assoc_iou_thresh` (many-to-one).
    pub matched: Vec<usize>,
    /// Reconditioning candidates: (track, detection), in first-seen order
    /// of the track; a later detection replaces an earlier one.
    pub high_conf: Vec<(usize, usize)>,
    /// Tracks whose mask is empty.
    pub empty: Vec<usize>,
}

/// A detection of this frame: a prompt's query that survived NMS.
pub(crate) struct Detection {
    pub mask: Vec<f32>,
    pub score: f32,
    pub prompt: usize,
}

/// `_associate_det_trk` over masks > 0, IoU zeroed across prompts. Tracks
/// are given by index (creation order).
pub(crate) fn associate(
    dets: &[Detection],
    tracks: &[Vec<f32>],
    track_prompts: &[usize],
    t: &TrackerSpec,
) -> Association {
    if tracks.is_empty() {
        // transformers: with no tracks at all EVERY detection is new,
        // whatever its score (new_det_thresh is not applied).
        return Association {
            new: (0..dets.len()).collect(),
            ..Default::default()
        };
    }
    let nonempty: Vec<bool> = tracks
        .iter()
        .map(|m| super::masks::any_positive(m))
        .collect();
    let empty: Vec<usize> = (0..tracks.len()).filter(|&k| !nonempty[k]).collect();
    if dets.is_empty() {
        return Association {
            unmatched: (0..tracks.len()).filter(|&k| nonempty[k]).collect(),
            empty,
            ..Default::default()
        };
    }
    let det_bin: Vec<Vec<bool>> = dets.iter().map(|d| binary(&d.mask)).collect();
    let trk_bin: Vec<Vec<bool>> = tracks.iter().map(|m| binary(m)).collect();
    let mut ious = iou_matrix(&det_bin, &trk_bin);
    for (d, row) in ious.iter_mut().enumerate() {
        for (k, v) in row.iter_mut().enumerate() {
            if dets[d].prompt != track_prompts[k] {
                *v = 0.0;
            }
        }
    }
    let trk_matched: Vec<bool> = (0..tracks.len())
        .map(|k| ious.iter().any(|row| row[k] >= t.trk_assoc_iou_thresh))
        .collect();
    let unmatched = (0..tracks.len())
        .filter(|&k| nonempty[k] && !trk_matched[k])
        .collect();
    let mut a = Association {
        unmatched,
        empty,
        ..Default::default()
    };
    let mut matched = vec![false; tracks.len()];
    for (d, row) in ious.iter().enumerate() {
        let reaches_any = row.iter().any(|v| *v >= t.assoc_iou_thresh);
        let is_new = dets[d].score >= t.new_det_thresh && !reaches_any;
        if is_new {
            a.new.push(d);
        }
        for (k, v) in row.iter().enumerate() {
            if *v >= t.assoc_iou_thresh {
                matched[k] = true;
            }
        }
        // argmax: the first best track
        let (best, best_iou) =
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |acc, (k, v)| {
                    if *v > acc.1 { (k, *v) } else { acc }
                });
        if dets[d].score >= t.high_conf_thresh && !is_new && best_iou >= t.high_iou_thresh {
            match a.high_conf.iter_mut().find(|(k, _)| *k == best) {
                Some(entry) => entry.1 = d,
                None => a.high_conf.push((best, d)),
            }
        }
    }
    a.matched = (0..tracks.len()).filter(|&k| matched[k]).collect();
    a
}

/// `_suppress_overlapping_based_on_recent_occlusion`, per prompt: of two
/// masks with IoU >= the threshold, the one occluded more recently is set to
/// [`NO_OBJ_LOGIT`] in place (transformers changes the tracked masks
/// themselves, so the outputs see it too). As written in transformers, each
/// side's test checks that the OTHER object was ever occluded. Returns every
/// object's new last-occluded frame (`f` where its mask was empty or is
/// suppressed) and how many were suppressed.
pub(crate) fn suppress_recently_occluded(
    f: i64,
    masks: &mut [Vec<f32>],
    last_occluded: &[i64],
    prompts: &[usize],
    threshold: f32,
) -> (Vec<i64>, usize) {
    let n = masks.len();
    let bins: Vec<Vec<bool>> = masks.iter().map(|m| binary(m)).collect();
    let mut suppress = vec![false; n];
    for group in groups(prompts) {
        if group.len() <= 1 {
            continue;
        }
        let sub: Vec<Vec<bool>> = group.iter().map(|&i| bins[i].clone()).collect();
        let iou = iou_matrix(&sub, &sub);
        for a in 0..group.len() {
            for b in a + 1..group.len() {
                if iou[a][b] < threshold {
                    continue;
                }
                let (la, lb) = (last_occluded[group[a]], last_occluded[group[b]]);
                if la > lb && lb > NEVER_OCCLUDED {
                    suppress[group[a]] = true;
                }
                if lb > la && la > NEVER_OCCLUDED {
                    suppress[group[b]] = true;
                }
            }
        }
    }
    let mut last = last_occluded.to_vec();
    for i in 0..n {
        let occluded = !bins[i].iter().any(|v| *v);
        if occluded || suppress[i] {
            last[i] = f;
        }
        if suppress[i] {
            masks[i].fill(NO_OBJ_LOGIT);
        }
    }
    (last, suppress.iter().filter(|s| **s).count())
}

/// `_suppress_object_pw_area_shrinkage` per prompt: every pixel goes to the
/// object with the highest logit (the first on ties); an object that keeps
/// less than 30% of its area is clamped to at most [`NO_OBJ_LOGIT`].
/// Returns how many were clamped.
pub(crate) fn area_shrinkage(masks: &mut [Vec<f32>], prompts: &[usize]) -> usize {
    let mut clamped = Vec::new();
    for group in groups(prompts) {
        if group.len() <= 1 {
            continue;
        }
        // per pixel the best value and its object (index in the group)
        let mut best_value = masks[group[0]].clone();
        let mut best = vec![0usize; best_value.len()];
        for (g, &i) in group.iter().enumerate().skip(1) {
            for ((bv, b), v) in best_value.iter_mut().zip(best.iter_mut()).zip(&masks[i]) {
                if *v > *bv {
                    *bv = *v;
                    *b = g;
                }
            }
        }
        let mut kept = vec![0usize; group.len()];
        for (bv, b) in best_value.iter().zip(&best) {
            if *bv > 0.0 {
                kept[*b] += 1;
            }
        }
        for (g, &i) in group.iter().enumerate() {
            let before = masks[i].iter().filter(|v| **v > 0.0).count().max(1);
            // `before` >= 1: never NaN
            let ratio = kept[g] as f64 / before as f64;
            if ratio < 0.3 {
                clamped.push(i);
            }
        }
    }
    for &i in &clamped {
        for v in masks[i].iter_mut() {
            *v = v.min(NO_OBJ_LOGIT);
        }
    }
    clamped.len()
}

/// Indices grouped by prompt, prompts ascending (numpy's `unique`).
fn groups(prompts: &[usize]) -> Vec<Vec<usize>> {
    let mut ids: Vec<usize> = prompts.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.iter()
        .map(|p| (0..prompts.len()).filter(|&i| prompts[i] == *p).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_more_recently_occluded_of_two_overlapping_masks_is_suppressed() {
        let mut masks = vec![vec![1.0, 1.0, -1.0], vec![1.0, 1.0, 1.0], vec![-1.0; 3]];
        // 0 occluded at 5, 1 at 3: 0 is suppressed; 2 is empty (occluded now).
        let (last, n) = suppress_recently_occluded(9, &mut masks, &[5, 3, -1], &[0, 0, 0], 0.5);
        assert_eq!(n, 1);
        assert_eq!(masks[0], vec![NO_OBJ_LOGIT; 3]);
        assert_eq!(last, vec![9, 3, 9]);
        // As written in transformers: nothing if the other was never occluded.
        let mut masks = vec![vec![1.0, 1.0, -1.0], vec![1.0, 1.0, 1.0]];
        let (_, n) = suppress_recently_occluded(9, &mut masks, &[5, -1], &[0, 0], 0.5);
        assert_eq!(n, 0);
    }

    #[test]
    fn an_object_losing_most_of_its_area_is_clamped() {
        let mut masks = vec![vec![2.0, 2.0, 2.0, 2.0], vec![1.0, 1.0, 1.0, 3.0]];
        assert_eq!(area_shrinkage(&mut masks, &[0, 0]), 1);
        assert_eq!(masks[0], vec![2.0; 4]);
        assert_eq!(masks[1], vec![NO_OBJ_LOGIT; 4]);
        // other prompts do not compete
        let mut masks = vec![vec![2.0, 2.0], vec![1.0, 1.0]];
        assert_eq!(area_shrinkage(&mut masks, &[0, 1]), 0);
    }
}
