//! The `samclipseg` element: a video filter that works in place. Each buffer
//! is mapped stride-aware, segmented by the core library for the current
//! prompt, and leaves with a `SamClipSegMeta` and ROI metas (and, by
//! `output-mode`, masks in its alpha channel or an overlay in its pixels).

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use gst::glib;
use gst::glib::translate::ToGlibPtr;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;
use samclipseg::prompt::PromptSet;
use samclipseg::render::Canvas;
use samclipseg::request;
use samclipseg::suggest::{DEFAULT_VOCABULARY, parse_vocabulary};
use samclipseg::tracker::Tracker;
use samclipseg::worker::{AsyncSegmenter, Job};
use samclipseg::{Instance, PostprocessOptions, Segmenter, YuvMatrix};

use super::result::{self, Times};
use super::settings::{self, Backend, OutputMode, Settings};
use super::video;
use crate::meta::InferenceState;

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "samclipseg",
        gst::DebugColorFlags::empty(),
        Some("SAM 3 text-prompted segmentation"),
    )
});

/// How many submitted frames' timestamps asynchronous mode remembers.
const JOB_HISTORY: usize = 64;
/// How many prompt values the "not English" warning remembers, so that it is
/// logged once per value (bounded for applications that change the prompt a lot).
const WARNED_PROMPTS: usize = 64;

/// Where inference runs: in the streaming thread, or on a worker thread.
#[derive(Clone)]
enum Runner {
    /// Its own lock, held for a whole frame, so that `state` is only ever
    /// locked briefly.
    Sync(Arc<Mutex<Segmenter>>),
    Async(Arc<AsyncSegmenter>),
}

/// What exists between start() and stop().
struct State {
    /// The shared model plus this stream's memory of the last picture and
    /// request (which decides the frame's inference state).
    runner: Runner,
    /// The bundle's mask threshold (manifest `decoder.mask_threshold`).
    mask_threshold: f32,
    /// The bundle's calibrated instance threshold (manifest
    /// `decoder.default_threshold`), used while `threshold` is -1.
    default_threshold: f32,
    /// Negotiated video, from set_info().
    info: Option<gst_video::VideoInfo>,
    matrix: YuvMatrix,
    /// Frames since the model last ran (`inference-interval`); None before the first run.
    since_run: Option<u32>,
    /// Timestamp of the frame whose picture the current result comes from.
    encoded_pts: Option<gst::ClockTime>,
    /// Asynchronous mode: the id of the last submitted frame and the
    /// timestamps of recent ones, to state a late result's source.
    last_job: u64,
    job_pts: VecDeque<(u64, Option<gst::ClockTime>)>,
    /// Stable instance ids across frames.
    tracker: Tracker,
    /// Ids of the last frame's instances, for reused results.
    last_ids: Vec<u64>,
}

impl State {
    /// Whether `inference-interval` says this frame shows the last result.
    fn skip_for_interval(&self, interval: u32) -> bool {
        self.since_run.is_some_and(|n| n + 1 < interval.max(1))
    }
}

/// A frame's result as it goes into the metadata.
#[derive(Default)]
struct Inferred {
    /// Instances of the positive phrases that survived the negative rule.
    instances: Vec<Instance>,
    /// Instances of negative phrases: never reported, cleared from the alpha.
    negatives: Vec<Instance>,
    /// Stable id of each instance.
    ids: Vec<u64>,
    state: InferenceState,
    source_pts: Option<gst::ClockTime>,
    /// The positive phrases, for the overlay's legend.
    phrases: Vec<String>,
}

#[derive(Default)]
pub struct SamClipSeg {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Prompt values already warned about as not English.
    warned_prompts: Mutex<VecDeque<String>>,
}

/// Locks a mutex even if an earlier panic poisoned it: the data behind these
/// locks (plain settings, an `Option<State>`) stays consistent under panics.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SamClipSeg {
    /// Whether the model is loaded, i.e. the element is between start() and
    /// stop(): properties that need a reload are refused then.
    fn started(&self) -> bool {
        lock(&self.state).is_some()
    }

    fn refuse_while_running(&self, name: &str) -> bool {
        if self.started() {
            gst::warning!(
                CAT,
                imp = self,
                "property `{name}` can only change in the NULL or READY state; keeping the current value"
            );
            true
        } else {
            false
        }
    }

    /// A string property's value. GLib does not check that a `char *` set
    /// through the C API is UTF-8 (and glib-rs panics on one that is not), so
    /// the bytes are read here and invalid ones become U+FFFD, with a warning.
    fn string_value(&self, name: &str, value: &glib::Value) -> Option<String> {
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
        Some(match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                let s = String::from_utf8_lossy(bytes).into_owned();
                gst::warning!(
                    CAT,
                    imp = self,
                    "property `{name}` is not valid UTF-8; using {s:?} (invalid bytes replaced)"
                );
                s
            }
        })
    }

    /// Warns, once per prompt value, about phrases the English vocabulary of
    /// the model may not understand. The prompt is still used as it is.
    fn warn_if_not_english(&self, prompt: &str) {
        let foreign: Vec<String> = samclipseg::prompt::parse_phrases(prompt)
            .into_iter()
            .filter(|p| samclipseg::tokenizer::likely_not_english(&p.text))
            .map(|p| p.text)
            .collect();
        if foreign.is_empty() {
            return;
        }
        let mut warned = lock(&self.warned_prompts);
        if warned.iter().any(|w| w == prompt) {
            return;
        }
        if warned.len() >= WARNED_PROMPTS {
            warned.pop_front();
        }
        warned.push_back(prompt.to_owned());
        let quoted: Vec<String> = foreign.iter().map(|f| format!("\"{f}\"")).collect();
        gst::warning!(
            CAT,
            imp = self,
            "the model's vocabulary is English; {} may not be understood",
            quoted.join(", ")
        );
    }

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
            self.reset_segmenter();
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Inference failed: the model panicked ({})", what)
            );
            Err(gst::FlowError::Error)
        })
    }

    /// Forgets the last picture and result (after a flush or new caps).
    fn reset_segmenter(&self) {
        let runner = {
            let mut state = lock(&self.state);
            let Some(state) = state.as_mut() else { return };
            state.since_run = None;
            state.encoded_pts = None;
            state.job_pts.clear();
            state.runner.clone()
        };
        match runner {
            Runner::Sync(segmenter) => lock(&segmenter).reset(),
            Runner::Async(worker) => worker.reset(),
        }
    }

    /// Runs the model on a mapped frame (or reuses a result, as the settings
    /// allow); an empty prompt means no inference.
    fn infer<T>(
        &self,
        frame: &gst_video::VideoFrameRef<T>,
        pts: Option<gst::ClockTime>,
        settings: &Settings,
        prompt: &str,
        opts: &PostprocessOptions,
    ) -> Result<Inferred, gst::FlowError> {
        let set = PromptSet::parse(prompt, &settings.negative_prompt);
        if set.is_empty() {
            return Ok(Inferred {
                source_pts: pts,
                ..Default::default()
            });
        }
        // Every phrase, positive and negative, in one batched decoder run.
        let texts = set.texts();
        // The threshold in effect (Settings::effective_threshold, via
        // postprocess_options) for phrases without their own.
        let threshold = opts.threshold;
        let opts = &PostprocessOptions {
            threshold: request::lowest_threshold(&set, opts.threshold),
            ..opts.clone()
        };
        let (runner, matrix) = {
            let state = lock(&self.state);
            let Some(state) = state.as_ref() else {
                return Err(gst::FlowError::Flushing);
            };
            (state.runner.clone(), state.matrix)
        };
        let core = video::core_frame(frame, matrix).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Cannot read the frame: {}", e)
            );
            gst::FlowError::Error
        })?;
        let inference_error = |e: samclipseg::Error| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("Inference failed: {}", e));
            gst::FlowError::Error
        };
        let mut result = match runner {
            Runner::Sync(segmenter) => {
                let mut segmenter = lock(&segmenter);
                segmenter.reuse_threshold = settings.reuse_threshold;
                let size = (core.width, core.height);
                let skip = self
                    .with_state(|s| s.skip_for_interval(settings.inference_interval))
                    .unwrap_or(false);
                match skip
                    .then(|| segmenter.repeat_last(&texts, opts, size))
                    .flatten()
                {
                    Some(instances) => {
                        let source_pts = self
                            .with_state(|s| {
                                s.since_run = s.since_run.map(|n| n + 1);
                                s.encoded_pts
                            })
                            .flatten();
                        Inferred {
                            instances,
                            state: InferenceState::ReusedResult,
                            source_pts,
                            ..Default::default()
                        }
                    }
                    None => {
                        let (instances, state) = segmenter
                            .process(&core, &texts, opts)
                            .map_err(inference_error)?;
                        let source_pts = self
                            .with_state(|s| {
                                s.since_run = Some(0);
                                if state == samclipseg::InferenceState::Fresh {
                                    s.encoded_pts = pts;
                                }
                                s.encoded_pts
                            })
                            .flatten();
                        Inferred {
                            instances,
                            state: state.into(),
                            source_pts,
                            ..Default::default()
                        }
                    }
                }
            }
            Runner::Async(worker) => {
                let submit: Option<Option<u64>> = self.with_state(|s| {
                    let submit = !s.skip_for_interval(settings.inference_interval);
                    s.since_run = Some(if submit {
                        0
                    } else {
                        s.since_run.unwrap_or(0) + 1
                    });
                    submit.then(|| {
                        s.last_job += 1;
                        s.job_pts.push_back((s.last_job, pts));
                        if s.job_pts.len() > JOB_HISTORY {
                            s.job_pts.pop_front();
                        }
                        s.last_job
                    })
                });
                if let Some(Some(id)) = submit {
                    let job = Job::from_frame(
                        id,
                        &core,
                        texts.iter().map(|t| t.to_string()).collect(),
                        opts.clone(),
                        settings.reuse_threshold,
                    );
                    worker.submit(job);
                }
                let wait_for = submit.flatten().unwrap_or(0);
                let max_wait = Duration::from_millis(settings.max_latency_ms as u64);
                let finished = worker
                    .result_for(wait_for, max_wait)
                    .map_err(inference_error)?;
                match finished.filter(|f| (f.width, f.height) == (core.width, core.height)) {
                    None => Inferred {
                        state: InferenceState::Pending,
                        ..Default::default()
                    },
                    Some(f) => {
                        let source_pts = self
                            .with_state(|s| {
                                s.job_pts
                                    .iter()
                                    .find(|(id, _)| *id == f.id)
                                    .and_then(|(_, p)| *p)
                            })
                            .flatten();
                        let fresh_for_this_frame = Some(f.id) == submit.flatten();
                        Inferred {
                            instances: f.instances.as_ref().clone(),
                            state: if fresh_for_this_frame {
                                f.state.into()
                            } else {
                                InferenceState::ReusedResult
                            },
                            source_pts,
                            ..Default::default()
                        }
                    }
                }
            }
        };
        // The core labels instances with the spelling that first filled its
        // text cache; report the phrases as they are set now.
        for inst in &mut result.instances {
            if let Some(t) = texts.get(inst.prompt_index) {
                inst.label = t.to_string();
            }
        }
        let (mut kept, negatives) = request::resolve(
            &set,
            std::mem::take(&mut result.instances),
            threshold,
            settings.negative_overlap,
        );
        let reused = result.state == InferenceState::ReusedResult;
        result.ids = self
            .with_state(|s| {
                // A reused result is the same objects again: their ids stand,
                // and matching full-frame masks against themselves is skipped.
                if reused && s.last_ids.len() == kept.len() {
                    return s.last_ids.clone();
                }
                s.tracker.patience = settings.track_patience;
                s.tracker.smoothing = settings.temporal_smoothing;
                s.last_ids = s.tracker.update(&mut kept);
                s.last_ids.clone()
            })
            .unwrap_or_default();
        result.instances = kept;
        result.negatives = negatives;
        result.phrases = set.positives.into_iter().map(|p| p.text).collect();
        Ok(result)
    }

    /// The `suggest` action: the `k` vocabulary phrases with the highest
    /// presence on the last picture the model encoded. Also posted on the bus.
    /// Errors come back in the structure's `error` field.
    fn suggest(&self, k: u32) -> gst::Structure {
        let vocabulary_path = lock(&self.settings).vocabulary.clone();
        let result = (|| -> Result<Vec<samclipseg::suggest::Suggestion>, String> {
            let vocabulary = if vocabulary_path.is_empty() {
                parse_vocabulary(DEFAULT_VOCABULARY)
            } else {
                let text = std::fs::read_to_string(&vocabulary_path)
                    .map_err(|e| format!("vocabulary {vocabulary_path}: {e}"))?;
                parse_vocabulary(&text)
            };
            let runner = lock(&self.state)
                .as_ref()
                .map(|s| s.runner.clone())
                .ok_or("the element is not running")?;
            let Runner::Sync(segmenter) = runner else {
                return Err("suggest is not available in asynchronous mode".into());
            };
            let segmenter = lock(&segmenter);
            let features = segmenter
                .last_features()
                .ok_or("no picture has been encoded yet (set a prompt and let a frame pass)")?;
            segmenter
                .model()
                .suggest(features, &vocabulary, k as usize)
                .map_err(|e| e.to_string())
        })();
        let mut s = gst::Structure::builder("samclipseg-suggestions");
        match result {
            Ok(top) => {
                let phrases: Vec<String> = top.iter().map(|t| t.phrase.clone()).collect();
                let scores: Vec<f64> = top.iter().map(|t| t.presence as f64).collect();
                s = s
                    .field("phrases", gst::List::new(phrases))
                    .field("scores", gst::List::new(scores));
            }
            Err(e) => {
                gst::warning!(CAT, imp = self, "suggest: {e}");
                s = s.field("error", e);
            }
        }
        let s = s.build();
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s.clone()).src(&*obj).build());
        s
    }

    /// Runs `f` on the started state; None when the element is stopped.
    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        lock(&self.state).as_mut().map(f)
    }

    /// Writes the masks into the alpha channel or draws the overlay.
    fn render(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
        mode: OutputMode,
        result: &Inferred,
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
                canvas.draw_overlay(instances, Some(&result.ids));
                if result.phrases.len() > 1 {
                    let phrases: Vec<&str> = result.phrases.iter().map(String::as_str).collect();
                    canvas.draw_legend(&phrases);
                }
            }
        }
        Ok(())
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
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let default_bundle = settings::default_bundle_path();
            let search: Vec<String> = settings::bundle_search_path()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            vec![
                glib::ParamSpecString::builder("bundle")
                    .nick("Bundle")
                    .blurb(&format!(
                        "Directory of the SAM 3 engine bundle (bundle.toml, three .onnx engines, \
                         tokenizer.json). Default: the first of {} that holds a bundle, else the \
                         last. Build one with engines/export_sam3.py",
                        search.join(", ")
                    ))
                    .default_value(Some(default_bundle.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("backend", settings::DEFAULT_BACKEND)
                    .nick("Backend")
                    .blurb("Where the engines run: cpu, or cuda / tensorrt through the GPU build of ONNX Runtime (a provider that does not start is an error, never a CPU fallback)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("device-id")
                    .nick("Device id")
                    .blurb("CUDA device for backend=cuda and backend=tensorrt")
                    .minimum(0)
                    .maximum(63)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("tensorrt-fp16")
                    .nick("TensorRT FP16")
                    .blurb("backend=tensorrt: build FP16 engines (faster, slightly less exact)")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("tensorrt-cache-dir")
                    .nick("TensorRT cache directory")
                    .blurb(
                        "backend=tensorrt: where built engines and the timing cache are kept \
                         (empty = $XDG_CACHE_HOME/samclipseg/tensorrt, else ~/.cache/samclipseg/tensorrt)",
                    )
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("tensorrt-workspace")
                    .nick("TensorRT workspace")
                    .blurb("backend=tensorrt: builder workspace in MiB (0 = TensorRT's default)")
                    .minimum(0)
                    .maximum(1 << 20)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("Threads inside one operator of the CPU backend (0 = ONNX Runtime chooses)")
                    .minimum(0)
                    .maximum(1024)
                    .default_value(settings::DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("prompt")
                    .nick("Prompt")
                    .blurb("What to segment, in plain English (e.g. \"red car\"); empty = no inference, empty metadata")
                    .default_value(Some(settings::DEFAULT_PROMPT))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("threshold")
                    .nick("Threshold")
                    .blurb("Minimum score (0-1) of an instance: sigmoid(query logit) x sigmoid(presence logit); -1 (default) = the bundle's calibrated decoder.default_threshold")
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(settings::DEFAULT_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("smoothness")
                    .nick("Smoothness")
                    .blurb("Odd kernel size of a morphological closing of each mask (1 = off); even values are refused")
                    .minimum(1)
                    .maximum(settings::MAX_SMOOTHNESS)
                    .default_value(settings::DEFAULT_SMOOTHNESS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-instances")
                    .nick("Max instances")
                    .blurb("Keep at most this many instances per frame, highest scores first (0 = unlimited)")
                    .minimum(0)
                    .maximum(1024)
                    .default_value(settings::DEFAULT_MAX_INSTANCES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "output-mode",
                    settings::DEFAULT_OUTPUT_MODE,
                )
                .nick("Output mode")
                .blurb(
                    "Besides the metadata every mode attaches: meta = pixels untouched; \
                     alpha = union of the masks into the alpha channel (RGBA, BGRA, ARGB, ABGR, AYUV only); \
                     overlay = draw masks, outlines and labels (packed RGB formats only, no YUV)",
                )
                .mutable_ready()
                .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post a \"samclipseg\" element message per frame with timing, prompt, state and instances (no masks)")
                    .default_value(settings::DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("reuse-threshold")
                    .nick("Reuse threshold")
                    .blurb(
                        "Largest change of a block's mean brightness (0-255 levels) that still counts as a \
                         still picture, whose image features (and, if the request is unchanged, result) are \
                         reused; 0 = never reuse",
                    )
                    .minimum(0.0)
                    .maximum(255.0)
                    .default_value(settings::DEFAULT_REUSE_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("inference-interval")
                    .nick("Inference interval")
                    .blurb(
                        "Run the model on every N-th frame and attach the last result to the frames in \
                         between (state reused-result); a prompt or setting change runs it at once",
                    )
                    .minimum(1)
                    .maximum(10_000)
                    .default_value(settings::DEFAULT_INFERENCE_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("asynchronous")
                    .nick("Asynchronous")
                    .blurb(
                        "Run the model on its own thread: frames pass after at most max-latency and carry \
                         the newest finished result (its source timestamp is in the metadata); for live \
                         sources slower than the model",
                    )
                    .default_value(settings::DEFAULT_ASYNCHRONOUS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("negative-prompt")
                    .nick("Negative prompt")
                    .blurb(
                        "Phrases to exclude, ';'-separated like prompt (also \"-phrase\" inside prompt): a \
                         positive instance mostly covered by a negative one is dropped, and negative pixels \
                         are cleared from the alpha",
                    )
                    .default_value(Some(""))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("negative-overlap")
                    .nick("Negative overlap")
                    .blurb("Share (0-1) of a positive instance's mask that negative instances must cover to drop it")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(settings::DEFAULT_NEGATIVE_OVERLAP)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("track-patience")
                    .nick("Track patience")
                    .blurb("Frames an object may be missing and still keep its id when it returns")
                    .minimum(0)
                    .maximum(100_000)
                    .default_value(settings::DEFAULT_TRACK_PATIENCE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("temporal-smoothing")
                    .nick("Temporal smoothing")
                    .blurb(
                        "Blend each tracked mask with its previous ones to stop edge flicker: 0 = off, \
                         towards 1 = slower to follow changes",
                    )
                    .minimum(0.0)
                    .maximum(0.95)
                    .default_value(settings::DEFAULT_TEMPORAL_SMOOTHING)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("vocabulary")
                    .nick("Vocabulary")
                    .blurb(
                        "Phrase list (one per line) that the suggest action ranks; empty = the built-in list \
                         of a few hundred common objects",
                    )
                    .default_value(Some(""))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-latency")
                    .nick("Max latency")
                    .blurb("Asynchronous mode: how long (ms) a frame may wait for its own result")
                    .minimum(0)
                    .maximum(60_000)
                    .default_value(settings::DEFAULT_MAX_LATENCY_MS)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        // Properties that need a model reload or renegotiation.
        if matches!(
            name,
            "bundle"
                | "backend"
                | "threads"
                | "output-mode"
                | "asynchronous"
                | "device-id"
                | "tensorrt-fp16"
                | "tensorrt-cache-dir"
                | "tensorrt-workspace"
        ) && self.refuse_while_running(name)
        {
            return;
        }
        let mut settings = lock(&self.settings);
        match name {
            "bundle" => {
                let bundle = self.string_value(name, value);
                match bundle.filter(|b| !b.trim().is_empty()) {
                    Some(b) => settings.bundle = b,
                    None => gst::warning!(
                        CAT,
                        imp = self,
                        "bundle cannot be empty; keeping {}",
                        settings.bundle
                    ),
                }
            }
            "backend" => settings.backend = value.get::<Backend>().unwrap_or(settings.backend),
            "threads" => settings.threads = value.get().unwrap_or(settings.threads),
            "device-id" => settings.device_id = value.get().unwrap_or(settings.device_id),
            "tensorrt-fp16" => {
                settings.tensorrt_fp16 = value.get().unwrap_or(settings.tensorrt_fp16)
            }
            "tensorrt-cache-dir" => {
                settings.tensorrt_cache_dir = self.string_value(name, value).unwrap_or_default()
            }
            "tensorrt-workspace" => {
                settings.tensorrt_workspace_mib =
                    value.get().unwrap_or(settings.tensorrt_workspace_mib)
            }
            "prompt" => {
                settings.prompt = self.string_value(name, value).unwrap_or_default();
                gst::info!(CAT, imp = self, "prompt set to {:?}", settings.prompt);
                self.warn_if_not_english(&settings.prompt);
            }
            "threshold" => {
                let t: f32 = value.get().unwrap_or(settings.threshold);
                // GLib already refuses values outside the ParamSpec range (and
                // NaN, in current GLib); this check does not rely on it.
                if (0.0..=1.0).contains(&t) {
                    settings.threshold = t;
                } else if t < 0.0 {
                    // Any negative value: the bundle's calibrated threshold.
                    settings.threshold = settings::BUNDLE_THRESHOLD;
                } else {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "threshold {t} is outside 0-1 (or -1 = the bundle's); keeping {}",
                        settings.threshold
                    );
                }
            }
            "smoothness" => {
                let s: u32 = value.get().unwrap_or(settings.smoothness);
                if s % 2 == 1 {
                    settings.smoothness = s;
                } else {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "smoothness must be odd (a kernel has a centre), got {s}; keeping {}",
                        settings.smoothness
                    );
                }
            }
            "max-instances" => {
                settings.max_instances = value.get().unwrap_or(settings.max_instances)
            }
            "output-mode" => {
                settings.output_mode = value.get::<OutputMode>().unwrap_or(settings.output_mode)
            }
            "post-messages" => {
                settings.post_messages = value.get().unwrap_or(settings.post_messages)
            }
            "reuse-threshold" => {
                let t: f32 = value.get().unwrap_or(settings.reuse_threshold);
                if (0.0..=255.0).contains(&t) {
                    settings.reuse_threshold = t;
                } else {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "reuse-threshold {t} is outside 0-255; keeping {}",
                        settings.reuse_threshold
                    );
                }
            }
            "inference-interval" => {
                settings.inference_interval = value
                    .get::<u32>()
                    .unwrap_or(settings.inference_interval)
                    .max(1)
            }
            "asynchronous" => settings.asynchronous = value.get().unwrap_or(settings.asynchronous),
            "max-latency" => {
                settings.max_latency_ms = value.get().unwrap_or(settings.max_latency_ms)
            }
            "negative-prompt" => {
                settings.negative_prompt = self.string_value(name, value).unwrap_or_default();
                self.warn_if_not_english(&settings.negative_prompt);
            }
            "negative-overlap" => {
                settings.negative_overlap = value.get().unwrap_or(settings.negative_overlap)
            }
            "track-patience" => {
                settings.track_patience = value.get().unwrap_or(settings.track_patience)
            }
            "temporal-smoothing" => {
                settings.temporal_smoothing = value.get().unwrap_or(settings.temporal_smoothing)
            }
            "vocabulary" => {
                settings.vocabulary = self.string_value(name, value).unwrap_or_default();
            }
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "bundle" => settings.bundle.to_value(),
            "backend" => settings.backend.to_value(),
            "threads" => settings.threads.to_value(),
            "device-id" => settings.device_id.to_value(),
            "tensorrt-fp16" => settings.tensorrt_fp16.to_value(),
            "tensorrt-cache-dir" => settings.tensorrt_cache_dir.to_value(),
            "tensorrt-workspace" => settings.tensorrt_workspace_mib.to_value(),
            "prompt" => settings.prompt.to_value(),
            "threshold" => settings.threshold.to_value(),
            "smoothness" => settings.smoothness.to_value(),
            "max-instances" => settings.max_instances.to_value(),
            "output-mode" => settings.output_mode.to_value(),
            "post-messages" => settings.post_messages.to_value(),
            "reuse-threshold" => settings.reuse_threshold.to_value(),
            "inference-interval" => settings.inference_interval.to_value(),
            "asynchronous" => settings.asynchronous.to_value(),
            "max-latency" => settings.max_latency_ms.to_value(),
            "negative-prompt" => settings.negative_prompt.to_value(),
            "negative-overlap" => settings.negative_overlap.to_value(),
            "track-patience" => settings.track_patience.to_value(),
            "temporal-smoothing" => settings.temporal_smoothing.to_value(),
            "vocabulary" => settings.vocabulary.to_value(),
            // GLib only asks for properties it knows from properties().
            _ => pspec.default_value().clone(),
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
        let runner = if settings.asynchronous {
            let worker = AsyncSegmenter::new(segmenter).map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Thread,
                    ("Cannot start asynchronous inference: {}", e)
                )
            })?;
            Runner::Async(Arc::new(worker))
        } else {
            Runner::Sync(Arc::new(Mutex::new(segmenter)))
        };
        *lock(&self.state) = Some(State {
            runner,
            mask_threshold,
            default_threshold,
            info: None,
            matrix: YuvMatrix::default(),
            since_run: None,
            encoded_pts: None,
            last_job: 0,
            job_pts: VecDeque::new(),
            tracker: Tracker::new(settings.track_patience, settings.temporal_smoothing),
            last_ids: Vec::new(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        gst::info!(CAT, imp = self, "stopped, model released");
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view() {
            // After a seek the next picture has nothing to do with the last,
            // and the objects in it are new ones.
            self.reset_segmenter();
            self.with_state(|s| {
                s.tracker.reset();
                s.last_ids.clear();
            });
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
        let (info, mask_threshold, bundle_threshold) = {
            let state = lock(&self.state);
            let Some(state) = state.as_ref() else {
                // Only a buffer racing with stop() gets here: not worth an error.
                return Err(gst::FlowError::Flushing);
            };
            let Some(info) = state.info.clone() else {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("No caps set"));
                return Err(gst::FlowError::NotNegotiated);
            };
            (info, state.mask_threshold, state.default_threshold)
        };
        let prompt = settings.prompt.trim();
        let opts = settings.postprocess_options(mask_threshold, bundle_threshold);
        let pts = buf.pts();
        // A gap buffer has no picture worth looking at (and may have no memory).
        let gap = buf.flags().contains(gst::BufferFlags::GAP);
        let result = if gap || (settings.output_mode == OutputMode::Meta && prompt.is_empty()) {
            Inferred {
                source_pts: pts,
                ..Default::default()
            }
        } else if settings.output_mode == OutputMode::Meta {
            // Read-only mapping: shared memory is not copied when pixels stay as they are.
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info)
                .map_err(|e| self.map_error(e))?;
            self.guard(|| self.infer(&frame, pts, &settings, prompt, &opts))?
        } else {
            // Also with an empty prompt: the alpha channel then says "no object" everywhere.
            let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info)
                .map_err(|e| self.map_error(e))?;
            self.guard(|| {
                let result = self.infer(&frame, pts, &settings, prompt, &opts)?;
                self.render(&mut frame, settings.output_mode, &result)?;
                Ok(result)
            })?
        };

        let seg = result::segmentation(
            prompt,
            result.state,
            result.source_pts,
            &result.instances,
            &result.ids,
            info.width() as usize,
            info.height() as usize,
        );
        gst::log!(
            CAT,
            imp = self,
            "{:?}: {} instance(s) of {:?}",
            buf.pts(),
            seg.instances.len(),
            prompt
        );
        if settings.post_messages {
            let s = result::message_structure(&seg, self.times(buf.pts()));
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
        self.reset_segmenter();
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
