//! What the stream layer needs from a model: one frame in, instances out.
//! The real one is [`super::Segmenter`] on a shared `Sam3Model`; tests put
//! slow fakes behind the same trait to check the ordering rules.

use std::sync::Arc;
use std::time::Instant;

use super::InferenceState;
use crate::error::Result;
use crate::image::frame::Frame;
use crate::image::postprocess::{Instance, PostprocessOptions};
use crate::model::sam3::{ImageFeatures, Sam3Model};
use crate::stream::run_control::RunControl;

/// What prompt suggestions rank phrases on: the model and the features of
/// the last picture it encoded. Cheap to clone (the features are shared).
#[derive(Clone)]
pub struct SuggestSource {
    pub model: Arc<Sam3Model>,
    pub features: ImageFeatures,
}

/// What one model run cost, stage by stage, in milliseconds of wall time. A
/// stage that did not run (a reused picture's image encoder) counts 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub text_ms: f32,
    pub image_ms: f32,
    pub decode_ms: f32,
    pub post_ms: f32,
}

impl StageTimes {
    pub fn total_ms(&self) -> f32 {
        self.text_ms + self.image_ms + self.decode_ms + self.post_ms
    }
}

/// Times a run's stages one after the other: each `lap` is the time since
/// the last one (or since `start`).
pub(crate) struct Laps(Instant);

impl Laps {
    pub(crate) fn start() -> Laps {
        Laps(Instant::now())
    }

    /// Milliseconds since the last lap, into `stage`.
    pub(crate) fn lap(&mut self, stage: &mut f32) {
        let now = Instant::now();
        *stage = (now - self.0).as_secs_f32() * 1000.0;
        self.0 = now;
    }
}

/// What the stream decided for one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunHints {
    /// See [`super::FrameSettings::reuse_threshold`]; 0 = never reuse.
    pub reuse_threshold: f32,
    /// Whether the detector runs on this frame. Always true for a model
    /// that does not track; a tracking model carries its objects on the
    /// frames between detections (`inference-interval`).
    pub detect: bool,
    /// Frames a tracking model keeps an object it no longer sees
    /// (`track-patience`).
    pub patience: u32,
}

impl RunHints {
    pub fn reuse(reuse_threshold: f32) -> RunHints {
        RunHints {
            reuse_threshold,
            detect: true,
            patience: super::FrameSettings::DEFAULT.track_patience,
        }
    }
}

pub trait FrameModel: Send + 'static {
    /// Segments `frame` for `prompts` (reusing what it may, by
    /// `hints.reuse_threshold`). Engine runs obey `control`: a cancelled run
    /// ends with `Error::Cancelled`.
    fn process(
        &mut self,
        frame: &Frame,
        prompts: &[&str],
        options: &PostprocessOptions,
        hints: &RunHints,
        control: &RunControl,
    ) -> Result<(Vec<Instance>, InferenceState)>;

    /// Whether the model tracks objects itself (SAM 3's video tracker): it
    /// sees every frame, its instances carry their ids, and the stream's
    /// overlap tracker stays out of the way.
    fn tracks_objects(&self) -> bool {
        false
    }

    /// A tracking model's objects after its last run, seen or not: an id
    /// missing here is gone for good. None for a model that does not track.
    fn held_ids(&self) -> Option<Vec<u64>> {
        None
    }

    /// Forgets the last picture and result (a flush, new caps).
    fn reset(&mut self);

    /// Whether a cancelled run ends soon (ONNX Runtime's CPU provider stops
    /// between nodes); false when an engine, once started, runs to its end
    /// (OpenVINO), so that stopping must wait for it.
    fn runs_can_be_abandoned(&self) -> bool {
        true
    }

    /// What the last successful `process` cost; None when the model does
    /// not measure it.
    fn last_times(&self) -> Option<StageTimes> {
        None
    }

    /// See [`SuggestSource`]; None when nothing was encoded or the model
    /// cannot rank phrases.
    fn suggest_source(&self) -> Option<SuggestSource> {
        None
    }
}
