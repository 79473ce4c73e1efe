//! Decoder outputs to instances, as `Sam3Processor.post_process_instance_segmentation`:
//! score = sigmoid(logit) x sigmoid(presence); keep score > threshold; masks:
//! sigmoid, bilinear up-sampling to the image size, then > mask_threshold.
//! Then, beyond the reference: optional closing, sorting by score, a cap.

use imageproc::distance_transform::Norm;

use crate::image::resize::resize_plane_bilinear;

#[derive(Debug, Clone, PartialEq)]
pub struct PostprocessOptions {
    /// Instances need a score above this (0-1).
    pub threshold: f32,
    /// Mask pixels need a probability above this.
    pub mask_threshold: f32,
    /// Odd kernel size of a morphological closing of each mask; 1 = off.
    pub smoothness: u32,
    /// Keep at most this many instances per prompt (highest scores); 0 = no cap.
    pub max_instances: usize,
}

impl Default for PostprocessOptions {
    fn default() -> Self {
        PostprocessOptions {
            threshold: 0.5,
            mask_threshold: 0.5,
            smoothness: 1,
            max_instances: 0,
        }
    }
}

/// A binary mask at image resolution: 255 inside, 0 outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Mask {
    pub fn area(&self) -> usize {
        self.data.iter().filter(|v| **v != 0).count()
    }

    /// The smallest rectangle (x, y, w, h) holding every set pixel.
    pub fn extent(&self) -> Option<(usize, usize, usize, usize)> {
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for (y, row) in self.data.chunks_exact(self.width).enumerate() {
            if let (Some(a), Some(b)) = (
                row.iter().position(|v| *v != 0),
                row.iter().rposition(|v| *v != 0),
            ) {
                x0 = x0.min(a);
                x1 = x1.max(b);
                y0 = y0.min(y);
                y1 = y;
            }
        }
        (x0 != usize::MAX).then(|| (x0, y0, x1 - x0 + 1, y1 - y0 + 1))
    }

    /// The mask inside the rectangle (x, y, w, h), clipped to the image.
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Mask {
        let x = x.min(self.width);
        let y = y.min(self.height);
        let w = w.min(self.width - x);
        let h = h.min(self.height - y);
        let mut data = Vec::with_capacity(w * h);
        for row in self.data.chunks_exact(self.width).skip(y).take(h) {
            data.extend_from_slice(&row[x..x + w]);
        }
        Mask {
            width: w,
            height: h,
            data,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The prompt this instance answers.
    pub label: String,
    /// Stable id across a stream's frames (see `stream::Tracker`); 0 = not tracked.
    pub id: u64,
    /// Index of that prompt in the request.
    pub prompt_index: usize,
    /// The decoder query it came from.
    pub query: usize,
    pub score: f32,
    /// (x1, y1, x2, y2) in image pixels, as the model predicts it (not clipped).
    pub bbox: [f32; 4],
    pub mask: Mask,
}

/// One prompt's decoder outputs, borrowed from the batch.
pub struct QueryOutputs<'a> {
    pub logits: &'a [f32],
    pub boxes: &'a [f32],
    pub masks: &'a [f32],
    pub mask_size: (usize, usize),
    pub presence_logit: f32,
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Scores of every query: sigmoid(logit) x sigmoid(presence).
pub fn query_scores(q: &QueryOutputs) -> Vec<f32> {
    let presence = sigmoid(q.presence_logit);
    q.logits.iter().map(|l| sigmoid(*l) * presence).collect()
}

/// The queries that become instances: score above the threshold, best first,
/// the best `max_instances` of them when capped. Also decides which masks the
/// device path copies back, so both keep the same queries.
pub fn kept_queries(scores: &[f32], opts: &PostprocessOptions) -> Vec<usize> {
    let mut kept: Vec<usize> = (0..scores.len())
        .filter(|&i| scores[i] > opts.threshold)
        .collect();
    kept.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    if opts.max_instances > 0 {
        kept.truncate(opts.max_instances);
    }
    kept
}

pub fn instances(
    q: &QueryOutputs,
    label: &str,
    prompt_index: usize,
    image_size: (usize, usize),
    opts: &PostprocessOptions,
) -> Vec<Instance> {
    let (w, h) = image_size;
    let (mw, mh) = q.mask_size;
    let scores = query_scores(q);
    kept_queries(&scores, opts)
        .into_iter()
        .map(|i| {
            let mask = smooth(
                mask_from_logits(
                    &q.masks[i * mw * mh..(i + 1) * mw * mh],
                    (mw, mh),
                    (w, h),
                    opts.mask_threshold,
                ),
                opts.smoothness,
            );
            let b = &q.boxes[i * 4..i * 4 + 4];
            Instance {
                label: label.to_string(),
                id: 0,
                prompt_index,
                query: i,
                score: scores[i],
                bbox: [
                    b[0] * w as f32,
                    b[1] * h as f32,
                    b[2] * w as f32,
                    b[3] * h as f32,
                ],
                mask,
            }
        })
        .collect()
}

/// One query's mask logits (`mask_size` = (width, height)) to a binary mask at
/// `image_size`: sigmoid, bilinear up-sampling, `> mask_threshold`. The CPU
/// twin of `gpu::GpuKernels::masks_from_logits`.
pub fn mask_from_logits(
    logits: &[f32],
    mask_size: (usize, usize),
    image_size: (usize, usize),
    mask_threshold: f32,
) -> Mask {
    let ((mw, mh), (w, h)) = (mask_size, image_size);
    let probs: Vec<f32> = logits[..mw * mh].iter().map(|v| sigmoid(*v)).collect();
    let data = resize_plane_bilinear(&probs, mw, mh, w, h)
        .iter()
        .map(|p| if *p > mask_threshold { 255 } else { 0 })
        .collect();
    Mask {
        width: w,
        height: h,
        data,
    }
}

/// Morphological closing (dilate, then erode) with a square kernel: fills
/// pin-holes and notches smaller than the kernel without growing the mask.
pub fn smooth(mask: Mask, kernel: u32) -> Mask {
    if kernel <= 1 || mask.data.len() != mask.width * mask.height {
        return mask;
    }
    let radius = (kernel / 2).min(255) as u8;
    let (width, height) = (mask.width, mask.height);
    let Some(img) = image::GrayImage::from_raw(width as u32, height as u32, mask.data) else {
        return Mask {
            width,
            height,
            data: Vec::new(),
        };
    };
    let closed = imageproc::morphology::close(&img, Norm::LInf, radius);
    Mask {
        width,
        height,
        data: closed.into_raw(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs<'a>(
        logits: &'a [f32],
        boxes: &'a [f32],
        masks: &'a [f32],
        presence: f32,
    ) -> QueryOutputs<'a> {
        QueryOutputs {
            logits,
            boxes,
            masks,
            mask_size: (2, 2),
            presence_logit: presence,
        }
    }

    #[test]
    fn nothing_above_threshold_gives_no_instance() {
        let q = outputs(&[-3.0, 0.0], &[0.0; 8], &[1.0; 8], 10.0);
        assert!(instances(&q, "cat", 0, (10, 10), &PostprocessOptions::default()).is_empty());
    }

    #[test]
    fn presence_gates_every_query() {
        let q = outputs(&[5.0, 4.0], &[0.0; 8], &[1.0; 8], -5.0);
        assert!(instances(&q, "cat", 0, (10, 10), &PostprocessOptions::default()).is_empty());
    }

    #[test]
    fn kept_instances_are_sorted_capped_and_scaled() {
        let boxes = [0.1, 0.2, 0.5, 0.6, 0.0, 0.0, 1.0, 1.0];
        let masks = [5.0, -5.0, 5.0, -5.0, 5.0, 5.0, 5.0, 5.0];
        let q = outputs(&[2.0, 4.0], &boxes, &masks, 10.0);
        let all = instances(&q, "cat", 3, (20, 10), &PostprocessOptions::default());
        assert_eq!(all.iter().map(|i| i.query).collect::<Vec<_>>(), vec![1, 0]);
        assert_eq!(all[1].bbox, [2.0, 2.0, 10.0, 6.0]);
        assert_eq!(all[0].mask.area(), 200);
        // Left column set in the 2x2 logits -> the left half of a 20x10 mask.
        assert_eq!(all[1].mask.extent(), Some((0, 0, 10, 10)));
        assert_eq!(all[1].prompt_index, 3);
        let capped = instances(
            &q,
            "cat",
            0,
            (20, 10),
            &PostprocessOptions {
                max_instances: 1,
                ..Default::default()
            },
        );
        assert_eq!(capped.len(), 1);
        assert_eq!(capped[0].query, 1);
    }

    #[test]
    fn closing_fills_a_pin_hole() {
        let mut data = vec![255u8; 49];
        data[24] = 0;
        let m = smooth(
            Mask {
                width: 7,
                height: 7,
                data,
            },
            3,
        );
        assert_eq!(m.area(), 49);
        let crop = m.crop(5, 5, 10, 10);
        assert_eq!((crop.width, crop.height), (2, 2));
    }
}
