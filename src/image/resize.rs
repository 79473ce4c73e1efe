//! Resampling that matches the reference bit for bit.
//!
//! Hand-written rather than `fast_image_resize` because parity matters more
//! than speed here: `Sam3ImageProcessor` resizes uint8 images with torchvision's
//! antialiased bilinear filter, which uses int16 weights whose precision depends
//! on the largest weight. Pillow-style resizers (fast_image_resize included)
//! differ from it by one level on a few pixels; this port is exact.

/// Taps of one output position: first input index and fixed-point weights.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

struct Kernel {
    taps: Vec<Taps>,
    precision: u32,
}

/// torch `_compute_index_ranges_weights` (antialiased bilinear) followed by
/// `_compute_index_ranges_int16_weights`.
fn antialias_kernel(in_size: usize, out_size: usize) -> Kernel {
    let scale = in_size as f64 / out_size as f64;
    let (support, inv_scale) = if scale >= 1.0 {
        (scale, 1.0 / scale)
    } else {
        (1.0, 1.0)
    };
    let mut float_taps = Vec::with_capacity(out_size);
    let mut max_w = 0.0f64;
    for i in 0..out_size {
        let center = scale * (i as f64 + 0.5);
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64)
            .min(in_size as i64)
            .max(xmin as i64) as usize;
        let mut w: Vec<f64> = (xmin..xmax)
            .map(|j| {
                let x = ((j as f64 - center + 0.5) * inv_scale).abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            })
            .collect();
        let total: f64 = w.iter().sum();
        if total != 0.0 {
            w.iter_mut().for_each(|v| *v /= total);
        }
        max_w = w.iter().copied().fold(max_w, f64::max);
        float_taps.push((xmin, w));
    }
    let mut precision = 0u32;
    while precision < 22 {
        if (0.5 + max_w * (1u64 << (precision + 1)) as f64) as i64 >= 1 << 15 {
            break;
        }
        precision += 1;
    }
    let unit = (1u64 << precision) as f64;
    let taps = float_taps
        .into_iter()
        .map(|(start, w)| Taps {
            start,
            weights: w
                .into_iter()
                .map(|v| {
                    let s = v * unit;
                    (if s < 0.0 { s - 0.5 } else { s + 0.5 }) as i16 as i32
                })
                .collect(),
        })
        .collect();
    Kernel { taps, precision }
}

/// One axis of the antialiased filter as flat tables, for the CUDA kernel
/// (`gpu::GpuKernels::preprocess`): output `i` reads `counts[i]` inputs from
/// `starts[i]` with `weights[i * max_taps..][..counts[i]]`, sums in integers
/// with a bias of `1 << (precision - 1)` and shifts right by `precision`,
/// clamped to 0-255. The same numbers [`resize_rgb8_antialias`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterTable {
    pub starts: Vec<i32>,
    pub counts: Vec<i32>,
    /// `out_size * max_taps` weights, zero-padded.
    pub weights: Vec<i32>,
    pub max_taps: usize,
    pub precision: u32,
}

/// The antialias filter from `in_size` to `out_size` samples. Equal sizes give
/// an identity filter (one weight of `1 << precision`), so a kernel needs no
/// special case where [`resize_rgb8_antialias`] skips a pass.
pub fn antialias_table(in_size: usize, out_size: usize) -> FilterTable {
    let k = antialias_kernel(in_size, out_size);
    let max_taps = k
        .taps
        .iter()
        .map(|t| t.weights.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut weights = vec![0i32; out_size * max_taps];
    for (i, t) in k.taps.iter().enumerate() {
        weights[i * max_taps..i * max_taps + t.weights.len()].copy_from_slice(&t.weights);
    }
    FilterTable {
        starts: k.taps.iter().map(|t| t.start as i32).collect(),
        counts: k.taps.iter().map(|t| t.weights.len() as i32).collect(),
        weights,
        max_taps,
        precision: k.precision,
    }
}

#[inline]
fn round_shift(acc: i64, precision: u32) -> u8 {
    (acc >> precision).clamp(0, 255) as u8
}

/// Resizes interleaved RGB8 rows (read through `row`) to `out_w` x `out_h`,
/// horizontal pass first, as torchvision does.
pub fn resize_rgb8_antialias(
    in_w: usize,
    in_h: usize,
    mut row: impl FnMut(usize, &mut [u8]),
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    let mut line = vec![0u8; in_w * 3];
    // Horizontal pass: in_h rows of out_w pixels (skipped when the width matches).
    let mut mid = vec![0u8; in_h * out_w * 3];
    let hk = (in_w != out_w).then(|| antialias_kernel(in_w, out_w));
    for y in 0..in_h {
        let dst = &mut mid[y * out_w * 3..(y + 1) * out_w * 3];
        match &hk {
            None => row(y, dst),
            Some(k) => {
                row(y, &mut line);
                let bias = 1i64 << (k.precision - 1);
                for (x, t) in k.taps.iter().enumerate() {
                    let mut acc = [bias; 3];
                    for (j, w) in t.weights.iter().enumerate() {
                        let p = &line[(t.start + j) * 3..(t.start + j) * 3 + 3];
                        for c in 0..3 {
                            acc[c] += p[c] as i64 * *w as i64;
                        }
                    }
                    for c in 0..3 {
                        dst[x * 3 + c] = round_shift(acc[c], k.precision);
                    }
                }
            }
        }
    }
    if in_h == out_h {
        return mid;
    }
    let vk = antialias_kernel(in_h, out_h);
    let stride = out_w * 3;
    let bias = 1i64 << (vk.precision - 1);
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i64; stride];
    for (y, t) in vk.taps.iter().enumerate() {
        acc.fill(bias);
        for (j, w) in t.weights.iter().enumerate() {
            let src = &mid[(t.start + j) * stride..(t.start + j + 1) * stride];
            for (a, s) in acc.iter_mut().zip(src) {
                *a += *s as i64 * *w as i64;
            }
        }
        for (o, a) in out[y * stride..(y + 1) * stride].iter_mut().zip(&acc) {
            *o = round_shift(*a, vk.precision);
        }
    }
    out
}

/// Bilinear up- or down-sampling of one float plane, as torch's
/// `interpolate(mode="bilinear", align_corners=False)` without antialiasing.
pub fn resize_plane_bilinear(
    src: &[f32],
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<f32> {
    let xs = linear_taps(in_w, out_w);
    let ys = linear_taps(in_h, out_h);
    let mut out = Vec::with_capacity(out_w * out_h);
    for &(y0, y1, ly) in &ys {
        let r0 = &src[y0 * in_w..(y0 + 1) * in_w];
        let r1 = &src[y1 * in_w..(y1 + 1) * in_w];
        for &(x0, x1, lx) in &xs {
            let top = (1.0 - lx) * r0[x0] + lx * r0[x1];
            let bottom = (1.0 - lx) * r1[x0] + lx * r1[x1];
            out.push((1.0 - ly) * top + ly * bottom);
        }
    }
    out
}

/// The taps of [`resize_plane_bilinear`] along one axis, for the CUDA mask
/// kernel: output `i` blends inputs `first[i]` and `second[i]` with weight
/// `frac[i]` on the second, `(1 - frac) * a + frac * b` in f32.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearTable {
    pub first: Vec<i32>,
    pub second: Vec<i32>,
    pub frac: Vec<f32>,
}

pub fn linear_table(in_size: usize, out_size: usize) -> LinearTable {
    let taps = linear_taps(in_size, out_size);
    LinearTable {
        first: taps.iter().map(|t| t.0 as i32).collect(),
        second: taps.iter().map(|t| t.1 as i32).collect(),
        frac: taps.iter().map(|t| t.2).collect(),
    }
}

/// torch `area_pixel_compute_source_index` (align_corners=False), in f32 as
/// the CPU kernel computes it for float inputs.
fn linear_taps(in_size: usize, out_size: usize) -> Vec<(usize, usize, f32)> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(in_size - 1);
            let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> Vec<u8> {
        (0..w * h * 3).map(|i| ((i * 7) % 256) as u8).collect()
    }

    #[test]
    fn same_size_is_identity() {
        let img = gradient(5, 4);
        let out = resize_rgb8_antialias(
            5,
            4,
            |y, r| r.copy_from_slice(&img[y * 15..(y + 1) * 15]),
            5,
            4,
        );
        assert_eq!(out, img);
    }

    #[test]
    fn constant_image_stays_constant_at_any_scale() {
        for (w, h, ow, oh) in [(1, 1, 112, 112), (1921, 1081, 112, 112), (7, 3, 2, 9)] {
            let out = resize_rgb8_antialias(w, h, |_, r| r.fill(77), ow, oh);
            assert_eq!(out.len(), ow * oh * 3);
            assert!(out.iter().all(|v| *v == 77), "{w}x{h} -> {ow}x{oh}");
        }
    }

    /// The two passes as the CUDA kernels compute them from the flat tables.
    fn resize_with_tables(img: &[u8], w: usize, h: usize, ow: usize, oh: usize) -> Vec<u8> {
        let apply = |t: &FilterTable, i: usize, read: &dyn Fn(usize) -> u8| {
            let mut acc = 1i64 << (t.precision - 1);
            for j in 0..t.counts[i] as usize {
                acc += read(t.starts[i] as usize + j) as i64 * t.weights[i * t.max_taps + j] as i64;
            }
            round_shift(acc, t.precision)
        };
        let (th, tv) = (antialias_table(w, ow), antialias_table(h, oh));
        let mut mid = vec![0u8; h * ow * 3];
        for y in 0..h {
            for x in 0..ow {
                for c in 0..3 {
                    mid[(y * ow + x) * 3 + c] = apply(&th, x, &|j| img[(y * w + j) * 3 + c]);
                }
            }
        }
        let mut out = vec![0u8; oh * ow * 3];
        for y in 0..oh {
            for x in 0..ow {
                for c in 0..3 {
                    out[(y * ow + x) * 3 + c] = apply(&tv, y, &|j| mid[(j * ow + x) * 3 + c]);
                }
            }
        }
        out
    }

    #[test]
    fn flat_tables_reproduce_the_resize_including_identity_axes() {
        let mut seed = 12345u32;
        for (w, h, ow, oh) in [
            (37, 23, 16, 16),
            (16, 23, 16, 9),
            (37, 16, 20, 16),
            (5, 7, 5, 7),
            (3, 2, 11, 13),
        ] {
            let img: Vec<u8> = (0..w * h * 3)
                .map(|_| {
                    seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                    (seed >> 24) as u8
                })
                .collect();
            let want = resize_rgb8_antialias(
                w,
                h,
                |y, r| r.copy_from_slice(&img[y * w * 3..(y + 1) * w * 3]),
                ow,
                oh,
            );
            assert_eq!(
                resize_with_tables(&img, w, h, ow, oh),
                want,
                "{w}x{h} -> {ow}x{oh}"
            );
        }
        let t = antialias_table(1920, 1008);
        assert_eq!(t.starts.len(), 1008);
        assert_eq!(t.weights.len(), 1008 * t.max_taps);
        assert!(t.counts.iter().all(|c| *c as usize <= t.max_taps));
        assert!(t.weights.iter().all(|w| *w < 1 << 15));
    }

    #[test]
    fn linear_table_is_the_planes_taps() {
        let t = linear_table(2, 4);
        assert_eq!(t.first, vec![0, 0, 0, 1]);
        assert_eq!(t.second, vec![1, 1, 1, 1]);
        // At the edge both taps are the last sample, so the weight does not matter.
        assert_eq!(t.frac, vec![0.0, 0.25, 0.75, 0.25]);
    }

    #[test]
    fn bilinear_plane_upsamples_edges_flat() {
        // A 2x1 plane [0, 1] to 4x1: torch gives [0, 0.25, 0.75, 1].
        let out = resize_plane_bilinear(&[0.0, 1.0], 2, 1, 4, 1);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
    }
}
