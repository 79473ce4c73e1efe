//! What leaves the element with each buffer: the custom meta, one
//! region-of-interest meta per instance, and the bus message.

use crate::meta::{SamClipSegMeta, Segmentation};

/// Name of the parameter structure on each `GstVideoRegionOfInterestMeta`.
pub const ROI_PARAM_NAME: &str = "samclipseg/detection";
/// Name of the element message posted when `post-messages` is on.
pub const MESSAGE_NAME: &str = "samclipseg";

/// Attaches the custom meta and one ROI meta per instance, replacing metas a
/// previous samclipseg (or an earlier pass) left on the buffer.
pub fn attach(buffer: &mut gst::BufferRef, seg: Segmentation) -> Result<(), glib::BoolError> {
    buffer.foreach_meta_mut(|mut meta| {
        let ours = meta
            .downcast_ref::<gst_video::VideoRegionOfInterestMeta>()
            .is_some_and(|roi| roi.params().any(|p| p.name() == ROI_PARAM_NAME))
            || meta.downcast_ref::<SamClipSegMeta>().is_some();
        if ours {
            std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Remove)
        } else {
            std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Keep)
        }
    });
    for inst in &seg.instances {
        let mut roi = gst_video::VideoRegionOfInterestMeta::add(buffer, &inst.label, inst.rect());
        roi.set_id(i32::try_from(inst.id).unwrap_or(i32::MAX));
        roi.add_param(
            gst::Structure::builder(ROI_PARAM_NAME)
                .field("label", inst.label.as_str())
                .field("score", inst.score as f64)
                .field("index", inst.index)
                .field("id", inst.id)
                .field("phrase-index", inst.phrase_index)
                .build(),
        );
    }
    SamClipSegMeta::add(buffer, seg)?;
    Ok(())
}

/// Timing of the buffer, for the bus message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Times {
    pub pts: Option<gst::ClockTime>,
    pub running_time: Option<gst::ClockTime>,
    pub stream_time: Option<gst::ClockTime>,
    /// What the model run behind the frame's result cost, stage by stage.
    pub stages: Option<samclipseg::StageTimes>,
}

/// The `samclipseg` element message: timing, prompt, state, the stage times of
/// the model run behind the result (`text-ms`, `image-ms`, `decode-ms`,
/// `post-ms`) and the instances without their masks.
pub fn message_structure(seg: &Segmentation, times: Times) -> gst::Structure {
    let instances: Vec<gst::Structure> = seg
        .instances
        .iter()
        .map(|i| {
            gst::Structure::builder("instance")
                .field("index", i.index)
                .field("id", i.id)
                .field("label", i.label.as_str())
                .field("phrase-index", i.phrase_index)
                .field("score", i.score as f64)
                .field("x", i.x)
                .field("y", i.y)
                .field("width", i.width)
                .field("height", i.height)
                .build()
        })
        .collect();
    gst::Structure::builder(MESSAGE_NAME)
        .field_if_some("timestamp", times.pts)
        .field_if_some("running-time", times.running_time)
        .field_if_some("stream-time", times.stream_time)
        .field("prompt", seg.prompt.as_str())
        .field("state", seg.state.nick())
        .field_if_some("source-timestamp", seg.source_pts)
        .field("frame-width", seg.frame_width)
        .field("frame-height", seg.frame_height)
        .field_if_some("text-ms", times.stages.map(|t| t.text_ms as f64))
        .field_if_some("image-ms", times.stages.map(|t| t.image_ms as f64))
        .field_if_some("decode-ms", times.stages.map(|t| t.decode_ms as f64))
        .field_if_some("post-ms", times.stages.map(|t| t.post_ms as f64))
        .field("instances", gst::List::new(instances))
        .build()
}
