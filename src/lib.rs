//! samclipseg core: SAM 3 text-prompted segmentation from engine bundles,
//! without GStreamer. Load a [`Sam3Model`], hand it a [`Frame`] and prompts,
//! get [`Instance`]s back; or let a [`Stream`] decide what each frame of a
//! video carries (see the `stream` module).
//!
//! - [`model`]: the bundle, backends (ONNX Runtime CPU / CUDA / TensorRT),
//!   precision, thresholds and the SAM 3 model itself;
//! - [`image`]: frames, resizing, pre- and post-processing, drawing;
//! - [`prompt`]: phrase syntax, requests, tokenizer, suggestions;
//! - [`stream`]: what each frame of a video carries (reuse, asynchronous
//!   runs, tracking, cancelling runs);
//! - [`remote`]: the engines on a KServe v2 (Triton) server;
//! - [`gpu`]: CUDA kernels and device memory;
//! - [`installed`]: where an installed plugin or studio finds its own files.

pub mod error;
pub mod gpu;
pub mod image;
pub mod installed;
pub mod model;
pub mod priority;
pub mod prompt;
pub mod remote;
pub mod stream;
pub mod sync;

pub use error::{Error, Result};
pub use image::frame::{Frame, PackedLayout, Pixels, Plane, YuvMatrix};
pub use image::postprocess::{Instance, Mask, PostprocessOptions};
pub use model::backend::{BackendKind, BackendOptions};
pub use model::bundle::Bundle;
pub use model::precision::Precision;
pub use model::registry::shared_model;
pub use model::sam3::{DecoderOutput, ImageFeatures, Sam3Model, TextFeatures};
pub use model::threshold::Threshold;
pub use prompt::request::Request;
pub use stream::{
    FrameResult, FrameSettings, InferenceState, Segmenter, StageTimes, Stream, StreamHandle,
    VideoSegmenter,
};
