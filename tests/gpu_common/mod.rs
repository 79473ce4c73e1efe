//! Frames of every layout and mask logits for comparing the CUDA kernels with
//! their CPU twins; shared by tests/gpu_kernels.rs and examples/gpu_check.rs.
#![allow(dead_code)]

use std::path::Path;

use samclipseg::image::file::OwnedImage;
use samclipseg::image::frame::{Frame, PackedLayout, Pixels, Plane, YuvMatrix};
use samclipseg::image::resize::resize_rgb8_antialias;

/// A small deterministic generator (xorshift32), so failures reproduce.
pub struct Rng(u32);

impl Rng {
    pub fn new(seed: u32) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    pub fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (self.next() >> 8) as f32 / (1u32 << 24) as f32 * (hi - lo)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Packed(PackedLayout),
    I420,
    Nv12,
}

impl Layout {
    pub fn name(self) -> String {
        match self {
            Layout::Packed(l) => format!("{l:?}").to_uppercase(),
            Layout::I420 => "I420".into(),
            Layout::Nv12 => "NV12".into(),
        }
    }
}

/// The layouts the issue names, then the others the CPU path reads.
pub const MAIN_LAYOUTS: [Layout; 6] = [
    Layout::Packed(PackedLayout::Rgba),
    Layout::Packed(PackedLayout::Bgra),
    Layout::Packed(PackedLayout::Rgbx),
    Layout::Packed(PackedLayout::Bgrx),
    Layout::Nv12,
    Layout::I420,
];

pub const OTHER_LAYOUTS: [Layout; 7] = [
    Layout::Packed(PackedLayout::Rgb),
    Layout::Packed(PackedLayout::Bgr),
    Layout::Packed(PackedLayout::Argb),
    Layout::Packed(PackedLayout::Abgr),
    Layout::Packed(PackedLayout::Xrgb),
    Layout::Packed(PackedLayout::Xbgr),
    Layout::Packed(PackedLayout::Ayuv),
];

/// An owned frame buffer: one plane (packed) or three / two (I420 / NV12),
/// each with its own stride, padding filled with noise.
pub struct OwnedFrame {
    pub width: usize,
    pub height: usize,
    pub layout: Layout,
    pub matrix: YuvMatrix,
    pub planes: Vec<(Vec<u8>, usize)>,
}

fn rgb_to_yuv(p: &[u8], m: YuvMatrix) -> [u8; 3] {
    // Limited range; exactness does not matter, both paths read the same bytes.
    let (kr, kb) = match m {
        YuvMatrix::Bt601 => (0.299, 0.114),
        YuvMatrix::Bt709 => (0.2126, 0.0722),
    };
    let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
    let y = kr * r + (1.0 - kr - kb) * g + kb * b;
    let u = (b - y) / (2.0 * (1.0 - kb));
    let v = (r - y) / (2.0 * (1.0 - kr));
    let q = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    [
        q(16.0 + y * 219.0 / 255.0),
        q(128.0 + u * 224.0 / 255.0),
        q(128.0 + v * 224.0 / 255.0),
    ]
}

impl OwnedFrame {
    /// `rgb` (tightly packed, width x height) in `layout`; every row gets `pad`
    /// extra bytes of noise, and padding or x bytes are noise too.
    pub fn from_rgb(
        rgb: &[u8],
        width: usize,
        height: usize,
        layout: Layout,
        pad: usize,
        matrix: YuvMatrix,
        rng: &mut Rng,
    ) -> OwnedFrame {
        let noise = |len: usize, rng: &mut Rng| (0..len).map(|_| rng.byte()).collect::<Vec<u8>>();
        let px = |x: usize, y: usize| &rgb[(y * width + x) * 3..(y * width + x) * 3 + 3];
        let planes = match layout {
            Layout::Packed(l) => {
                let bpp = l.bytes_per_pixel();
                let stride = width * bpp + pad;
                let mut data = noise(stride * height, rng);
                let offs = l.channel_offsets();
                for y in 0..height {
                    for x in 0..width {
                        let o = y * stride + x * bpp;
                        let vals = if l == PackedLayout::Ayuv {
                            rgb_to_yuv(px(x, y), matrix)
                        } else {
                            [px(x, y)[0], px(x, y)[1], px(x, y)[2]]
                        };
                        for c in 0..3 {
                            data[o + offs[c]] = vals[c];
                        }
                    }
                }
                vec![(data, stride)]
            }
            Layout::I420 | Layout::Nv12 => {
                let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
                let ys = width + pad;
                let mut yp = noise(ys * height, rng);
                for y in 0..height {
                    for x in 0..width {
                        yp[y * ys + x] = rgb_to_yuv(px(x, y), matrix)[0];
                    }
                }
                // Chroma from the top-left pixel of each 2x2 block.
                let chroma = |x: usize, y: usize| {
                    let [_, u, v] = rgb_to_yuv(px(2 * x, 2 * y), matrix);
                    (u, v)
                };
                if layout == Layout::I420 {
                    let cs = cw + pad / 2 + 1;
                    let (mut u, mut v) = (noise(cs * ch, rng), noise(cs * ch, rng));
                    for y in 0..ch {
                        for x in 0..cw {
                            (u[y * cs + x], v[y * cs + x]) = chroma(x, y);
                        }
                    }
                    vec![(yp, ys), (u, cs), (v, cs)]
                } else {
                    let cs = cw * 2 + pad;
                    let mut uv = noise(cs * ch, rng);
                    for y in 0..ch {
                        for x in 0..cw {
                            (uv[y * cs + 2 * x], uv[y * cs + 2 * x + 1]) = chroma(x, y);
                        }
                    }
                    vec![(yp, ys), (uv, cs)]
                }
            }
        };
        OwnedFrame {
            width,
            height,
            layout,
            matrix,
            planes,
        }
    }

    pub fn frame(&self) -> Frame<'_> {
        let p = |i: usize| Plane {
            data: &self.planes[i].0,
            stride: self.planes[i].1,
        };
        let pixels = match self.layout {
            Layout::Packed(layout) => Pixels::Packed {
                plane: p(0),
                layout,
            },
            Layout::I420 => Pixels::I420 {
                y: p(0),
                u: p(1),
                v: p(2),
            },
            Layout::Nv12 => Pixels::Nv12 { y: p(0), uv: p(1) },
        };
        Frame {
            width: self.width,
            height: self.height,
            pixels,
            matrix: self.matrix,
        }
    }
}

pub fn random_rgb(width: usize, height: usize, rng: &mut Rng) -> Vec<u8> {
    (0..width * height * 3).map(|_| rng.byte()).collect()
}

/// A photo from the fixtures, resized to width x height (as tight RGB).
pub fn photo_rgb(path: &Path, width: usize, height: usize) -> Vec<u8> {
    let img = OwnedImage::open(path).unwrap_or_else(|e| panic!("{e}"));
    resize_rgb8_antialias(
        img.width,
        img.height,
        |y, row| {
            let src = &img.rgba[y * img.width * 4..(y + 1) * img.width * 4];
            for (o, p) in row.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
                o.copy_from_slice(&p[..3]);
            }
        },
        width,
        height,
    )
}

/// `n` masks of logits, mw x mh: smooth blobs (as a decoder gives) plus noise,
/// so that thresholds cross everywhere.
pub fn mask_logits(n: usize, mw: usize, mh: usize, rng: &mut Rng) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * mw * mh);
    for _ in 0..n {
        let (cx, cy, r) = (
            rng.range(0.0, mw as f32),
            rng.range(0.0, mh as f32),
            rng.range(2.0, (mw.min(mh) as f32 / 2.0).max(2.5)),
        );
        for y in 0..mh {
            for x in 0..mw {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                out.push((r - d) * 0.8 + rng.range(-2.0, 2.0));
            }
        }
    }
    out
}

/// (largest absolute difference, number of differing elements).
pub fn diff_f32(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).fold((0.0f32, 0), |(m, n), (x, y)| {
        let d = (x - y).abs();
        (m.max(d), n + (x.to_bits() != y.to_bits()) as usize)
    })
}

pub fn diff_u8(a: &[u8], b: &[u8]) -> (u8, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).fold((0u8, 0), |(m, n), (x, y)| {
        (m.max(x.abs_diff(*y)), n + (x != y) as usize)
    })
}
