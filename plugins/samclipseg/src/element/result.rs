//! What leaves the element with each buffer: the custom meta, one
//! region-of-interest meta per instance, and the bus message.

use crate::meta::{SamClipSegMeta, Segmentation};

/// Name of the parameter structure on each `GstVideoRegionOfInterestMeta`.
pub const ROI_PARAM_NAME: &str = "samclipseg/detection";
/// Name of the element message posted when `post-messages` is on.
pub const MESSAGE_NAME: &str = "samclipseg";

/// With the `analytics` feature: what the GstAnalytics Mtds of a frame need
/// beyond its result.
#[cfg(feature = "analytics")]
pub struct AnalyticsFrame<'a> {
    /// The buffer's timestamp (0 when it has none): the tracking Mtds' sightings.
    pub pts: gst::ClockTime,
    /// The ids the tracker still holds (`Stream::live_ids`).
    pub live: &'a [u64],
    pub tracks: &'a mut super::analytics::Tracks,
}

/// Attaches the custom meta and one ROI meta per instance, replacing metas a
/// previous samclipseg (or an earlier pass) left on the buffer; with the
/// `analytics` feature also the instances' GstAnalytics Mtds (each ROI meta's
/// id is then its object-detection Mtd's id), replacing those this element
/// (`element`, its name) put there in an earlier pass.
pub fn attach(
    buffer: &mut gst::BufferRef,
    seg: Segmentation,
    element: &str,
    #[cfg(feature = "analytics")] analytics: AnalyticsFrame<'_>,
) -> Result<(), glib::BoolError> {
    // Object-detection Mtd ids of this element's earlier pass (its ROI metas' ids).
    #[cfg(feature = "analytics")]
    let mut earlier: Vec<u32> = Vec::new();
    buffer.foreach_meta_mut(|mut meta| {
        let roi = meta.downcast_ref::<gst_video::VideoRegionOfInterestMeta>();
        let param = roi.and_then(|roi| roi.param(ROI_PARAM_NAME));
        #[cfg(feature = "analytics")]
        if let (Some(roi), Some(param)) = (roi, param)
            && param.get::<&str>("element").ok() == Some(element)
            && let Ok(id) = u32::try_from(roi.id())
        {
            earlier.push(id);
        }
        let ours = param.is_some() || meta.downcast_ref::<SamClipSegMeta>().is_some();
        if ours {
            std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Remove)
        } else {
            std::ops::ControlFlow::Continue(gst::buffer::BufferMetaForeachAction::Keep)
        }
    });
    #[cfg(feature = "analytics")]
    let roi_ids: Vec<i32> = {
        let reported: Vec<u64> = seg.instances.iter().map(|i| i.id).collect();
        let released = analytics.tracks.release(analytics.live, &reported);
        super::analytics::attach(
            buffer,
            &seg,
            analytics.pts,
            analytics.tracks,
            &released,
            &earlier,
        )?
        .into_iter()
        .map(|od| i32::try_from(od).unwrap_or(i32::MAX))
        .collect()
    };
    // Without GstAnalytics, the ROI id is the tracking id.
    #[cfg(not(feature = "analytics"))]
    let roi_ids: Vec<i32> = seg
        .instances
        .iter()
        .map(|i| i32::try_from(i.id).unwrap_or(i32::MAX))
        .collect();
    for (inst, roi_id) in seg.instances.iter().zip(roi_ids) {
        let mut roi = gst_video::VideoRegionOfInterestMeta::add(buffer, &inst.label, inst.rect());
        roi.set_id(roi_id);
        roi.add_param(
            gst::Structure::builder(ROI_PARAM_NAME)
                .field("label", inst.label.as_str())
                .field("score", inst.score as f64)
                .field("index", inst.index)
                .field("id", inst.id)
                .field("phrase-index", inst.phrase_index)
                .field("element", element)
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
