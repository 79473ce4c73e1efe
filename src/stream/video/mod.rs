//! SAM 3's streaming video loop (transformers' `Sam3VideoModel.forward(frame=...)`)
//! over the bundle's tracker engines: detections become objects with stable
//! ids, each tracked from frame to frame by memory attention over its past.
//!
//! A port of `engines/reference_video.py`, the executable spec (checked
//! against transformers' own run), rule by rule in the same order; where
//! transformers does something surprising it is kept and said so.
//! docs/video-tracker.md describes each step. The state is bounded by
//! construction (`memory.rs`); [`VideoLimits`] adds the optional bounds.

mod engines;
mod masks;
mod memory;
mod rules;

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::image::postprocess::{Instance, Mask, sigmoid};
use crate::image::resize::resize_plane_bilinear;
use crate::model::bundle::TrackerSpec;
use crate::model::sam3::{ImageFeatures, Sam3Model, TextFeatures};
use crate::model::tensor::{TensorF32, TensorI64};
use crate::stream::model::Laps;
use engines::{Levels, PropagateBatch, Sizes, TrackerOutput};
use memory::{Bounds, ObjectMemory};
use rules::{Detection, NEVER_OCCLUDED};

/// Bounds on the tracker beyond transformers'. `None` everywhere (the
/// default) = the bundle's `[tracker]` numbers and transformers' rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoLimits {
    /// At most this many objects (default: `max_num_objects`); as
    /// transformers, the best new detections first, nothing tracked dropped.
    pub max_objects: Option<usize>,
    /// Conditioning frames held per object (default: `max_cond_frame_num`,
    /// all transformers reads of their memories); at least 1.
    pub max_cond_frames: Option<usize>,
    /// Remove an object whose tracked mask has been empty for this many
    /// consecutive frames (its memory is freed; a later detection of it is a
    /// new object). `None`: never, as transformers' streaming mode. At least 1.
    pub lost_frames: Option<u32>,
}

/// One object's result on a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoObject {
    /// SAM 3's object id: 0, 1, ... in creation order.
    pub id: u64,
    /// The prompt (index into the step's `texts`) that created it.
    pub prompt_index: usize,
    /// The detection score it was created with (never updated, as transformers).
    pub score: f32,
    /// sigmoid(object score logit) of this frame (the detection score on its
    /// creation frame).
    pub tracker_score: f32,
    /// Side of the square low-resolution mask.
    pub mask_size: usize,
    /// [mask_size²] mask logits: > 0 is the object.
    pub mask_logits: Vec<f32>,
}

/// A step's result (transformers' `build_outputs`).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoStep {
    /// The frame index (0 after [`VideoTracker::new`] or [`VideoTracker::reset`]).
    pub frame: u64,
    /// Objects held after the step, in creation order.
    pub object_ids: Vec<u64>,
    /// Every object of the step, sorted by id.
    pub outputs: Vec<VideoObject>,
}

impl VideoStep {
    /// `Sam3VideoProcessor.postprocess_outputs`: masks bilinearly up-sampled
    /// (align_corners=False) to `width` x `height`, > 0; empty masks dropped;
    /// then per prompt each pixel kept only by the object with the highest
    /// tracker score among those claiming it. `Instance::id` is SAM 3's
    /// object id + 1 (0 means "not tracked"), `query` SAM 3's id; `label` is
    /// left empty for the caller.
    pub fn postprocess(&self, width: usize, height: usize) -> Vec<Instance> {
        let mut kept: Vec<(&VideoObject, Vec<bool>)> = self
            .outputs
            .iter()
            .filter_map(|o| {
                let m = o.mask_size;
                if m == 0 || o.mask_logits.len() != m * m {
                    return None;
                }
                let up = resize_plane_bilinear(&o.mask_logits, m, m, width, height);
                let mask: Vec<bool> = up.iter().map(|v| *v > 0.0).collect();
                mask.iter().any(|v| *v).then_some((o, mask))
            })
            .collect();
        // Objects of other prompts do not compete: one group per prompt.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, (o, _)) in kept.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|g| kept[g[0]].0.prompt_index == o.prompt_index)
            {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        for group in groups.iter().filter(|g| g.len() > 1) {
            for p in 0..width * height {
                // The first best on ties (numpy's argmax).
                let mut best: Option<usize> = None;
                for &i in group {
                    let better =
                        best.is_none_or(|b| kept[i].0.tracker_score > kept[b].0.tracker_score);
                    if kept[i].1[p] && better {
                        best = Some(i);
                    }
                }
                for &i in group {
                    if Some(i) != best {
                        kept[i].1[p] = false;
                    }
                }
            }
        }
        kept.into_iter()
            .map(|(o, mask)| {
                let mask = Mask {
                    width,
                    height,
                    data: mask.iter().map(|v| if *v { 255 } else { 0 }).collect(),
                };
                let bbox = mask.extent().map_or([0.0; 4], |(x, y, w, h)| {
                    [x as f32, y as f32, (x + w) as f32, (y + h) as f32]
                });
                Instance {
                    label: String::new(),
                    id: o.id + 1,
                    prompt_index: o.prompt_index,
                    query: o.id as usize,
                    score: o.score,
                    bbox,
                    mask,
                }
            })
            .collect()
    }
}

/// Where a [`VideoTracker::step`] spent its time, in milliseconds of wall
/// time (the tracker bench reads it; a part that did not run counts 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoStepTimes {
    /// The detector: decoder, scores, NMS.
    pub detect_ms: f32,
    /// Every existing object one frame further: memory attention and the
    /// mask decoder (and hole filling).
    pub propagate_ms: f32,
    /// Association, keep-alive, reconditioning and the memory encoder on
    /// the existing objects' masks.
    pub memory_ms: f32,
    /// New objects: their prompt masks through the tracker and the memory
    /// encoder again (frames that create objects only).
    pub new_objects_ms: f32,
    /// The whole step.
    pub total_ms: f32,
}

impl VideoStepTimes {
    /// Everything but the detector: the tracker's part of the frame.
    pub fn tracker_ms(&self) -> f32 {
        self.total_ms - self.detect_ms
    }
}

/// One tracked object.
struct Object {
    id: u64,
    prompt: usize,
    /// Detection score at creation, never updated.
    score: f32,
    last_occluded: i64,
    /// Kept as transformers does; nothing reads it in streaming mode.
    keep_alive: i64,
    /// Consecutive frames with an empty tracked mask ([`VideoLimits::lost_frames`]).
    empty_frames: u32,
    memory: ObjectMemory,
}

/// SAM 3's streaming video loop for one stream. Feed it every frame's image
/// features (from the same model) and the prompts' text features, in the
/// same prompt order every frame: an object's `prompt_index` refers to it.
pub struct VideoTracker {
    model: Arc<Sam3Model>,
    limits: VideoLimits,
    spec: TrackerSpec,
    sizes: Sizes,
    bounds: Bounds,
    objects: Vec<Object>,
    next_id: u64,
    frame: u64,
    times: VideoStepTimes,
}

impl VideoTracker {
    /// A tracker on `model`'s tracker engines; an error if the bundle has no
    /// tracker, the backend does not run it, or a limit is 0.
    pub fn new(model: Arc<Sam3Model>, limits: VideoLimits) -> Result<VideoTracker> {
        model.tracker_engines()?;
        let spec = model
            .manifest()
            .tracker
            .clone()
            .ok_or_else(|| Error::InvalidInput("the bundle has no [tracker] table".into()))?;
        if limits.max_cond_frames == Some(0) || limits.lost_frames == Some(0) {
            return Err(Error::InvalidInput(format!(
                "video limits {limits:?}: max_cond_frames and lost_frames must be at least 1 \
                 (None: the bundle's number, transformers' rule)"
            )));
        }
        let image = model.manifest().preprocess.image_size as usize;
        let sizes = Sizes::of(&spec, image);
        let bounds = Bounds {
            num_maskmem: spec.num_maskmem,
            select_cond: spec.max_cond_frame_num,
            hold_cond: limits.max_cond_frames.unwrap_or(spec.max_cond_frame_num),
            max_pointers: spec.max_object_pointers,
        };
        Ok(VideoTracker {
            model,
            limits,
            spec,
            sizes,
            bounds,
            objects: Vec::new(),
            next_id: 0,
            frame: 0,
            times: VideoStepTimes::default(),
        })
    }

    pub fn model(&self) -> &Arc<Sam3Model> {
        &self.model
    }

    pub fn limits(&self) -> &VideoLimits {
        &self.limits
    }

    /// Changes [`VideoLimits::lost_frames`] from the next step on (the
    /// element's `track-patience` may change while playing); 0 counts as 1.
    pub fn set_lost_frames(&mut self, lost_frames: Option<u32>) {
        self.limits.lost_frames = lost_frames.map(|n| n.max(1));
    }

    /// Forgets every object: the frame counter and the ids start at 0 again
    /// (a new masklet set).
    pub fn reset(&mut self) {
        self.objects.clear();
        self.next_id = 0;
        self.frame = 0;
    }

    /// Where the last successful [`VideoTracker::step`] spent its time.
    pub fn last_step_times(&self) -> VideoStepTimes {
        self.times
    }

    /// Objects held.
    pub fn objects(&self) -> usize {
        self.objects.len()
    }

    /// The ids of the objects held, in creation order.
    pub fn object_ids(&self) -> Vec<u64> {
        self.objects.iter().map(|o| o.id).collect()
    }

    /// Bytes of per-object state held (memories, pointers, bookkeeping).
    pub fn state_bytes(&self) -> usize {
        self.objects
            .iter()
            .map(|o| std::mem::size_of::<Object>() + o.memory.bytes())
            .sum()
    }

    /// Conditioning frames held by each object, in creation order.
    pub fn conditioning_frames(&self) -> Vec<usize> {
        self.objects
            .iter()
            .map(|o| o.memory.conditioning_frames())
            .collect()
    }

    fn levels<'a>(&self, features: &'a ImageFeatures) -> Result<Levels<'a>> {
        match features.tracker_levels() {
            [feat_0, feat_1, feat_2, pos_2] => Ok(Levels {
                feat_0,
                feat_1,
                feat_2,
                pos_2,
            }),
            other => Err(Error::InvalidInput(format!(
                "the image features carry {} tracker levels, not 4 (tracker_feat_0..2, \
                 tracker_pos_2): encode the frame with the tracker's own model",
                other.len()
            ))),
        }
    }

    /// `run_detection`: per prompt, score = sigmoid(logit) x sigmoid(presence),
    /// mask NMS, then every query above `score_threshold_detection` in query
    /// order; prompts concatenated in order.
    fn detect(
        &self,
        features: &ImageFeatures,
        texts: &[Arc<TextFeatures>],
    ) -> Result<Vec<Detection>> {
        let t = &self.spec;
        let out = self.model.decode_on_device(features, texts)?;
        let shape = out.pred_masks.shape();
        let m = t.mask_size;
        if shape.len() != 4 || shape[0] != texts.len() || shape[2] != m || shape[3] != m {
            return Err(Error::InvalidInput(format!(
                "decoder output `pred_masks` has shape {shape:?}, expected [{}, queries, {m}, {m}] \
                 (the tracker's mask_size)",
                texts.len()
            )));
        }
        let mut dets = Vec::new();
        for p in 0..texts.len() {
            let presence = sigmoid(out.presence_logits.item(p)[0]);
            let probs: Vec<f32> = out
                .pred_logits
                .item(p)
                .iter()
                .map(|l| sigmoid(*l) * presence)
                .collect();
            let above: Vec<usize> = (0..probs.len())
                .filter(|&q| probs[q] > t.score_threshold_detection)
                .collect();
            // Only the masks of queries above the threshold are read.
            let query_masks = out.kept_masks(p, &above)?;
            let mask = |q: usize| query_masks[q * m * m..(q + 1) * m * m].to_vec();
            let keep = if t.det_nms_thresh > 0.0 {
                masks::nms(
                    &probs,
                    &|q| masks::binary(&mask(q)),
                    t.score_threshold_detection,
                    t.det_nms_thresh,
                )
            } else {
                vec![true; probs.len()]
            };
            for &q in above.iter().filter(|&&q| keep[q]) {
                dets.push(Detection {
                    mask: mask(q),
                    score: probs[q],
                    prompt: p,
                });
            }
        }
        Ok(dets)
    }

    /// Every object one tracked frame further (its memory of this frame not
    /// encoded yet). Objects with the same number of memories and pointers
    /// run as one batch (transformers runs them one by one).
    fn propagate(&self, f: u64, levels: &Levels) -> Result<Vec<TrackerOutput>> {
        let engines = self.model.tracker_engines()?;
        let s = &self.sizes;
        let gathered: Vec<_> = self
            .objects
            .iter()
            .map(|o| o.memory.gather(f, &self.bounds))
            .collect();
        let mut groups: Vec<((usize, usize), Vec<usize>)> = Vec::new();
        for (i, g) in gathered.iter().enumerate() {
            let key = (g.memories.len(), g.pointers.len());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        let mut outs: Vec<Option<TrackerOutput>> = (0..self.objects.len()).map(|_| None).collect();
        for ((t_mem, p_ptr), members) in groups {
            let n = members.len();
            let mut memory = Vec::with_capacity(n * t_mem * s.memory_len());
            let mut memory_offset = Vec::with_capacity(n * t_mem);
            let mut pointers = Vec::with_capacity(n * p_ptr * s.hidden);
            let mut pointer_offset = Vec::with_capacity(n * p_ptr);
            for &i in &members {
                let g = &gathered[i];
                for m in &g.memories {
                    if m.len() != s.memory_len() {
                        return Err(Error::InvalidInput(format!(
                            "object {}: a memory of {} values, expected {}",
                            self.objects[i].id,
                            m.len(),
                            s.memory_len()
                        )));
                    }
                    memory.extend(m.iter().map(|v| v.to_f32()));
                }
                memory_offset.extend_from_slice(&g.memory_offsets);
                for p in &g.pointers {
                    pointers.extend_from_slice(p);
                }
                pointer_offset.extend_from_slice(&g.pointer_offsets);
            }
            let batch = PropagateBatch {
                memory: TensorF32::new(vec![n, t_mem, s.memory_dim, s.feature, s.feature], memory),
                memory_offset: TensorI64::new(vec![n, t_mem], memory_offset),
                pointers: TensorF32::new(vec![n, p_ptr, s.hidden], pointers),
                pointer_offset: TensorF32::new(vec![n, p_ptr], pointer_offset),
            };
            for (i, out) in members
                .into_iter()
                .zip(engines::propagate(engines, levels, &batch, s)?)
            {
                outs[i] = Some(out);
            }
        }
        outs.into_iter()
            .map(|o| o.ok_or_else(|| Error::InvalidInput("an object was not propagated".into())))
            .collect()
    }

    /// `Sam3VideoModel.forward(frame=...)` for the next frame. `detect`:
    /// run the detector (new objects, reconditioning); without it every
    /// object is only propagated and every non-empty track counts as
    /// unmatched (frames between inference intervals).
    pub fn step(
        &mut self,
        features: &ImageFeatures,
        texts: &[Arc<TextFeatures>],
        detect: bool,
    ) -> Result<VideoStep> {
        let start = Instant::now();
        let mut times = VideoStepTimes::default();
        let mut laps = Laps::start();
        let engines = self.model.tracker_engines()?;
        let levels = self.levels(features)?;
        let t = self.spec.clone();
        let m = t.mask_size;
        let f = self.frame;

        // 1. detection (all prompts), NMS, threshold
        let dets = if detect && !texts.is_empty() {
            self.detect(features, texts)?
        } else {
            Vec::new()
        };
        laps.lap(&mut times.detect_ms);

        // 2. every existing object one tracked frame further, then hole
        // filling of its low-res mask
        let n_old = self.objects.len();
        let mut props = if n_old > 0 {
            self.propagate(f, &levels)?
        } else {
            Vec::new()
        };
        let raw_scores: Vec<f32> = props.iter().map(|p| p.score).collect();
        let mut trk_masks: Vec<Vec<f32>> = props
            .iter()
            .map(|p| {
                let mut mask = p.low.clone();
                masks::fill_holes(&mut mask, m, t.fill_hole_area);
                mask
            })
            .collect();
        let trk_empty: Vec<bool> = trk_masks.iter().map(|k| !masks::any_positive(k)).collect();
        laps.lap(&mut times.propagate_ms);

        // 3. plan: association, object cap, keep-alive, reconditioning
        let prompts: Vec<usize> = self.objects.iter().map(|o| o.prompt).collect();
        let assoc = rules::associate(&dets, &trk_masks, &prompts, &t);
        let mut new = assoc.new.clone();
        let cap = self.limits.max_objects.unwrap_or(t.max_num_objects);
        if n_old + new.len() > cap {
            // torch.topk: the best-scoring new detections, best first
            masks::best_first(&mut new, |d| dets[d].score);
            new.truncate(cap.saturating_sub(n_old));
        }
        for &k in &assoc.matched {
            let o = &mut self.objects[k];
            o.keep_alive = (o.keep_alive + 1).min(t.max_trk_keep_alive);
        }
        let mut decrease: Vec<usize> = assoc.unmatched.clone();
        if t.decrease_trk_keep_alive_for_empty_masklets {
            decrease.extend(&assoc.empty);
        }
        for k in decrease {
            let o = &mut self.objects[k];
            o.keep_alive = (o.keep_alive - 1).max(t.min_trk_keep_alive);
        }
        // Streaming mode: no hot-start removal, so keep_alive never removes
        // nor hides anything.

        // (object index, detection, the memory mask: None = its tracked mask
        // as it is when used, i.e. after suppression: transformers holds a
        // view of the tracked masks, which suppression changes in place)
        let mut recond: Vec<(usize, usize, Option<Vec<f32>>)> = Vec::new();
        let every = t.recondition_every_nth_frame as u64;
        if every > 0 && f.is_multiple_of(every) {
            for &(k, d) in &assoc.high_conf {
                // the tracker's object score LOGIT against high_conf_thresh, as written
                if raw_scores[k] <= t.high_conf_thresh {
                    continue;
                }
                let mask = (!t.recondition_on_trk_masks)
                    .then(|| masks::detection_prompt(&dets[d].mask).collect());
                recond.push((k, d, mask));
            }
        }

        // 4. this frame's memories of the existing objects
        let mut is_cond = vec![false; n_old];
        let mut memories: Vec<Vec<f32>> = Vec::new();
        if n_old > 0 {
            let last: Vec<i64> = self.objects.iter().map(|o| o.last_occluded).collect();
            let (last, _) = rules::suppress_recently_occluded(
                f as i64,
                &mut trk_masks,
                &last,
                &prompts,
                t.suppress_overlapping_based_on_recent_occlusion_threshold,
            );
            for (o, l) in self.objects.iter_mut().zip(last) {
                o.last_occluded = l;
            }
            let mut mem_masks = trk_masks.clone();
            for (k, _, mask) in &recond {
                let mask = mask.clone().unwrap_or_else(|| trk_masks[*k].clone());
                mem_masks[*k] = mask.clone();
                // written through the view: the outputs would see it (a
                // reconditioned object's output is its detection anyway)
                trk_masks[*k] = mask;
                is_cond[*k] = true;
            }
            rules::area_shrinkage(&mut mem_masks, &prompts);
            let areas: Vec<f32> = mem_masks
                .iter()
                .map(|k| if masks::any_positive(k) { 10.0 } else { -10.0 })
                .collect();
            memories = engines::encode_memory(
                engines,
                &levels,
                mem_masks.concat(),
                m,
                &areas,
                false,
                &self.sizes,
            )?;
        }

        laps.lap(&mut times.memory_ms);
        let new_ids: Vec<u64> = (self.next_id..self.next_id + new.len() as u64).collect();
        self.next_id += new.len() as u64;
        let mut tracker_scores: Vec<f32> = raw_scores.iter().map(|s| sigmoid(*s)).collect();
        tracker_scores.extend(new.iter().map(|&d| dets[d].score));

        // 5. new objects: their detection mask (masks::detection_prompt) is
        // their first, conditioning output. transformers
        // then re-runs the tracker on every existing object without a
        // conditioning output here and re-encodes ALL of them from their
        // image-size masks, binarized (one flag for the batch): on such
        // frames step 4's memories are replaced, without hole filling,
        // suppression or sigmoid. The re-run repeats step 2 exactly (same
        // memories), so step 2's outputs are reused.
        let mut new_outs: Vec<TrackerOutput> = Vec::new();
        let mut new_memories: Vec<Vec<f32>> = Vec::new();
        if !new.is_empty() {
            let prompt_masks: Vec<f32> = new
                .iter()
                .flat_map(|&d| masks::detection_prompt(&dets[d].mask))
                .collect();
            new_outs = engines::mask_prompt(engines, &levels, prompt_masks, &self.sizes)?;
            let again: Vec<&TrackerOutput> = (0..n_old)
                .filter(|&k| !is_cond[k])
                .map(|k| &props[k])
                .chain(&new_outs)
                .collect();
            let high: Vec<f32> = again.iter().flat_map(|o| o.high.iter().copied()).collect();
            let scores: Vec<f32> = again.iter().map(|o| o.score).collect();
            let mut encoded = engines::encode_memory(
                engines,
                &levels,
                high,
                self.sizes.image,
                &scores,
                true,
                &self.sizes,
            )?
            .into_iter();
            for k in (0..n_old).filter(|&k| !is_cond[k]) {
                if let Some(mem) = encoded.next() {
                    memories[k] = mem;
                }
            }
            new_memories = encoded.collect();
        }
        laps.lap(&mut times.new_objects_ms);

        // 6. outputs: tracked masks for the existing objects, the detection
        // mask (holes filled) for a new one, the raw detection mask for a
        // reconditioned one
        let mut outputs: Vec<VideoObject> = Vec::with_capacity(n_old + new.len());
        for (k, o) in self.objects.iter().enumerate() {
            let mask = match recond.iter().find(|(r, _, _)| *r == k) {
                Some((_, d, _)) => dets[*d].mask.clone(),
                None => trk_masks[k].clone(),
            };
            outputs.push(VideoObject {
                id: o.id,
                prompt_index: o.prompt,
                score: o.score,
                tracker_score: tracker_scores[k],
                mask_size: m,
                mask_logits: mask,
            });
        }
        for (i, &d) in new.iter().enumerate() {
            let mut mask = dets[d].mask.clone();
            masks::fill_holes(&mut mask, m, t.fill_hole_area);
            outputs.push(VideoObject {
                id: new_ids[i],
                prompt_index: dets[d].prompt,
                score: dets[d].score,
                tracker_score: dets[d].score,
                mask_size: m,
                mask_logits: mask,
            });
        }
        outputs.sort_by_key(|o| o.id);

        // The frame's memories and pointers into each bank.
        let bounds = self.bounds;
        for (k, (o, (out, mem))) in self
            .objects
            .iter_mut()
            .zip(props.drain(..).zip(memories))
            .enumerate()
        {
            if is_cond[k] {
                o.memory.add_conditioning(f, mem, out.pointer, &bounds);
            } else {
                o.memory.add_recent(f, mem, out.pointer, &bounds);
            }
            o.empty_frames = if trk_empty[k] { o.empty_frames + 1 } else { 0 };
        }
        if new_memories.len() != new.len() {
            return Err(Error::InvalidInput(format!(
                "the memory encoder returned {} memories for {} new objects",
                new_memories.len(),
                new.len()
            )));
        }
        for ((&d, id), (out, mem)) in new
            .iter()
            .zip(new_ids)
            .zip(new_outs.into_iter().zip(new_memories))
        {
            let mut memory = ObjectMemory::default();
            memory.add_conditioning(f, mem, out.pointer, &bounds);
            self.objects.push(Object {
                id,
                prompt: dets[d].prompt,
                score: dets[d].score,
                last_occluded: NEVER_OCCLUDED,
                keep_alive: t.init_trk_keep_alive,
                empty_frames: 0,
                memory,
            });
        }
        // The optional bound: objects lost for `lost_frames` frames go.
        if let Some(n) = self.limits.lost_frames {
            self.objects.retain(|o| o.empty_frames < n);
        }
        self.frame += 1;
        times.total_ms = start.elapsed().as_secs_f32() * 1000.0;
        self.times = times;
        Ok(VideoStep {
            frame: f,
            object_ids: self.object_ids(),
            outputs,
        })
    }
}
