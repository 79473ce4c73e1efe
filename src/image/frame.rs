//! A borrowed video frame or still image in one of the layouts GStreamer
//! negotiates, read row by row as RGB. Strides may carry padding.

use crate::error::{Error, Result};

/// Byte layouts of packed pixels. `x` is a padding byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedLayout {
    Rgb,
    Bgr,
    Rgba,
    Bgra,
    Argb,
    Abgr,
    Rgbx,
    Bgrx,
    Xrgb,
    Xbgr,
    /// Packed 4:4:4 YUV with alpha first (GStreamer AYUV).
    Ayuv,
}

impl PackedLayout {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PackedLayout::Rgb | PackedLayout::Bgr => 3,
            _ => 4,
        }
    }

    /// Byte offsets of R, G, B (or Y, U, V for AYUV) inside one pixel.
    pub fn channel_offsets(self) -> [usize; 3] {
        match self {
            PackedLayout::Rgb | PackedLayout::Rgba | PackedLayout::Rgbx => [0, 1, 2],
            PackedLayout::Bgr | PackedLayout::Bgra | PackedLayout::Bgrx => [2, 1, 0],
            PackedLayout::Argb | PackedLayout::Xrgb | PackedLayout::Ayuv => [1, 2, 3],
            PackedLayout::Abgr | PackedLayout::Xbgr => [3, 2, 1],
        }
    }

    /// Byte offset of the alpha channel, for layouts that have one.
    pub fn alpha_offset(self) -> Option<usize> {
        match self {
            PackedLayout::Rgba | PackedLayout::Bgra => Some(3),
            PackedLayout::Argb | PackedLayout::Abgr | PackedLayout::Ayuv => Some(0),
            _ => None,
        }
    }
}

/// YUV to RGB matrix; the range is always limited ("TV") range, as GStreamer's
/// default colorimetry for YUV video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum YuvMatrix {
    #[default]
    Bt601,
    Bt709,
}

impl YuvMatrix {
    /// Fixed-point coefficients scaled by 65536: (Y gain, R from V, G from U,
    /// G from V, B from U). Shared with the CUDA conversion kernel.
    pub fn fixed_point(self) -> [i32; 5] {
        match self {
            YuvMatrix::Bt601 => [76309, 104597, 25675, 53279, 132201],
            YuvMatrix::Bt709 => [76309, 117489, 13975, 34925, 138438],
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
}

#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    Packed {
        plane: Plane<'a>,
        layout: PackedLayout,
    },
    I420 {
        y: Plane<'a>,
        u: Plane<'a>,
        v: Plane<'a>,
    },
    Nv12 {
        y: Plane<'a>,
        uv: Plane<'a>,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub width: usize,
    pub height: usize,
    pub pixels: Pixels<'a>,
    pub matrix: YuvMatrix,
}

fn check_plane(name: &str, p: &Plane, row_bytes: usize, rows: usize) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    if p.stride < row_bytes {
        return Err(Error::Image(format!(
            "{name} plane stride {} is smaller than a row ({row_bytes} bytes)",
            p.stride
        )));
    }
    let need = p.stride * (rows - 1) + row_bytes;
    if p.data.len() < need {
        return Err(Error::Image(format!(
            "{name} plane holds {} bytes, {need} needed for {rows} rows of stride {}",
            p.data.len(),
            p.stride
        )));
    }
    Ok(())
}

impl<'a> Frame<'a> {
    pub fn packed(
        data: &'a [u8],
        width: usize,
        height: usize,
        stride: usize,
        layout: PackedLayout,
    ) -> Result<Self> {
        let f = Frame {
            width,
            height,
            pixels: Pixels::Packed {
                plane: Plane { data, stride },
                layout,
            },
            matrix: YuvMatrix::default(),
        };
        f.validate()?;
        Ok(f)
    }

    /// Checks sizes and strides so that reading rows cannot go out of bounds.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::Image(format!(
                "empty image ({}x{})",
                self.width, self.height
            )));
        }
        let (cw, ch) = (self.width.div_ceil(2), self.height.div_ceil(2));
        match &self.pixels {
            Pixels::Packed { plane, layout } => check_plane(
                "packed",
                plane,
                self.width * layout.bytes_per_pixel(),
                self.height,
            ),
            Pixels::I420 { y, u, v } => {
                check_plane("Y", y, self.width, self.height)?;
                check_plane("U", u, cw, ch)?;
                check_plane("V", v, cw, ch)
            }
            Pixels::Nv12 { y, uv } => {
                check_plane("Y", y, self.width, self.height)?;
                check_plane("UV", uv, cw * 2, ch)
            }
        }
    }

    /// Writes row `y` as RGB8 into `out` (`width * 3` bytes).
    pub fn rgb_row(&self, y: usize, out: &mut [u8]) {
        let w = self.width;
        match &self.pixels {
            Pixels::Packed { plane, layout } => {
                let bpp = layout.bytes_per_pixel();
                let row = &plane.data[y * plane.stride..y * plane.stride + w * bpp];
                let [r, g, b] = layout.channel_offsets();
                if *layout == PackedLayout::Ayuv {
                    for (px, o) in row.chunks_exact(bpp).zip(out.chunks_exact_mut(3)) {
                        o.copy_from_slice(&yuv_to_rgb(px[r], px[g], px[b], self.matrix));
                    }
                } else {
                    for (px, o) in row.chunks_exact(bpp).zip(out.chunks_exact_mut(3)) {
                        o[0] = px[r];
                        o[1] = px[g];
                        o[2] = px[b];
                    }
                }
            }
            Pixels::I420 { y: yp, u, v } => {
                let yr = &yp.data[y * yp.stride..];
                let ur = &u.data[(y / 2) * u.stride..];
                let vr = &v.data[(y / 2) * v.stride..];
                for (x, o) in out.chunks_exact_mut(3).take(w).enumerate() {
                    o.copy_from_slice(&yuv_to_rgb(yr[x], ur[x / 2], vr[x / 2], self.matrix));
                }
            }
            Pixels::Nv12 { y: yp, uv } => {
                let yr = &yp.data[y * yp.stride..];
                let cr = &uv.data[(y / 2) * uv.stride..];
                for (x, o) in out.chunks_exact_mut(3).take(w).enumerate() {
                    let c = (x / 2) * 2;
                    o.copy_from_slice(&yuv_to_rgb(yr[x], cr[c], cr[c + 1], self.matrix));
                }
            }
        }
    }

    /// The whole frame as tightly packed RGB8.
    pub fn to_rgb(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.width * self.height * 3];
        for (y, row) in out.chunks_exact_mut(self.width * 3).enumerate() {
            self.rgb_row(y, row);
        }
        out
    }
}

/// Limited-range YUV to RGB, in fixed point (16 fractional bits).
fn yuv_to_rgb(y: u8, u: u8, v: u8, m: YuvMatrix) -> [u8; 3] {
    let [ky, rv, gu, gv, bu] = m.fixed_point();
    let c = (y as i32 - 16) * ky;
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    let clamp = |x: i32| ((x + 32768) >> 16).clamp(0, 255) as u8;
    [
        clamp(c + rv * e),
        clamp(c - gu * d - gv * e),
        clamp(c + bu * d),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_layouts_read_the_same_colour() {
        let rgb = [10u8, 20, 30];
        let cases: [(PackedLayout, Vec<u8>); 6] = [
            (PackedLayout::Rgb, vec![10, 20, 30]),
            (PackedLayout::Bgr, vec![30, 20, 10]),
            (PackedLayout::Rgba, vec![10, 20, 30, 255]),
            (PackedLayout::Bgrx, vec![30, 20, 10, 0]),
            (PackedLayout::Argb, vec![255, 10, 20, 30]),
            (PackedLayout::Xbgr, vec![0, 30, 20, 10]),
        ];
        for (layout, px) in cases {
            let f = Frame::packed(&px, 1, 1, px.len(), layout).unwrap();
            assert_eq!(f.to_rgb(), rgb, "{layout:?}");
        }
    }

    #[test]
    fn stride_padding_is_skipped() {
        // 2x2 RGB with 2 bytes of padding per row.
        let data = [1, 2, 3, 4, 5, 6, 99, 99, 7, 8, 9, 10, 11, 12];
        let f = Frame::packed(&data, 2, 2, 8, PackedLayout::Rgb).unwrap();
        assert_eq!(f.to_rgb(), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn short_buffer_and_empty_image_are_errors() {
        assert!(Frame::packed(&[0; 11], 2, 2, 6, PackedLayout::Rgb).is_err());
        assert!(Frame::packed(&[], 0, 0, 0, PackedLayout::Rgb).is_err());
        assert!(Frame::packed(&[0; 12], 2, 2, 5, PackedLayout::Rgb).is_err());
    }

    #[test]
    fn yuv_greys_and_primaries() {
        assert_eq!(yuv_to_rgb(16, 128, 128, YuvMatrix::Bt601), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(235, 128, 128, YuvMatrix::Bt709), [255, 255, 255]);
        // BT.601 red: Y=81 U=90 V=240.
        let [r, g, b] = yuv_to_rgb(81, 90, 240, YuvMatrix::Bt601);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
    }

    #[test]
    fn i420_and_nv12_agree() {
        let (w, h) = (4, 2);
        let y: Vec<u8> = (0..8).map(|i| 50 + i * 10).collect();
        let u = [100u8, 140];
        let v = [150u8, 90];
        let uv = [100u8, 150, 140, 90];
        let i420 = Frame {
            width: w,
            height: h,
            pixels: Pixels::I420 {
                y: Plane {
                    data: &y,
                    stride: 4,
                },
                u: Plane {
                    data: &u,
                    stride: 2,
                },
                v: Plane {
                    data: &v,
                    stride: 2,
                },
            },
            matrix: YuvMatrix::Bt601,
        };
        let nv12 = Frame {
            pixels: Pixels::Nv12 {
                y: Plane {
                    data: &y,
                    stride: 4,
                },
                uv: Plane {
                    data: &uv,
                    stride: 4,
                },
            },
            ..i420
        };
        i420.validate().unwrap();
        nv12.validate().unwrap();
        assert_eq!(i420.to_rgb(), nv12.to_rgb());
    }
}
