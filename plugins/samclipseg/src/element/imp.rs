//! The `samclipseg` element: a video filter that works in place. Each buffer
//! is mapped stride-aware and handed to the core's stream layer
//! (`samclipseg::Stream`), which decides what the frame carries; the result
//! leaves as a `SamClipSegMeta` and ROI metas (and, by `output-mode`, masks in
//! the alpha channel or an overlay in the pixels). The vfuncs are here;
//! the property table is `properties.rs`, drawing `draw.rs`, the `suggest`
//! action `suggest.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::subclass::prelude::*;
use samclipseg::model::bundle::Manifest;
use samclipseg::stream::VideoLimits;
use samclipseg::sync::lock;
use samclipseg::{FrameResult, Segmenter, Stream, StreamHandle, VideoSegmenter, YuvMatrix};

use super::result::{self, Times};
use super::settings::{FrameSetup, OutputMode, Settings, TrackerMode};
use super::{draw, properties, suggest, video};
use crate::logger::CAT;
use crate::meta::Segmentation;

/// How many prompt values the translation warning remembers, so that it is
/// posted once per value (bounded for applications that change the prompt a lot).
const WARNED_PROMPTS: usize = 64;

/// What exists between start() and stop(); only ever locked briefly.
struct State {
    /// The loaded bundle's manifest: its thresholds resolve the request.
    manifest: Manifest,
    /// What a buffer uses; replaced when a per-frame property changes.
    frame: Arc<FrameSetup>,
    /// Negotiated video, from set_info().
    info: Option<gst_video::VideoInfo>,
    matrix: YuvMatrix,
    /// Interrupts the stream's runs and feeds `suggest`, without `stream`'s lock.
    handle: StreamHandle,
    /// `precision-in-use`: what the model runs in, and why.
    precision: String,
}

/// What gst-inspect-1.0 says the element does, and which metadata this build attaches.
#[cfg(feature = "analytics")]
const METADATA_DESCRIPTION: &str = "Segments the objects a plain-English prompt names (SAM 3), \
     as buffer metadata, alpha masks or an overlay. Metadata: SamClipSegMeta, one \
     GstVideoRegionOfInterestMeta per object and GstAnalytics Mtds (object detection, \
     tracking, segmentation, classification; built for GStreamer >= 1.26)";
#[cfg(not(feature = "analytics"))]
const METADATA_DESCRIPTION: &str = "Segments the objects a plain-English prompt names (SAM 3), \
     as buffer metadata, alpha masks or an overlay. Metadata: SamClipSegMeta and one \
     GstVideoRegionOfInterestMeta per object (built without GstAnalytics)";

pub struct SamClipSeg {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The stream layer, held by the streaming thread for a whole frame.
    stream: Mutex<Option<Stream>>,
    /// Prompt values already warned about (see `warn_about_translation`).
    warned_prompts: Mutex<VecDeque<String>>,
    /// When each tracking id was first and last reported (the tracking Mtds).
    #[cfg(feature = "analytics")]
    tracks: Mutex<super::analytics::Tracks>,
}

impl Default for SamClipSeg {
    fn default() -> Self {
        SamClipSeg {
            settings: Mutex::new(properties::initial()),
            state: Mutex::default(),
            stream: Mutex::default(),
            warned_prompts: Mutex::default(),
            #[cfg(feature = "analytics")]
            tracks: Mutex::default(),
        }
    }
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

    fn stream_handle(&self) -> Option<StreamHandle> {
        lock(&self.state).as_ref().map(|s| s.handle.clone())
    }

    /// See the `precision-in-use` property.
    fn precision_in_use(&self) -> String {
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
        setup: &FrameSetup,
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
            let result = stream.frame(
                &core,
                pts.map(|p| p.nseconds()),
                &setup.request,
                &setup.stream,
            );
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
            self.render(frame, OutputMode::Alpha, &result, None)?;
        }
        Ok(result)
    }

    /// Draws the result into the frame (see `draw.rs`), posting what fails.
    fn render(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
        mode: OutputMode,
        result: &FrameResult,
        request: Option<&samclipseg::Request>,
    ) -> Result<(), gst::FlowError> {
        draw::render(frame, mode, result, request).map_err(|failure| {
            self.post_error_message(failure.message);
            failure.flow
        })
    }

    /// Ranks the vocabulary for the `suggest` action and posts the result.
    fn suggest(&self, k: u32) -> gst::Structure {
        let (vocabulary, prompt) = {
            let settings = lock(&self.settings);
            (
                settings.frame.vocabulary.clone(),
                settings.frame.prompt.clone(),
            )
        };
        let s = suggest::suggestions(self.stream_handle(), &vocabulary, &prompt, k as usize);
        if let Ok(e) = s.get::<String>("error") {
            gst::warning!(CAT, imp = self, "suggest: {e}");
        }
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s.clone()).src(&*obj).build());
        s
    }

    /// Whether the model is loaded, i.e. the element is between start() and
    /// stop(): properties that need a reload are refused then.
    fn started(&self) -> bool {
        lock(&self.state).is_some()
    }

    /// Warns on the bus when the prompt has more phrases than the cap
    /// (`samclipseg::prompt::syntax::MAX_PHRASES`); the extra ones are not segmented.
    fn warn_if_capped(&self, prompt: &str, negative_prompt: &str) {
        let set = samclipseg::prompt::syntax::PromptSet::parse(prompt, negative_prompt);
        if let Some(w) = set.cap_warning() {
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", w));
        }
    }

    /// Warns on the bus, once per prompt value, about what the translation
    /// of its phrases could not do: Chinese words the dictionaries do not
    /// have (named, with what was sent instead), and phrases in other
    /// scripts, which are sent as typed. Latin script passes untouched.
    fn warn_about_translation(&self, prompt: &str, negative_prompt: &str) {
        let set = samclipseg::prompt::syntax::PromptSet::parse(prompt, negative_prompt);
        let Some(warning) = set.translation_warning() else {
            return;
        };
        {
            let key = format!("{prompt}\u{0}{negative_prompt}");
            let mut warned = lock(&self.warned_prompts);
            if warned.iter().any(|w| *w == key) {
                return;
            }
            if warned.len() >= WARNED_PROMPTS {
                warned.pop_front();
            }
            warned.push_back(key);
        }
        gst::element_imp_warning!(self, gst::LibraryError::Settings, ("prompt: {}", warning));
    }

    /// A string property's value as UTF-8. GLib does not check that a
    /// `char *` set through the C API is UTF-8 (and glib-rs panics on one
    /// that is not), so the bytes are read here and invalid ones become
    /// U+FFFD, with a warning.
    fn utf8_value(&self, name: &str, value: &glib::Value) -> Option<glib::Value> {
        use glib::translate::ToGlibPtr;
        if !value.type_().is_a(glib::Type::STRING) {
            return None;
        }
        // SAFETY: the value holds a string (checked above), so this returns
        // NULL or a NUL-terminated string that the value owns while we read it.
        let bytes = unsafe {
            let ptr = glib::gobject_ffi::g_value_get_string(value.to_glib_none().0);
            if ptr.is_null() {
                return None;
            }
            std::ffi::CStr::from_ptr(ptr).to_bytes()
        };
        if std::str::from_utf8(bytes).is_ok() {
            return None;
        }
        let s = String::from_utf8_lossy(bytes).into_owned();
        gst::warning!(
            CAT,
            imp = self,
            "property `{name}` is not valid UTF-8; using {s:?} (invalid bytes replaced)"
        );
        Some(s.to_value())
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
        let name = pspec.name();
        let Some(property) = properties::find(name) else {
            gst::warning!(CAT, imp = self, "unknown property {name}");
            return;
        };
        if !property.per_frame() && self.started() {
            gst::warning!(
                CAT,
                imp = self,
                "property `{name}` can only change in the NULL or READY state; keeping the current value"
            );
            return;
        }
        let utf8 = self.utf8_value(name, value);
        let value = utf8.as_ref().unwrap_or(value);
        let mut settings = lock(&self.settings);
        if let Err(why) = (property.set)(&mut settings, value) {
            gst::warning!(CAT, imp = self, "{why}");
            return;
        }
        // What a frame uses is rebuilt here, once, not per buffer.
        if property.per_frame()
            && let Some(state) = lock(&self.state).as_mut()
        {
            state.frame = FrameSetup::new(&settings, &state.manifest);
        }
        if matches!(name, "prompt" | "negative-prompt") {
            let (prompt, negative) = (
                settings.frame.prompt.clone(),
                settings.frame.negative_prompt.clone(),
            );
            // Bus messages wait until the settings lock is released: a sync
            // handler may read properties.
            drop(settings);
            if name == "prompt" {
                gst::info!(CAT, imp = self, "prompt set to {prompt:?}");
            }
            self.warn_about_translation(&prompt, &negative);
            self.warn_if_capped(&prompt, &negative);
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "precision-in-use" => self.precision_in_use().to_value(),
            name => match properties::find(name) {
                Some(p) => (p.get)(&lock(&self.settings)),
                // GLib only asks for properties it knows from properties().
                None => pspec.default_value().clone(),
            },
        }
    }
}

impl GstObjectImpl for SamClipSeg {}

impl ElementImpl for SamClipSeg {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SAM 3 text-prompted segmentation",
                "Filter/Analyzer/Video",
                METADATA_DESCRIPTION,
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
        let start = lock(&self.settings).start.clone();
        gst::info!(
            CAT,
            imp = self,
            "loading bundle {} on {:?} ({} threads)",
            start.bundle,
            start.backend.kind,
            start.backend.intra_threads
        );
        if super::installed_toy_bundle()
            .is_some_and(|toy| toy == std::path::Path::new(&start.bundle))
        {
            gst::warning!(
                CAT,
                imp = self,
                "running the toy shapes-world bundle {} (the default when no SAM 3 bundle is \
                 installed in {}): it finds only shapes such as \"red circle\"; docs/models.md \
                 says how to build the real one",
                start.bundle,
                super::bundle_search_path()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // Elements on the same bundle and backend share one loaded model.
        let model = samclipseg::shared_model(std::path::Path::new(&start.bundle), &start.backend)
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
                        start.bundle,
                        e
                    )
                ),
            }
        })?;
        let choice = model.precision();
        let mut precision = format!("{} ({})", choice.precision, choice.reason);
        gst::info!(CAT, imp = self, "image encoder and decoder in {precision}");
        if let Some(tracker) = model.tracker_precision() {
            gst::info!(CAT, imp = self, "{tracker}");
            precision = format!("{precision}; {tracker}");
        }
        let manifest = model.manifest().clone();
        gst::info!(
            CAT,
            imp = self,
            "loaded bundle {} ({}), its threshold {}",
            manifest.bundle.name,
            start.bundle,
            manifest.decoder.default_threshold
        );
        let sam3 = start
            .tracker
            .uses_sam3(manifest.has_tracker())
            .map_err(|e| {
                gst::error_msg!(
                    gst::LibraryError::Settings,
                    ("Cannot use bundle {}: {}", start.bundle, e)
                )
            })?;
        let video = if sam3 {
            let limits = VideoLimits {
                max_objects: (start.max_objects > 0).then_some(start.max_objects as usize),
                ..VideoLimits::default()
            };
            match VideoSegmenter::new(model.clone(), limits) {
                Ok(v) => Some(v),
                // auto: a backend that cannot run the tracker keeps the detector.
                Err(e) if start.tracker == TrackerMode::Auto => {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "tracker=auto: SAM 3's tracker cannot run here ({e}); linking detections \
                         by mask overlap"
                    );
                    None
                }
                Err(e) => {
                    return Err(gst::error_msg!(
                        gst::LibraryError::Init,
                        ("Cannot start SAM 3's video tracker: {}", e)
                    ));
                }
            }
        } else {
            None
        };
        gst::info!(
            CAT,
            imp = self,
            "tracker: {}",
            if video.is_some() {
                "SAM 3's video tracker"
            } else {
                "mask overlap"
            }
        );
        let made = match video {
            Some(v) => Stream::new(v, start.asynchronous),
            None => Stream::new(Segmenter::new(model), start.asynchronous),
        };
        let stream = made.map_err(|e| {
            gst::error_msg!(
                gst::CoreError::Thread,
                ("Cannot start asynchronous inference: {}", e)
            )
        })?;
        // Built under the settings lock, so that a property set while the
        // model loaded is not lost.
        let settings = lock(&self.settings);
        *lock(&self.state) = Some(State {
            frame: FrameSetup::new(&settings, &manifest),
            manifest,
            info: None,
            matrix: YuvMatrix::default(),
            handle: stream.handle(),
            precision,
        });
        drop(settings);
        *lock(&self.stream) = Some(stream);
        // A new stream's tracker starts its ids again.
        #[cfg(feature = "analytics")]
        {
            *lock(&self.tracks) = super::analytics::Tracks::default();
        }
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
        let mode = lock(&self.settings).start.output_mode;
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
        let (info, matrix, setup) = {
            let state = lock(&self.state);
            let Some(state) = state.as_ref() else {
                // Only a buffer racing with stop() gets here: not worth an error.
                return Err(gst::FlowError::Flushing);
            };
            let Some(info) = state.info.clone() else {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("No caps set"));
                return Err(gst::FlowError::NotNegotiated);
            };
            (info, state.matrix, state.frame.clone())
        };
        let mode = setup.output_mode;
        let pts = buf.pts();
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
            self.guard(|| self.infer(&frame, pts, &setup, matrix))?
        } else {
            // Also with an empty prompt: the alpha channel then says "no object" everywhere.
            let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info)
                .map_err(|e| self.map_error(e))?;
            self.guard(|| {
                let result = self.infer(&frame, pts, &setup, matrix)?;
                self.render(&mut frame, mode, &result, Some(&setup.request))?;
                Ok(result)
            })?
        };

        let prompt = setup.label.as_str();
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
        if setup.post_messages {
            let times = Times {
                stages: result.times,
                ..self.times(pts)
            };
            let s = result::message_structure(&seg, times);
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
        }
        #[cfg(feature = "analytics")]
        let live = lock(&self.stream)
            .as_ref()
            .map(|s| s.live_ids())
            .unwrap_or_default();
        #[cfg(feature = "analytics")]
        let mut tracks = lock(&self.tracks);
        let name = self.obj().name();
        result::attach(
            buf,
            seg,
            name.as_str(),
            #[cfg(feature = "analytics")]
            result::AnalyticsFrame {
                pts: pts.unwrap_or(gst::ClockTime::ZERO),
                live: &live,
                tracks: &mut tracks,
            },
        )
        .map_err(|e| {
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
        let mode = lock(&self.settings).start.output_mode;
        let format = in_info.format();
        if !video::formats_for(mode).contains(&format) {
            let allowed: Vec<&str> = video::formats_for(mode)
                .iter()
                .map(|f| f.to_str().as_str())
                .collect();
            return Err(gst::loggable_error!(
                CAT,
                "output-mode={} cannot work on {} video: it needs one of {}",
                mode.nick(),
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
