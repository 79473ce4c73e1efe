//! Property values of the element and the enums behind its enum properties.

use std::path::PathBuf;

use std::time::Duration;

use samclipseg::{
    BackendKind, BackendOptions, FrameSettings, PostprocessOptions, Precision, Request,
};

/// What the element does with the result besides the metadata (property `output-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSamClipSegOutputMode")]
pub enum OutputMode {
    /// Pixels untouched; results only as metadata.
    #[default]
    #[enum_value(name = "Meta: attach metadata only, pixels untouched", nick = "meta")]
    Meta = 0,
    /// Alpha = union of the masks (255 inside an object, 0 elsewhere).
    #[enum_value(
        name = "Alpha: write the union of the masks into the alpha channel",
        nick = "alpha"
    )]
    Alpha = 1,
    /// Translucent masks, outlines and labels drawn into the picture.
    #[enum_value(
        name = "Overlay: draw masks, outlines and labels (packed RGB formats)",
        nick = "overlay"
    )]
    Overlay = 2,
}

pub const DEFAULT_BACKEND: BackendKind = BackendKind::Cpu;
/// The fastest precision this CPU runs natively (src/precision.rs).
pub const DEFAULT_PRECISION: Precision = Precision::Auto;
pub const DEFAULT_THREADS: u32 = 0;
pub const DEFAULT_PROMPT: &str = "";
/// Property value meaning "the bundle's calibrated `decoder.default_threshold`".
pub const BUNDLE_THRESHOLD: f32 = -1.0;
pub const DEFAULT_THRESHOLD: f32 = BUNDLE_THRESHOLD;
/// What a bundle whose `default_threshold` is not a number stands for.
pub const FALLBACK_THRESHOLD: f32 = 0.5;
pub const DEFAULT_SMOOTHNESS: u32 = 3;
/// Largest closing kernel; larger ones cost a lot and change little.
pub const MAX_SMOOTHNESS: u32 = 99;
pub const DEFAULT_MAX_INSTANCES: u32 = 0;
pub const DEFAULT_OUTPUT_MODE: OutputMode = OutputMode::Meta;
pub const DEFAULT_POST_MESSAGES: bool = false;
/// Largest block change of mean luma (levels) that still counts as a still
/// picture: above sensor noise (~0.1 on block means), below anything moving.
pub const DEFAULT_REUSE_THRESHOLD: f32 = 3.0;
pub const DEFAULT_INFERENCE_INTERVAL: u32 = 1;
pub const DEFAULT_ASYNCHRONOUS: bool = false;
pub const DEFAULT_MAX_LATENCY_MS: u32 = 0;
pub const DEFAULT_NEGATIVE_OVERLAP: f32 = samclipseg::prompt::request::DEFAULT_NEGATIVE_OVERLAP;
pub const DEFAULT_TRACK_PATIENCE: u32 = 5;
pub const DEFAULT_TEMPORAL_SMOOTHING: f32 = 0.0;

/// Where the real SAM 3 bundle is installed, in the order searched: the user's
/// data directory (`$XDG_DATA_HOME`, else `~/.local/share`), then
/// `/usr/local/share`, then `/usr/share`, each followed by `samclipseg/sam3`.
pub fn bundle_search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let user_data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        });
    dirs.extend(user_data);
    dirs.push(PathBuf::from("/usr/local/share"));
    dirs.push(PathBuf::from("/usr/share"));
    dirs.into_iter()
        .map(|d| d.join("samclipseg").join("sam3"))
        .collect()
}

/// The default of property `bundle`: the first search-path entry holding a
/// `bundle.toml`, else `/usr/share/samclipseg/sam3` (the system location, so
/// that the error for a missing bundle names where it is expected).
pub fn default_bundle_path() -> String {
    let search = bundle_search_path();
    search
        .iter()
        .find(|d| d.join("bundle.toml").is_file())
        .or(search.last())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub bundle: String,
    pub backend: BackendKind,
    pub precision: Precision,
    pub threads: u32,
    pub prompt: String,
    /// 0-1, or [`BUNDLE_THRESHOLD`]; see [`Settings::effective_threshold`].
    pub threshold: f32,
    pub smoothness: u32,
    pub max_instances: u32,
    pub output_mode: OutputMode,
    pub post_messages: bool,
    pub reuse_threshold: f32,
    pub inference_interval: u32,
    pub asynchronous: bool,
    pub max_latency_ms: u32,
    pub negative_prompt: String,
    pub negative_overlap: f32,
    pub track_patience: u32,
    pub temporal_smoothing: f32,
    /// Suggestion vocabulary file; empty = the built-in list.
    pub vocabulary: String,
    pub device_id: i32,
    pub tensorrt_fp16: bool,
    /// Empty = the default cache directory.
    pub tensorrt_cache_dir: String,
    pub tensorrt_workspace_mib: u32,
    /// GPU backends: no node may fall back to the CPU.
    pub strict_gpu: bool,
    /// backend=remote: `grpc://host:port` or `grpcs://host:port`.
    pub server: String,
    pub request_timeout_ms: u32,
    pub connect_timeout_ms: u32,
    pub authorization: String,
    /// Empty = the bundle's name.
    pub model_prefix: String,
    /// Empty = the system's certificate authorities only.
    pub ca_file: String,
}

pub const DEFAULT_REQUEST_TIMEOUT_MS: u32 = 10_000;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 5_000;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bundle: default_bundle_path(),
            backend: DEFAULT_BACKEND,
            precision: DEFAULT_PRECISION,
            threads: DEFAULT_THREADS,
            prompt: DEFAULT_PROMPT.to_string(),
            threshold: DEFAULT_THRESHOLD,
            smoothness: DEFAULT_SMOOTHNESS,
            max_instances: DEFAULT_MAX_INSTANCES,
            output_mode: DEFAULT_OUTPUT_MODE,
            post_messages: DEFAULT_POST_MESSAGES,
            reuse_threshold: DEFAULT_REUSE_THRESHOLD,
            inference_interval: DEFAULT_INFERENCE_INTERVAL,
            asynchronous: DEFAULT_ASYNCHRONOUS,
            max_latency_ms: DEFAULT_MAX_LATENCY_MS,
            negative_prompt: String::new(),
            negative_overlap: DEFAULT_NEGATIVE_OVERLAP,
            track_patience: DEFAULT_TRACK_PATIENCE,
            temporal_smoothing: DEFAULT_TEMPORAL_SMOOTHING,
            vocabulary: String::new(),
            device_id: 0,
            tensorrt_fp16: true,
            tensorrt_cache_dir: String::new(),
            tensorrt_workspace_mib: 0,
            strict_gpu: false,
            server: String::new(),
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            authorization: String::new(),
            model_prefix: String::new(),
            ca_file: String::new(),
        }
    }
}

impl Settings {
    pub fn backend_options(&self) -> BackendOptions {
        BackendOptions {
            kind: self.backend,
            intra_threads: self.threads as usize,
            device_id: self.device_id,
            tensorrt: samclipseg::model::backend::TensorRtOptions {
                fp16: self.tensorrt_fp16,
                engine_cache_dir: (!self.tensorrt_cache_dir.is_empty())
                    .then(|| PathBuf::from(&self.tensorrt_cache_dir)),
                timing_cache: true,
                workspace_bytes: self.tensorrt_workspace_mib as usize * 1024 * 1024,
            },
            strict: self.strict_gpu,
            precision: self.precision,
            remote: samclipseg::remote::RemoteOptions {
                server: self.server.clone(),
                timeout: std::time::Duration::from_millis(self.request_timeout_ms.into()),
                connect_timeout: std::time::Duration::from_millis(self.connect_timeout_ms.into()),
                authorization: (!self.authorization.is_empty()).then(|| self.authorization.clone()),
                model_prefix: (!self.model_prefix.is_empty()).then(|| self.model_prefix.clone()),
                ca_file: (!self.ca_file.is_empty()).then(|| PathBuf::from(&self.ca_file)),
            },
        }
    }

    /// The instance score threshold in effect: the `threshold` property when
    /// set (0-1), else the bundle's calibrated `decoder.default_threshold`
    /// (`bundle_default`), clamped to 0-1 ([`FALLBACK_THRESHOLD`] if NaN).
    pub fn effective_threshold(&self, bundle_default: f32) -> f32 {
        if self.threshold >= 0.0 {
            self.threshold
        } else if bundle_default.is_nan() {
            FALLBACK_THRESHOLD
        } else {
            bundle_default.clamp(0.0, 1.0)
        }
    }

    /// Post-processing as the core library takes it; `mask_threshold` and
    /// `bundle_threshold` are the bundle's (manifest `decoder.mask_threshold`,
    /// `decoder.default_threshold`), not properties.
    pub fn postprocess_options(
        &self,
        mask_threshold: f32,
        bundle_threshold: f32,
    ) -> PostprocessOptions {
        PostprocessOptions {
            threshold: self.effective_threshold(bundle_threshold),
            mask_threshold,
            smoothness: self.smoothness,
            max_instances: self.max_instances as usize,
        }
    }
}

impl Settings {
    /// The request a frame is segmented for now (see [`Settings::postprocess_options`]).
    pub fn request(&self, mask_threshold: f32, bundle_threshold: f32) -> Request {
        Request::new(
            self.prompt.trim(),
            &self.negative_prompt,
            self.postprocess_options(mask_threshold, bundle_threshold),
            self.negative_overlap,
        )
    }

    /// What the stream layer reads per frame.
    pub fn live(&self) -> FrameSettings {
        FrameSettings {
            reuse_threshold: self.reuse_threshold,
            inference_interval: self.inference_interval.max(1),
            max_latency: Duration::from_millis(self.max_latency_ms as u64),
            track_patience: self.track_patience,
            temporal_smoothing: self.temporal_smoothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_threshold_is_the_property_when_set_else_the_bundles() {
        let mut s = Settings::default();
        assert_eq!(s.threshold, BUNDLE_THRESHOLD);
        assert_eq!(s.effective_threshold(0.35), 0.35);
        // A bundle value outside 0-1 is clamped; NaN falls back.
        assert_eq!(s.effective_threshold(1.7), 1.0);
        assert_eq!(s.effective_threshold(-0.2), 0.0);
        assert_eq!(s.effective_threshold(f32::NAN), FALLBACK_THRESHOLD);
        // An explicit value wins, 0 included.
        s.threshold = 0.7;
        assert_eq!(s.effective_threshold(0.35), 0.7);
        s.threshold = 0.0;
        assert_eq!(s.effective_threshold(0.35), 0.0);
        assert_eq!(s.postprocess_options(0.4, 0.35).threshold, 0.0);
        s.threshold = BUNDLE_THRESHOLD;
        let opts = s.postprocess_options(0.4, 0.35);
        assert_eq!((opts.threshold, opts.mask_threshold), (0.35, 0.4));
    }

    #[test]
    fn strict_gpu_reaches_the_backend_options() {
        let mut s = Settings::default();
        assert!(!s.backend_options().strict);
        s.strict_gpu = true;
        assert!(s.backend_options().strict);
    }
}
