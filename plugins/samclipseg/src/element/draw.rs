//! Pixels the element writes: the masks into the alpha channel, or the
//! overlay preview (masks, outlines, labels, a legend of the phrases).

use gst_video::prelude::*;
use samclipseg::image::render::Canvas;
use samclipseg::prompt::request;
use samclipseg::{FrameResult, Request};

use super::settings::OutputMode;
use super::video;

/// Why a frame could not be drawn: the error for the bus and the flow return.
pub struct Failure {
    pub message: gst::ErrorMessage,
    pub flow: gst::FlowError,
}

fn failure(message: gst::ErrorMessage, flow: gst::FlowError) -> Failure {
    Failure { message, flow }
}

/// Writes the masks into the alpha channel or draws the overlay; `request`
/// names the phrases of the overlay's legend.
pub fn render(
    frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    mode: OutputMode,
    result: &FrameResult,
    request: Option<&Request>,
) -> Result<(), Failure> {
    let instances = &result.instances;
    let (width, height) = (frame.width() as usize, frame.height() as usize);
    let format = frame.format();
    let Some(layout) = video::packed_layout(format) else {
        return Err(failure(
            gst::error_msg!(
                gst::CoreError::Negotiation,
                ("output-mode {:?} cannot draw on {}", mode, format)
            ),
            gst::FlowError::NotNegotiated,
        ));
    };
    let stride = frame.plane_stride().first().copied().unwrap_or(0).max(0) as usize;
    let data = frame.plane_data_mut(0).map_err(|e| {
        failure(
            gst::error_msg!(gst::StreamError::Failed, ("Cannot write the frame: {}", e)),
            gst::FlowError::Error,
        )
    })?;
    // Canvas indexes rows by stride: make sure every row is inside the plane.
    if height > 0 && data.len() < stride * (height - 1) + width * layout.bytes_per_pixel() {
        return Err(failure(
            gst::error_msg!(gst::StreamError::Format, ("Frame plane is too small")),
            gst::FlowError::Error,
        ));
    }
    let mut canvas = Canvas {
        data,
        width,
        height,
        stride,
        layout,
    };
    match mode {
        OutputMode::Meta => {}
        OutputMode::Alpha => {
            let alpha =
                request::alpha_without_negatives(instances, &result.negatives, width, height);
            if !canvas.write_alpha(&alpha) {
                return Err(failure(
                    gst::error_msg!(
                        gst::CoreError::Negotiation,
                        (
                            "output-mode alpha needs a format with alpha, got {}",
                            format
                        )
                    ),
                    gst::FlowError::NotNegotiated,
                ));
            }
        }
        OutputMode::Overlay => {
            canvas.draw_overlay(instances);
            let phrases = request.map(Request::phrases).unwrap_or_default();
            if phrases.len() > 1 {
                canvas.draw_legend(&phrases);
            }
        }
    }
    Ok(())
}
