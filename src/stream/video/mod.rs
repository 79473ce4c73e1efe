//! PLACEHOLDER (lead's branch only): the API contract of the video loop that
//! branch wt-video implements; replaced by it at the merge.
#![allow(dead_code, unused_variables)]

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::image::postprocess::Instance;
use crate::model::sam3::{ImageFeatures, Sam3Model, TextFeatures};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoLimits {
    pub max_objects: Option<usize>,
    pub max_cond_frames: Option<usize>,
    pub lost_frames: Option<u32>,
}

pub struct VideoTracker {
    model: Arc<Sam3Model>,
}

pub struct VideoStep {
    pub frame: u64,
    pub object_ids: Vec<u64>,
    pub outputs: Vec<VideoObject>,
}

pub struct VideoObject {
    pub id: u64,
    pub prompt_index: usize,
    pub score: f32,
    pub tracker_score: f32,
    pub mask_size: usize,
    pub mask_logits: Vec<f32>,
}

impl VideoTracker {
    pub fn new(model: Arc<Sam3Model>, limits: VideoLimits) -> Result<VideoTracker> {
        Err(Error::InvalidInput("placeholder".into()))
    }
    pub fn model(&self) -> &Arc<Sam3Model> {
        &self.model
    }
    pub fn reset(&mut self) {}
    pub fn set_lost_frames(&mut self, lost_frames: Option<u32>) {}
    pub fn objects(&self) -> usize {
        0
    }
    pub fn state_bytes(&self) -> usize {
        0
    }
    pub fn step(
        &mut self,
        features: &ImageFeatures,
        texts: &[Arc<TextFeatures>],
        detect: bool,
    ) -> Result<VideoStep> {
        Err(Error::InvalidInput("placeholder".into()))
    }
}

impl VideoStep {
    pub fn postprocess(&self, width: usize, height: usize) -> Vec<Instance> {
        Vec::new()
    }
}
