//! What the stream layer needs from a model: one frame in, instances out.
//! The real one is [`super::Segmenter`] on a shared `Sam3Model`; tests put
//! slow fakes behind the same trait to check the ordering rules.

use std::sync::Arc;

use super::InferenceState;
use crate::error::Result;
use crate::frame::Frame;
use crate::pipeline::{ImageFeatures, Sam3Model};
use crate::postprocess::{Instance, PostprocessOptions};
use crate::run_control::RunControl;

/// What prompt suggestions rank phrases on: the model and the features of
/// the last picture it encoded. Cheap to clone (the features are shared).
#[derive(Clone)]
pub struct SuggestSource {
    pub model: Arc<Sam3Model>,
    pub features: ImageFeatures,
}

pub trait FrameModel: Send + 'static {
    /// Segments `frame` for `prompts` (reusing what it may, by
    /// `reuse_threshold`). Engine runs obey `control`: a cancelled run ends
    /// with `Error::Cancelled`.
    fn process(
        &mut self,
        frame: &Frame,
        prompts: &[&str],
        options: &PostprocessOptions,
        reuse_threshold: f32,
        control: &RunControl,
    ) -> Result<(Vec<Instance>, InferenceState)>;

    /// Forgets the last picture and result (a flush, new caps).
    fn reset(&mut self);

    /// See [`SuggestSource`]; None when nothing was encoded or the model
    /// cannot rank phrases.
    fn suggest_source(&self) -> Option<SuggestSource> {
        None
    }
}
