//! ONNX Runtime sessions for the three engines, checked against the manifest.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::CudaContext;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::{Tensor as OrtTensor, TensorElementType, TensorValueType, ValueType};

use crate::error::{Error, Result};
use crate::model::bundle::{Bundle, Dim, EngineRole, EngineSpec, SizedDim, TensorSpec};
use crate::model::runtime;
use crate::model::tensor::{TensorF32, TensorI64};

/// Where the engines run. CUDA and TensorRT arrive with the NVIDIA issue; they
/// are named here so that asking for them is a clear error, not a CPU fallback.
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
    /// fails to load with an error naming it ([`session_config_entries`]).
    pub strict: bool,
    /// `cpu` only: what the image encoder and decoder run in
    /// ([`crate::model::precision`]).
    pub precision: crate::model::precision::Precision,
    /// `remote` only: the server and how to reach it.
    pub remote: crate::remote::RemoteOptions,
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

/// `options` with the TensorRT engine cache moved into a subdirectory of its
/// own for `bundle` ([`engine_cache_key`]); other backends unchanged.
///
/// ONNX Runtime's TensorRT provider names cached engines by a hash of the
/// graph (its structure and names, not the weights' values), so two bundles
/// exported from the same architecture with different weights would load
/// each other's engines and give the other model's results, silently.
pub fn per_bundle_options(options: &BackendOptions, bundle: &Bundle) -> Result<BackendOptions> {
    let mut options = options.clone();
    if options.kind == BackendKind::TensorRt {
        let files: Vec<PathBuf> = EngineRole::ALL
            .iter()
            .map(|r| bundle.engine_path(*r))
            .collect();
        let key = engine_cache_key(&bundle.manifest.bundle.name, &files)?;
        options.tensorrt.engine_cache_dir = Some(options.tensorrt.cache_dir().join(key));
    }
    Ok(options)
}

/// The name of a bundle's engine cache directory: the bundle's name (only
/// letters, digits, `-` and `_`, for the person looking in the cache) and a
/// hash of the engine files' contents.
///
/// The contents, not sizes and modification times: a re-export with new
/// weights has the same sizes, and `cp -p`, `rsync -a` or `tar` keep times, so
/// only the bytes say reliably that an engine is stale, and a stale engine
/// means wrong masks, not an error. Reading the files costs a few seconds for
/// the full model (several GB) once per load on the `tensorrt` backend only,
/// while ONNX Runtime reads them anyway.
pub fn engine_cache_key(bundle_name: &str, files: &[PathBuf]) -> Result<String> {
    let mut name: String = bundle_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(48)
        .collect();
    if name.is_empty() {
        name = "bundle".into();
    }
    let mut h = ContentHash::new();
    for path in files {
        let mut f = std::fs::File::open(path).map_err(|e| Error::Backend {
            backend: "tensorrt".into(),
            message: format!(
                "cannot read {} to key its engine cache: {e}",
                path.display()
            ),
        })?;
        h.file(&mut f).map_err(|e| Error::Backend {
            backend: "tensorrt".into(),
            message: format!(
                "cannot read {} to key its engine cache: {e}",
                path.display()
            ),
        })?;
    }
    Ok(format!("{name}-{:016x}", h.finish()))
}

/// A 64-bit hash of byte streams, fast enough to read GB-sized engines at
/// disk speed (a multiply-rotate over 8-byte words, as in FxHash / wyhash).
/// Written here because no hash crate is a dependency and the key needs
/// neither cryptographic strength nor more than 64 bits: it tells apart the
/// few bundles on one machine, not an adversary's.
struct ContentHash(u64);

impl ContentHash {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new() -> ContentHash {
        ContentHash(0x243F_6A88_85A3_08D3)
    }

    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(23) ^ w).wrapping_mul(Self::K);
    }

    /// One file: its bytes, then its length, so that file boundaries count.
    fn file(&mut self, f: &mut impl std::io::Read) -> std::io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        let mut tail: Vec<u8> = Vec::with_capacity(8);
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            len += n as u64;
            let mut data = &buf[..n];
            // Complete the word a previous read left unfinished.
            if !tail.is_empty() {
                let take = (8 - tail.len()).min(data.len());
                tail.extend_from_slice(&data[..take]);
                data = &data[take..];
                if tail.len() == 8 {
                    self.word(u64::from_le_bytes(tail[..].try_into().unwrap_or([0; 8])));
                    tail.clear();
                }
            }
            let words = data.chunks_exact(8);
            tail.extend_from_slice(words.remainder());
            for w in words {
                self.word(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
            }
        }
        if !tail.is_empty() {
            let mut last = [0u8; 8];
            last[..tail.len()].copy_from_slice(&tail);
            self.word(u64::from_le_bytes(last));
        }
        self.word(len);
        Ok(())
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^ (x >> 33)
    }
}

/// Phrase counts TensorRT builds its engines for: any batch from 1 to the
/// phrase cap runs on one engine, so a prompt change never rebuilds one (minutes
/// on the streaming thread); kernels are chosen for [`TRT_OPT_BATCH`].
pub const TRT_MAX_BATCH: usize = crate::prompt::syntax::MAX_PHRASES;
/// The batch TensorRT tunes for: a prompt of a few phrases.
pub const TRT_OPT_BATCH: usize = 4;

/// TensorRT optimisation profile shapes of one engine, in the provider's
/// `name:AxBxC,name2:...` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrtProfiles {
    pub min: String,
    pub opt: String,
    pub max: String,
}

/// The profiles for `spec`'s inputs with a dynamic dimension: `batch`
/// (phrases) from 1 to `max_batch`, `image_batch` fixed at 1 (one picture per
/// run). None when every input is static. Another symbolic name has no range
/// samclipseg knows, so it is an error naming the tensor.
pub fn trt_profile_shapes(
    spec: &EngineSpec,
    max_batch: usize,
) -> std::result::Result<Option<TrtProfiles>, String> {
    let (mut min, mut opt, mut max) = (Vec::new(), Vec::new(), Vec::new());
    for t in &spec.inputs {
        if t.shape.iter().all(|d| matches!(d, Dim::Fixed(_))) {
            continue;
        }
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for (i, d) in t.shape.iter().enumerate() {
            let (lo, mid, hi) = match d {
                Dim::Fixed(n) => (*n, *n, *n),
                Dim::Symbolic(s) if s == "batch" => {
                    (1, TRT_OPT_BATCH.min(max_batch) as i64, max_batch as i64)
                }
                Dim::Symbolic(s) if s == "image_batch" => (1, 1, 1),
                Dim::Symbolic(s) => {
                    return Err(format!(
                        "input `{}` dimension {i} is `{s}`, which has no TensorRT profile range; \
                         only `batch` and `image_batch` may be symbolic (engines/BUNDLE.md)",
                        t.name
                    ));
                }
            };
            a.push(lo.to_string());
            b.push(mid.to_string());
            c.push(hi.to_string());
        }
        min.push(format!("{}:{}", t.name, a.join("x")));
        opt.push(format!("{}:{}", t.name, b.join("x")));
        max.push(format!("{}:{}", t.name, c.join("x")));
    }
    Ok((!min.is_empty()).then(|| TrtProfiles {
        min: min.join(","),
        opt: opt.join(","),
        max: max.join(","),
    }))
}

const GPU_HINT: &str = "it needs the GPU build of ONNX Runtime (pip install onnxruntime-gpu, then set \
     ORT_DYLIB_PATH to its onnxruntime/capi/libonnxruntime.so.*), an NVIDIA driver, and the CUDA 12 and \
     cuDNN 9 libraries (plus TensorRT 10 for `tensorrt`) on the library path";

/// ONNX Runtime session configuration entries for `options`: strict mode on
/// a GPU backend forbids the CPU fallback. Ignored on `cpu`, where the CPU is
/// the provider.
pub fn session_config_entries(options: &BackendOptions) -> Vec<(&'static str, &'static str)> {
    let gpu = matches!(options.kind, BackendKind::Cuda | BackendKind::TensorRt);
    if gpu && options.strict {
        vec![("session.disable_cpu_ep_fallback", "1")]
    } else {
        Vec::new()
    }
}

/// Where one engine runs on the CPU backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuRuntime {
    /// ONNX Runtime's own CPU provider (fp32, exact).
    #[default]
    Ort,
    /// ONNX Runtime's OpenVINO execution provider on the CPU, with this
    /// `INFERENCE_PRECISION_HINT` for the float parts (`bf16` or `f32`).
    OpenVino { hint: &'static str },
}

impl CpuRuntime {
    pub fn describe(self) -> String {
        match self {
            CpuRuntime::Ort => "ONNX Runtime CPU".into(),
            CpuRuntime::OpenVino { hint } => format!("OpenVINO CPU, {hint} arithmetic"),
        }
    }
}

/// Registers OpenVINO for an engine, or says why it cannot: the ONNX Runtime
/// library loaded was built without it (the one `make deps` installs has it).
fn with_openvino(
    builder: ort::session::builder::SessionBuilder,
    hint: &str,
    threads: usize,
) -> Result<ort::session::builder::SessionBuilder> {
    use ort::ep::{self, ArbitrarilyConfigurableExecutionProvider};
    // One stream, latency first: a frame is one request; threads as asked.
    let threads = if threads > 0 {
        format!(r#", "INFERENCE_NUM_THREADS": "{threads}""#)
    } else {
        String::new()
    };
    let config = format!(
        r#"{{"CPU": {{"INFERENCE_PRECISION_HINT": "{hint}", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"{threads}}}}}"#
    );
    let provider = ep::OpenVINO::default()
        .with_device_type("CPU")
        .with_arbitrary_config("load_config", config)
        .build()
        .error_on_failure();
    builder
        .with_execution_providers([provider])
        .map_err(|e| Error::Backend {
            backend: "cpu (OpenVINO)".into(),
            message: format!(
                "ONNX Runtime's OpenVINO execution provider did not start ({e}); the library \
                 loaded must be the onnxruntime-openvino build (`make deps` installs it into \
                 .deps/onnxruntime), or choose precision=fp32"
            ),
        })
}

/// Registers the GPU execution providers; a provider that does not start is
/// an error, never a silent fall back to the CPU.
fn with_gpu_providers(
    builder: ort::session::builder::SessionBuilder,
    options: &BackendOptions,
    spec: &EngineSpec,
) -> Result<ort::session::builder::SessionBuilder> {
    use ort::ep;
    let cuda = ep::CUDA::default()
        .with_device_id(options.device_id)
        .build()
        .error_on_failure();
    let providers = match options.kind {
        BackendKind::Cpu | BackendKind::Remote => return Ok(builder),
        BackendKind::Cuda => vec![cuda],
        BackendKind::TensorRt => {
            let t = &options.tensorrt;
            let dir = t.cache_dir();
            std::fs::create_dir_all(&dir).map_err(|e| Error::Backend {
                backend: "tensorrt".into(),
                message: format!(
                    "cannot create the engine cache directory {}: {e}",
                    dir.display()
                ),
            })?;
            let mut trt = ep::TensorRT::default()
                .with_device_id(options.device_id)
                .with_fp16(t.fp16)
                .with_engine_cache(true)
                .with_engine_cache_path(dir.display().to_string())
                .with_timing_cache(t.timing_cache)
                .with_timing_cache_path(dir.display().to_string());
            if t.workspace_bytes > 0 {
                trt = trt.with_max_workspace_size(t.workspace_bytes);
            }
            let profiles =
                trt_profile_shapes(spec, TRT_MAX_BATCH).map_err(|message| Error::Backend {
                    backend: "tensorrt".into(),
                    message,
                })?;
            if let Some(p) = profiles {
                trt = trt
                    .with_profile_min_shapes(p.min)
                    .with_profile_opt_shapes(p.opt)
                    .with_profile_max_shapes(p.max);
            }
            // Nodes TensorRT cannot take run on CUDA, still on the GPU.
            vec![trt.build().error_on_failure(), cuda]
        }
    };
    builder
        .with_execution_providers(providers)
        .map_err(|e| Error::Backend {
            backend: options.kind.name().into(),
            message: format!("the execution provider did not start ({e}); {GPU_HINT}"),
        })
}

/// Why a GPU backend did not load or run, as a GPU check must judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendProblem {
    /// A library it needs is not on this machine (the GPU build of ONNX
    /// Runtime, CUDA, cuDNN, TensorRT, the driver): the check is skipped and
    /// says what to install.
    MissingLibrary,
    /// Everything is installed and it still failed: a real failure.
    Failure,
}

/// Classifies an error from loading or running a GPU backend. Only an absent
/// library is [`BackendProblem::MissingLibrary`]: a library that is present
/// but does not load (wrong version, undefined symbol), a provider error, an
/// engine that does not build or a run that fails are all failures.
pub fn classify_backend_error(err: &Error) -> BackendProblem {
    const MISSING: [&str; 5] = [
        // ONNX Runtime's CPU-only build: the GPU build is the missing library.
        "execution provider is not enabled in this build",
        // dlopen of a provider or one of its dependencies: not found.
        "cannot open shared object file",
        // DeviceMemory::cuda and GpuKernels without a driver.
        "libcuda.so.1 is not on the library path",
        "no CUDA driver",
        // GpuKernels without NVRTC.
        "no NVRTC",
    ];
    match err {
        Error::RuntimeLibrary(_) => BackendProblem::MissingLibrary,
        Error::Backend { message, .. } | Error::Gpu(message)
            if MISSING.iter().any(|m| message.contains(m)) =>
        {
            BackendProblem::MissingLibrary
        }
        _ => BackendProblem::Failure,
    }
}

/// An input value for [`Engine::run`].
pub enum Input<'a> {
    F32(&'a TensorF32),
    I64(&'a TensorI64),
}

impl Input<'_> {
    fn bytes(&self) -> u64 {
        match self {
            Input::F32(t) => (t.data.len() * 4) as u64,
            Input::I64(t) => (t.data.len() * 8) as u64,
        }
    }

    fn to_ort(&self) -> ort::Result<ort::value::DynValue> {
        Ok(match self {
            Input::F32(t) => OrtTensor::from_array((t.shape.clone(), t.data.clone()))?.into_dyn(),
            Input::I64(t) => OrtTensor::from_array((t.shape.clone(), t.data.clone()))?.into_dyn(),
        })
    }
}

/// An input for [`Engine::run_bound`]: a host tensor (ONNX Runtime uploads it
/// on a GPU backend) or a value an engine left in device memory (bound as is).
pub enum Bound<'a> {
    Host(Input<'a>),
    Device(&'a DeviceTensor),
}

/// Bytes moved between the host and the engines' memory since the model was
/// loaded; the difference over a frame is what the frame cost.
///
/// Counted the same way on every backend, so the CPU tests pin down what a GPU
/// backend does: on `cpu` an "upload" is ONNX Runtime reading host memory and a
/// "download" a plain copy, on `cuda` / `tensorrt` they cross the PCIe bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Host tensors given to an engine (pixels, token ids, attention masks).
    pub host_to_device: u64,
    /// Engine outputs read back to the host (scores, boxes, kept masks, and
    /// every explicit `to_host()`).
    pub device_to_host: u64,
    /// Copies inside device memory (assembling a decoder batch of text features).
    pub device_to_device: u64,
}

/// Where the engines of one model leave their outputs: CUDA device memory for
/// the `cuda` and `tensorrt` backends, host memory for `cpu`. Shared by the
/// engines and every [`DeviceTensor`] they make, and counts their copies.
pub struct DeviceMemory {
    backend: BackendKind,
    device_id: i32,
    info: MemoryInfo<'static>,
    host_to_device: AtomicU64,
    device_to_host: AtomicU64,
    device_to_device: AtomicU64,
    /// The device's primary context (the one ONNX Runtime's CUDA provider
    /// uses), retained on the first copy that needs it.
    cuda: Mutex<Option<Arc<CudaContext>>>,
}

impl std::fmt::Debug for DeviceMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMemory")
            .field("backend", &self.backend)
            .field("device_id", &self.device_id)
            .field("transfers", &self.transfers())
            .finish()
    }
}

impl DeviceMemory {
    pub fn new(options: &BackendOptions) -> Result<DeviceMemory> {
        // ONNX Runtime must be loaded before any of its objects is made.
        runtime::environment()?;
        let (device, id) = match options.kind {
            // The remote backend's tensors are what the server sent: host memory.
            BackendKind::Cpu | BackendKind::Remote => (AllocationDevice::CPU, 0),
            BackendKind::Cuda | BackendKind::TensorRt => {
                (AllocationDevice::CUDA, options.device_id)
            }
        };
        let info = MemoryInfo::new(device, id, AllocatorType::Device, MemoryType::Default)
            .map_err(|e| Error::Backend {
                backend: options.kind.name().into(),
                message: format!("cannot describe device {id}'s memory to ONNX Runtime: {e}"),
            })?;
        Ok(DeviceMemory {
            backend: options.kind,
            device_id: id,
            info,
            host_to_device: AtomicU64::new(0),
            device_to_host: AtomicU64::new(0),
            device_to_device: AtomicU64::new(0),
            cuda: Mutex::new(None),
        })
    }

    pub fn transfers(&self) -> Transfers {
        Transfers {
            host_to_device: self.host_to_device.load(Ordering::Relaxed),
            device_to_host: self.device_to_host.load(Ordering::Relaxed),
            device_to_device: self.device_to_device.load(Ordering::Relaxed),
        }
    }

    fn copy_error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Backend {
            backend: self.backend.name().into(),
            message: format!(
                "{what} on CUDA device {} failed: {e}; check `nvidia-smi` and the device-id property",
                self.device_id
            ),
        }
    }

    /// The CUDA context to copy with, made current on this thread.
    fn cuda(&self) -> Result<Arc<CudaContext>> {
        let mut slot = self.cuda.lock().map_err(|_| {
            self.copy_error("locking the CUDA context", "poisoned by an earlier panic")
        })?;
        let ctx = match slot.as_ref() {
            Some(ctx) => ctx.clone(),
            None => {
                // SAFETY: only opens libcuda.so.1 by name; CudaContext::new panics without it.
                if !unsafe { cudarc::driver::sys::is_culib_present() } {
                    return Err(self.copy_error(
                        "loading the CUDA driver",
                        "libcuda.so.1 is not on the library path",
                    ));
                }
                let ordinal = usize::try_from(self.device_id)
                    .map_err(|_| self.copy_error("opening the device", "negative device id"))?;
                // cudarc panics on a driver that lacks a symbol it binds.
                let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
                    .map_err(|_| {
                        self.copy_error("opening the device", "the CUDA driver is too old")
                    })?
                    .map_err(|e| self.copy_error("opening the device", e))?;
                slot.insert(ctx).clone()
            }
        };
        ctx.bind_to_thread()
            .map_err(|e| self.copy_error("binding the CUDA context", e))?;
        Ok(ctx)
    }
}

/// A float tensor that an engine left where it ran (see [`DeviceMemory`]): it
/// can be bound to another engine's input without a copy, and is read on the
/// host only through the explicit, counted [`DeviceTensor::to_host`] and
/// [`DeviceTensor::read`]. Immutable; clones share the value.
#[derive(Clone)]
pub struct DeviceTensor {
    value: Arc<OrtTensor<f32>>,
    shape: Vec<usize>,
    memory: Arc<DeviceMemory>,
}

impl std::fmt::Debug for DeviceTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTensor")
            .field("shape", &self.shape)
            .field("on_host", &self.on_host())
            .finish()
    }
}

impl DeviceTensor {
    /// A host tensor (the remote backend's text features) in `memory`.
    pub fn from_host(t: TensorF32, memory: Arc<DeviceMemory>) -> Result<DeviceTensor> {
        let value = OrtTensor::from_array((t.shape, t.data)).map_err(|e| Error::Backend {
            backend: memory.backend.name().into(),
            message: format!("cannot make a host tensor: {e}"),
        })?;
        Ok(DeviceTensor::new(value, memory))
    }

    fn new(value: OrtTensor<f32>, memory: Arc<DeviceMemory>) -> DeviceTensor {
        let shape = value.shape().iter().map(|d| *d as usize).collect();
        DeviceTensor {
            value: Arc::new(value),
            shape,
            memory,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements in one item of the leading (batch) dimension.
    pub fn item_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Whether the data is in host memory (the `cpu` backend). Decided by the
    /// value itself: ONNX Runtime may leave an output of a GPU session on the host.
    pub fn on_host(&self) -> bool {
        self.value.memory_info().is_cpu_accessible()
    }

    /// Whether both are the very same value (no copy between them).
    pub fn same_value(&self, other: &DeviceTensor) -> bool {
        Arc::ptr_eq(&self.value, &other.value)
    }

    /// Device pointer of the first element, checked to be CUDA memory.
    fn cuda_ptr(&self) -> Result<cudarc::driver::sys::CUdeviceptr> {
        let info = self.value.memory_info();
        if info.allocation_device() != AllocationDevice::CUDA {
            return Err(Error::Backend {
                backend: self.memory.backend.name().into(),
                message: format!(
                    "an engine output is in `{}` memory, which samclipseg cannot copy; only host and CUDA memory are supported",
                    info.allocation_device().as_str()
                ),
            });
        }
        Ok(self.value.data_ptr() as usize as cudarc::driver::sys::CUdeviceptr)
    }

    /// Copies the whole tensor to the host.
    pub fn to_host(&self) -> Result<TensorF32> {
        let mut data = vec![0f32; self.len()];
        self.read(0, &mut data)?;
        Ok(TensorF32::new(self.shape.clone(), data))
    }

    /// Copies item `index` of the leading dimension to the host, as [1, ...].
    pub fn item_to_host(&self, index: usize) -> Result<TensorF32> {
        let n = self.item_len();
        let mut data = vec![0f32; n];
        self.read(index * n, &mut data)?;
        let mut shape = self.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = 1;
        }
        Ok(TensorF32::new(shape, data))
    }

    /// Copies elements `start..start + dst.len()` (row-major) to the host: on
    /// CUDA only those bytes cross the bus.
    pub fn read(&self, start: usize, dst: &mut [f32]) -> Result<()> {
        let end = start + dst.len();
        if end > self.len() {
            return Err(Error::InvalidInput(format!(
                "reading elements {start}..{end} of a tensor of shape {:?}",
                self.shape
            )));
        }
        if dst.is_empty() {
            return Ok(());
        }
        self.memory
            .device_to_host
            .fetch_add(std::mem::size_of_val(dst) as u64, Ordering::Relaxed);
        if self.on_host() {
            let (_, data) = self.value.extract_tensor();
            dst.copy_from_slice(&data[start..end]);
            return Ok(());
        }
        // ort rc.15 copies only whole tensors (`Tensor::to`); its copy of a view
        // made with `TensorRefMut::from_raw` deadlocks on the lock of its copy
        // sessions. So the kept rows are copied with the driver directly.
        let src = self.cuda_ptr()? + (start * 4) as u64;
        let _ctx = self.memory.cuda()?;
        // SAFETY: src..src + size_of_val(dst) lies inside this tensor's device
        // buffer (bounds checked above), which `self.value` keeps alive. The
        // engine run that wrote it has finished: `Engine::run_bound` calls
        // `run_binding` with default RunOptions (none, or a job's with only the
        // terminate flag, so `disable_synchronize_execution_providers` is unset), and ONNX Runtime
        // then synchronises the provider's stream before the run returns; this
        // ordering relies on that.
        unsafe { cudarc::driver::result::memcpy_dtoh_sync(dst, src) }.map_err(|e| {
            self.memory
                .copy_error("copying an engine output to the host", e)
        })
    }
}

/// A failed run under a cancelled control was terminated on purpose.
fn run_error(control: &Option<crate::stream::run_control::RunControl>, error: Error) -> Error {
    if control.as_ref().is_some_and(|c| c.is_cancelled()) {
        Error::Cancelled
    } else {
        error
    }
}

pub struct Engine {
    role: EngineRole,
    path: PathBuf,
    /// Fair: a thread that runs the engine many times in a row (suggest)
    /// hands it over to a waiting one (the streaming thread) between runs.
    session: parking_lot::FairMutex<Session>,
    runs: AtomicU64,
    memory: Arc<DeviceMemory>,
}

impl Engine {
    /// Opens an engine whose outputs [`Engine::run_bound`] leaves in `memory`
    /// (made from the same `options`).
    pub fn load(
        role: EngineRole,
        path: &Path,
        spec: &EngineSpec,
        options: &BackendOptions,
        memory: Arc<DeviceMemory>,
    ) -> Result<Engine> {
        Engine::load_on(role, path, spec, options, memory, CpuRuntime::Ort)
    }

    /// [`Engine::load`] with `runtime` deciding where a `cpu` engine runs.
    pub fn load_on(
        role: EngineRole,
        path: &Path,
        spec: &EngineSpec,
        options: &BackendOptions,
        memory: Arc<DeviceMemory>,
        runtime: CpuRuntime,
    ) -> Result<Engine> {
        let engine_err = |message: String| Error::Engine {
            engine: role.key().to_string(),
            path: path.to_path_buf(),
            message,
        };
        let env = runtime::environment()?;
        let mut builder =
            Session::builder(env).map_err(|e| engine_err(format!("session builder: {e}")))?;
        builder = with_gpu_providers(builder, options, spec)?;
        if let (BackendKind::Cpu, CpuRuntime::OpenVino { hint }) = (options.kind, runtime) {
            builder = with_openvino(builder, hint, options.intra_threads)?;
        }
        for (key, value) in session_config_entries(options) {
            builder = builder
                .with_config_entry(key, value)
                .map_err(|e| engine_err(format!("cannot set session option {key}={value}: {e}")))?;
        }
        if options.intra_threads > 0 {
            builder = builder
                .with_intra_threads(options.intra_threads)
                .map_err(|e| {
                    engine_err(format!("cannot set {} threads: {e}", options.intra_threads))
                })?;
        }
        let session = builder.commit_from_file(path).map_err(|e| {
            let e = e.to_string();
            engine_err(if options.strict && e.contains("fallback to CPU") {
                format!(
                    "in strict GPU mode every node must run on the {} backend, and this engine has \
                     nodes that only the CPU takes ({e}); turn strict mode off to let ONNX Runtime \
                     run them on the CPU",
                    options.kind.name()
                )
            } else {
                format!(
                    "ONNX Runtime cannot load it ({e}); the file is damaged or not an ONNX model: \
                     re-export the bundle"
                )
            })
        })?;
        check_sized_dims(&spec.sized, |input, name| {
            tensor_shape(&session, input, name)
        })
        .map_err(engine_err)?;
        check_signature(&session, spec).map_err(engine_err)?;
        log::info!(
            "engine {} ({}) runs on the {} backend{}",
            role.key(),
            path.display(),
            options.kind.name(),
            match (options.kind, runtime) {
                (BackendKind::Cpu, r) => format!(" ({})", r.describe()),
                _ => String::new(),
            }
        );
        Ok(Engine {
            role,
            path: path.to_path_buf(),
            session: parking_lot::FairMutex::new(session),
            runs: AtomicU64::new(0),
            memory,
        })
    }

    fn error(&self, message: String) -> Error {
        Error::Engine {
            engine: self.role.key().to_string(),
            path: self.path.clone(),
            message,
        }
    }

    /// The session, once free. A job's run waiting here behind another
    /// stream's (the model is shared) still obeys its cancel switch.
    fn lock(&self) -> Result<parking_lot::FairMutexGuard<'_, Session>> {
        let Some(control) = crate::stream::run_control::current() else {
            return Ok(self.session.lock());
        };
        loop {
            control.check()?;
            if let Some(guard) = self
                .session
                .try_lock_for(std::time::Duration::from_millis(20))
            {
                return Ok(guard);
            }
        }
    }

    pub fn role(&self) -> EngineRole {
        self.role
    }

    /// How many times the engine has run since it was loaded.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Runs the engine and returns the named float outputs on the host, in the
    /// order asked (every output is copied back; see [`Engine::run_bound`]).
    pub fn run(&self, inputs: &[(&str, Input)], outputs: &[&str]) -> Result<Vec<TensorF32>> {
        let err = |message: String| self.error(message);
        let mut values: Vec<(String, ort::session::SessionInputValue)> =
            Vec::with_capacity(inputs.len());
        for (name, input) in inputs {
            let v = input
                .to_ort()
                .map_err(|e| err(format!("input `{name}`: {e}")))?;
            self.memory
                .host_to_device
                .fetch_add(input.bytes(), Ordering::Relaxed);
            values.push((name.to_string(), v.into()));
        }
        let control = crate::stream::run_control::current();
        let options = control.as_ref().map(|c| c.options()).transpose()?;
        let mut session = self.lock()?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        let out = match &options {
            Some(o) => session.run_with_options(values, o),
            None => session.run(values),
        }
        .map_err(|e| run_error(&control, err(format!("inference failed: {e}"))))?;
        outputs
            .iter()
            .map(|name| {
                let v = out
                    .get(*name)
                    .ok_or_else(|| err(format!("output `{name}` missing")))?;
                let (shape, data) = v
                    .try_extract_tensor::<f32>()
                    .map_err(|e| err(format!("output `{name}` is not float32: {e}")))?;
                self.memory
                    .device_to_host
                    .fetch_add((data.len() * 4) as u64, Ordering::Relaxed);
                Ok(TensorF32::new(
                    shape.iter().map(|d| *d as usize).collect(),
                    data.to_vec(),
                ))
            })
            .collect()
    }

    /// Runs the engine with IoBinding: device inputs are bound as they are (no
    /// copy), host inputs are uploaded by ONNX Runtime, and the named float
    /// outputs stay in the engine's memory, in the order asked.
    pub fn run_bound(
        &self,
        inputs: &[(&str, Bound)],
        outputs: &[&str],
    ) -> Result<Vec<DeviceTensor>> {
        let err = |message: String| self.error(message);
        let mut session = self.lock()?;
        let mut binding = session
            .create_binding()
            .map_err(|e| err(format!("cannot create an IoBinding: {e}")))?;
        for (name, input) in inputs {
            let bound = match input {
                Bound::Device(t) => binding.bind_input(*name, &*t.value),
                Bound::Host(h) => {
                    let v = h
                        .to_ort()
                        .map_err(|e| err(format!("input `{name}`: {e}")))?;
                    self.memory
                        .host_to_device
                        .fetch_add(h.bytes(), Ordering::Relaxed);
                    // The binding keeps its own reference to the value.
                    binding.bind_input(*name, &v)
                }
            };
            bound.map_err(|e| err(format!("cannot bind input `{name}`: {e}")))?;
        }
        for name in outputs {
            binding
                .bind_output_to_device(*name, &self.memory.info)
                .map_err(|e| err(format!("cannot bind output `{name}`: {e}")))?;
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        // A fresh binding per run: its output buffers are never reused by a
        // later run while a DeviceTensor still holds them. Default RunOptions
        // (none, or a job's from run_control, which sets only the terminate
        // flag) make ONNX Runtime synchronise the provider's stream before
        // returning, which `DeviceTensor::read` and `gather_rows` rely on
        // (`binding.synchronize_outputs()` would add a device-wide sync).
        let control = crate::stream::run_control::current();
        let options = control.as_ref().map(|c| c.options()).transpose()?;
        let mut out = match &options {
            Some(o) => session.run_binding_with_options(&binding, o),
            None => session.run_binding(&binding),
        }
        .map_err(|e| run_error(&control, err(format!("inference failed: {e}"))))?;
        outputs
            .iter()
            .map(|name| {
                let v = out
                    .remove(*name)
                    .ok_or_else(|| err(format!("output `{name}` missing")))?;
                let t = v
                    .downcast::<TensorValueType<f32>>()
                    .map_err(|e| err(format!("output `{name}` is not float32: {e}")))?;
                Ok(DeviceTensor::new(t, self.memory.clone()))
            })
            .collect()
    }

    /// Stacks item `row` of each tensor into one new [n, ...] tensor in the
    /// same memory, without passing through the host: how a decoder batch is
    /// made of text features encoded in different batches.
    pub fn gather_rows(&self, rows: &[(&DeviceTensor, usize)]) -> Result<DeviceTensor> {
        let err = |message: String| self.error(message);
        let Some((first, _)) = rows.first() else {
            return Err(err("gathering no rows".into()));
        };
        if rows.iter().all(|(t, _)| t.on_host()) {
            return gather_host_rows(rows, &self.memory);
        }
        check_batchable(rows)?;
        let n = first.item_len();
        let mut shape = first.shape.clone();
        shape[0] = rows.len();
        let bytes = (rows.len() * n * 4) as u64;
        let value = {
            let session = self.lock()?;
            let allocator = Allocator::new(&session, self.memory.info.clone())
                .map_err(|e| err(format!("no allocator for the device memory: {e}")))?;
            let mut dst = OrtTensor::<f32>::new(&allocator, shape)
                .map_err(|e| err(format!("cannot allocate a batch tensor on the device: {e}")))?;
            let base = dst.data_ptr_mut() as usize as u64;
            let _ctx = self.memory.cuda()?;
            for (i, (t, row)) in rows.iter().enumerate() {
                let src = t.cuda_ptr()? + (row * n * 4) as u64;
                // SAFETY: both ranges are one item inside live tensors of the
                // same item size (shapes checked above). The sources were
                // written by finished engine runs: this relies on ONNX Runtime
                // synchronising the provider's stream at the end of
                // `run_binding`, which it does with the default RunOptions that
                // `Engine::run_bound` uses (see `DeviceTensor::read`).
                unsafe {
                    cudarc::driver::result::memcpy_dtod_sync(base + (i * n * 4) as u64, src, n * 4)
                }
                .map_err(|e| {
                    self.memory
                        .copy_error("assembling a batch of text features", e)
                })?;
            }
            // Device-to-device copies do not block the host, and ONNX Runtime
            // runs the decoder on its own stream: wait for them here.
            // SAFETY: the null stream is the context's legacy default stream,
            // the one the copies above were queued on.
            unsafe { cudarc::driver::result::stream::synchronize(std::ptr::null_mut()) }.map_err(
                |e| {
                    self.memory
                        .copy_error("assembling a batch of text features", e)
                },
            )?;
            dst
        };
        self.memory
            .device_to_device
            .fetch_add(bytes, Ordering::Relaxed);
        Ok(DeviceTensor::new(value, self.memory.clone()))
    }
}

fn check_batchable(rows: &[(&DeviceTensor, usize)]) -> Result<()> {
    let first = &rows[0].0.shape;
    for (t, row) in rows {
        if t.shape[1..] != first[1..] || *row >= t.shape[0] {
            return Err(Error::InvalidInput(format!(
                "text features of shapes {:?} and {:?} (row {row}) cannot be batched",
                first, t.shape
            )));
        }
    }
    Ok(())
}

/// [`Engine::gather_rows`] for tensors in host memory, counted as a copy in
/// `memory` (shapes are checked by the caller).
pub fn gather_host_rows(
    rows: &[(&DeviceTensor, usize)],
    memory: &Arc<DeviceMemory>,
) -> Result<DeviceTensor> {
    let Some((first, _)) = rows.first() else {
        return Err(Error::InvalidInput("gathering no rows".into()));
    };
    check_batchable(rows)?;
    let n = first.item_len();
    let mut shape = first.shape.clone();
    shape[0] = rows.len();
    let mut data = Vec::with_capacity(rows.len() * n);
    for (t, row) in rows {
        data.extend_from_slice(&t.value.extract_tensor().1[row * n..(row + 1) * n]);
    }
    memory
        .device_to_device
        .fetch_add((data.len() * 4) as u64, Ordering::Relaxed);
    DeviceTensor::from_host(TensorF32::new(shape, data), memory.clone())
}

fn dtype_name(t: TensorElementType) -> String {
    match t {
        TensorElementType::Float32 => "float32".into(),
        TensorElementType::Float16 => "float16".into(),
        TensorElementType::Int64 => "int64".into(),
        TensorElementType::Int32 => "int32".into(),
        TensorElementType::Bool => "bool".into(),
        other => other.to_string(),
    }
}

/// The shape `session` declares for a tensor (-1 for a dynamic dimension).
fn tensor_shape(session: &Session, input: bool, name: &str) -> Option<Vec<i64>> {
    let outlets = if input {
        session.inputs()
    } else {
        session.outputs()
    };
    match outlets.iter().find(|o| o.name() == name)?.dtype() {
        ValueType::Tensor { shape, .. } => Some(shape.iter().copied().collect()),
        _ => None,
    }
}

/// The manifest's numbers (context length, image size, queries, mask size)
/// against the engine's own shapes, before anything is sized by them: the
/// error names the field, the tensor, and both values. A tensor the engine
/// lacks is left to [`check_signature`], which lists what the engine has.
fn check_sized_dims(
    sized: &[SizedDim],
    shape_of: impl Fn(bool, &str) -> Option<Vec<i64>>,
) -> std::result::Result<(), String> {
    for s in sized {
        let Some(shape) = shape_of(s.input, s.tensor) else {
            continue;
        };
        let found = match shape.get(s.dim) {
            Some(d) if *d < 0 => "dynamic".to_string(),
            Some(d) => d.to_string(),
            None => format!("absent (the engine's shape has {} dimensions)", shape.len()),
        };
        if shape.get(s.dim) != Some(&s.value) {
            return Err(format!(
                "{} `{}` dimension {} is {found} in the engine, but bundle.toml's {} is {}; \
                 the manifest does not describe this engine: re-export the bundle",
                s.side(),
                s.tensor,
                s.dim,
                s.field,
                s.value
            ));
        }
    }
    Ok(())
}

/// Every tensor the manifest declares must exist in the engine with the same
/// dtype and shape; symbolic dimensions must be dynamic in the engine.
fn check_signature(session: &Session, spec: &EngineSpec) -> std::result::Result<(), String> {
    let sides = [
        ("input", session.inputs(), &spec.inputs),
        ("output", session.outputs(), &spec.outputs),
    ];
    for (side, outlets, declared) in sides {
        for want in declared.iter() {
            let Some(found) = outlets.iter().find(|o| o.name() == want.name) else {
                let have: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
                return Err(format!(
                    "{side} tensor `{}` declared in bundle.toml is not in the engine (engine {side}s: {})",
                    want.name,
                    have.join(", ")
                ));
            };
            check_tensor(side, want, found.dtype())?;
        }
        for o in outlets {
            if side == "input" && !declared.iter().any(|d| d.name == o.name()) {
                return Err(format!(
                    "the engine needs input `{}`, which bundle.toml does not declare",
                    o.name()
                ));
            }
        }
    }
    Ok(())
}

fn check_tensor(
    side: &str,
    want: &TensorSpec,
    found: &ValueType,
) -> std::result::Result<(), String> {
    let ValueType::Tensor { ty, shape, .. } = found else {
        return Err(format!(
            "{side} `{}` is not a tensor in the engine",
            want.name
        ));
    };
    let found_dtype = dtype_name(*ty);
    let found_shape: Vec<String> = shape
        .iter()
        .map(|d| if *d < 0 { "?".into() } else { d.to_string() })
        .collect();
    let found_shape = format!("[{}]", found_shape.join(", "));
    if found_dtype != want.dtype {
        return Err(format!(
            "{side} `{}`: bundle.toml says dtype {}, the engine has {found_dtype}",
            want.name, want.dtype
        ));
    }
    let same = shape.len() == want.shape.len()
        && want.shape.iter().zip(shape.iter()).all(|(w, f)| match w {
            Dim::Fixed(n) => *n == *f,
            Dim::Symbolic(_) => *f < 0,
        });
    if !same {
        return Err(format!(
            "{side} `{}`: bundle.toml says shape {}, the engine has {found_shape}",
            want.name,
            want.shape_string()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(value: i64) -> SizedDim {
        SizedDim {
            field: "text.context_length",
            value,
            input: true,
            tensor: "input_ids",
            dim: 1,
        }
    }

    #[test]
    fn manifest_numbers_are_checked_against_the_engine_shapes() {
        let engine = |input: bool, name: &str| (input && name == "input_ids").then(|| vec![-1, 32]);
        assert_eq!(check_sized_dims(&[ctx(32)], engine), Ok(()));
        let err = check_sized_dims(&[ctx(48)], engine).unwrap_err();
        assert!(
            err.contains("input `input_ids` dimension 1 is 32 in the engine")
                && err.contains("text.context_length is 48"),
            "{err}"
        );
        // A dynamic dimension does not fix the size the manifest promises.
        let err = check_sized_dims(&[ctx(32)], |_, _| Some(vec![-1, -1])).unwrap_err();
        assert!(err.contains("is dynamic in the engine"), "{err}");
        let err = check_sized_dims(&[ctx(32)], |_, _| Some(vec![-1])).unwrap_err();
        assert!(err.contains("absent"), "{err}");
        // A tensor the engine lacks is check_signature's to report.
        assert_eq!(check_sized_dims(&[ctx(32)], |_, _| None), Ok(()));
    }

    fn tensor(name: &str, shape: &[Dim]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype: "float32".into(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn tensorrt_profiles_cover_every_phrase_count_up_to_the_cap() {
        let batch = || Dim::Symbolic("batch".into());
        let spec = EngineSpec {
            file: "decoder.onnx".into(),
            inputs: vec![
                tensor("fpn_feat_0", &[Dim::Fixed(1), Dim::Fixed(32)]),
                tensor("text_features", &[batch(), Dim::Fixed(32), Dim::Fixed(64)]),
                tensor("attention_mask", &[batch(), Dim::Fixed(32)]),
            ],
            outputs: vec![],
            variants: Default::default(),
            sized: vec![],
        };
        let p = trt_profile_shapes(&spec, TRT_MAX_BATCH).unwrap().unwrap();
        assert_eq!(TRT_MAX_BATCH, crate::prompt::syntax::MAX_PHRASES);
        assert_eq!(p.min, "text_features:1x32x64,attention_mask:1x32");
        assert_eq!(p.opt, "text_features:4x32x64,attention_mask:4x32");
        assert_eq!(p.max, "text_features:16x32x64,attention_mask:16x32");

        let image = EngineSpec {
            inputs: vec![tensor(
                "pixel_values",
                &[
                    Dim::Symbolic("image_batch".into()),
                    Dim::Fixed(3),
                    Dim::Fixed(8),
                    Dim::Fixed(8),
                ],
            )],
            ..spec.clone()
        };
        let p = trt_profile_shapes(&image, TRT_MAX_BATCH).unwrap().unwrap();
        assert_eq!(
            (p.min.as_str(), p.max.as_str()),
            ("pixel_values:1x3x8x8", "pixel_values:1x3x8x8")
        );

        let fixed = EngineSpec {
            inputs: vec![tensor("x", &[Dim::Fixed(2)])],
            ..spec.clone()
        };
        assert_eq!(trt_profile_shapes(&fixed, 16), Ok(None));

        let odd = EngineSpec {
            inputs: vec![tensor("x", &[Dim::Symbolic("sequence".into())])],
            ..spec
        };
        let err = trt_profile_shapes(&odd, 16).unwrap_err();
        assert!(err.contains("`x`") && err.contains("`sequence`"), "{err}");
    }

    fn hash(parts: &[&[u8]]) -> u64 {
        let mut h = ContentHash::new();
        for p in parts {
            h.file(&mut &p[..]).unwrap();
        }
        h.finish()
    }

    /// Hands out its bytes a few at a time, as a reader may.
    struct Trickle<'a>(&'a [u8], usize);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn only_an_absent_library_makes_a_gpu_backend_a_skip() {
        let backend = |message: &str| Error::Backend {
            backend: "cuda".into(),
            message: message.into(),
        };
        let missing = [
            backend(
                "the execution provider did not start (CUDA execution provider is not enabled in this build.); it needs ...",
            ),
            backend(
                "the execution provider did not start (Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: No such file or directory)",
            ),
            backend(
                "loading the CUDA driver on CUDA device 0 failed: libcuda.so.1 is not on the library path",
            ),
            Error::RuntimeLibrary("tried libonnxruntime.so".into()),
        ];
        for e in &missing {
            assert_eq!(
                classify_backend_error(e),
                BackendProblem::MissingLibrary,
                "{e}"
            );
        }
        let failures = [
            // Present but broken: a version mismatch is not a skip.
            backend(
                "the execution provider did not start (Failed to load library libonnxruntime_providers_cuda.so with error: undefined symbol: cudnnGetVersion)",
            ),
            backend("opening the device on CUDA device 0 failed: the CUDA driver is too old"),
            backend(
                "copying an engine output to the host on CUDA device 0 failed: CUDA_ERROR_ILLEGAL_ADDRESS",
            ),
            Error::Engine {
                engine: "decoder".into(),
                path: "decoder.onnx".into(),
                message: "inference failed: TensorRT EP failed to build the engine".into(),
            },
            Error::InvalidInput("decoder returned too few outputs".into()),
        ];
        for e in &failures {
            assert_eq!(classify_backend_error(e), BackendProblem::Failure, "{e}");
        }
    }

    #[test]
    fn strict_mode_forbids_the_cpu_fallback_on_gpu_backends_only() {
        let options = |kind, strict| BackendOptions {
            kind,
            strict,
            ..Default::default()
        };
        for kind in [BackendKind::Cuda, BackendKind::TensorRt] {
            assert_eq!(
                session_config_entries(&options(kind, true)),
                [("session.disable_cpu_ep_fallback", "1")],
                "{kind:?}"
            );
            assert!(session_config_entries(&options(kind, false)).is_empty());
        }
        assert!(session_config_entries(&options(BackendKind::Cpu, true)).is_empty());
        assert!(!BackendOptions::default().strict, "off unless asked");
    }

    #[test]
    fn the_content_hash_sees_every_byte_and_every_file_boundary() {
        let a: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut b = a.clone();
        b[999] ^= 1;
        assert_ne!(hash(&[&a]), hash(&[&b]), "same size, one byte differs");
        b = a.clone();
        b[0] ^= 0x80;
        assert_ne!(hash(&[&a]), hash(&[&b]));
        assert_ne!(
            hash(&[&a[..500], &a[500..]]),
            hash(&[&a]),
            "file boundaries count"
        );
        assert_ne!(
            hash(&[&a[..3]]),
            hash(&[&[a[0], a[1], a[2], 0][..]]),
            "length counts"
        );
        // However the reads are split, the same bytes give the same hash.
        for step in [1, 3, 8, 13] {
            let mut h = ContentHash::new();
            h.file(&mut Trickle(&a, step)).unwrap();
            assert_eq!(h.finish(), hash(&[&a]), "reads of {step}");
        }
    }
}
