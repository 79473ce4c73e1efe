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
    pub(crate) fn bundle_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BundleFile {
            path: path.into(),
            message: message.into(),
        }
    }
}
