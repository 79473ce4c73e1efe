//! The element's properties: their specs (what `gst-inspect-1.0` shows),
//! validation and storage. Properties flagged `mutable_ready` need a reload
//! or renegotiation, so they are refused while the element runs.

use std::sync::LazyLock;

use gst::glib;
use gst::glib::translate::ToGlibPtr;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, SamClipSeg, lock};
use samclipseg::{BackendKind, Precision};

use super::settings::{self, OutputMode};

/// How many prompt values the "not English" warning remembers, so that it is
/// logged once per value (bounded for applications that change the prompt a lot).
const WARNED_PROMPTS: usize = 64;

pub(super) fn specs() -> &'static [glib::ParamSpec] {
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
                .blurb("Where the engines run: cpu, or cuda / tensorrt through the GPU build of ONNX Runtime (a provider that does not start is an error, never a CPU fallback), or remote: a Triton server (see server)")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("precision", settings::DEFAULT_PRECISION)
                .nick("Precision")
                .blurb(
                    "backend=cpu: arithmetic of the image encoder and decoder. auto = int8 where the CPU \
                     has AMX-INT8 or VNNI and the bundle has int8 engines, else bf16 where it has \
                     AMX-BF16 or AVX512-BF16 (both through OpenVINO), else fp32; fp32 = exact, ONNX \
                     Runtime's CPU provider. An explicit precision the CPU or bundle lacks is an error",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("precision-in-use")
                .nick("Precision in use")
                .blurb("What the running model's image encoder and decoder use, and why (empty while stopped)")
                .read_only()
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
            glib::ParamSpecBoolean::builder("strict-gpu")
                .nick("Strict GPU")
                .blurb(
                    "backend=cuda / tensorrt: refuse to start when ONNX Runtime would run some of an \
                     engine's nodes on the CPU (without it they run there quietly, with copies between \
                     host and device around them)",
                )
                .default_value(false)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("server")
                .nick("Server")
                .blurb(
                    "backend=remote: the KServe v2 gRPC server (Triton) that runs the engines, \
                     grpc://host:port or grpcs://host:port (TLS); its repository comes from \
                     engines/triton_repo.py",
                )
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("request-timeout")
                .nick("Request timeout")
                .blurb(
                    "backend=remote: milliseconds one request may take; a frame whose request \
                     runs out passes without a result and a warning is posted",
                )
                .minimum(10)
                .maximum(600_000)
                .default_value(settings::DEFAULT_REQUEST_TIMEOUT_MS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("connect-timeout")
                .nick("Connect timeout")
                .blurb(
                    "backend=remote: milliseconds the start waits for the server to answer \
                     before it fails with an error naming the address",
                )
                .minimum(10)
                .maximum(600_000)
                .default_value(settings::DEFAULT_CONNECT_TIMEOUT_MS)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("authorization")
                .nick("Authorization")
                .blurb("backend=remote: value of the authorization header of every request (e.g. \"Bearer TOKEN\" for a server behind an ingress); empty = none")
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("model-prefix")
                .nick("Model prefix")
                .blurb("backend=remote: the server's models are PREFIX-text_encoder and PREFIX-segment (empty = the bundle's name, as triton_repo.py names them)")
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("ca-file")
                .nick("CA file")
                .blurb("backend=remote with grpcs://: a PEM certificate authority to trust besides the system's (a self-signed server); empty = the system's only")
                .default_value(Some(""))
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
                     the newest result computed for their own prompt and settings (state reused-result, \
                     its source timestamp in the metadata), or no instances (state pending) until one \
                     has finished; a seek or caps change drops earlier results; for live sources slower \
                     than the model",
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
                .blurb("Model results an object may be missing from and still keep its id when it returns (frames, when the model runs on every frame)")
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

impl SamClipSeg {
    pub(super) fn set_property_value(&self, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        if pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_READY) && self.refuse_while_running(name)
        {
            return;
        }
        // Bus messages wait until the settings lock is released: a sync
        // handler may read properties.
        let mut phrases_changed = false;
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
            "backend" => settings.backend = value.get::<BackendKind>().unwrap_or(settings.backend),
            "precision" => {
                settings.precision = value.get::<Precision>().unwrap_or(settings.precision)
            }
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
            "strict-gpu" => settings.strict_gpu = value.get().unwrap_or(settings.strict_gpu),
            "server" => {
                let server = self.string_value(name, value).unwrap_or_default();
                let server = server.trim();
                match samclipseg::remote::parse_server(server) {
                    _ if server.is_empty() => settings.server.clear(),
                    Ok(_) => settings.server = server.to_string(),
                    Err(e) => gst::warning!(
                        CAT,
                        imp = self,
                        "server {server:?}: {e}; keeping {:?}",
                        settings.server
                    ),
                }
            }
            "request-timeout" => {
                settings.request_timeout_ms = value.get().unwrap_or(settings.request_timeout_ms)
            }
            "connect-timeout" => {
                settings.connect_timeout_ms = value.get().unwrap_or(settings.connect_timeout_ms)
            }
            "authorization" => {
                settings.authorization = self.string_value(name, value).unwrap_or_default()
            }
            "model-prefix" => {
                settings.model_prefix = self.string_value(name, value).unwrap_or_default()
            }
            "ca-file" => settings.ca_file = self.string_value(name, value).unwrap_or_default(),
            "prompt" => {
                settings.prompt = self.string_value(name, value).unwrap_or_default();
                gst::info!(CAT, imp = self, "prompt set to {:?}", settings.prompt);
                self.warn_if_not_english(&settings.prompt);
                phrases_changed = true;
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
                phrases_changed = true;
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
        if phrases_changed {
            let (prompt, negative) = (settings.prompt.clone(), settings.negative_prompt.clone());
            drop(settings);
            self.warn_if_capped(&prompt, &negative);
        }
    }

    pub(super) fn property_value(&self, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "bundle" => settings.bundle.to_value(),
            "backend" => settings.backend.to_value(),
            "precision" => settings.precision.to_value(),
            "precision-in-use" => {
                drop(settings);
                self.precision_in_use().to_value()
            }
            "threads" => settings.threads.to_value(),
            "device-id" => settings.device_id.to_value(),
            "tensorrt-fp16" => settings.tensorrt_fp16.to_value(),
            "tensorrt-cache-dir" => settings.tensorrt_cache_dir.to_value(),
            "tensorrt-workspace" => settings.tensorrt_workspace_mib.to_value(),
            "strict-gpu" => settings.strict_gpu.to_value(),
            "server" => settings.server.to_value(),
            "request-timeout" => settings.request_timeout_ms.to_value(),
            "connect-timeout" => settings.connect_timeout_ms.to_value(),
            "authorization" => settings.authorization.to_value(),
            "model-prefix" => settings.model_prefix.to_value(),
            "ca-file" => settings.ca_file.to_value(),
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

    /// Warns on the bus when the prompt has more phrases than the cap
    /// (`samclipseg::prompt::syntax::MAX_PHRASES`); the extra ones are not segmented.
    fn warn_if_capped(&self, prompt: &str, negative_prompt: &str) {
        let set = samclipseg::prompt::syntax::PromptSet::parse(prompt, negative_prompt);
        if let Some(w) = set.cap_warning() {
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", w));
        }
    }

    /// Warns, once per prompt value, about phrases the English vocabulary of
    /// the model may not understand. The prompt is still used as it is.
    fn warn_if_not_english(&self, prompt: &str) {
        let foreign: Vec<String> = samclipseg::prompt::syntax::parse_phrases(prompt)
            .into_iter()
            .filter(|p| samclipseg::prompt::tokenizer::likely_not_english(&p.text))
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
}
