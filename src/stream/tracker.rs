//! Stable instance ids across frames: each frame's instances are matched to
//! the live tracks of the same phrase by mask IoU; a track survives up to
//! `patience` frames without a match. Optional temporal smoothing blends each
//! tracked mask with its history to stop edge flicker.

use crate::image::postprocess::{Instance, Mask};

/// Below this IoU an instance is not the same object as a track.
const MIN_IOU: f32 = 0.3;

struct Track {
    id: u64,
    phrase: String,
    mask: Mask,
    /// Running blend of the mask (0-255 per pixel), when smoothing is on.
    blend: Option<Vec<u8>>,
    missed: u32,
}

pub struct Tracker {
    /// Frames a track may go unmatched before its id is retired.
    pub patience: u32,
    /// 0 = off; towards 1 = masks follow changes more slowly.
    pub smoothing: f32,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    pub fn new(patience: u32, smoothing: f32) -> Tracker {
        Tracker {
            patience,
            smoothing,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    /// The ids the tracker holds: those just seen and those absent for up to
    /// `patience` results. An id missing here is gone for good.
    pub fn live_ids(&self) -> Vec<u64> {
        self.tracks.iter().map(|t| t.id).collect()
    }

    /// Sets each instance's `id` (also returned, in the same order) and, with
    /// smoothing on, replaces each tracked mask by its blend. One call per new
    /// model result: `patience` counts results, not frames.
    pub fn update(&mut self, instances: &mut [Instance]) -> Vec<u64> {
        let mut ids = vec![0u64; instances.len()];
        let mut pairs = Vec::new();
        for (i, inst) in instances.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                if track.phrase == inst.label {
                    let iou = mask_iou(&inst.mask, &track.mask);
                    if iou >= MIN_IOU {
                        pairs.push((iou, i, t));
                    }
                }
            }
        }
        // Greedy, best overlap first: good enough for the handful of objects per phrase.
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut inst_done = vec![false; instances.len()];
        let mut track_done = vec![false; self.tracks.len()];
        for (_, i, t) in pairs {
            if inst_done[i] || track_done[t] {
                continue;
            }
            inst_done[i] = true;
            track_done[t] = true;
            ids[i] = self.tracks[t].id;
        }
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if !track_done[t] {
                track.missed += 1;
            }
        }
        let patience = self.patience;
        let mut kept = Vec::with_capacity(self.tracks.len());
        for (t, track) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            if track_done[t] || track.missed <= patience {
                kept.push(track);
            }
        }
        self.tracks = kept;
        for (i, inst) in instances.iter_mut().enumerate() {
            if !inst_done[i] {
                ids[i] = self.next_id;
                self.next_id += 1;
                self.tracks.push(Track {
                    id: ids[i],
                    phrase: inst.label.clone(),
                    mask: inst.mask.clone(),
                    blend: None,
                    missed: 0,
                });
            }
            inst.id = ids[i];
            let Some(track) = self.tracks.iter_mut().find(|t| t.id == ids[i]) else {
                continue;
            };
            track.missed = 0;
            if self.smoothing > 0.0 {
                smooth_into(track, &mut inst.mask, self.smoothing);
            }
            track.mask = inst.mask.clone();
        }
        ids
    }
}

/// blend = s * blend + (1 - s) * mask; the reported mask is blend > half.
fn smooth_into(track: &mut Track, mask: &mut Mask, s: f32) {
    let blend = match &mut track.blend {
        Some(b) if b.len() == mask.data.len() => b,
        _ => {
            track.blend = Some(mask.data.clone());
            return;
        }
    };
    for (b, m) in blend.iter_mut().zip(mask.data.iter_mut()) {
        *b = (s * *b as f32 + (1.0 - s) * *m as f32).round() as u8;
        *m = if *b > 127 { 255 } else { 0 };
    }
}

/// Intersection over union of two masks of the same size (0 otherwise),
/// counted only where their extents overlap.
pub fn mask_iou(a: &Mask, b: &Mask) -> f32 {
    if a.width != b.width || a.height != b.height {
        return 0.0;
    }
    let (Some(ea), Some(eb)) = (a.extent(), b.extent()) else {
        return 0.0;
    };
    let (x0, y0) = (ea.0.max(eb.0), ea.1.max(eb.1));
    let (x1, y1) = (
        (ea.0 + ea.2).min(eb.0 + eb.2),
        (ea.1 + ea.3).min(eb.1 + eb.3),
    );
    let mut inter = 0usize;
    if x0 < x1 && y0 < y1 {
        for y in y0..y1 {
            let ra = &a.data[y * a.width + x0..y * a.width + x1];
            let rb = &b.data[y * b.width + x0..y * b.width + x1];
            inter += ra
                .iter()
                .zip(rb)
                .filter(|(p, q)| **p != 0 && **q != 0)
                .count();
        }
    }
    let union = a.area() + b.area() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f32 / union as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(label: &str, x: usize, size: usize) -> Instance {
        let (w, h) = (64, 32);
        let mut data = vec![0u8; w * h];
        for y in 8..8 + size {
            for xx in x..x + size {
                data[y * w + xx] = 255;
            }
        }
        Instance {
            label: label.into(),
            id: 0,
            prompt_index: 0,
            query: 0,
            score: 0.9,
            bbox: [0.0; 4],
            mask: Mask {
                width: w,
                height: h,
                data,
            },
        }
    }

    #[test]
    fn ids_follow_a_moving_object_and_expire_after_patience() {
        let mut t = Tracker::new(2, 0.0);
        let first = t.update(&mut [square("cat", 2, 10), square("dog", 40, 10)]);
        assert_eq!(first, [1, 2]);
        // Moved 2 px per frame: same ids, also when listed in another order.
        let next = t.update(&mut [square("dog", 42, 10), square("cat", 4, 10)]);
        assert_eq!(next, [2, 1]);
        // Same place, other phrase: not the same object.
        assert_eq!(t.update(&mut [square("bird", 4, 10)]), [3]);
        // The cat is gone for 2 frames (patience 2), then back: same id.
        t.update(&mut []);
        assert_eq!(t.update(&mut [square("cat", 4, 10)]), [1]);
        // Gone for 3 frames: a new id.
        for _ in 0..3 {
            t.update(&mut []);
        }
        assert_eq!(t.update(&mut [square("cat", 4, 10)]), [4]);
        assert_eq!(t.live_ids(), [4]);
    }

    #[test]
    fn smoothing_damps_a_one_frame_flicker() {
        let mut t = Tracker::new(5, 0.7);
        t.update(&mut [square("cat", 10, 12)]);
        let mut flicker = [square("cat", 10, 10)];
        t.update(&mut flicker);
        assert_eq!(
            flicker[0].mask,
            square("cat", 10, 12).mask,
            "a two-pixel shrink for one frame is smoothed away"
        );
        assert!(
            (mask_iou(&square("a", 0, 10).mask, &square("a", 5, 10).mask) - 50.0 / 150.0).abs()
                < 1e-6
        );
    }
}
