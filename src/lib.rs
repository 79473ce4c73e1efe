//! samclipseg core: SAM 3 text-prompted segmentation from engine bundles,
//! without GStreamer. Load a [`Sam3Model`], hand it a [`Frame`] and prompts,
//! get [`Instance`]s back; or let a [`Stream`] decide what each frame of a
//! video carries (see the `stream` module).

pub mod backend;
pub mod bundle;
pub mod change;
pub mod error;
pub mod frame;
pub mod gpu;
pub mod image_file;
pub mod pipeline;
pub mod postprocess;
pub mod precision;
pub mod preprocess;
pub mod prompt;
pub mod registry;
pub mod remote;
pub mod render;
pub mod request;
pub mod resize;
pub mod run_control;
pub mod runtime;
pub mod stream;
pub mod suggest;
pub mod tensor;
pub mod tokenizer;

pub use backend::{BackendKind, BackendOptions};
pub use bundle::Bundle;
pub use error::{Error, Result};
pub use frame::{Frame, PackedLayout, Pixels, Plane, YuvMatrix};
pub use pipeline::{DecoderOutput, ImageFeatures, Sam3Model, TextFeatures};
pub use postprocess::{Instance, Mask, PostprocessOptions};
pub use precision::Precision;
pub use registry::shared_model;
pub use request::Request;
pub use stream::{
    FrameResult, InferenceState, LiveSettings, Segmenter, StageTimes, Stream, StreamHandle,
};
