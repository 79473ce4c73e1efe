//! `SamClipSegMeta`: the segmentation result of one frame, attached to the
//! buffer as a real `GstMeta` so that it travels with the buffer through
//! queues, tees and buffer copies.
//!
//! The meta is registered with the `video`, `size` and `orientation` tags,
//! like `GstVideoRegionOfInterestMeta`: its boxes and masks are in the
//! pixels of the frame it was computed on. It is copied whenever the buffer
//! is copied (`gst_buffer_copy`, `make_writable`), scaled along with the
//! picture by `videoscale` / `videoconvert` (GStreamer's video scale meta
//! transform), and dropped by other transformations (flips, rotations), for
//! which it would be wrong.

use std::{fmt, mem, ptr};

use glib::translate::*;
use gst::prelude::*;

/// How the result of a frame was obtained: the core library's
/// [`samclipseg::InferenceState`] (`fresh`, `reused-image-features`,
/// `reused-result`, `tracked`, `pending`, `no-prompt`, `gap`; `nick()` gives
/// the name).
pub use samclipseg::InferenceState;

/// One segmented object.
#[derive(Clone, PartialEq)]
pub struct SegmentedInstance {
    /// Position of the instance in the frame's list (0-based, by descending score).
    pub index: u32,
    /// Stable id: the same object keeps it from frame to frame (matched by
    /// mask overlap, per phrase, for up to `track-patience` frames of
    /// absence; with `tracker=sam3`, SAM 3's object id + 1).
    pub id: u64,
    /// The phrase that found it.
    pub label: String,
    /// Index of that phrase among the positive phrases of `prompt`.
    pub phrase_index: u32,
    /// Confidence, 0-1: sigmoid(query logit) x sigmoid(presence logit).
    pub score: f32,
    /// The box the model predicted, (x1, y1, x2, y2) in frame pixels, not clipped.
    pub bbox: [f32; 4],
    /// Left edge of `rect`, in frame pixels.
    pub x: u32,
    /// Top edge of `rect`, in frame pixels.
    pub y: u32,
    /// Width of `rect`; may be 0 when the predicted box lies outside the frame
    /// and the mask is empty.
    pub width: u32,
    /// Height of `rect`.
    pub height: u32,
    /// The mask inside `rect`: `width * height` bytes, row by row, 255 inside
    /// the object and 0 outside. `rect` covers the predicted box (clipped to
    /// the frame) and every mask pixel, so no mask pixel is lost.
    pub mask: Vec<u8>,
}

impl fmt::Debug for SegmentedInstance {
    // The mask is summarised: printing thousands of bytes helps nobody.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("SegmentedInstance")
            .field("index", &self.index)
            .field("id", &self.id)
            .field("label", &self.label)
            .field("phrase_index", &self.phrase_index)
            .field("score", &self.score)
            .field("bbox", &self.bbox)
            .field("rect", &self.rect())
            .field(
                "mask",
                &format_args!(
                    "{} bytes, {} set",
                    self.mask.len(),
                    self.mask.iter().filter(|v| **v != 0).count()
                ),
            )
            .finish()
    }
}

impl SegmentedInstance {
    /// The pixel rectangle (x, y, width, height) that `mask` covers.
    pub fn rect(&self) -> (u32, u32, u32, u32) {
        (self.x, self.y, self.width, self.height)
    }

    /// Whether frame pixel (`fx`, `fy`) belongs to the object.
    pub fn contains(&self, fx: u32, fy: u32) -> bool {
        if fx < self.x || fy < self.y || fx >= self.x + self.width || fy >= self.y + self.height {
            return false;
        }
        let i = (fy - self.y) as usize * self.width as usize + (fx - self.x) as usize;
        self.mask.get(i).is_some_and(|v| *v != 0)
    }
}

/// The whole result of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    /// The prompt in effect for this frame (trimmed); empty when none was set.
    pub prompt: String,
    pub state: InferenceState,
    /// Timestamp of the frame the model actually looked at: the buffer's own
    /// for fresh results, an earlier buffer's when a result is reused
    /// (`inference-interval`) or arrives late (`asynchronous`).
    pub source_pts: Option<gst::ClockTime>,
    /// Size of the frame the geometry refers to.
    pub frame_width: u32,
    pub frame_height: u32,
    /// The objects found, highest score first.
    pub instances: Vec<SegmentedInstance>,
}

/// An empty result (a meta made without one, from C): nothing computed yet.
impl Default for Segmentation {
    fn default() -> Self {
        Segmentation {
            prompt: String::new(),
            state: InferenceState::Pending,
            source_pts: None,
            frame_width: 0,
            frame_height: 0,
            instances: Vec::new(),
        }
    }
}

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
pub fn instance_rect(
    inst: &samclipseg::Instance,
    width: usize,
    height: usize,
) -> (usize, usize, usize, usize) {
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

impl Segmentation {
    /// The meta's form of core-library instances found on a `width` x
    /// `height` frame: rectangles clipped to the frame and grown to hold every
    /// mask pixel, masks cropped to them, ids as the tracker gave them.
    pub fn from_instances(
        prompt: &str,
        state: InferenceState,
        source_pts: Option<gst::ClockTime>,
        instances: &[samclipseg::Instance],
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
                    id: inst.id,
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

    /// The result as it applies to the same picture scaled to `width` x
    /// `height`: boxes scaled, rectangles rounded outwards, masks resampled
    /// (nearest neighbour). The same size gives an identical copy.
    pub fn scaled(&self, width: u32, height: u32) -> Segmentation {
        let (fw, fh) = (self.frame_width, self.frame_height);
        if (fw, fh) == (width, height) || fw == 0 || fh == 0 {
            return Segmentation {
                frame_width: width,
                frame_height: height,
                ..self.clone()
            };
        }
        let sx = width as f64 / fw as f64;
        let sy = height as f64 / fh as f64;
        // New pixel span [lo, hi) covering old span [a, a + n).
        let span = |a: u32, n: u32, s: f64, limit: u32| {
            let lo = ((a as f64 * s).floor() as u32).min(limit);
            let hi = (((a + n) as f64 * s).ceil() as u32).clamp(lo, limit);
            (lo, hi - lo)
        };
        let instances = self
            .instances
            .iter()
            .map(|inst| {
                let (x, w) = span(inst.x, inst.width, sx, width);
                let (y, h) = span(inst.y, inst.height, sy, height);
                let mut mask = vec![0u8; (w * h) as usize];
                for ny in 0..h {
                    // Centre of the new pixel, in old frame pixels.
                    let oy = (((y + ny) as f64 + 0.5) / sy).floor() as u32;
                    for nx in 0..w {
                        let ox = (((x + nx) as f64 + 0.5) / sx).floor() as u32;
                        if inst.contains(ox, oy) {
                            mask[(ny * w + nx) as usize] = 255;
                        }
                    }
                }
                SegmentedInstance {
                    bbox: [
                        (inst.bbox[0] as f64 * sx) as f32,
                        (inst.bbox[1] as f64 * sy) as f32,
                        (inst.bbox[2] as f64 * sx) as f32,
                        (inst.bbox[3] as f64 * sy) as f32,
                    ],
                    x,
                    y,
                    width: w,
                    height: h,
                    mask,
                    ..inst.clone()
                }
            })
            .collect();
        Segmentation {
            prompt: self.prompt.clone(),
            state: self.state,
            source_pts: self.source_pts,
            frame_width: width,
            frame_height: height,
            instances,
        }
    }
}

/// The samclipseg result attached to a buffer (`GstSamClipSegMeta`, API type
/// `GstSamClipSegMetaAPI`). Every buffer leaving a `samclipseg` element carries
/// exactly one, also when nothing was found.
///
/// ```no_run
/// use gstsamclipseg::SamClipSegMeta;
///
/// fn print_objects(buffer: &gst::BufferRef) {
///     let Some(meta) = SamClipSegMeta::from_buffer(buffer) else {
///         return;
///     };
///     println!("prompt {:?}, state {:?}", meta.prompt(), meta.state());
///     for inst in meta.instances() {
///         let (x, y, w, h) = inst.rect();
///         let area = inst.mask.iter().filter(|v| **v != 0).count();
///         println!("{} {:.2} at {x},{y} {w}x{h}, {area} pixels", inst.label, inst.score);
///     }
/// }
/// ```
#[repr(transparent)]
pub struct SamClipSegMeta(imp::SamClipSegMeta);

// The meta only holds owned Rust data that is itself Send + Sync.
unsafe impl Send for SamClipSegMeta {}
unsafe impl Sync for SamClipSegMeta {}

impl SamClipSegMeta {
    /// Attaches `segmentation` to `buffer`. A buffer should carry at most one;
    /// `samclipseg` removes an older one before adding its own.
    pub fn add(
        buffer: &mut gst::BufferRef,
        segmentation: Segmentation,
    ) -> Result<gst::MetaRefMut<'_, Self, gst::meta::Standalone>, glib::BoolError> {
        let info = imp::meta_info();
        if info.is_null() {
            return Err(glib::bool_error!(
                "GstSamClipSegMeta could not be registered"
            ));
        }
        unsafe {
            // gst_buffer_add_meta() hands the params to meta_init, which moves
            // them into the meta: they must not be dropped here as well.
            let mut params = mem::ManuallyDrop::new(imp::Params { segmentation });
            let meta = gst::ffi::gst_buffer_add_meta(
                buffer.as_mut_ptr(),
                info,
                &mut *params as *mut imp::Params as glib::ffi::gpointer,
            ) as *mut imp::SamClipSegMeta;
            if meta.is_null() {
                // meta_init never ran: the params are still ours to drop.
                mem::ManuallyDrop::drop(&mut params);
                return Err(glib::bool_error!(
                    "cannot add GstSamClipSegMeta to the buffer"
                ));
            }
            Ok(Self::from_mut_ptr(buffer, meta))
        }
    }

    /// The meta of `buffer`, if it has one.
    pub fn from_buffer(buffer: &gst::BufferRef) -> Option<gst::MetaRef<'_, Self>> {
        buffer.meta::<Self>()
    }

    pub fn segmentation(&self) -> &Segmentation {
        &self.0.segmentation
    }

    pub fn prompt(&self) -> &str {
        &self.0.segmentation.prompt
    }

    pub fn state(&self) -> InferenceState {
        self.0.segmentation.state
    }

    /// Timestamp of the frame this result was computed on (see [`Segmentation::source_pts`]).
    pub fn source_pts(&self) -> Option<gst::ClockTime> {
        self.0.segmentation.source_pts
    }

    /// (width, height) of the frame the boxes and masks refer to.
    pub fn frame_size(&self) -> (u32, u32) {
        (
            self.0.segmentation.frame_width,
            self.0.segmentation.frame_height,
        )
    }

    pub fn instances(&self) -> &[SegmentedInstance] {
        &self.0.segmentation.instances
    }

    /// The GType of the meta API, for `gst_buffer_get_meta()` from C or other
    /// bindings.
    pub fn api_type() -> glib::Type {
        imp::api_type()
    }
}

unsafe impl MetaAPI for SamClipSegMeta {
    type GstType = imp::SamClipSegMeta;

    fn meta_api() -> glib::Type {
        imp::api_type()
    }
}

impl fmt::Debug for SamClipSegMeta {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("SamClipSegMeta")
            .field("prompt", &self.prompt())
            .field("state", &self.state())
            .field("frame_size", &self.frame_size())
            .field("instances", &self.instances().len())
            .finish()
    }
}

mod imp {
    use super::*;

    const API_NAME: &glib::GStr = glib::gstr!("GstSamClipSegMetaAPI");
    const META_NAME: &glib::GStr = glib::gstr!("GstSamClipSegMeta");

    pub(super) struct Params {
        pub(super) segmentation: Segmentation,
    }

    /// The C struct stored in the buffer: the GstMeta header, then Rust data.
    #[repr(C)]
    pub struct SamClipSegMeta {
        parent: gst::ffi::GstMeta,
        pub(super) segmentation: Segmentation,
    }

    pub(super) fn api_type() -> glib::Type {
        static TYPE: std::sync::OnceLock<glib::Type> = std::sync::OnceLock::new();
        *TYPE.get_or_init(|| unsafe {
            // When both a statically linked copy of this crate and the loaded
            // plugin exist in one process, the second registration would fail:
            // reuse the type the first one registered.
            let existing = glib::Type::from_name(API_NAME.as_str());
            if let Some(t) = existing {
                return t;
            }
            let tags = [
                glib::gstr!("video").as_ptr(),
                glib::gstr!("size").as_ptr(),
                glib::gstr!("orientation").as_ptr(),
                ptr::null(),
            ];
            from_glib(gst::ffi::gst_meta_api_type_register(
                API_NAME.as_ptr(),
                tags.as_ptr() as *mut *const _,
            ))
        })
    }

    unsafe extern "C" fn meta_init(
        meta: *mut gst::ffi::GstMeta,
        params: glib::ffi::gpointer,
        _buffer: *mut gst::ffi::GstBuffer,
    ) -> glib::ffi::gboolean {
        unsafe {
            let meta = &mut *(meta as *mut SamClipSegMeta);
            // The memory is uninitialised: write, never assign (which would drop garbage).
            let segmentation = if params.is_null() {
                Segmentation::default()
            } else {
                ptr::read(params as *const Params).segmentation
            };
            ptr::write(&mut meta.segmentation, segmentation);
        }
        true.into_glib()
    }

    unsafe extern "C" fn meta_free(
        meta: *mut gst::ffi::GstMeta,
        _buffer: *mut gst::ffi::GstBuffer,
    ) {
        unsafe {
            let meta = &mut *(meta as *mut SamClipSegMeta);
            ptr::drop_in_place(&mut meta.segmentation);
        }
    }

    unsafe extern "C" fn meta_transform(
        dest: *mut gst::ffi::GstBuffer,
        meta: *mut gst::ffi::GstMeta,
        _buffer: *mut gst::ffi::GstBuffer,
        type_: glib::ffi::GQuark,
        data: glib::ffi::gpointer,
    ) -> glib::ffi::gboolean {
        unsafe {
            use gst::meta::MetaTransform;
            let meta = &*(meta as *const SamClipSegMeta);
            let segmentation = if type_ == gst::meta::MetaTransformCopy::quark().into_glib() {
                meta.segmentation.clone()
            } else if type_ == gst_video::ffi::gst_video_meta_transform_scale_get_quark()
                && !data.is_null()
            {
                // videoscale, and videoconvert even at the same size.
                let t = &*(data as *const gst_video::ffi::GstVideoMetaTransform);
                if t.out_info.is_null() {
                    return false.into_glib();
                }
                let out = &*t.out_info;
                if out.width <= 0 || out.height <= 0 {
                    return false.into_glib();
                }
                meta.segmentation
                    .scaled(out.width as u32, out.height as u32)
            } else {
                // Flips, rotations, ...: the geometry would be wrong.
                return false.into_glib();
            };
            super::SamClipSegMeta::add(gst::BufferRef::from_mut_ptr(dest), segmentation)
                .is_ok()
                .into_glib()
        }
    }

    struct MetaInfo(ptr::NonNull<gst::ffi::GstMetaInfo>);
    // GstMetaInfo is immutable once registered.
    unsafe impl Send for MetaInfo {}
    unsafe impl Sync for MetaInfo {}

    pub(super) fn meta_info() -> *const gst::ffi::GstMetaInfo {
        static INFO: std::sync::OnceLock<Option<MetaInfo>> = std::sync::OnceLock::new();
        INFO.get_or_init(|| unsafe {
            let existing = gst::ffi::gst_meta_get_info(META_NAME.as_ptr());
            if let Some(info) = ptr::NonNull::new(existing as *mut gst::ffi::GstMetaInfo) {
                return Some(MetaInfo(info));
            }
            ptr::NonNull::new(gst::ffi::gst_meta_register(
                api_type().into_glib(),
                META_NAME.as_ptr(),
                mem::size_of::<SamClipSegMeta>(),
                Some(meta_init),
                Some(meta_free),
                Some(meta_transform),
            ) as *mut gst::ffi::GstMetaInfo)
            .map(MetaInfo)
        })
        .as_ref()
        .map_or(ptr::null(), |i| i.0.as_ptr())
    }
}

/// Registers the meta API and implementation; called from `plugin_init`.
pub(crate) fn register() -> Result<(), glib::BoolError> {
    if imp::meta_info().is_null() || SamClipSegMeta::api_type() == glib::Type::INVALID {
        return Err(glib::bool_error!("cannot register GstSamClipSegMeta"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use samclipseg::{Instance, Mask};

    fn inst(bbox: [f32; 4], set: &[(usize, usize)], w: usize, h: usize) -> Instance {
        let mut data = vec![0u8; w * h];
        for &(x, y) in set {
            data[y * w + x] = 255;
        }
        Instance {
            label: "x".into(),
            id: 7,
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
        let seg = Segmentation::from_instances("cat", InferenceState::Fresh, None, &[i], 6, 6);
        let s = &seg.instances[0];
        assert_eq!(s.id, 7);
        assert_eq!(s.rect(), (0, 0, 5, 5));
        assert_eq!(s.mask.len(), 25);
        assert!(s.contains(1, 1) && s.contains(4, 4) && !s.contains(2, 2));
        assert!(!s.contains(5, 5));
    }
}
