//! GStreamer video formats and frames as the core library sees them.

use gst_video::prelude::*;
use gst_video::{VideoFormat, VideoFrameRef, VideoInfo};
use samclipseg::{Frame, PackedLayout, Pixels, Plane, YuvMatrix};

use super::settings::OutputMode;

/// Every format the element accepts in `meta` mode.
pub const ALL_FORMATS: [VideoFormat; 13] = [
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Xrgb,
    VideoFormat::Xbgr,
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Ayuv,
    VideoFormat::I420,
    VideoFormat::Nv12,
];

/// Formats with an alpha channel to write the masks into.
pub const ALPHA_FORMATS: [VideoFormat; 5] = [
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Ayuv,
];

/// Packed RGB formats: the core's overlay renderer blends RGB bytes, so it
/// cannot draw on YUV.
pub const OVERLAY_FORMATS: [VideoFormat; 10] = [
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Xrgb,
    VideoFormat::Xbgr,
    VideoFormat::Rgb,
    VideoFormat::Bgr,
];

pub fn formats_for(mode: OutputMode) -> &'static [VideoFormat] {
    match mode {
        OutputMode::Meta => &ALL_FORMATS,
        OutputMode::Alpha => &ALPHA_FORMATS,
        OutputMode::Overlay => &OVERLAY_FORMATS,
    }
}

/// Raw video in `formats`, any size and frame rate.
pub fn caps_for(formats: &[VideoFormat]) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(formats.iter().copied())
        .build()
}

pub fn packed_layout(format: VideoFormat) -> Option<PackedLayout> {
    Some(match format {
        VideoFormat::Rgb => PackedLayout::Rgb,
        VideoFormat::Bgr => PackedLayout::Bgr,
        VideoFormat::Rgba => PackedLayout::Rgba,
        VideoFormat::Bgra => PackedLayout::Bgra,
        VideoFormat::Argb => PackedLayout::Argb,
        VideoFormat::Abgr => PackedLayout::Abgr,
        VideoFormat::Rgbx => PackedLayout::Rgbx,
        VideoFormat::Bgrx => PackedLayout::Bgrx,
        VideoFormat::Xrgb => PackedLayout::Xrgb,
        VideoFormat::Xbgr => PackedLayout::Xbgr,
        VideoFormat::Ayuv => PackedLayout::Ayuv,
        _ => return None,
    })
}

/// The YUV matrix of the caps' colorimetry; when the caps leave it open,
/// BT.709 for HD and larger, BT.601 for SD, as GStreamer guesses.
pub fn yuv_matrix(info: &VideoInfo) -> YuvMatrix {
    match info.colorimetry().matrix() {
        gst_video::VideoColorMatrix::Bt709 => YuvMatrix::Bt709,
        gst_video::VideoColorMatrix::Bt601 => YuvMatrix::Bt601,
        _ if info.height() > 576 => YuvMatrix::Bt709,
        _ => YuvMatrix::Bt601,
    }
}

fn plane<'a, T>(frame: &'a VideoFrameRef<T>, index: u32) -> Result<Plane<'a>, String> {
    let data = frame
        .plane_data(index)
        .map_err(|e| format!("cannot read plane {index}: {e}"))?;
    let stride = frame
        .plane_stride()
        .get(index as usize)
        .copied()
        .unwrap_or(0);
    // Negative strides (bottom-up layouts) do not occur in raw GStreamer video.
    let stride =
        usize::try_from(stride).map_err(|_| format!("plane {index} has stride {stride}"))?;
    Ok(Plane { data, stride })
}

/// Borrows a mapped video frame as a core [`Frame`], honouring plane strides.
pub fn core_frame<'a, T>(
    frame: &'a VideoFrameRef<T>,
    matrix: YuvMatrix,
) -> Result<Frame<'a>, String> {
    let format = frame.format();
    let pixels = if let Some(layout) = packed_layout(format) {
        Pixels::Packed {
            plane: plane(frame, 0)?,
            layout,
        }
    } else {
        match format {
            VideoFormat::I420 => Pixels::I420 {
                y: plane(frame, 0)?,
                u: plane(frame, 1)?,
                v: plane(frame, 2)?,
            },
            VideoFormat::Nv12 => Pixels::Nv12 {
                y: plane(frame, 0)?,
                uv: plane(frame, 1)?,
            },
            other => return Err(format!("format {other} is not supported")),
        }
    };
    let f = Frame {
        width: frame.width() as usize,
        height: frame.height() as usize,
        pixels,
        matrix,
    };
    f.validate().map_err(|e| e.to_string())?;
    Ok(f)
}
