//! One error type for the core library. Every message names the thing that is
//! wrong (file, engine, tensor) and, where there is one, what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bundle directory `{path}` does not exist; {hint}")]
    BundleMissing { path: PathBuf, hint: String },

    #[error("bundle file `{path}`: {message}")]
    BundleFile { path: PathBuf, message: String },

    #[error("engine `{engine}` ({path}): {message}")]
    Engine {
        engine: String,
        path: PathBuf,
        message: String,
    },

    /// A library that is needed is not installed (or not where it is looked
    /// for): the ONNX Runtime library, the GPU build of ONNX Runtime or a
    /// library its CUDA and TensorRT providers load, the CUDA driver, NVRTC.
    /// `hint` says how to install it. A library that is there but does not
    /// load or start is another error, a failure rather than an absence.
    #[error("{library} is missing: {hint}")]
    MissingLibrary { library: String, hint: String },

    /// The ONNX Runtime library is there but does not load or start (not a
    /// shared library, a version ort does not support, a symbol missing).
    #[error("ONNX Runtime library could not be loaded: {0}")]
    RuntimeLibrary(String),

    #[error("backend `{backend}` is not available: {message}")]
    Backend { backend: String, message: String },

    /// The inference server did not answer (gone, or past the request's
    /// deadline): a stream passes its frames and retries after a back-off.
    #[error("inference server {server} is not reachable: {message}")]
    Unavailable { server: String, message: String },

    #[error("tokenizer `{path}`: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("image: {0}")]
    Image(String),

    #[error("CUDA kernels: {0}")]
    Gpu(String),

    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A run abandoned on purpose (the stream stopped, flushed or changed its
    /// request): not a failure to report.
    #[error("the run was abandoned: its stream stopped, flushed or changed its request")]
    Cancelled,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this is [`Error::MissingLibrary`]: what a GPU check reports as
    /// skipped (install the library to run it), where every other error is a
    /// failure, whatever its message says.
    pub fn is_missing_library(&self) -> bool {
        matches!(self, Error::MissingLibrary { .. })
    }

    pub(crate) fn bundle_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BundleFile {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_missing_library_variant_is_a_missing_library() {
        let missing = Error::MissingLibrary {
            library: "the CUDA driver (libcuda.so.1)".into(),
            hint: "install the NVIDIA driver".into(),
        };
        assert!(missing.is_missing_library());
        let text = missing.to_string();
        assert!(
            text.contains("libcuda.so.1")
                && text.contains("is missing")
                && text.contains("install"),
            "{text}"
        );
        // Messages that say a library is absent, in the words an absence was
        // once recognised by, are failures unless the variant says otherwise:
        // rewording a message cannot turn a failure into a skip.
        let backend = |message: &str| Error::Backend {
            backend: "cuda".into(),
            message: message.into(),
        };
        let failures = [
            backend("library not found"),
            backend(
                "the execution provider did not start (CUDA execution provider is not enabled in this build.)",
            ),
            backend(
                "the execution provider did not start (Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: No such file or directory)",
            ),
            backend(
                "loading the CUDA driver on CUDA device 0 failed: libcuda.so.1 is not on the library path",
            ),
            Error::Gpu("no CUDA driver: libcuda.so.1 could not be loaded".into()),
            Error::Gpu("no NVRTC: libnvrtc.so.12 could not be loaded".into()),
            Error::RuntimeLibrary("tried libonnxruntime.so: cannot open shared object file".into()),
            Error::Engine {
                engine: "decoder".into(),
                path: "decoder.onnx".into(),
                message: "inference failed: TensorRT EP failed to build the engine".into(),
            },
            Error::InvalidInput("decoder returned too few outputs".into()),
        ];
        for e in &failures {
            assert!(!e.is_missing_library(), "{e}");
        }
    }
}
