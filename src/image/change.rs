//! Is the picture still? A cheap signature of each frame (mean luma over a
//! coarse grid) compared with that of the last frame the image encoder saw.
//!
//! Block means average sensor noise away (a 1080p frame gives blocks of ~5,000
//! pixels, so noise of sigma 5 moves a block mean by ~0.07), while anything
//! that moves changes whole blocks by many levels. The test is the largest
//! block difference, so one small moving object is enough to count as change.

use crate::image::frame::Frame;

/// Grid of the signature; fine enough that a person at 1/16 of the width fills a block.
const GRID_W: usize = 32;
const GRID_H: usize = 18;

#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    blocks: Vec<f32>,
    width: usize,
    height: usize,
}

impl Signature {
    /// Mean luma (BT.601 weights, 0-255) per grid block.
    pub fn of(frame: &Frame) -> Signature {
        let (w, h) = (frame.width, frame.height);
        let gw = GRID_W.min(w);
        let gh = GRID_H.min(h);
        let mut sums = vec![0f64; gw * gh];
        let mut counts = vec![0u32; gw * gh];
        let mut row = vec![0u8; w * 3];
        // Every other row and column: a quarter of the work, the same averages for all practical purposes.
        let step = if w * h > 640 * 360 { 2 } else { 1 };
        for y in (0..h).step_by(step) {
            frame.rgb_row(y, &mut row);
            let by = y * gh / h;
            for x in (0..w).step_by(step) {
                let p = &row[x * 3..x * 3 + 3];
                let luma = 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
                let b = by * gw + x * gw / w;
                sums[b] += luma;
                counts[b] += 1;
            }
        }
        let blocks = sums
            .iter()
            .zip(&counts)
            .map(|(s, c)| {
                if *c == 0 {
                    0.0
                } else {
                    (*s / *c as f64) as f32
                }
            })
            .collect();
        Signature {
            blocks,
            width: w,
            height: h,
        }
    }

    /// Largest difference of one block's mean luma, in levels; infinite when
    /// the frame size changed.
    pub fn distance(&self, other: &Signature) -> f32 {
        if self.width != other.width
            || self.height != other.height
            || self.blocks.len() != other.blocks.len()
        {
            return f32::INFINITY;
        }
        self.blocks
            .iter()
            .zip(&other.blocks)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::frame::PackedLayout;

    /// A deterministic textured scene, optionally with noise and a moving square.
    fn scene(w: usize, h: usize, noise_seed: u32, square_x: Option<usize>) -> Vec<u8> {
        let mut state = noise_seed.wrapping_mul(2654435761).wrapping_add(1);
        let mut noise = || {
            // xorshift; roughly uniform in [-8, 8]: sigma about 5 levels.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            ((state % 17) as i32) - 8
        };
        let mut data = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let base = (((x / 7) * 13 + (y / 5) * 29) % 200 + 30) as i32;
                let inside = square_x.is_some_and(|sx| {
                    x >= sx && x < sx + w / 16 && y >= h / 3 && y < h / 3 + h / 8
                });
                let v = if inside { 250 } else { base };
                let n = if noise_seed == 0 { 0 } else { noise() };
                for c in 0..3 {
                    data[(y * w + x) * 3 + c] = (v + n).clamp(0, 255) as u8;
                }
            }
        }
        data
    }

    fn sig(data: &[u8], w: usize, h: usize) -> Signature {
        Signature::of(&Frame::packed(data, w, h, w * 3, PackedLayout::Rgb).unwrap())
    }

    #[test]
    fn sensor_noise_on_a_still_scene_counts_as_still() {
        let (w, h) = (640, 360);
        let a = sig(&scene(w, h, 1, None), w, h);
        let b = sig(&scene(w, h, 2, None), w, h);
        let d = a.distance(&b);
        assert!(d < 1.5, "noise moved a block by {d} levels");
    }

    #[test]
    fn a_small_moving_object_counts_as_change() {
        let (w, h) = (640, 360);
        let a = sig(&scene(w, h, 1, Some(100)), w, h);
        let b = sig(&scene(w, h, 2, Some(140)), w, h);
        let d = a.distance(&b);
        assert!(
            d > 10.0,
            "a moving square changed a block by only {d} levels"
        );
    }

    #[test]
    fn size_change_is_always_change() {
        let a = sig(&scene(64, 36, 0, None), 64, 36);
        let b = sig(&scene(32, 18, 0, None), 32, 18);
        assert!(a.distance(&b).is_infinite());
        assert_eq!(a.distance(&a), 0.0);
    }

    #[test]
    fn tiny_frames_have_a_signature() {
        let a = sig(&[9, 9, 9], 1, 1);
        assert_eq!(a.distance(&a), 0.0);
    }
}
