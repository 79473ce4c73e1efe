//! ONNX Runtime sessions for the three engines, checked against the manifest.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ort::session::Session;
use ort::value::{Tensor as OrtTensor, TensorElementType, ValueType};

use crate::bundle::{Dim, EngineRole, EngineSpec, TensorSpec};
use crate::error::{Error, Result};
use crate::runtime;
use crate::tensor::{TensorF32, TensorI64};

/// Where the engines run. CUDA and TensorRT arrive with the NVIDIA issue; they
/// are named here so that asking for them is a clear error, not a CPU fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendKind {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::TensorRt => "tensorrt",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct BackendOptions {
    pub kind: BackendKind,
    /// Threads inside one operator; 0 lets ONNX Runtime choose.
    pub intra_threads: usize,
    /// CUDA device for the `cuda` and `tensorrt` backends.
    pub device_id: i32,
    pub tensorrt: TensorRtOptions,
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

const GPU_HINT: &str = "it needs the GPU build of ONNX Runtime (pip install onnxruntime-gpu, then set \
     ORT_DYLIB_PATH to its onnxruntime/capi/libonnxruntime.so.*), an NVIDIA driver, and the CUDA 12 and \
     cuDNN 9 libraries (plus TensorRT 10 for `tensorrt`) on the library path";

/// Registers the GPU execution providers; a provider that does not start is
/// an error, never a silent fall back to the CPU.
fn with_gpu_providers(
    builder: ort::session::builder::SessionBuilder,
    options: &BackendOptions,
) -> Result<ort::session::builder::SessionBuilder> {
    use ort::ep;
    let cuda = ep::CUDA::default()
        .with_device_id(options.device_id)
        .build()
        .error_on_failure();
    let providers = match options.kind {
        BackendKind::Cpu => return Ok(builder),
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

/// An input value for [`Engine::run`].
pub enum Input<'a> {
    F32(&'a TensorF32),
    I64(&'a TensorI64),
}

pub struct Engine {
    role: EngineRole,
    path: PathBuf,
    session: Mutex<Session>,
    runs: AtomicU64,
}

impl Engine {
    pub fn load(
        role: EngineRole,
        path: &Path,
        spec: &EngineSpec,
        options: &BackendOptions,
    ) -> Result<Engine> {
        let engine_err = |message: String| Error::Engine {
            engine: role.key().to_string(),
            path: path.to_path_buf(),
            message,
        };
        let env = runtime::environment()?;
        let mut builder =
            Session::builder(env).map_err(|e| engine_err(format!("session builder: {e}")))?;
        builder = with_gpu_providers(builder, options)?;
        if options.intra_threads > 0 {
            builder = builder
                .with_intra_threads(options.intra_threads)
                .map_err(|e| {
                    engine_err(format!("cannot set {} threads: {e}", options.intra_threads))
                })?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| engine_err(format!("ONNX Runtime cannot load it ({e}); the file is damaged or not an ONNX model: re-export the bundle")))?;
        check_signature(&session, spec).map_err(engine_err)?;
        log::info!(
            "engine {} ({}) runs on the {} backend",
            role.key(),
            path.display(),
            options.kind.name()
        );
        Ok(Engine {
            role,
            path: path.to_path_buf(),
            session: Mutex::new(session),
            runs: AtomicU64::new(0),
        })
    }

    pub fn role(&self) -> EngineRole {
        self.role
    }

    /// How many times the engine has run since it was loaded.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Runs the engine and returns the named float outputs, in the order asked.
    pub fn run(&self, inputs: &[(&str, Input)], outputs: &[&str]) -> Result<Vec<TensorF32>> {
        let err = |message: String| Error::Engine {
            engine: self.role.key().to_string(),
            path: self.path.clone(),
            message,
        };
        let mut values: Vec<(String, ort::session::SessionInputValue)> =
            Vec::with_capacity(inputs.len());
        for (name, input) in inputs {
            let v: ort::session::SessionInputValue = match input {
                Input::F32(t) => OrtTensor::from_array((t.shape.clone(), t.data.clone()))
                    .map_err(|e| err(format!("input `{name}`: {e}")))?
                    .into(),
                Input::I64(t) => OrtTensor::from_array((t.shape.clone(), t.data.clone()))
                    .map_err(|e| err(format!("input `{name}`: {e}")))?
                    .into(),
            };
            values.push((name.to_string(), v));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| err("session lock poisoned by an earlier panic".into()))?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        let out = session
            .run(values)
            .map_err(|e| err(format!("inference failed: {e}")))?;
        outputs
            .iter()
            .map(|name| {
                let v = out
                    .get(*name)
                    .ok_or_else(|| err(format!("output `{name}` missing")))?;
                let (shape, data) = v
                    .try_extract_tensor::<f32>()
                    .map_err(|e| err(format!("output `{name}` is not float32: {e}")))?;
                Ok(TensorF32::new(
                    shape.iter().map(|d| *d as usize).collect(),
                    data.to_vec(),
                ))
            })
            .collect()
    }
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
