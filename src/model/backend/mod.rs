//! The local backends: the bundle's engines as ONNX Runtime sessions on the
//! CPU, CUDA or TensorRT, with the options that choose them.

mod engine;
mod options;
mod providers;
mod signature;
mod tensorrt_cache;
mod threads;

pub use engine::{Bound, Engine, Input};
pub use options::{BackendKind, BackendOptions, TensorRtOptions};
pub use providers::{
    CpuRuntime, TRT_MAX_BATCH, TRT_OPT_BATCH, TrtProfiles, session_config_entries,
    trt_profile_shapes,
};
pub use tensorrt_cache::{engine_cache_key, per_bundle_options};
pub use threads::{ThreadPlan, background_threads};
