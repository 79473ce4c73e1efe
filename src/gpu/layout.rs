//! Host-side argument checking and kernel-argument layout, kept apart from the
//! CUDA calls so that it is tested on machines without a GPU.

use crate::error::{Error, Result};
use crate::image::frame::{Frame, PackedLayout, Pixels, Plane};

use super::kernels::{FMT_I420, FMT_NV12, FMT_PACKED_RGB, FMT_PACKED_YUV};

/// Largest frame or mask side the kernels take: their indices are 32-bit and
/// grid rows are limited to 65535 blocks of 8.
pub const MAX_SIDE: usize = 1 << 16;

/// Largest number of masks in one call (grid z is limited to 65535).
pub const MAX_MASKS: usize = 65535;

/// Device buffer offsets are aligned to this (the allocation granularity of
/// cudaMalloc is larger; 256 keeps every plane on its own cache lines).
const PLANE_ALIGN: usize = 256;

/// Where one plane goes in the device frame buffer and how many bytes of it
/// the kernel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneCopy {
    /// Byte offset in the device buffer.
    pub offset: usize,
    /// Bytes to copy from the start of the host plane: stride * (rows - 1) + row bytes.
    pub len: usize,
    pub stride: usize,
}

/// A validated frame as `resize_h` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDesc {
    pub fmt: i32,
    /// Up to three planes (unused ones repeat the first).
    pub planes: [PlaneCopy; 3],
    pub plane_count: usize,
    /// Bytes per pixel and byte offsets of R, G, B (or Y, U, V) for packed formats.
    pub bpp: i32,
    pub channels: [i32; 3],
    /// Total device buffer bytes needed.
    pub buffer_len: usize,
}

pub(crate) fn check_side(what: &str, w: usize, h: usize) -> Result<()> {
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return Err(Error::InvalidInput(format!(
            "{what} is {w}x{h}; the CUDA kernels take 1 to {MAX_SIDE} pixels a side"
        )));
    }
    Ok(())
}

/// A plane with its row length in bytes and its number of rows.
type PlaneRows<'a, 'b> = (&'a Plane<'b>, usize, usize);

fn plane_len(p: &Plane, row_bytes: usize, rows: usize) -> usize {
    p.stride * (rows - 1) + row_bytes
}

impl SourceDesc {
    /// Checks `frame` (sizes, strides, buffer lengths) and lays its planes out
    /// one after the other in a device buffer.
    pub fn of(frame: &Frame) -> Result<SourceDesc> {
        frame.validate()?;
        check_side("the frame", frame.width, frame.height)?;
        let (w, h) = (frame.width, frame.height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        // (plane, row bytes, rows) in kernel order.
        let (fmt, planes, bpp, channels): (i32, Vec<PlaneRows>, usize, [usize; 3]) = match &frame
            .pixels
        {
            Pixels::Packed { plane, layout } => {
                let fmt = if *layout == PackedLayout::Ayuv {
                    FMT_PACKED_YUV
                } else {
                    FMT_PACKED_RGB
                };
                let bpp = layout.bytes_per_pixel();
                (
                    fmt,
                    vec![(plane, w * bpp, h)],
                    bpp,
                    layout.channel_offsets(),
                )
            }
            Pixels::I420 { y, u, v } => (
                FMT_I420,
                vec![(y, w, h), (u, cw, ch), (v, cw, ch)],
                1,
                [0, 0, 0],
            ),
            Pixels::Nv12 { y, uv } => (FMT_NV12, vec![(y, w, h), (uv, cw * 2, ch)], 1, [0, 0, 0]),
        };
        let mut copies = Vec::with_capacity(3);
        let mut offset = 0usize;
        for (p, row_bytes, rows) in &planes {
            if p.stride > i32::MAX as usize {
                return Err(Error::InvalidInput(format!(
                    "plane stride {} is too large for the CUDA kernels",
                    p.stride
                )));
            }
            let len = plane_len(p, *row_bytes, *rows);
            copies.push(PlaneCopy {
                offset,
                len,
                stride: p.stride,
            });
            offset = (offset + len).next_multiple_of(PLANE_ALIGN);
        }
        let first = copies[0];
        Ok(SourceDesc {
            fmt,
            planes: [
                first,
                copies.get(1).copied().unwrap_or(first),
                copies.get(2).copied().unwrap_or(first),
            ],
            plane_count: copies.len(),
            bpp: bpp as i32,
            channels: channels.map(|c| c as i32),
            buffer_len: offset.max(1),
        })
    }

    /// The host bytes of plane `i` that go to the device.
    pub fn host_plane<'a>(&self, frame: &Frame<'a>, i: usize) -> &'a [u8] {
        let data = match (&frame.pixels, i) {
            (Pixels::Packed { plane, .. }, 0) => plane.data,
            (Pixels::I420 { y, .. }, 0) | (Pixels::Nv12 { y, .. }, 0) => y.data,
            (Pixels::I420 { u, .. }, 1) => u.data,
            (Pixels::I420 { v, .. }, 2) => v.data,
            (Pixels::Nv12 { uv, .. }, 1) => uv.data,
            _ => &[],
        };
        &data[..self.planes[i].len]
    }
}

/// Checks mask arguments; returns the number of masks in `logits`.
pub fn mask_count(
    logits_len: usize,
    mask_size: (usize, usize),
    image_size: (usize, usize),
) -> Result<usize> {
    check_side("the mask", mask_size.0, mask_size.1)?;
    check_side("the image", image_size.0, image_size.1)?;
    let per = mask_size.0 * mask_size.1;
    if !logits_len.is_multiple_of(per) {
        return Err(Error::InvalidInput(format!(
            "{logits_len} mask logits are not a whole number of {}x{} masks",
            mask_size.0, mask_size.1
        )));
    }
    if logits_len > i32::MAX as usize {
        return Err(Error::InvalidInput(format!(
            "{logits_len} mask logits in one call; the CUDA kernels take at most {} (their \
             element count is a 32-bit int): pass fewer masks at a time",
            i32::MAX
        )));
    }
    let n = logits_len / per;
    if n > MAX_MASKS {
        return Err(Error::InvalidInput(format!(
            "{n} masks in one call; the CUDA kernels take at most {MAX_MASKS}"
        )));
    }
    Ok(n)
}

/// A packed frame whose alpha byte the kernel writes: (bytes used, alpha offset).
pub fn alpha_target(
    data_len: usize,
    width: usize,
    height: usize,
    stride: usize,
    layout: PackedLayout,
) -> Result<(usize, usize)> {
    check_side("the frame", width, height)?;
    let Some(alpha) = layout.alpha_offset() else {
        return Err(Error::InvalidInput(format!(
            "{layout:?} has no alpha channel; use RGBA, BGRA, ARGB, ABGR or AYUV"
        )));
    };
    let row = width * layout.bytes_per_pixel();
    if stride < row {
        return Err(Error::InvalidInput(format!(
            "stride {stride} is smaller than a row ({row} bytes)"
        )));
    }
    let need = stride * (height - 1) + row;
    if data_len < need {
        return Err(Error::InvalidInput(format!(
            "the frame holds {data_len} bytes, {need} needed for {height} rows of stride {stride}"
        )));
    }
    Ok((need, alpha))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::frame::YuvMatrix;

    #[test]
    fn packed_frames_use_one_plane_and_their_channel_offsets() {
        // 7 pixels of 4 bytes do not fit a stride of 10.
        let data = vec![0u8; 64];
        let bad = Frame {
            width: 7,
            height: 3,
            pixels: Pixels::Packed {
                plane: Plane {
                    data: &data,
                    stride: 10,
                },
                layout: PackedLayout::Bgrx,
            },
            matrix: YuvMatrix::Bt601,
        };
        assert!(SourceDesc::of(&bad).is_err());
        let data = vec![0u8; 40 * 2 + 28];
        let f = Frame::packed(&data, 7, 3, 40, PackedLayout::Bgrx).unwrap();
        let d = SourceDesc::of(&f).unwrap();
        assert_eq!(d.fmt, FMT_PACKED_RGB);
        assert_eq!(d.plane_count, 1);
        assert_eq!((d.bpp, d.channels), (4, [2, 1, 0]));
        assert_eq!(
            d.planes[0],
            PlaneCopy {
                offset: 0,
                len: 108,
                stride: 40
            }
        );
        assert_eq!(d.host_plane(&f, 0).len(), 108);
        let f = Frame::packed(&data, 7, 3, 40, PackedLayout::Ayuv).unwrap();
        let d = SourceDesc::of(&f).unwrap();
        assert_eq!((d.fmt, d.channels), (FMT_PACKED_YUV, [1, 2, 3]));
    }

    #[test]
    fn planar_frames_are_laid_out_aligned_and_in_order() {
        // 5x3 I420 with padded strides: chroma is 3x2.
        let (y, u, v) = (vec![0u8; 8 * 3], vec![0u8; 4 * 2], vec![0u8; 6 + 3]);
        let f = Frame {
            width: 5,
            height: 3,
            pixels: Pixels::I420 {
                y: Plane {
                    data: &y,
                    stride: 8,
                },
                u: Plane {
                    data: &u,
                    stride: 4,
                },
                v: Plane {
                    data: &v,
                    stride: 6,
                },
            },
            matrix: YuvMatrix::Bt709,
        };
        let d = SourceDesc::of(&f).unwrap();
        assert_eq!(d.fmt, FMT_I420);
        assert_eq!(
            d.planes[0],
            PlaneCopy {
                offset: 0,
                len: 21,
                stride: 8
            }
        );
        assert_eq!(
            d.planes[1],
            PlaneCopy {
                offset: 256,
                len: 7,
                stride: 4
            }
        );
        assert_eq!(
            d.planes[2],
            PlaneCopy {
                offset: 512,
                len: 9,
                stride: 6
            }
        );
        assert_eq!(d.buffer_len, 768);
        assert_eq!(d.host_plane(&f, 2).len(), 9);

        let uv = vec![0u8; 6 * 2];
        let f = Frame {
            pixels: Pixels::Nv12 {
                y: Plane {
                    data: &y,
                    stride: 8,
                },
                uv: Plane {
                    data: &uv,
                    stride: 6,
                },
            },
            ..f
        };
        let d = SourceDesc::of(&f).unwrap();
        assert_eq!((d.fmt, d.plane_count), (FMT_NV12, 2));
        assert_eq!(
            d.planes[1],
            PlaneCopy {
                offset: 256,
                len: 12,
                stride: 6
            }
        );
        // A short chroma plane is refused before anything reaches the device.
        let short = vec![0u8; 11];
        let bad = Frame {
            pixels: Pixels::Nv12 {
                y: Plane {
                    data: &y,
                    stride: 8,
                },
                uv: Plane {
                    data: &short,
                    stride: 6,
                },
            },
            ..f
        };
        assert!(SourceDesc::of(&bad).is_err());
    }

    #[test]
    fn mask_arguments_are_checked() {
        assert_eq!(mask_count(3 * 32 * 32, (32, 32), (640, 360)).unwrap(), 3);
        assert_eq!(mask_count(0, (32, 32), (640, 360)).unwrap(), 0);
        let e = mask_count(100, (32, 32), (640, 360))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a whole number of 32x32 masks"), "{e}");
        assert!(mask_count(4, (2, 2), (0, 10)).is_err());
        assert!(mask_count(4, (2, 2), (MAX_SIDE + 1, 10)).is_err());
        // Two 32768 x 32768 masks: 2^31 floats, past the kernels' i32 count.
        let e = mask_count(1 << 31, (1 << 15, 1 << 15), (640, 360))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 2147483647"), "{e}");
        assert_eq!(
            mask_count(1 << 30, (1 << 15, 1 << 15), (640, 360)).unwrap(),
            1
        );
    }

    #[test]
    fn alpha_needs_an_alpha_channel_and_enough_bytes() {
        assert_eq!(
            alpha_target(100, 4, 3, 36, PackedLayout::Rgba).unwrap(),
            (88, 3)
        );
        assert_eq!(
            alpha_target(88, 4, 3, 36, PackedLayout::Ayuv).unwrap(),
            (88, 0)
        );
        let e = alpha_target(100, 4, 3, 36, PackedLayout::Bgrx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no alpha channel"), "{e}");
        assert!(alpha_target(87, 4, 3, 36, PackedLayout::Rgba).is_err());
        assert!(alpha_target(100, 4, 3, 15, PackedLayout::Rgba).is_err());
    }
}
