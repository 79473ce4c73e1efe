//! Which backend runs the engines, and its options.

use std::path::PathBuf;

/// Where the engines run. A GPU backend whose libraries are not installed is
/// an error naming them ([`crate::Error::MissingLibrary`]), never a quiet
/// fall back to the CPU.
///
/// With the `glib` feature it is also a GLib enum type, so that the element's
/// `backend` property uses this one enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "glib", derive(glib::Enum))]
#[cfg_attr(feature = "glib", enum_type(name = "GstSamClipSegBackend"))]
#[repr(u32)]
pub enum BackendKind {
    #[default]
    #[cfg_attr(
        feature = "glib",
        enum_value(name = "CPU: ONNX Runtime on the CPU", nick = "cpu")
    )]
    Cpu = 0,
    #[cfg_attr(
        feature = "glib",
        enum_value(name = "CUDA: ONNX Runtime CUDA execution provider", nick = "cuda")
    )]
    Cuda = 1,
    #[cfg_attr(
        feature = "glib",
        enum_value(
            name = "TensorRT: ONNX Runtime TensorRT execution provider",
            nick = "tensorrt"
        )
    )]
    TensorRt = 2,
    #[cfg_attr(
        feature = "glib",
        enum_value(
            name = "Remote: an inference server speaking KServe v2 (Triton), see the server property",
            nick = "remote"
        )
    )]
    Remote = 3,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::TensorRt => "tensorrt",
            BackendKind::Remote => "remote",
        }
    }
}

/// The library's default is exact: fp32 on the CPU provider. The element and
/// the CLI ask for `precision=auto`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendOptions {
    pub kind: BackendKind,
    /// Threads inside one operator; 0 lets ONNX Runtime choose.
    pub intra_threads: usize,
    /// CUDA device for the `cuda` and `tensorrt` backends.
    pub device_id: i32,
    pub tensorrt: TensorRtOptions,
    /// `cuda` and `tensorrt` only: every node must run on the GPU. Without
    /// it, ONNX Runtime quietly places the nodes no GPU provider takes on the
    /// CPU, with copies across the bus around them; with it, such an engine
    /// fails to load with an error naming it
    /// ([`crate::model::backend::session_config_entries`]).
    pub strict: bool,
    /// `cpu` only: what the image encoder and decoder run in
    /// ([`crate::model::precision`]).
    pub precision: crate::model::precision::Precision,
    /// `remote` only: the server and how to reach it.
    pub remote: crate::remote::RemoteOptions,
    /// The model runs beside a pipeline that must keep real time (the
    /// element's asynchronous mode): its threads leave the CPU to the
    /// pipeline's ([`crate::model::backend::background_threads`]).
    pub background: bool,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            kind: BackendKind::default(),
            intra_threads: 0,
            device_id: 0,
            tensorrt: TensorRtOptions::default(),
            strict: false,
            precision: crate::model::precision::Precision::Fp32,
            remote: crate::remote::RemoteOptions::default(),
            background: false,
        }
    }
}

/// TensorRT engine building. Engines are built on first use (minutes for the
/// full model) and cached on disk, keyed by model and options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorRtOptions {
    pub fp16: bool,
    /// Where built engines are kept; None = `$XDG_CACHE_HOME/samclipseg/tensorrt`
    /// (or `~/.cache/...`).
    pub engine_cache_dir: Option<PathBuf>,
    /// Keep TensorRT's kernel timing cache beside the engines (faster rebuilds).
    pub timing_cache: bool,
    /// Builder workspace in bytes; 0 = TensorRT's default.
    pub workspace_bytes: usize,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        TensorRtOptions {
            fp16: true,
            engine_cache_dir: None,
            timing_cache: true,
            workspace_bytes: 0,
        }
    }
}

impl TensorRtOptions {
    pub fn cache_dir(&self) -> PathBuf {
        self.engine_cache_dir.clone().unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir);
            base.join("samclipseg").join("tensorrt")
        })
    }
}
