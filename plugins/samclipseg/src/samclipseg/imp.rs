//! The `samclipseg` element: a video filter that works in place. Each buffer
//! is mapped stride-aware and handed to the core's stream layer
//! (`samclipseg::Stream`), which decides what the frame carries; the result
//! leaves as a `SamClipSegMeta` and ROI metas (and, by `output-mode`, masks in
//! the alpha channel or an overlay in the pixels). Properties live in
//! `properties.rs`, the `suggest` action in `suggest.rs`.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::subclass::prelude::*;
use samclipseg::{FrameResult, FrameSettings, Request, Segmenter, Stream, StreamHandle, YuvMatrix};

use super::result::{self, Times};
use super::settings::{OutputMode, Settings};
use super::{properties, video};
use crate::meta::Segmentation;

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "samclipseg",
        gst::DebugColorFlags::empty(),
        Some("SAM 3 text-prompted segmentation"),
    )
});

/// What exists between start() and stop(); only ever locked briefly.
pub(super) struct State {
    /// The bundle's mask threshold (manifest `decoder.mask_threshold`).
    mask_threshold: f32,
    /// The bundle's calibrated instance threshold (manifest
    /// `decoder.default_threshold`), used while `threshold` is -1.
    default_threshold: f32,
    /// Negotiated video, from set_info().
    info: Option<gst_video::VideoInfo>,
    matrix: YuvMatrix,
    /// Interrupts the stream's runs and feeds `suggest`, without `stream`'s lock.
    handle: StreamHandle,
    /// `precision-in-use`: what the model runs in, and why.
    precision: String,
}

#[derive(Default)]
pub struct SamClipSeg {
    pub(super) settings: Mutex<Settings>,
    pub(super) state: Mutex<Option<State>>,
    /// The stream layer, held by the streaming thread for a whole frame.
    stream: Mutex<Option<Stream>>,
    /// Prompt values already warned about as not English.
    pub(super) warned_prompts: Mutex<VecDeque<String>>,
}

/// Locks a mutex even if an earlier panic poisoned it: the data behind these
/// locks (plain settings, an `Option<State>`) stays consistent under panics.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SamClipSeg {
    /// Runs the per-frame work in `f`, turning a panic in it (in the backend,
    /// say) into an element error instead of taking the element down for good.
    fn guard<R>(&self, f: impl FnOnce() -> Result<R, gst::FlowError>) -> Result<R, gst::FlowError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("unknown cause");
            // What the model remembers of the last picture may be half-updated.
            self.reset_stream();
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Inference failed: the model panicked ({})", what)
            );
            Err(gst::FlowError::Error)
        })
    }

    /// A new stream generation: forgets the last picture, result and tracks,
    /// and abandons runs in progress (a flush, new caps, a panic).
    fn reset_stream(&self) {
        if let Some(stream) = lock(&self.stream).as_mut() {
            stream.reset();
        }
    }

    pub(super) fn stream_handle(&self) -> Option<StreamHandle> {
        lock(&self.state).as_ref().map(|s| s.handle.clone())
    }

    /// See the `precision-in-use` property.
    pub(super) fn precision_in_use(&self) -> String {
        lock(&self.state)
            .as_ref()
            .map(|s| s.precision.clone())
            .unwrap_or_default()
    }

    /// Lets a frame waiting for a run go, and abandons the run (a flush or a
    /// stop is coming).
    fn interrupt_stream(&self) {
        if let Some(handle) = self.stream_handle() {
            handle.interrupt();
        }
    }

    /// What a mapped frame carries for `request`.
    fn infer<T>(
        &self,
        frame: &gst_video::VideoFrameRef<T>,
        pts: Option<gst::ClockTime>,
        request: &Request,
        live: &FrameSettings,
        matrix: YuvMatrix,
    ) -> Result<FrameResult, gst::FlowError> {
        let core = video::core_frame(frame, matrix).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Cannot read the frame: {}", e)
            );
            gst::FlowError::Error
        })?;
        let result = {
            let mut stream = lock(&self.stream);
            let stream = stream.as_mut().ok_or(gst::FlowError::Flushing)?;
            let result = stream.frame(&core, pts.map(|p| p.nseconds()), request, live);
            (result, stream.take_notices())
        };
        let (result, notices) = result;
        for notice in notices {
            self.post_notice(notice);
        }
        // Posted once the stream lock is released: a sync bus handler may stop us.
        result.map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("Inference failed: {}", e));
            gst::FlowError::Error
        })
    }

    /// A server outage and its end, as bus warnings.
    fn post_notice(&self, notice: samclipseg::stream::Notice) {
        use samclipseg::stream::Notice;
        match notice {
            Notice::ServerLost { server, message } => gst::element_imp_warning!(
                self,
                gst::ResourceError::Read,
                (
                    "The inference server {} does not answer: frames pass without results until it is back ({})",
                    server,
                    message
                )
            ),
            Notice::ServerBack { server } => gst::element_imp_warning!(
                self,
                gst::ResourceError::Read,
                (
                    "The inference server {} answers again: inference resumed",
                    server
                )
            ),
        }
    }

    /// A gap buffer: no picture to segment. Its `alpha_frame`, in alpha
    /// mode, gets an alpha that says "no object" everywhere.
    fn gap(
        &self,
        alpha_frame: Option<&mut gst_video::VideoFrameRef<&mut gst::BufferRef>>,
    ) -> Result<FrameResult, gst::FlowError> {
        let result = lock(&self.stream)
            .as_ref()
            .map(Stream::gap)
            .ok_or(gst::FlowError::Flushing)?;
        if let Some(frame) = alpha_frame {
            self.render(frame, OutputMode::Alpha, &result, &[])?;
        }
        Ok(result)
    }

    fn map_error(&self, e: glib::BoolError) -> gst::FlowError {
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("Cannot map the frame: {}", e)
        );
        gst::FlowError::Error
    }

    fn times(&self, pts: Option<gst::ClockTime>) -> Times {
        let segment = self.obj().segment();
        let seg = segment.downcast_ref::<gst::ClockTime>();
        Times {
            pts,
            running_time: seg.and_then(|s| s.to_running_time(pts)),
            stream_time: seg.and_then(|s| s.to_stream_time(pts)),
            stages: None,
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SamClipSeg {
    const NAME: &'static str = "GstSamClipSeg";
    type Type = super::SamClipSeg;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for SamClipSeg {
    fn constructed(&self) {
        self.parent_constructed();
        // VideoFilter turns QoS on, which lets BaseTransform drop late frames;
        // every input buffer must leave as one output buffer.
        self.obj().set_qos(false);
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                glib::subclass::Signal::builder("suggest")
                    .param_types([u32::static_type()])
                    .return_type::<gst::Structure>()
                    .action()
                    .class_handler(|args| {
                        let element = args
                            .first()
                            .and_then(|a| a.get::<super::SamClipSeg>().ok())?;
                        let k = args.get(1).and_then(|a| a.get::<u32>().ok()).unwrap_or(5);
                        Some(element.imp().suggest(k).to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn properties() -> &'static [glib::ParamSpec] {
        properties::specs()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        self.set_property_value(value, pspec)
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        self.property_value(pspec)
    }
}

impl GstObjectImpl for SamClipSeg {}

impl ElementImpl for SamClipSeg {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SAM 3 text-prompted segmentation",
                "Filter/Analyzer/Video",
                "Segments the objects a plain-English prompt names (SAM 3), \
                 as buffer metadata, alpha masks or an overlay",
                "samclipseg developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = video::caps_for(&video::ALL_FORMATS);
            [gst::PadDirection::Src, gst::PadDirection::Sink]
                .into_iter()
                .filter_map(|dir| {
                    let name = if dir == gst::PadDirection::Src {
                        "src"
                    } else {
                        "sink"
                    };
                    gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps).ok()
                })
                .collect()
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PausedToReady {
            // Before the pads deactivate, which waits for the streaming
            // thread: a frame waiting for a run must not hold up stopping.
            self.interrupt_stream();
        }
        self.parent_change_state(transition)
    }
}

impl BaseTransformImpl for SamClipSeg {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        gst::info!(
            CAT,
            imp = self,
            "loading bundle {} on {:?} ({} threads)",
            settings.bundle,
            settings.backend,
            settings.threads
        );
        // Elements on the same bundle and backend share one loaded model.
        let model = samclipseg::shared_model(
            std::path::Path::new(&settings.bundle),
            &settings.backend_options(),
        )
        .map_err(|e| {
            use samclipseg::Error;
            match e {
                Error::BundleMissing { .. } => gst::error_msg!(
                    gst::ResourceError::NotFound,
                    ("Cannot load the samclipseg bundle: {}", e)
                ),
                Error::BundleFile { .. } => gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ("Cannot read the samclipseg bundle: {}", e)
                ),
                _ => gst::error_msg!(
                    gst::LibraryError::Init,
                    (
                        "Cannot start the samclipseg model from {}: {}",
                        settings.bundle,
                        e
                    )
                ),
            }
        })?;
        let choice = model.precision();
        let precision = format!("{} ({})", choice.precision, choice.reason);
        gst::info!(CAT, imp = self, "image encoder and decoder in {precision}");
        let mask_threshold = model.manifest().decoder.mask_threshold;
        let default_threshold = model.manifest().decoder.default_threshold;
        gst::info!(
            CAT,
            imp = self,
            "loaded bundle {} ({})",
            model.manifest().bundle.name,
            settings.bundle
        );
        if settings.threshold < 0.0 {
            gst::info!(
                CAT,
                imp = self,
                "threshold: bundle default {}",
                settings.effective_threshold(default_threshold)
            );
        }
        let segmenter = Segmenter::new(model, settings.reuse_threshold);
        let stream = Stream::new(segmenter, settings.asynchronous).map_err(|e| {
            gst::error_msg!(
                gst::CoreError::Thread,
                ("Cannot start asynchronous inference: {}", e)
            )
        })?;
        *lock(&self.state) = Some(State {
            mask_threshold,
            default_threshold,
            info: None,
            matrix: YuvMatrix::default(),
            handle: stream.handle(),
            precision,
        });
        *lock(&self.stream) = Some(stream);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropping the stream abandons a run in progress (asynchronous mode).
        let stream = lock(&self.stream).take();
        drop(stream);
        *lock(&self.state) = None;
        gst::info!(CAT, imp = self, "stopped, model released");
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            // The frame in progress may be waiting for a run: let it go.
            gst::EventView::FlushStart(_) => {
                self.interrupt_stream();
            }
            // After a seek the next picture has nothing to do with the last,
            // and the objects in it are new ones.
            gst::EventView::FlushStop(_) => self.reset_stream(),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        // In place: the same caps on both sides, restricted to what the
        // output mode can work on.
        let mode = lock(&self.settings).output_mode;
        let allowed = video::caps_for(video::formats_for(mode));
        let mut out = caps.intersect_with_mode(&allowed, gst::CapsIntersectMode::First);
        if let Some(filter) = filter {
            out = filter.intersect_with_mode(&out, gst::CapsIntersectMode::First);
        }
        gst::debug!(
            CAT,
            imp = self,
            "transformed {caps} ({direction:?}, {mode:?}) to {out}"
        );
        Some(out)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        // The frame is mapped here rather than in transform_frame_ip so that
        // the metas can be attached once the mapping is released.
        let settings = lock(&self.settings).clone();
        let (info, matrix, request) = {
            let state = lock(&self.state);
            let Some(state) = state.as_ref() else {
                // Only a buffer racing with stop() gets here: not worth an error.
                return Err(gst::FlowError::Flushing);
            };
            let Some(info) = state.info.clone() else {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("No caps set"));
                return Err(gst::FlowError::NotNegotiated);
            };
            let request = settings.request(state.mask_threshold, state.default_threshold);
            (info, state.matrix, request)
        };
        let live = settings.live();
        let mode = settings.output_mode;
        let pts = buf.pts();
        let phrases = request.phrases();
        // A gap buffer has no picture worth looking at (and may have no memory).
        let result = if buf.flags().contains(gst::BufferFlags::GAP) {
            // Mapped only where its alpha is written (a gap may have no memory).
            let mut frame = (mode == OutputMode::Alpha)
                .then(|| gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info).ok())
                .flatten();
            self.gap(frame.as_mut())?
        } else if mode == OutputMode::Meta {
            // Read-only mapping: shared memory is not copied when pixels stay as they are.
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info)
                .map_err(|e| self.map_error(e))?;
            self.guard(|| self.infer(&frame, pts, &request, &live, matrix))?
        } else {
            // Also with an empty prompt: the alpha channel then says "no object" everywhere.
            let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info)
                .map_err(|e| self.map_error(e))?;
            self.guard(|| {
                let result = self.infer(&frame, pts, &request, &live, matrix)?;
                self.render(&mut frame, mode, &result, &phrases)?;
                Ok(result)
            })?
        };

        let prompt = settings.prompt.trim();
        let seg = Segmentation::from_instances(
            prompt,
            result.state,
            result.source_pts.map(gst::ClockTime::from_nseconds),
            &result.instances,
            info.width() as usize,
            info.height() as usize,
        );
        gst::log!(
            CAT,
            imp = self,
            "{:?}: {} ({}), {} instance(s) of {:?}",
            pts,
            result.state,
            result.request_generation,
            seg.instances.len(),
            prompt
        );
        if settings.post_messages {
            let times = Times {
                stages: result.times,
                ..self.times(pts)
            };
            let s = result::message_structure(&seg, times);
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
        }
        result::attach(buf, seg).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Cannot attach metadata: {}", e)
            );
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}

impl VideoFilterImpl for SamClipSeg {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        _outcaps: &gst::Caps,
        _out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        let mode = lock(&self.settings).output_mode;
        let format = in_info.format();
        if !video::formats_for(mode).contains(&format) {
            let allowed: Vec<&str> = video::formats_for(mode)
                .iter()
                .map(|f| f.to_str().as_str())
                .collect();
            return Err(gst::loggable_error!(
                CAT,
                "output-mode={} cannot work on {} video: it needs one of {}",
                match mode {
                    OutputMode::Meta => "meta",
                    OutputMode::Alpha => "alpha",
                    OutputMode::Overlay => "overlay",
                },
                format.to_str(),
                allowed.join(", ")
            ));
        }
        // New caps: a new stream generation (no earlier picture's masks on
        // these frames). The same caps again (a renegotiation) change nothing.
        let unchanged = lock(&self.state)
            .as_ref()
            .is_some_and(|s| s.info.as_ref() == Some(in_info));
        if !unchanged && let Some(stream) = lock(&self.stream).as_mut() {
            stream.new_caps();
        }
        let mut state = lock(&self.state);
        let Some(state) = state.as_mut() else {
            return Err(gst::loggable_error!(
                CAT,
                "caps set before the element started"
            ));
        };
        state.matrix = video::yuv_matrix(in_info);
        state.info = Some(in_info.clone());
        gst::debug!(
            CAT,
            imp = self,
            "configured for {incaps} (YUV matrix {:?})",
            state.matrix
        );
        Ok(())
    }
}
