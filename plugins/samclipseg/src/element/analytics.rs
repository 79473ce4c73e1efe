//! Each instance in GStreamer's analytics language (feature `analytics`,
//! GStreamer >= 1.26), in the buffer's one `GstAnalyticsRelationMeta`: an
//! object-detection Mtd (the phrase as its type), a tracking Mtd (the stable
//! id), an INSTANCE segmentation Mtd (the mask) and a classification Mtd (the
//! phrase and score), linked the way stock elements read them:
//! OD -> Tracking, OD -> Cls `RELATE_TO`; OD -> Seg `RELATE_TO | CONTAIN`,
//! Seg -> OD `RELATE_TO`.

use std::collections::HashMap;

use gst_analytics::{
    AnalyticsMetaRefExt, AnalyticsMetaRefMutExt, AnalyticsODMtd, AnalyticsRelationMeta,
    AnalyticsRelationMetaClassificationExt, AnalyticsRelationMetaODExt,
    AnalyticsRelationMetaTrackingExt, AnalyticsTrackingMtd, RelTypes,
};

use crate::analytics::{AnalyticsSegmentationMtd, add_instance_segmentation};
use crate::meta::{Segmentation, SegmentedInstance};

/// When each tracking id was first and last reported, so that its tracking
/// Mtd carries both, and an id the tracker let go is marked lost once.
#[derive(Debug, Default)]
pub struct Tracks {
    seen: HashMap<u64, (gst::ClockTime, gst::ClockTime)>,
}

/// A tracking id the tracker let go: when it was first and last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub id: u64,
    pub first_seen: gst::ClockTime,
    pub last_seen: gst::ClockTime,
}

impl Tracks {
    /// Notes `id` reported at `at`; returns its first and last sighting.
    pub fn report(&mut self, id: u64, at: gst::ClockTime) -> (gst::ClockTime, gst::ClockTime) {
        let entry = self.seen.entry(id).or_insert((at, at));
        entry.1 = entry.1.max(at);
        *entry
    }

    /// The reported ids the tracker no longer holds (`live`), forgotten here
    /// so each is released once; `reported` (this frame's) are never released.
    pub fn release(&mut self, live: &[u64], reported: &[u64]) -> Vec<Released> {
        let mut gone: Vec<Released> = self
            .seen
            .iter()
            .filter(|(id, _)| !live.contains(id) && !reported.contains(id))
            .map(|(&id, &(first_seen, last_seen))| Released {
                id,
                first_seen,
                last_seen,
            })
            .collect();
        gone.sort_by_key(|r| r.id);
        for r in &gone {
            self.seen.remove(&r.id);
        }
        gone
    }
}

/// The pixel value of an instance's region in its mask (0 is background).
pub fn region_id(tracking_id: u64) -> u32 {
    (tracking_id % 255) as u32 + 1
}

/// Adds the instances of `seg` to the buffer's relation meta (made when the
/// buffer has none), and a lost tracking Mtd per released id; returns each
/// instance's object-detection Mtd id, in order.
///
/// `earlier` are the object-detection Mtd ids this element put on the buffer
/// in an earlier pass: when the relation meta holds nothing else (theirs and
/// the Mtds linked from them), it is replaced; Mtds cannot be taken out of a
/// relation meta one by one, so where other producers' Mtds share it the
/// earlier ones stay beside the new ones.
pub fn attach(
    buffer: &mut gst::BufferRef,
    seg: &Segmentation,
    pts: gst::ClockTime,
    tracks: &mut Tracks,
    released: &[Released],
    earlier: &[u32],
) -> Result<Vec<u32>, glib::BoolError> {
    if !earlier.is_empty() && only_these(buffer, earlier) {
        buffer.foreach_meta_mut(|mut meta| {
            std::ops::ControlFlow::Continue(
                if meta.downcast_ref::<AnalyticsRelationMeta>().is_some() {
                    gst::buffer::BufferMetaForeachAction::Remove
                } else {
                    gst::buffer::BufferMetaForeachAction::Keep
                },
            )
        });
    }
    if buffer.meta::<AnalyticsRelationMeta>().is_none() {
        AnalyticsRelationMeta::add(buffer);
    }
    let mut ods = Vec::with_capacity(seg.instances.len());
    for inst in &seg.instances {
        let (first, last) = tracks.report(inst.id, pts);
        ods.push(add_instance(buffer, inst, first, last)?);
    }
    for r in released {
        let mut rmeta = relation_meta(buffer)?;
        let id = rmeta.add_tracking_mtd(r.id, r.first_seen)?.id();
        let mut tracking = rmeta
            .mtd_mut::<AnalyticsTrackingMtd>(id)
            .ok_or_else(|| glib::bool_error!("the tracking Mtd just added is missing"))?;
        tracking.update_last_seen(r.last_seen)?;
        tracking.set_lost()?;
    }
    Ok(ods)
}

fn relation_meta(
    buffer: &mut gst::BufferRef,
) -> Result<gst::MetaRefMut<'_, AnalyticsRelationMeta, gst::meta::Standalone>, glib::BoolError> {
    buffer
        .meta_mut::<AnalyticsRelationMeta>()
        .ok_or_else(|| glib::bool_error!("the buffer lost its analytics relation meta"))
}

/// The four Mtds of one instance and their relations; the OD's id.
fn add_instance(
    buffer: &mut gst::BufferRef,
    inst: &SegmentedInstance,
    first_seen: gst::ClockTime,
    last_seen: gst::ClockTime,
) -> Result<u32, glib::BoolError> {
    let phrase = glib::Quark::from_str(inst.label.as_str());
    let px = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let od = {
        let mut rmeta = relation_meta(buffer)?;
        rmeta
            .add_od_mtd(
                phrase,
                px(inst.x),
                px(inst.y),
                px(inst.width),
                px(inst.height),
                inst.score,
            )?
            .id()
    };
    let tracking = {
        let mut rmeta = relation_meta(buffer)?;
        let id = rmeta.add_tracking_mtd(inst.id, first_seen)?.id();
        rmeta
            .mtd_mut::<AnalyticsTrackingMtd>(id)
            .ok_or_else(|| glib::bool_error!("the tracking Mtd just added is missing"))?
            .update_last_seen(last_seen)?;
        id
    };
    let mut rmeta = relation_meta(buffer)?;
    let cls = rmeta.add_one_cls_mtd(inst.score, phrase)?.id();
    rmeta.set_relation(RelTypes::RELATE_TO, od, tracking)?;
    rmeta.set_relation(RelTypes::RELATE_TO, od, cls)?;
    // An empty instance (its box outside the frame) has no mask to carry.
    if inst.width > 0 && inst.height > 0 {
        let region = region_id(inst.id);
        let value = u8::try_from(region).unwrap_or(u8::MAX);
        let mask = inst
            .mask
            .iter()
            .map(|&m| if m != 0 { value } else { 0 })
            .collect();
        let loc = (px(inst.x), px(inst.y), inst.width, inst.height);
        let seg = add_instance_segmentation(&mut rmeta, mask, &[region], loc)?;
        rmeta.set_relation(RelTypes::RELATE_TO | RelTypes::CONTAIN, od, seg)?;
        rmeta.set_relation(RelTypes::RELATE_TO, seg, od)?;
    }
    Ok(od)
}

/// Whether the buffer's relation meta holds only the Mtds `ods` and those
/// directly related from them.
fn only_these(buffer: &gst::BufferRef, ods: &[u32]) -> bool {
    let Some(rmeta) = buffer.meta::<AnalyticsRelationMeta>() else {
        return false;
    };
    let mut ours = std::collections::HashSet::new();
    for &od in ods {
        if rmeta.mtd::<AnalyticsODMtd>(od).is_none() {
            return false;
        }
        ours.insert(od);
        ours.extend(
            rmeta
                .iter_direct_related::<AnalyticsTrackingMtd>(od, RelTypes::RELATE_TO)
                .map(|m| m.id()),
        );
        ours.extend(
            rmeta
                .iter_direct_related::<gst_analytics::AnalyticsClassificationMtd>(
                    od,
                    RelTypes::RELATE_TO,
                )
                .map(|m| m.id()),
        );
        ours.extend(
            rmeta
                .iter_direct_related::<AnalyticsSegmentationMtd>(od, RelTypes::CONTAIN)
                .map(|m| m.id()),
        );
    }
    ours.len() == rmeta.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn t(s: u64) -> gst::ClockTime {
        gst::ClockTime::from_seconds(s)
    }

    #[test]
    fn an_id_is_released_once_with_its_first_and_last_sighting() {
        let mut tracks = Tracks::default();
        assert_eq!(tracks.report(4, t(1)), (t(1), t(1)));
        assert_eq!(tracks.report(4, t(2)), (t(1), t(2)));
        tracks.report(9, t(2));
        // 4 absent but still held by the tracker: not released.
        assert!(tracks.release(&[4, 9], &[9]).is_empty());
        let gone = tracks.release(&[9], &[9]);
        assert_eq!(
            gone,
            [Released {
                id: 4,
                first_seen: t(1),
                last_seen: t(2)
            }]
        );
        assert!(tracks.release(&[9], &[9]).is_empty());
        // Reported this frame: never released, whatever the tracker holds.
        assert!(tracks.release(&[], &[9]).is_empty());
    }

    #[test]
    fn region_ids_skip_the_background() {
        assert_eq!(region_id(0), 1);
        assert_eq!(region_id(254), 255);
        assert_eq!(region_id(255), 1);
    }
}
