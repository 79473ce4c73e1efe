//! The GstAnalytics segmentation Mtd (GStreamer >= 1.26), which
//! `gstreamer-analytics` 0.25 does not wrap: adding one to a relation meta
//! and reading its mask back. Everything else samclipseg attaches (object
//! detection, tracking, classification) goes through the crate's safe API.

use glib::translate::*;
use gst_analytics::{AnalyticsMtd, AnalyticsMtdRef, AnalyticsRelationMeta, ffi};

/// Marker type of the segmentation Mtd, for `AnalyticsMetaRefExt::mtd`,
/// `iter` and `iter_direct_related`.
#[derive(Debug)]
pub enum AnalyticsSegmentationMtd {}

// SAFETY: the type GStreamer registers for segmentation Mtds.
unsafe impl AnalyticsMtd for AnalyticsSegmentationMtd {
    fn mtd_type() -> ffi::GstAnalyticsMtdType {
        unsafe { ffi::gst_analytics_segmentation_mtd_get_mtd_type() }
    }
}

/// Where a mask lies in the frame: (x, y, width, height) in frame pixels.
pub type MaskLocation = (i32, i32, u32, u32);

/// Adds an INSTANCE segmentation Mtd holding `mask` (GRAY8, one byte per
/// pixel, rows `loc.2` bytes apart; each pixel a value of `region_ids` or 0)
/// placed at `loc` in the frame, and returns its id.
///
/// GStreamer 1.26.2 gives up without taking the buffer when the mask is not
/// a GRAY8/GRAY16 video buffer (and would leak it), so the size is checked
/// here first and the buffer built here, always with a `GstVideoMeta` whose
/// stride is the width (`segmentationoverlay` assumes it).
pub fn add_instance_segmentation(
    rmeta: &mut gst::MetaRefMut<'_, AnalyticsRelationMeta, gst::meta::Standalone>,
    mask: Vec<u8>,
    region_ids: &[u32],
    loc: MaskLocation,
) -> Result<u32, glib::BoolError> {
    let (x, y, w, h) = loc;
    if w == 0 || h == 0 || mask.len() != w as usize * h as usize {
        return Err(glib::bool_error!(
            "a {w}x{h} mask needs {} bytes, not {}",
            w as usize * h as usize,
            mask.len()
        ));
    }
    let mut buffer = gst::Buffer::from_mut_slice(mask);
    {
        let buffer = buffer
            .get_mut()
            .ok_or_else(|| glib::bool_error!("a new buffer is not writable"))?;
        gst_video::VideoMeta::add_full(
            buffer,
            gst_video::VideoFrameFlags::empty(),
            gst_video::VideoFormat::Gray8,
            w,
            h,
            &[0],
            &[w as i32],
        )?;
    }
    let mut ids: Vec<u32> = region_ids.to_vec();
    let mut mtd = ffi::GstAnalyticsSegmentationMtd {
        id: 0,
        meta: std::ptr::null_mut(),
    };
    // SAFETY: the buffer passes the function's checks (a GRAY8 video meta),
    // so it takes the reference handed over; region_ids is copied inside.
    let added: bool = unsafe {
        from_glib(ffi::gst_analytics_relation_meta_add_segmentation_mtd(
            rmeta.as_mut_ptr(),
            buffer.into_glib_ptr(),
            ffi::GST_SEGMENTATION_TYPE_INSTANCE,
            ids.len(),
            ids.as_mut_ptr(),
            x,
            y,
            w,
            h,
            &mut mtd,
        ))
    };
    if added {
        Ok(mtd.id)
    } else {
        Err(glib::bool_error!(
            "GStreamer refused the segmentation Mtd (the relation meta is full?)"
        ))
    }
}

/// A segmentation Mtd's mask: the buffer (with its video meta), where it lies
/// in the frame, and the region ids it lists.
#[derive(Debug, Clone)]
pub struct SegmentationMask {
    pub buffer: gst::Buffer,
    pub location: MaskLocation,
    pub region_ids: Vec<u32>,
}

/// Reads the mask of a segmentation Mtd.
pub fn segmentation_mask(mtd: &AnalyticsMtdRef<'_, AnalyticsSegmentationMtd>) -> SegmentationMask {
    // SAFETY: mtd refers to a live segmentation Mtd of its relation meta.
    unsafe {
        let handle = ffi::GstAnalyticsSegmentationMtd {
            id: mtd.id(),
            meta: mtd.meta_ptr(),
        };
        let (mut x, mut y, mut w, mut h) = (0, 0, 0, 0);
        let buffer = from_glib_full(ffi::gst_analytics_segmentation_mtd_get_mask(
            &handle, &mut x, &mut y, &mut w, &mut h,
        ));
        let n = ffi::gst_analytics_segmentation_mtd_get_region_count(&handle);
        let region_ids = (0..n)
            .map(|i| ffi::gst_analytics_segmentation_mtd_get_region_id(&handle, i))
            .collect();
        SegmentationMask {
            buffer,
            location: (x, y, w, h),
            region_ids,
        }
    }
}

/// The relation meta pointer behind an Mtd reference.
trait MetaPtr {
    /// # Safety
    /// Only while the reference (and so the meta) lives.
    unsafe fn meta_ptr(&self) -> *mut ffi::GstAnalyticsRelationMeta;
}

impl<T: AnalyticsMtd> MetaPtr for AnalyticsMtdRef<'_, T> {
    unsafe fn meta_ptr(&self) -> *mut ffi::GstAnalyticsRelationMeta {
        // SAFETY: GstAnalyticsMtd is {id, meta}, as the crate builds it.
        let mtd: ffi::GstAnalyticsMtd = unsafe { UnsafeFrom::unsafe_from(self) };
        mtd.meta
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use gst_analytics::AnalyticsMetaRefExt;

    fn buffer_with_rmeta() -> gst::Buffer {
        gst::init().unwrap();
        let mut buf = gst::Buffer::with_size(16).unwrap();
        AnalyticsRelationMeta::add(buf.get_mut().unwrap());
        buf
    }

    #[test]
    fn a_mask_goes_in_and_comes_back_with_its_place_and_region() {
        let mut buf = buffer_with_rmeta();
        let mask: Vec<u8> = (0..12).map(|i| if i % 2 == 0 { 7 } else { 0 }).collect();
        let id = {
            let b = buf.get_mut().unwrap();
            let mut rmeta = b.meta_mut::<AnalyticsRelationMeta>().unwrap();
            add_instance_segmentation(&mut rmeta, mask.clone(), &[7], (5, 6, 4, 3)).unwrap()
        };
        let rmeta = buf.meta::<AnalyticsRelationMeta>().unwrap();
        let mtd = rmeta.mtd::<AnalyticsSegmentationMtd>(id).unwrap();
        let got = segmentation_mask(&mtd);
        assert_eq!(got.location, (5, 6, 4, 3));
        assert_eq!(got.region_ids, [7]);
        let vmeta = got.buffer.meta::<gst_video::VideoMeta>().unwrap();
        assert_eq!(vmeta.format(), gst_video::VideoFormat::Gray8);
        assert_eq!((vmeta.width(), vmeta.height()), (4, 3));
        assert_eq!(vmeta.stride(), [4]);
        assert_eq!(got.buffer.map_readable().unwrap().as_slice(), &mask[..]);
        // Nothing else in the meta.
        assert_eq!(rmeta.len(), 1);
    }

    #[test]
    fn a_mask_of_the_wrong_size_is_refused_before_gstreamer_sees_it() {
        let mut buf = buffer_with_rmeta();
        let b = buf.get_mut().unwrap();
        let mut rmeta = b.meta_mut::<AnalyticsRelationMeta>().unwrap();
        let err = add_instance_segmentation(&mut rmeta, vec![1; 11], &[1], (0, 0, 4, 3));
        assert!(err.unwrap_err().to_string().contains("needs 12 bytes"));
        assert!(add_instance_segmentation(&mut rmeta, vec![], &[1], (0, 0, 0, 3)).is_err());
        assert_eq!(rmeta.len(), 0);
    }
}
