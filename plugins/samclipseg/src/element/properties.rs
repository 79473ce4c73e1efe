//! The element's properties as data: one [`Property`] per property, its
//! spec (what `gst-inspect-1.0` shows, with the one default), how it reads
//! and how it is set (the validation rule). Adding a property is one entry
//! here and one field in `settings.rs`. Properties flagged `mutable_ready`
//! need a reload or renegotiation, so `imp.rs` refuses them while running.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use samclipseg::prompt::request::DEFAULT_NEGATIVE_OVERLAP;
use samclipseg::{BackendOptions, FrameSettings, Precision, Threshold};

use super::settings::{self, OutputMode, Settings, TrackerMode};

/// Largest `max-instances`; what the studio and applications may ask for.
pub const MAX_INSTANCES_LIMIT: u32 = 1024;
/// Largest closing kernel; larger ones cost a lot and change little.
const MAX_SMOOTHNESS: u32 = 99;
const DEFAULT_SMOOTHNESS: u32 = 3;
const MIB: usize = 1024 * 1024;
/// Largest `max-objects`: each SAM 3 object holds ~13 MB of memory at full size.
const MAX_OBJECTS_LIMIT: u32 = 256;

/// One property: its spec, how its value reads, and how a new value is
/// taken (an `Err` says why it was refused; the old value stays).
pub struct Property {
    pub spec: glib::ParamSpec,
    pub get: fn(&Settings) -> glib::Value,
    pub set: fn(&mut Settings, &glib::Value) -> Result<(), String>,
}

impl Property {
    /// Whether it may change while the element runs (and then what a frame
    /// uses changes with it).
    pub fn per_frame(&self) -> bool {
        self.spec.flags().contains(gst::PARAM_FLAG_MUTABLE_PLAYING)
    }
}

/// Every property, in the order `gst-inspect-1.0` lists them.
pub fn all() -> &'static [Property] {
    static PROPERTIES: LazyLock<Vec<Property>> = LazyLock::new(table);
    PROPERTIES.as_ref()
}

/// The specs of [`all`], as `ObjectImpl::properties` returns them.
pub fn specs() -> &'static [glib::ParamSpec] {
    static SPECS: LazyLock<Vec<glib::ParamSpec>> =
        LazyLock::new(|| all().iter().map(|p| p.spec.clone()).collect());
    SPECS.as_ref()
}

pub fn find(name: &str) -> Option<&'static Property> {
    all().iter().find(|p| p.spec.name() == name)
}

/// A new element's settings: every spec's default, taken by its own setter.
pub fn initial() -> Settings {
    let mut s = Settings::default();
    for p in all() {
        // A default its own rule refuses is a bug the unit test below catches.
        let _ = (p.set)(&mut s, p.spec.default_value());
    }
    s
}

fn get<T: for<'a> glib::value::FromValue<'a> + 'static>(v: &glib::Value) -> Result<T, String> {
    v.get::<T>().map_err(|e| e.to_string())
}

/// A string value (NULL = empty). Invalid UTF-8 was replaced in imp.rs.
fn string(v: &glib::Value) -> Result<String, String> {
    Ok(get::<Option<String>>(v)?.unwrap_or_default())
}

/// Empty = not set.
fn optional(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn path_value(p: &Option<PathBuf>) -> glib::Value {
    p.as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
        .to_value()
}

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn millis(d: Duration) -> glib::Value {
    millis_u32(d).to_value()
}

fn table() -> Vec<Property> {
    // Defaults come from the core where it has them.
    let core = BackendOptions::default();
    let frame = FrameSettings::DEFAULT;
    let default_bundle = settings::default_bundle_path();
    let search: Vec<String> = settings::bundle_search_path()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    vec![
        Property {
            spec: glib::ParamSpecString::builder("bundle")
                .nick("Bundle")
                .blurb(&format!(
                    "Directory of the SAM 3 engine bundle (bundle.toml, three .onnx engines, \
                     tokenizer.json). Default: the first of {} that holds a bundle, else the toy \
                     shapes bundle installed with the plugin (it knows only shapes: \"red circle\"), \
                     else the last. Build one with engines/export_sam3.py",
                    search.join(", ")
                ))
                .default_value(Some(default_bundle.as_str()))
                .mutable_ready()
                .build(),
            get: |s| s.start.bundle.to_value(),
            set: |s, v| {
                let b = string(v)?;
                if b.trim().is_empty() {
                    return Err(format!("bundle cannot be empty; keeping {}", s.start.bundle));
                }
                s.start.bundle = b;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecEnum::builder_with_default("backend", core.kind)
                .nick("Backend")
                .blurb(
                    "Where the engines run: cpu, or cuda / tensorrt through the GPU build of ONNX \
                     Runtime (a provider that does not start is an error, never a CPU fallback), or \
                     remote: a Triton server (see server)",
                )
                .mutable_ready()
                .build(),
            get: |s| s.start.backend.kind.to_value(),
            set: |s, v| {
                s.start.backend.kind = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecEnum::builder_with_default("precision", Precision::Auto)
                .nick("Precision")
                .blurb(
                    "backend=cpu: arithmetic of the image encoder and decoder. auto = int8 where the CPU \
                     has AMX-INT8 or VNNI and the bundle has static int8 engines, else bf16 where it \
                     has AMX-BF16 or AVX512-BF16 (both through OpenVINO), else int8 where it has AVX2 \
                     and the bundle has dynamic int8 engines (ONNX Runtime's CPU provider), else fp32; \
                     fp32 = exact, ONNX Runtime's CPU provider. An explicit precision the CPU or \
                     bundle lacks is an error",
                )
                .mutable_ready()
                .build(),
            get: |s| s.start.backend.precision.to_value(),
            set: |s, v| {
                s.start.backend.precision = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("precision-in-use")
                .nick("Precision in use")
                .blurb(
                    "What the running model's image encoder and decoder use, and why, then its \
                     video tracker's engines where the bundle has them (empty while stopped)",
                )
                .read_only()
                .build(),
            // Read by imp.rs from the running model; never set.
            get: |_| "".to_value(),
            set: |_, _| Err("precision-in-use is read-only".into()),
        },
        Property {
            spec: glib::ParamSpecInt::builder("device-id")
                .nick("Device id")
                .blurb("CUDA device for backend=cuda and backend=tensorrt")
                .minimum(0)
                .maximum(63)
                .default_value(core.device_id)
                .mutable_ready()
                .build(),
            get: |s| s.start.backend.device_id.to_value(),
            set: |s, v| {
                s.start.backend.device_id = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecBoolean::builder("tensorrt-fp16")
                .nick("TensorRT FP16")
                .blurb("backend=tensorrt: build FP16 engines (faster, slightly less exact)")
                .default_value(core.tensorrt.fp16)
                .mutable_ready()
                .build(),
            get: |s| s.start.backend.tensorrt.fp16.to_value(),
            set: |s, v| {
                s.start.backend.tensorrt.fp16 = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("tensorrt-cache-dir")
                .nick("TensorRT cache directory")
                .blurb(
                    "backend=tensorrt: where built engines and the timing cache are kept \
                     (empty = $XDG_CACHE_HOME/samclipseg/tensorrt, else ~/.cache/samclipseg/tensorrt)",
                )
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            get: |s| path_value(&s.start.backend.tensorrt.engine_cache_dir),
            set: |s, v| {
                s.start.backend.tensorrt.engine_cache_dir = optional(string(v)?).map(PathBuf::from);
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("tensorrt-workspace")
                .nick("TensorRT workspace")
                .blurb("backend=tensorrt: builder workspace in MiB (0 = TensorRT's default)")
                .minimum(0)
                .maximum(1 << 20)
                .default_value((core.tensorrt.workspace_bytes / MIB) as u32)
                .mutable_ready()
                .build(),
            get: |s| ((s.start.backend.tensorrt.workspace_bytes / MIB) as u32).to_value(),
            set: |s, v| {
                s.start.backend.tensorrt.workspace_bytes = get::<u32>(v)? as usize * MIB;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecBoolean::builder("strict-gpu")
                .nick("Strict GPU")
                .blurb(
                    "backend=cuda / tensorrt: refuse to start when ONNX Runtime would run some of an \
                     engine's nodes on the CPU (without it they run there quietly, with copies between \
                     host and device around them)",
                )
                .default_value(core.strict)
                .mutable_ready()
                .build(),
            get: |s| s.start.backend.strict.to_value(),
            set: |s, v| {
                s.start.backend.strict = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("server")
                .nick("Server")
                .blurb(
                    "backend=remote: the KServe v2 gRPC server (Triton) that runs the engines, \
                     grpc://host:port or grpcs://host:port (TLS); its repository comes from \
                     engines/triton_repo.py",
                )
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            get: |s| s.start.backend.remote.server.to_value(),
            set: |s, v| {
                let server = string(v)?.trim().to_owned();
                if !server.is_empty()
                && let Err(e) = samclipseg::remote::parse_server(&server)
                {
                    return Err(format!(
                        "server {server:?}: {e}; keeping {:?}",
                        s.start.backend.remote.server
                    ));
                }
                s.start.backend.remote.server = server;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("request-timeout")
                .nick("Request timeout")
                .blurb(
                    "backend=remote: milliseconds one request may take; a frame whose request \
                     runs out passes without a result and a warning is posted",
                )
                .minimum(10)
                .maximum(600_000)
                .default_value(millis_u32(core.remote.timeout))
                .mutable_ready()
                .build(),
            get: |s| millis(s.start.backend.remote.timeout),
            set: |s, v| {
                s.start.backend.remote.timeout = Duration::from_millis(get::<u32>(v)?.into());
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("connect-timeout")
                .nick("Connect timeout")
                .blurb(
                    "backend=remote: milliseconds the start waits for the server to answer \
                     before it fails with an error naming the address",
                )
                .minimum(10)
                .maximum(600_000)
                .default_value(millis_u32(core.remote.connect_timeout))
                .mutable_ready()
                .build(),
            get: |s| millis(s.start.backend.remote.connect_timeout),
            set: |s, v| {
                s.start.backend.remote.connect_timeout = Duration::from_millis(get::<u32>(v)?.into());
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("authorization")
                .nick("Authorization")
                .blurb(
                    "backend=remote: value of the authorization header of every request (e.g. \
                     \"Bearer TOKEN\" for a server behind an ingress); empty = none",
                )
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            get: |s| s.start.backend.remote.authorization.clone().unwrap_or_default().to_value(),
            set: |s, v| {
                s.start.backend.remote.authorization = optional(string(v)?);
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("model-prefix")
                .nick("Model prefix")
                .blurb(
                    "backend=remote: the server's models are PREFIX-text_encoder and PREFIX-segment \
                     (empty = the bundle's name, as triton_repo.py names them)",
                )
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            get: |s| s.start.backend.remote.model_prefix.clone().unwrap_or_default().to_value(),
            set: |s, v| {
                s.start.backend.remote.model_prefix = optional(string(v)?);
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("ca-file")
                .nick("CA file")
                .blurb(
                    "backend=remote with grpcs://: a PEM certificate authority to trust besides the \
                     system's (a self-signed server); empty = the system's only",
                )
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            get: |s| path_value(&s.start.backend.remote.ca_file),
            set: |s, v| {
                s.start.backend.remote.ca_file = optional(string(v)?).map(PathBuf::from);
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("threads")
                .nick("Threads")
                .blurb(
                    "Threads inside one operator of the CPU backend (0 = ONNX Runtime chooses: every \
                     core); with asynchronous=true they run at a lower priority than the pipeline's \
                     threads and do not spin while waiting, so a live source keeps real time",
                )
                .minimum(0)
                .maximum(1024)
                .default_value(core.intra_threads as u32)
                .mutable_ready()
                .build(),
            get: |s| (s.start.backend.intra_threads as u32).to_value(),
            set: |s, v| {
                s.start.backend.intra_threads = get::<u32>(v)? as usize;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("prompt")
                .nick("Prompt")
                .blurb(
                    "What to segment, in plain English (e.g. \"red car\") or in Chinese (translated \
                     offline into English, see prompt-in-use); empty = no inference, empty metadata",
                )
                .default_value(Some(""))
                .mutable_playing()
                .build(),
            get: |s| s.frame.prompt.to_value(),
            set: |s, v| {
                s.frame.prompt = string(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("prompt-in-use")
                .nick("Prompt in use")
                .blurb(
                    "The phrases of prompt and negative-prompt exactly as the text encoder gets \
                     them, ';'-separated, negatives as -phrase: Chinese translated into English, \
                     anything else as typed",
                )
                .read_only()
                .build(),
            get: |s| {
                samclipseg::prompt::syntax::PromptSet::parse(&s.frame.prompt, &s.frame.negative_prompt)
                    .in_use()
                    .to_value()
            },
            set: |_, _| Err("prompt-in-use is read-only".into()),
        },
        Property {
            spec: glib::ParamSpecFloat::builder("threshold")
                .nick("Threshold")
                .blurb(
                    "Minimum score (0-1) of an instance: sigmoid(query logit) x sigmoid(presence \
                     logit); -1 (default) = the bundle's calibrated decoder.default_threshold",
                )
                .minimum(-1.0)
                .maximum(1.0)
                .default_value(Threshold::BUNDLE_VALUE)
                .mutable_playing()
                .build(),
            get: |s| s.frame.threshold.value().to_value(),
            set: |s, v| {
                let t: f32 = get(v)?;
                // GLib already refuses values outside the ParamSpec range (and NaN,
                    // in current GLib); this check does not rely on it.
                s.frame.threshold = Threshold::from_value(t).ok_or_else(|| {
                    format!(
                        "threshold {t} is outside 0-1 (or -1 = the bundle's); keeping {}",
                        s.frame.threshold.value()
                    )
                })?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("smoothness")
                .nick("Smoothness")
                .blurb(
                    "Odd kernel size of a morphological closing of each mask (1 = off); even values \
                     are refused",
                )
                .minimum(1)
                .maximum(MAX_SMOOTHNESS)
                .default_value(DEFAULT_SMOOTHNESS)
                .mutable_playing()
                .build(),
            get: |s| s.frame.smoothness.to_value(),
            set: |s, v| {
                let k: u32 = get(v)?;
                if k.is_multiple_of(2) {
                    return Err(format!(
                        "smoothness must be odd (a kernel has a centre), got {k}; keeping {}",
                        s.frame.smoothness
                    ));
                }
                s.frame.smoothness = k;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("max-instances")
                .nick("Max instances")
                .blurb("Keep at most this many instances per frame, highest scores first (0 = unlimited)")
                .minimum(0)
                .maximum(MAX_INSTANCES_LIMIT)
                .default_value(0)
                .mutable_playing()
                .build(),
            get: |s| s.frame.max_instances.to_value(),
            set: |s, v| {
                s.frame.max_instances = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecEnum::builder_with_default(
                "output-mode",
                OutputMode::Meta,
            )
                .nick("Output mode")
                .blurb(
                    "Besides the metadata every mode attaches: meta = pixels untouched; \
                     alpha = union of the masks into the alpha channel (RGBA, BGRA, ARGB, ABGR, AYUV only); \
                     overlay = draw masks, outlines and labels (packed RGB formats only, no YUV)",
                )
                .mutable_ready()
                .build(),
            get: |s| s.start.output_mode.to_value(),
            set: |s, v| {
                s.start.output_mode = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecEnum::builder_with_default("tracker", TrackerMode::Auto)
                .nick("Tracker")
                .blurb(
                    "What follows objects from frame to frame: sam3 = SAM 3's video tracker (each \
                     object carried by the memory of its past masks, through occlusions and missed \
                     detections; SAM 3's object ids; the detector runs every inference-interval-th \
                     frame, the tracker on every frame); overlap = the detector's results linked by \
                     mask overlap (track-patience, temporal-smoothing); auto = sam3 when the bundle \
                     has tracker engines",
                )
                .mutable_ready()
                .build(),
            get: |s| s.start.tracker.to_value(),
            set: |s, v| {
                s.start.tracker = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("max-objects")
                .nick("Max objects")
                .blurb(
                    "tracker=sam3: most objects followed at once (new detections beyond it are \
                     dropped, best first kept; each object holds its memory); 0 = the bundle's \
                     max_num_objects",
                )
                .minimum(0)
                .maximum(MAX_OBJECTS_LIMIT)
                .default_value(0)
                .mutable_ready()
                .build(),
            get: |s| s.start.max_objects.to_value(),
            set: |s, v| {
                s.start.max_objects = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecBoolean::builder("post-messages")
                .nick("Post messages")
                .blurb(
                    "Post a \"samclipseg\" element message per frame with timing, prompt, state and \
                     instances (no masks)",
                )
                .default_value(false)
                .mutable_playing()
                .build(),
            get: |s| s.frame.post_messages.to_value(),
            set: |s, v| {
                s.frame.post_messages = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecFloat::builder("reuse-threshold")
                .nick("Reuse threshold")
                .blurb(
                    "Largest change of a block's mean brightness (0-255 levels) that still counts as a \
                     still picture, whose image features (and, if the request is unchanged, result) are \
                     reused; 0 = never reuse",
                )
                .minimum(0.0)
                .maximum(255.0)
                .default_value(frame.reuse_threshold)
                .mutable_playing()
                .build(),
            get: |s| s.frame.stream.reuse_threshold.to_value(),
            set: |s, v| {
                let t: f32 = get(v)?;
                if !(0.0..=255.0).contains(&t) {
                    return Err(format!(
                        "reuse-threshold {t} is outside 0-255; keeping {}",
                        s.frame.stream.reuse_threshold
                    ));
                }
                s.frame.stream.reuse_threshold = t;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("inference-interval")
                .nick("Inference interval")
                .blurb(
                    "Run the model on every N-th frame and attach the last result to the frames in \
                     between (state reused-result); with tracker=sam3 the detector runs every N-th \
                     frame and the tracker on every frame (state tracked); a prompt or setting change \
                     runs it at once",
                )
                .minimum(1)
                .maximum(10_000)
                .default_value(frame.inference_interval)
                .mutable_playing()
                .build(),
            get: |s| s.frame.stream.inference_interval.to_value(),
            set: |s, v| {
                s.frame.stream.inference_interval = get::<u32>(v)?.max(1);
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecBoolean::builder("asynchronous")
                .nick("Asynchronous")
                .blurb(
                    "Run the model on its own thread: frames pass after at most max-latency and carry \
                     the newest result computed for their own prompt and settings (state reused-result, \
                     its source timestamp in the metadata), or no instances (state pending) until one \
                     has finished; a seek or caps change drops earlier results; for live sources slower \
                     than the model",
                )
                .default_value(false)
                .mutable_ready()
                .build(),
            get: |s| s.start.asynchronous.to_value(),
            set: |s, v| {
                s.start.asynchronous = get(v)?;
                s.start.backend.background = s.start.asynchronous;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("negative-prompt")
                .nick("Negative prompt")
                .blurb(
                    "Phrases to exclude, ';'-separated like prompt (also \"-phrase\" inside prompt): a \
                     positive instance mostly covered by a negative one is dropped, and negative pixels \
                     are cleared from the alpha",
                )
                .default_value(Some(""))
                .mutable_playing()
                .build(),
            get: |s| s.frame.negative_prompt.to_value(),
            set: |s, v| {
                s.frame.negative_prompt = string(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecFloat::builder("negative-overlap")
                .nick("Negative overlap")
                .blurb(
                    "Share (0-1) of a positive instance's mask that negative instances must cover to \
                     drop it",
                )
                .minimum(0.0)
                .maximum(1.0)
                .default_value(DEFAULT_NEGATIVE_OVERLAP)
                .mutable_playing()
                .build(),
            get: |s| s.frame.negative_overlap.to_value(),
            set: |s, v| {
                s.frame.negative_overlap = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("track-patience")
                .nick("Track patience")
                .blurb(
                    "Model results an object may be missing from and still keep its id when it \
                     returns (frames, when the model runs on every frame); with tracker=sam3, frames \
                     an object may stay unseen before it and its memory are dropped",
                )
                .minimum(0)
                .maximum(100_000)
                .default_value(frame.track_patience)
                .mutable_playing()
                .build(),
            get: |s| s.frame.stream.track_patience.to_value(),
            set: |s, v| {
                s.frame.stream.track_patience = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecFloat::builder("temporal-smoothing")
                .nick("Temporal smoothing")
                .blurb(
                    "Blend each tracked mask with its previous ones to stop edge flicker: 0 = off, \
                     towards 1 = slower to follow changes",
                )
                .minimum(0.0)
                .maximum(0.95)
                .default_value(frame.temporal_smoothing)
                .mutable_playing()
                .build(),
            get: |s| s.frame.stream.temporal_smoothing.to_value(),
            set: |s, v| {
                s.frame.stream.temporal_smoothing = get(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecString::builder("vocabulary")
                .nick("Vocabulary")
                .blurb(
                    "Phrase list (one per line) that the suggest action ranks; empty = the built-in list \
                     of a few hundred common objects",
                )
                .default_value(Some(""))
                .mutable_playing()
                .build(),
            get: |s| s.frame.vocabulary.to_value(),
            set: |s, v| {
                s.frame.vocabulary = string(v)?;
                Ok(())
            },
        },
        Property {
            spec: glib::ParamSpecUInt::builder("max-latency")
                .nick("Max latency")
                .blurb("Asynchronous mode: how long (ms) a frame may wait for its own result")
                .minimum(0)
                .maximum(60_000)
                .default_value(millis_u32(frame.max_latency))
                .mutable_playing()
                .build(),
            get: |s| millis(s.frame.stream.max_latency),
            set: |s, v| {
                s.frame.stream.max_latency = Duration::from_millis(get::<u32>(v)?.into());
                Ok(())
            },
        },
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_accepted_by_its_own_rule_and_reads_back() {
        gst::init().unwrap();
        let mut s = Settings::default();
        for p in all() {
            let name = p.spec.name();
            if !p.spec.flags().contains(glib::ParamFlags::WRITABLE) {
                continue;
            }
            let default = p.spec.default_value();
            assert_eq!((p.set)(&mut s, default), Ok(()), "{name}");
            let back = (p.get)(&s);
            assert_eq!(
                back.serialize().ok(),
                default.serialize().ok(),
                "{name} reads back its default"
            );
        }
    }

    #[test]
    fn per_frame_properties_are_the_playing_ones() {
        gst::init().unwrap();
        assert!(find("prompt").is_some_and(Property::per_frame));
        assert!(find("bundle").is_some_and(|p| !p.per_frame()));
        assert!(find("output-mode").is_some_and(|p| !p.per_frame()));
    }

    #[test]
    fn the_bundle_threshold_and_backend_options_follow_the_properties() {
        gst::init().unwrap();
        let mut s = initial();
        assert_eq!(s.frame.threshold, Threshold::Bundle);
        assert_eq!(s.start.backend.precision, Precision::Auto);
        assert!(!s.start.backend.strict);
        (find("strict-gpu").unwrap().set)(&mut s, &true.to_value()).unwrap();
        assert!(s.start.backend.strict);
        (find("threshold").unwrap().set)(&mut s, &0.7f32.to_value()).unwrap();
        assert_eq!(s.frame.threshold, Threshold::Fixed(0.7));
        assert!((find("threshold").unwrap().set)(&mut s, &1.5f32.to_value()).is_err());
        assert_eq!(s.frame.threshold, Threshold::Fixed(0.7));
        (find("threshold").unwrap().set)(&mut s, &(-0.3f32).to_value()).unwrap();
        assert_eq!(s.frame.threshold, Threshold::Bundle);
    }
}
