//! From one batched model run over every phrase of a [`PromptSet`] to the
//! instances reported: per-phrase thresholds, then the negative rule.
//!
//! Negative rule: a positive instance is dropped when at least `overlap` of
//! its mask area lies inside the union of the negative instances' masks. The
//! negative instances themselves are never reported; in the alpha channel
//! their pixels are cleared (see [`alpha_without_negatives`]).

use crate::image::postprocess::{Instance, Mask, PostprocessOptions};
use crate::prompt::syntax::PromptSet;

/// Default share of a positive mask that a negative must cover to remove it.
pub const DEFAULT_NEGATIVE_OVERLAP: f32 = 0.5;

/// Everything besides the picture that decides a frame's result: the phrases
/// (positive and negative, with their own thresholds), the threshold in
/// effect for the others, post-processing and the negative rule. Two equal
/// requests on the same picture have the same answer, so a result may be shown
/// only under a request equal to the one it was computed for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub set: PromptSet,
    /// Post-processing; its `threshold` is the one in effect for phrases
    /// without their own.
    pub options: PostprocessOptions,
    /// See [`resolve`].
    pub negative_overlap: f32,
}

impl Request {
    pub fn new(
        prompt: &str,
        negative_prompt: &str,
        options: PostprocessOptions,
        negative_overlap: f32,
    ) -> Request {
        Request {
            set: PromptSet::parse(prompt, negative_prompt),
            options,
            negative_overlap,
        }
    }

    /// No positive phrase: nothing to segment.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Every phrase the model sees, in one batched run: positives first.
    pub fn texts(&self) -> Vec<&str> {
        self.set.texts()
    }

    /// The positive phrases as typed, as the overlay's legend lists them.
    pub fn phrases(&self) -> Vec<&str> {
        self.set.positives.iter().map(|p| p.text.as_str()).collect()
    }

    /// What the model's post-processing must keep so that every phrase's own
    /// threshold can be applied afterwards.
    pub fn model_options(&self) -> PostprocessOptions {
        PostprocessOptions {
            threshold: lowest_threshold(&self.set, self.options.threshold),
            ..self.options.clone()
        }
    }

    /// One model run's instances to (kept positives, negatives), labelled with
    /// this request's phrases as typed: the model's text cache may hold
    /// another spelling of the same prompt (or its English, for Chinese).
    pub fn resolve(&self, mut instances: Vec<Instance>) -> (Vec<Instance>, Vec<Instance>) {
        let texts = self.set.labels();
        for inst in &mut instances {
            if let Some(t) = texts.get(inst.prompt_index) {
                inst.label = t.to_string();
            }
        }
        resolve(
            &self.set,
            instances,
            self.options.threshold,
            self.negative_overlap,
        )
    }
}

/// The lowest threshold any phrase asks for: what the post-processing must keep
/// so that per-phrase thresholds can then be applied.
pub fn lowest_threshold(set: &PromptSet, global: f32) -> f32 {
    set.positives
        .iter()
        .chain(&set.negatives)
        .filter_map(|p| p.threshold)
        .fold(global, f32::min)
}

/// Splits a run's instances (prompt indices follow `set.texts()`) into kept
/// positives and the negatives, applying per-phrase thresholds and the
/// negative rule. Positives keep their order (by score within a phrase).
pub fn resolve(
    set: &PromptSet,
    instances: Vec<Instance>,
    global: f32,
    overlap: f32,
) -> (Vec<Instance>, Vec<Instance>) {
    let n_pos = set.positives.len();
    let phrase_threshold = |i: usize| {
        let p = if i < n_pos {
            set.positives.get(i)
        } else {
            set.negatives.get(i - n_pos)
        };
        p.and_then(|p| p.threshold).unwrap_or(global)
    };
    let (positives, negatives): (Vec<Instance>, Vec<Instance>) = instances
        .into_iter()
        .filter(|inst| inst.score > phrase_threshold(inst.prompt_index))
        .partition(|inst| inst.prompt_index < n_pos);
    if negatives.is_empty() {
        return (positives, negatives);
    }
    let kept = positives
        .into_iter()
        .filter(|p| covered_share(&p.mask, &negatives) < overlap)
        .collect();
    (kept, negatives)
}

/// Share of `mask`'s set pixels that lie inside any of `others`' masks.
pub fn covered_share(mask: &Mask, others: &[Instance]) -> f32 {
    let mut area = 0usize;
    let mut covered = 0usize;
    for (i, v) in mask.data.iter().enumerate() {
        if *v == 0 {
            continue;
        }
        area += 1;
        if others
            .iter()
            .any(|o| o.mask.data.len() == mask.data.len() && o.mask.data[i] != 0)
        {
            covered += 1;
        }
    }
    if area == 0 {
        0.0
    } else {
        covered as f32 / area as f32
    }
}

/// The alpha of a frame: the union of the positives minus every negative pixel.
pub fn alpha_without_negatives(
    positives: &[Instance],
    negatives: &[Instance],
    width: usize,
    height: usize,
) -> Vec<u8> {
    let mut alpha = crate::image::render::union_mask(positives, width, height);
    let cut = crate::image::render::union_mask(negatives, width, height);
    for (a, c) in alpha.iter_mut().zip(&cut) {
        if *c != 0 {
            *a = 0;
        }
    }
    alpha
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10x10 instance whose mask fills columns `x0..x1`.
    fn inst(prompt_index: usize, score: f32, x0: usize, x1: usize) -> Instance {
        let mut data = vec![0u8; 100];
        for y in 0..10 {
            for x in x0..x1 {
                data[y * 10 + x] = 255;
            }
        }
        Instance {
            label: String::new(),
            id: 0,
            prompt_index,
            query: 0,
            score,
            bbox: [x0 as f32, 0.0, x1 as f32, 10.0],
            mask: Mask {
                width: 10,
                height: 10,
                data,
            },
        }
    }

    #[test]
    fn per_phrase_thresholds_and_negatives() {
        let set = PromptSet::parse("cat:0.8; dog", "-toy");
        assert_eq!(lowest_threshold(&set, 0.5), 0.5);
        let set = PromptSet::parse("cat:0.3; dog; -toy", "");
        assert_eq!(lowest_threshold(&set, 0.5), 0.3);
        let run = vec![
            inst(0, 0.35, 0, 4), // cat above its 0.3: kept unless covered
            inst(0, 0.9, 5, 10), // cat, covered 100% by the toy below: dropped
            inst(1, 0.4, 0, 2),  // dog under the global 0.5: dropped
            inst(1, 0.6, 3, 8),  // dog, covered 3/5 by the toy: dropped at overlap 0.5
            inst(2, 0.7, 5, 10), // toy
        ];
        let (kept, neg) = resolve(&set, run.clone(), 0.5, 0.5);
        assert_eq!(
            kept.iter()
                .map(|i| (i.prompt_index, i.score))
                .collect::<Vec<_>>(),
            [(0, 0.35)]
        );
        assert_eq!(neg.len(), 1);
        // A stricter overlap keeps the partly covered dog.
        let (kept, _) = resolve(&set, run, 0.5, 0.7);
        assert_eq!(kept.len(), 2);
        let alpha = alpha_without_negatives(&kept, &neg, 10, 10);
        assert_eq!(alpha[0], 255);
        assert_eq!(alpha[5], 0, "negative pixels are cleared");
    }
}
