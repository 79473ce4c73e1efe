//! The core's instances turned into what leaves the element: the custom meta,
//! one region-of-interest meta per instance, and the bus message.

use samclipseg::Instance;

use crate::meta::{InferenceState, SamClipSegMeta, Segmentation, SegmentedInstance};

/// Name of the parameter structure on each `GstVideoRegionOfInterestMeta`.
pub const ROI_PARAM_NAME: &str = "samclipseg/detection";
/// Name of the element message posted when `post-messages` is on.
pub const MESSAGE_NAME: &str = "samclipseg";

/// Pixel span [lo, hi) of the float interval [a, b], rounded outwards and
/// clipped to [0, limit]. Empty (lo == hi) when it lies outside. A NaN
/// coordinate counts as 0, so that it cannot poison the span.
fn clip_span(a: f32, b: f32, limit: usize) -> (usize, usize) {
    let finite = |v: f32| if v.is_nan() { 0.0 } else { v };
    let (a, b) = (finite(a), finite(b));
    // `as` saturates, and the clamp keeps the span inside the frame.
    let clip = |v: f32| v.clamp(0.0, limit as f32) as usize;
    let lo = clip(a.min(b).floor());
    let hi = clip(a.max(b).ceil());
    (lo, hi.max(lo))
}

/// The pixel rectangle of an instance: the predicted box clipped to the frame,
/// grown to hold every mask pixel so the cropped mask loses nothing.
pub fn instance_rect(inst: &Instance, width: usize, height: usize) -> (usize, usize, usize, usize) {
    let (mut x0, mut x1) = clip_span(inst.bbox[0], inst.bbox[2], width);
    let (mut y0, mut y1) = clip_span(inst.bbox[1], inst.bbox[3], height);
    let empty_box = x0 == x1 || y0 == y1;
    if let Some((mx, my, mw, mh)) = inst.mask.extent() {
        if empty_box {
            (x0, y0, x1, y1) = (mx, my, mx + mw, my + mh);
        } else {
            x0 = x0.min(mx);
            y0 = y0.min(my);
            x1 = x1.max(mx + mw);
            y1 = y1.max(my + mh);
        }
    } else if empty_box {
        // Nothing to cover: a zero-size rect at the clipped corner.
        return (x0, y0, 0, 0);
    }
    (x0, y0, x1 - x0, y1 - y0)
}

/// The frame's result in the meta's form. Labels are the prompt in effect
/// (the core reports the spelling that first filled its text cache).
pub fn segmentation(
    prompt: &str,
    state: InferenceState,
    source_pts: Option<gst::ClockTime>,
    instances: &[Instance],
    ids: &[u64],
    width: usize,
    height: usize,
) -> Segmentation {
    let instances = instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let (x, y, w, h) = instance_rect(inst, width, height);
            let mask = if inst.mask.width == width && inst.mask.height == height {
                inst.mask.crop(x, y, w, h).data
            } else {
                vec![0; w * h]
            };
            SegmentedInstance {
                index: i as u32,
                id: ids.get(i).copied().unwrap_or(0),
                label: inst.label.clone(),
                phrase_index: inst.prompt_index as u32,
                score: inst.score,
                bbox: inst.bbox,
                x: x as u32,
                y: y as u32,
                width: w as u32,
                height: h as u32,
                mask,
            }
        })
        .collect();
    Segmentation {
        prompt: prompt.to_string(),
        state,
        source_pts,
        frame_width: width as u32,
        frame_height: height as u32,
        instances,
    }
}

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
}

/// The `samclipseg` element message: timing, prompt, state and the instances
/// without their masks.
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
        .field("instances", gst::List::new(instances))
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use samclipseg::Mask;

    fn inst(bbox: [f32; 4], set: &[(usize, usize)], w: usize, h: usize) -> Instance {
        let mut data = vec![0u8; w * h];
        for &(x, y) in set {
            data[y * w + x] = 255;
        }
        Instance {
            label: "x".into(),
            prompt_index: 0,
            query: 0,
            score: 0.7,
            bbox,
            mask: Mask {
                width: w,
                height: h,
                data,
            },
        }
    }

    #[test]
    fn rect_is_the_clipped_box_grown_to_the_mask() {
        let i = inst([2.2, 1.5, 5.1, 3.0], &[(7, 8)], 10, 10);
        assert_eq!(instance_rect(&i, 10, 10), (2, 1, 6, 8));
        let outside = inst([-20.0, -20.0, -5.0, -5.0], &[], 10, 10);
        assert_eq!(instance_rect(&outside, 10, 10), (0, 0, 0, 0));
        let only_mask = inst([20.0, 20.0, 30.0, 30.0], &[(1, 2), (3, 2)], 10, 10);
        assert_eq!(instance_rect(&only_mask, 10, 10), (1, 2, 3, 1));
        let nan = inst([f32::NAN, 0.0, 4.0, 4.0], &[], 10, 10);
        assert_eq!(instance_rect(&nan, 10, 10), (0, 0, 4, 4));
    }

    #[test]
    fn segmentation_masks_cover_their_rects() {
        let i = inst([0.0, 0.0, 3.0, 3.0], &[(1, 1), (4, 4)], 6, 6);
        let seg = segmentation("cat", InferenceState::Fresh, None, &[i], &[7], 6, 6);
        let s = &seg.instances[0];
        assert_eq!(s.rect(), (0, 0, 5, 5));
        assert_eq!(s.mask.len(), 25);
        assert!(s.contains(1, 1) && s.contains(4, 4) && !s.contains(2, 2));
        assert!(!s.contains(5, 5));
    }
}
