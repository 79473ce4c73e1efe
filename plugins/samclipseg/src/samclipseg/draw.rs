//! Pixels the element writes: the masks into the alpha channel, or the
//! overlay preview (masks, outlines, labels, a legend of the phrases).

use gst::subclass::prelude::*;
use gst_video::prelude::*;
use samclipseg::FrameResult;
use samclipseg::image::render::Canvas;
use samclipseg::prompt::request;

use super::imp::SamClipSeg;
use super::settings::OutputMode;
use super::video;

impl SamClipSeg {
    /// Writes the masks into the alpha channel or draws the overlay.
    pub(super) fn render(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
        mode: OutputMode,
        result: &FrameResult,
        phrases: &[&str],
    ) -> Result<(), gst::FlowError> {
        let instances = &result.instances;
        let (width, height) = (frame.width() as usize, frame.height() as usize);
        let format = frame.format();
        let Some(layout) = video::packed_layout(format) else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("output-mode {:?} cannot draw on {}", mode, format)
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let stride = frame.plane_stride().first().copied().unwrap_or(0).max(0) as usize;
        let data = frame.plane_data_mut(0).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Cannot write the frame: {}", e)
            );
            gst::FlowError::Error
        })?;
        // Canvas indexes rows by stride: make sure every row is inside the plane.
        if height > 0 && data.len() < stride * (height - 1) + width * layout.bytes_per_pixel() {
            gst::element_imp_error!(self, gst::StreamError::Format, ("Frame plane is too small"));
            return Err(gst::FlowError::Error);
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
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        (
                            "output-mode alpha needs a format with alpha, got {}",
                            format
                        )
                    );
                    return Err(gst::FlowError::NotNegotiated);
                }
            }
            OutputMode::Overlay => {
                canvas.draw_overlay(instances);
                if phrases.len() > 1 {
                    canvas.draw_legend(phrases);
                }
            }
        }
        Ok(())
    }
}
