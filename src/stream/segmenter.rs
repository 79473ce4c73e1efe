//! Reuse on still pictures, on top of a shared [`Sam3Model`]: the image
//! features are reused while the picture is still, and the whole result while
//! the request is unchanged too.

use std::sync::Arc;

use super::InferenceState;
use super::model::{FrameModel, Laps, RunHints, StageTimes, SuggestSource};
use crate::error::Result;
use crate::image::change::Signature;
use crate::image::frame::Frame;
use crate::image::postprocess::{Instance, PostprocessOptions};
use crate::model::sam3::{ImageFeatures, Sam3Model};
use crate::prompt::tokenizer::normalise_prompt;
use crate::stream::run_control::{self, RunControl};

/// Everything besides the picture that determines a result.
#[derive(Debug, Clone, PartialEq)]
struct RequestKey {
    prompts: Vec<String>,
    options: PostprocessOptions,
}

struct Encoded {
    signature: Option<Signature>,
    features: ImageFeatures,
}

pub struct Segmenter {
    model: Arc<Sam3Model>,
    encoded: Option<Encoded>,
    last: Option<(RequestKey, (usize, usize), Vec<Instance>)>,
    times: Option<StageTimes>,
}

impl Segmenter {
    pub fn new(model: Arc<Sam3Model>) -> Segmenter {
        Segmenter {
            model,
            encoded: None,
            last: None,
            times: None,
        }
    }

    pub fn model(&self) -> &Arc<Sam3Model> {
        &self.model
    }

    /// Image features of the last picture the image encoder saw.
    pub fn last_features(&self) -> Option<&ImageFeatures> {
        self.encoded.as_ref().map(|e| &e.features)
    }

    /// What the last successful [`Segmenter::process`] cost.
    pub fn last_times(&self) -> Option<StageTimes> {
        self.times
    }

    /// Forgets the cached picture and result (after a seek or a flush).
    pub fn reset(&mut self) {
        self.encoded = None;
        self.last = None;
    }

    /// Segments `frame` for `prompts`. `reuse_threshold` is the largest
    /// change of a block's mean luma (0-255) that still counts as the same
    /// picture as the last one encoded; 0 disables reuse.
    pub fn process(
        &mut self,
        frame: &Frame,
        prompts: &[&str],
        options: &PostprocessOptions,
        reuse_threshold: f32,
    ) -> Result<(Vec<Instance>, InferenceState)> {
        let key = RequestKey {
            prompts: prompts.iter().map(|p| normalise_prompt(p)).collect(),
            options: options.clone(),
        };
        let reuse = reuse_threshold > 0.0;
        let signature = reuse.then(|| Signature::of(frame));
        let still = match (
            &signature,
            self.encoded.as_ref().and_then(|e| e.signature.as_ref()),
        ) {
            (Some(s), Some(old)) => s.distance(old) <= reuse_threshold,
            _ => false,
        };
        if still
            && let Some((k, _, instances)) = &self.last
            && *k == key
        {
            self.times = Some(StageTimes::default());
            return Ok((instances.clone(), InferenceState::ReusedResult));
        }
        let state = if still {
            InferenceState::ReusedImageFeatures
        } else {
            InferenceState::Fresh
        };
        // Until this run succeeds, no earlier result may stand for this picture.
        self.last = None;
        if prompts.is_empty() {
            self.times = Some(StageTimes::default());
            return Ok((Vec::new(), state));
        }
        let mut times = StageTimes::default();
        let mut laps = Laps::start();
        let texts = self.model.encode_texts(prompts)?;
        laps.lap(&mut times.text_ms);
        // A still picture keeps the signature of the frame that was encoded, so
        // that slow drift adds up and eventually counts as change.
        let encoded = match (self.encoded.take(), signature) {
            (Some(e), _) if still => e,
            (_, signature) => Encoded {
                features: self.model.encode_image(frame)?,
                signature,
            },
        };
        laps.lap(&mut times.image_ms);
        if still {
            times.image_ms = 0.0; // the encoder did not run
        }
        // A failed (or cancelled) decode forgets the picture too, so the next
        // run encodes it again and the stream learns whose picture it is.
        let out = self.model.decode_for(&encoded.features, &texts, options)?;
        laps.lap(&mut times.decode_ms);
        // Kept without reuse too: prompt suggestions rank phrases on it.
        self.encoded = Some(encoded);
        let instances =
            self.model
                .postprocess_on_device(&out, &texts, (frame.width, frame.height), options)?;
        laps.lap(&mut times.post_ms);
        self.times = Some(times);
        self.last = Some((key, (frame.width, frame.height), instances.clone()));
        Ok((instances, state))
    }
}

impl FrameModel for Segmenter {
    fn process(
        &mut self,
        frame: &Frame,
        prompts: &[&str],
        options: &PostprocessOptions,
        hints: &RunHints,
        control: &RunControl,
    ) -> Result<(Vec<Instance>, InferenceState)> {
        run_control::scoped(control, || {
            Segmenter::process(self, frame, prompts, options, hints.reuse_threshold)
        })
    }

    fn reset(&mut self) {
        Segmenter::reset(self)
    }

    fn last_times(&self) -> Option<StageTimes> {
        self.times
    }

    fn runs_can_be_abandoned(&self) -> bool {
        !self.model.runs_on_openvino()
    }

    fn suggest_source(&self) -> Option<SuggestSource> {
        Some(SuggestSource {
            model: self.model.clone(),
            features: self.last_features()?.clone(),
        })
    }
}
