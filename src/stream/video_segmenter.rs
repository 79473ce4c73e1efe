//! SAM 3's video mode as a [`FrameModel`]: the detector on the frames the
//! stream asks for, the tracker ([`VideoTracker`]) on every frame, and the
//! objects' own ids on the instances.

use std::sync::Arc;

use super::InferenceState;
use super::model::{FrameModel, Laps, RunHints, StageTimes, SuggestSource};
use super::video::{VideoLimits, VideoTracker};
use crate::error::Result;
use crate::image::frame::Frame;
use crate::image::postprocess::{Instance, PostprocessOptions};
use crate::model::sam3::{ImageFeatures, Sam3Model};
use crate::prompt::tokenizer::normalise_prompt;
use crate::stream::run_control::{self, RunControl};

pub struct VideoSegmenter {
    tracker: VideoTracker,
    /// The prompts the tracker's objects answer; another list starts new
    /// masklets.
    prompts: Vec<String>,
    features: Option<ImageFeatures>,
    held: Vec<u64>,
    times: Option<StageTimes>,
}

impl VideoSegmenter {
    /// Fails when the bundle has no tracker engines or the backend cannot run
    /// them (the error says which and what to do).
    pub fn new(model: Arc<Sam3Model>, limits: VideoLimits) -> Result<VideoSegmenter> {
        Ok(VideoSegmenter {
            tracker: VideoTracker::new(model, limits)?,
            prompts: Vec::new(),
            features: None,
            held: Vec::new(),
            times: None,
        })
    }

    pub fn tracker(&self) -> &VideoTracker {
        &self.tracker
    }

    fn forget(&mut self) {
        self.tracker.reset();
        self.features = None;
        self.held.clear();
    }

    /// One frame: image encoder, the detector when `hints.detect`, the
    /// tracker. Instances carry SAM 3's object id + 1 (0 means untracked).
    pub fn process(
        &mut self,
        frame: &Frame,
        prompts: &[&str],
        hints: &RunHints,
    ) -> Result<(Vec<Instance>, InferenceState)> {
        let normalised: Vec<String> = prompts.iter().map(|p| normalise_prompt(p)).collect();
        if normalised != self.prompts {
            self.forget();
            self.prompts = normalised;
        }
        self.tracker.set_lost_frames(Some(hints.patience));
        if prompts.is_empty() {
            self.times = Some(StageTimes::default());
            return Ok((Vec::new(), InferenceState::Fresh));
        }
        let model = self.tracker.model().clone();
        let mut times = StageTimes::default();
        let mut laps = Laps::start();
        let texts = model.encode_texts(prompts)?;
        laps.lap(&mut times.text_ms);
        // Until this frame's step succeeds the tracker's state is in doubt:
        // a failed (or cancelled) step starts the masklets again.
        self.features = None;
        let features = model.encode_image(frame)?;
        laps.lap(&mut times.image_ms);
        let step = match self.tracker.step(&features, &texts, hints.detect) {
            Ok(step) => step,
            Err(e) => {
                self.forget();
                return Err(e);
            }
        };
        laps.lap(&mut times.decode_ms);
        let mut instances = step.postprocess(frame.width, frame.height);
        for inst in &mut instances {
            if let Some(p) = prompts.get(inst.prompt_index) {
                inst.label = p.to_string();
            }
        }
        laps.lap(&mut times.post_ms);
        self.held = step.object_ids.iter().map(|id| id + 1).collect();
        self.features = Some(features);
        self.times = Some(times);
        let state = if hints.detect {
            InferenceState::Fresh
        } else {
            InferenceState::Tracked
        };
        Ok((instances, state))
    }
}

impl FrameModel for VideoSegmenter {
    fn process(
        &mut self,
        frame: &Frame,
        prompts: &[&str],
        _options: &PostprocessOptions,
        hints: &RunHints,
        control: &RunControl,
    ) -> Result<(Vec<Instance>, InferenceState)> {
        run_control::scoped(control, || {
            VideoSegmenter::process(self, frame, prompts, hints)
        })
    }

    fn reset(&mut self) {
        self.forget();
    }

    fn tracks_objects(&self) -> bool {
        true
    }

    fn held_ids(&self) -> Option<Vec<u64>> {
        Some(self.held.clone())
    }

    fn last_times(&self) -> Option<StageTimes> {
        self.times
    }

    fn runs_can_be_abandoned(&self) -> bool {
        !self.tracker.model().runs_on_openvino()
    }

    fn suggest_source(&self) -> Option<SuggestSource> {
        Some(SuggestSource {
            model: self.tracker.model().clone(),
            features: self.features.clone()?,
        })
    }
}
