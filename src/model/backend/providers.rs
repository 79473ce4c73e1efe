//! Execution providers: where ONNX Runtime runs an engine's nodes (its CPU
//! provider, OpenVINO, CUDA, TensorRT and TensorRT's optimisation profiles).

use ort::ep::ExecutionProvider;

use super::options::{BackendKind, BackendOptions};
use crate::error::{Error, Result};
use crate::model::bundle::{Dim, EngineSpec};
use crate::model::runtime;

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
pub(super) fn with_openvino(
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
/// an error, never a silent fall back to the CPU. A provider that the ONNX
/// Runtime loaded lacks, or whose libraries are not installed, is
/// [`Error::MissingLibrary`]; one that is there and fails is [`Error::Backend`].
pub(super) fn with_gpu_providers(
    builder: ort::session::builder::SessionBuilder,
    options: &BackendOptions,
    spec: &EngineSpec,
) -> Result<ort::session::builder::SessionBuilder> {
    use ort::ep;
    let kind = options.kind;
    let cuda = ep::CUDA::default()
        .with_device_id(options.device_id)
        .build()
        .error_on_failure();
    let providers = match kind {
        BackendKind::Cpu | BackendKind::Remote => return Ok(builder),
        BackendKind::Cuda => {
            require_provider::<ep::CUDA>(kind)?;
            vec![cuda]
        }
        BackendKind::TensorRt => {
            require_provider::<ep::TensorRT>(kind)?;
            require_provider::<ep::CUDA>(kind)?;
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
        .map_err(|e| provider_error(kind, &e.to_string()))
}

/// `E` must be compiled into the ONNX Runtime loaded: its CPU-only and
/// OpenVINO builds lack the GPU providers, and then the GPU build of ONNX
/// Runtime is the missing library.
fn require_provider<E: ExecutionProvider>(kind: BackendKind) -> Result<()> {
    let available = E::is_available().map_err(|e| Error::Backend {
        backend: kind.name().into(),
        message: format!("cannot ask ONNX Runtime for its execution providers: {e}"),
    })?;
    if available {
        return Ok(());
    }
    let loaded = runtime::library_path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the ONNX Runtime library loaded".into());
    Err(Error::MissingLibrary {
        library: "the GPU build of ONNX Runtime".into(),
        hint: format!(
            "the `{}` backend's execution provider did not start: {loaded} was built without \
             {}; {GPU_HINT}",
            kind.name(),
            E::NAME
        ),
    })
}

/// The error of a GPU provider that did not start with `message`: a library
/// it loads that is not installed (the provider's own, CUDA's, cuDNN's,
/// TensorRT's) is [`Error::MissingLibrary`]; anything else, such as a
/// library that is present but of the wrong version, is [`Error::Backend`].
fn provider_error(kind: BackendKind, message: &str) -> Error {
    match runtime::absent_library(message) {
        Some(library) => Error::MissingLibrary {
            library: library.to_string(),
            hint: format!(
                "the `{}` backend's execution provider did not start ({message}); {GPU_HINT}",
                kind.name()
            ),
        },
        None => Error::Backend {
            backend: kind.name().into(),
            message: format!("the execution provider did not start ({message}); {GPU_HINT}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bundle::TensorSpec;

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
    fn only_an_absent_library_of_a_provider_is_a_missing_library() {
        let missing = provider_error(
            BackendKind::Cuda,
            "Failed to load library libonnxruntime_providers_cuda.so with error: \
             libcublasLt.so.12: cannot open shared object file: No such file or directory",
        );
        match &missing {
            Error::MissingLibrary { library, hint } => {
                assert_eq!(library, "libcublasLt.so.12");
                assert!(
                    hint.contains("`cuda`") && hint.contains("did not start"),
                    "{hint}"
                );
                assert!(hint.contains("onnxruntime-gpu"), "{hint}");
            }
            other => panic!("not a missing library: {other:?}"),
        }
        // Present but broken: a version mismatch is a failure.
        let broken = provider_error(
            BackendKind::TensorRt,
            "Failed to load library libonnxruntime_providers_tensorrt.so with error: \
             undefined symbol: cudnnGetVersion",
        );
        assert!(
            matches!(&broken, Error::Backend { backend, .. } if backend == "tensorrt"),
            "{broken:?}"
        );
    }
}
