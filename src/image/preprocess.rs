//! Frame to engine input, as `Sam3ImageProcessor` does it: resize to a square
//! (aspect ratio not kept) with antialiased bilinear on uint8, then
//! `(x - mean/rescale) / (std/rescale)` per channel, laid out CHW.
//!
//! [`preprocess`] is also the CPU twin of the CUDA kernels in
//! `gpu::GpuKernels::preprocess`, for every frame layout and stride.

use crate::error::Result;
use crate::image::frame::Frame;
use crate::image::resize::resize_rgb8_antialias;
use crate::model::bundle::PreprocessSpec;
use crate::model::tensor::TensorF32;

pub fn preprocess(frame: &Frame, spec: &PreprocessSpec) -> Result<TensorF32> {
    let (rgb, s) = resized_rgb8(frame, spec)?;
    Ok(normalise_chw(&rgb, s, spec))
}

/// The frame as interleaved RGB8, resized to the model's s x s; and s.
fn resized_rgb8(frame: &Frame, spec: &PreprocessSpec) -> Result<(Vec<u8>, usize)> {
    frame.validate()?;
    let s = spec.image_size as usize;
    let rgb = resize_rgb8_antialias(
        frame.width,
        frame.height,
        |y, row| frame.rgb_row(y, row),
        s,
        s,
    );
    Ok((rgb, s))
}

/// The frame resized as for [`preprocess`], as planar RGB8 [3, s, s]: what
/// the remote backend sends (its server normalises in the graph).
pub fn planar_rgb8(frame: &Frame, spec: &PreprocessSpec) -> Result<Vec<u8>> {
    let (rgb, s) = resized_rgb8(frame, spec)?;
    let mut planar = vec![0u8; 3 * s * s];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            planar[c * s * s + i] = px[c];
        }
    }
    Ok(planar)
}

/// Interleaved RGB8 (s x s) to a [1, 3, s, s] float tensor. The fused mean and
/// std are computed in f32, as the processor does with float32 tensors.
pub fn normalise_chw(rgb: &[u8], s: usize, spec: &PreprocessSpec) -> TensorF32 {
    let (means, stds) = fused_mean_std(spec);
    let mut data = vec![0f32; 3 * s * s];
    for c in 0..3 {
        let (mean, std) = (means[c], stds[c]);
        let plane = &mut data[c * s * s..(c + 1) * s * s];
        for (o, px) in plane.iter_mut().zip(rgb.chunks_exact(3)) {
            *o = (px[c] as f32 - mean) / std;
        }
    }
    TensorF32::new(vec![1, 3, s, s], data)
}

/// Per-channel mean and std on the 0-255 scale: `(v - mean) / std` on a uint8
/// value is the processor's rescale-then-normalise. Shared with the CUDA kernel.
pub fn fused_mean_std(spec: &PreprocessSpec) -> ([f32; 3], [f32; 3]) {
    // torch multiplies the float32 mean by the Python float 1/rescale in float32.
    let inv_rescale = (1.0 / spec.rescale_factor) as f32;
    (
        spec.image_mean.map(|m| m * inv_rescale),
        spec.image_std.map(|s| s * inv_rescale),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::frame::PackedLayout;

    fn spec(size: u32) -> PreprocessSpec {
        PreprocessSpec {
            image_size: size,
            resample: "bilinear".into(),
            rescale_factor: 1.0 / 255.0,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
        }
    }

    fn solid(w: usize, h: usize, stride: usize, layout: PackedLayout, rgb: [u8; 3]) -> Vec<u8> {
        let bpp = layout.bytes_per_pixel();
        let mut data = vec![0xAB; stride * h];
        let [r, g, b] = layout.channel_offsets();
        for y in 0..h {
            for x in 0..w {
                let p = y * stride + x * bpp;
                data[p + r] = rgb[0];
                data[p + g] = rgb[1];
                data[p + b] = rgb[2];
            }
        }
        data
    }

    #[test]
    fn odd_sizes_and_padded_strides() {
        for (w, h) in [(1, 1), (1921, 1081), (4096, 2160)] {
            let stride = w * 4 + 12;
            let data = solid(w, h, stride, PackedLayout::Bgrx, [255, 0, 127]);
            let frame = Frame::packed(&data, w, h, stride, PackedLayout::Bgrx).unwrap();
            let t = preprocess(&frame, &spec(16)).unwrap();
            assert_eq!(t.shape, vec![1, 3, 16, 16]);
            let plane = 16 * 16;
            assert!(t.data[..plane].iter().all(|v| *v == 1.0), "{w}x{h} red");
            assert!(
                t.data[plane..2 * plane].iter().all(|v| *v == -1.0),
                "{w}x{h} green"
            );
            let blue = (127.0 - 127.5) / 127.5;
            assert!(
                t.data[2 * plane..].iter().all(|v| *v == blue),
                "{w}x{h} blue"
            );
        }
    }

    #[test]
    fn bgr_and_rgb_of_the_same_picture_agree() {
        let (w, h) = (37, 23);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
        let bgr: Vec<u8> = rgb
            .chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0]])
            .collect();
        let a = preprocess(
            &Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap(),
            &spec(20),
        )
        .unwrap();
        let b = preprocess(
            &Frame::packed(&bgr, w, h, w * 3, PackedLayout::Bgr).unwrap(),
            &spec(20),
        )
        .unwrap();
        assert_eq!(a, b);
        // And the channels really are in RGB order: swapping them changes the tensor.
        let c = preprocess(
            &Frame::packed(&bgr, w, h, w * 3, PackedLayout::Rgb).unwrap(),
            &spec(20),
        )
        .unwrap();
        assert_ne!(a, c);
    }
}
