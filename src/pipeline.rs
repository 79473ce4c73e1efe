//! SAM 3 as three engines: text features per prompt (cached), image features
//! per picture, and a decoder that matches one picture against many prompts.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::backend::{BackendOptions, Engine, Input};
use crate::bundle::{Bundle, EngineRole, Manifest};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::postprocess::{Instance, PostprocessOptions, QueryOutputs, instances};
use crate::preprocess::preprocess;
use crate::tensor::{TensorF32, TensorI64};
use crate::tokenizer::{PromptTokenizer, TokenizedPrompt, normalise_prompt};

// Room for the default suggestion vocabulary plus the prompts in use.
const TEXT_CACHE_ENTRIES: usize = 1024;
const IMAGE_OUTPUTS: [&str; 4] = ["fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2"];
const DECODER_OUTPUTS: [&str; 4] = ["pred_logits", "pred_boxes", "pred_masks", "presence_logits"];

/// One prompt's text features ([1, context, D]) and its attention mask.
#[derive(Debug, Clone)]
pub struct TextFeatures {
    pub prompt: String,
    pub tokens: TokenizedPrompt,
    pub features: TensorF32,
}

/// One picture's multi-scale features, as the decoder consumes them.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    /// `fpn_feat_0..2` then `fpn_pos_2`, each [1, C, h, w].
    pub levels: Vec<TensorF32>,
    /// Width and height of the picture they were computed from.
    pub source_size: (usize, usize),
}

/// Decoder outputs for a batch of prompts.
#[derive(Debug, Clone)]
pub struct DecoderOutput {
    pub pred_logits: TensorF32,
    pub pred_boxes: TensorF32,
    pub pred_masks: TensorF32,
    pub presence_logits: TensorF32,
}

impl DecoderOutput {
    pub fn prompt(&self, p: usize) -> QueryOutputs<'_> {
        let s = &self.pred_masks.shape;
        QueryOutputs {
            logits: self.pred_logits.item(p),
            boxes: self.pred_boxes.item(p),
            masks: self.pred_masks.item(p),
            mask_size: (s[3], s[2]),
            presence_logit: self.presence_logits.item(p)[0],
        }
    }
}

pub struct Sam3Model {
    bundle: Bundle,
    tokenizer: PromptTokenizer,
    text_encoder: Engine,
    image_encoder: Engine,
    decoder: Engine,
    text_cache: Mutex<LruCache<String, Arc<TextFeatures>>>,
}

impl Sam3Model {
    /// Opens the bundle, the tokenizer and the three engines; every check that
    /// can fail happens here, before the first frame.
    pub fn load(dir: impl AsRef<Path>, options: &BackendOptions) -> Result<Sam3Model> {
        let bundle = Bundle::open(dir)?;
        let m = &bundle.manifest;
        let tokenizer = PromptTokenizer::from_file(
            &bundle.tokenizer_path(),
            m.text.context_length,
            m.text.pad_token_id,
        )?;
        let load = |role| Engine::load(role, &bundle.engine_path(role), m.engine(role), options);
        let text_encoder = load(EngineRole::TextEncoder)?;
        let image_encoder = load(EngineRole::ImageEncoder)?;
        let decoder = load(EngineRole::Decoder)?;
        let capacity = NonZeroUsize::new(TEXT_CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Ok(Sam3Model {
            bundle,
            tokenizer,
            text_encoder,
            image_encoder,
            decoder,
            text_cache: Mutex::new(LruCache::new(capacity)),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.bundle.manifest
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Runs of (text encoder, image encoder, decoder) since loading: what a
    /// frame cost, and what reuse saved.
    pub fn engine_runs(&self) -> [u64; 3] {
        [
            self.text_encoder.runs(),
            self.image_encoder.runs(),
            self.decoder.runs(),
        ]
    }

    pub fn tokenize(&self, prompt: &str) -> Result<TokenizedPrompt> {
        self.tokenizer.encode(prompt)
    }

    /// Text features for each prompt; prompts already seen come from the cache,
    /// the rest run through the text encoder in one batch.
    pub fn encode_texts(&self, prompts: &[&str]) -> Result<Vec<Arc<TextFeatures>>> {
        let keys: Vec<String> = prompts.iter().map(|p| normalise_prompt(p)).collect();
        let mut found: Vec<Option<Arc<TextFeatures>>> = {
            let mut cache = self.lock_cache()?;
            keys.iter().map(|k| cache.get(k).cloned()).collect()
        };
        // First occurrence of each prompt that is not cached yet.
        let mut unique: Vec<usize> = Vec::new();
        for i in (0..prompts.len()).filter(|&i| found[i].is_none()) {
            if !unique.iter().any(|&u| keys[u] == keys[i]) {
                unique.push(i);
            }
        }
        if !unique.is_empty() {
            let tokens = unique
                .iter()
                .map(|&i| self.tokenizer.encode(prompts[i]))
                .collect::<Result<Vec<_>>>()?;
            let feats = self.run_text_encoder(&tokens)?;
            let mut cache = self.lock_cache()?;
            for (n, (&i, tok)) in unique.iter().zip(tokens).enumerate() {
                let tf = Arc::new(TextFeatures {
                    prompt: prompts[i].to_string(),
                    tokens: tok,
                    features: TensorF32::new(
                        [&[1][..], &feats.shape[1..]].concat(),
                        feats.item(n).to_vec(),
                    ),
                });
                cache.put(keys[i].clone(), tf);
            }
            for (i, slot) in found.iter_mut().enumerate() {
                if slot.is_none() {
                    *slot = cache.peek(&keys[i]).cloned();
                }
            }
        }
        found
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                f.ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "text features for {:?} were not computed",
                        prompts[i]
                    ))
                })
            })
            .collect()
    }

    fn lock_cache(&self) -> Result<std::sync::MutexGuard<'_, LruCache<String, Arc<TextFeatures>>>> {
        self.text_cache
            .lock()
            .map_err(|_| Error::InvalidInput("text cache lock poisoned by an earlier panic".into()))
    }

    /// Runs the text encoder on tokenised prompts: [n, context, D].
    pub fn run_text_encoder(&self, tokens: &[TokenizedPrompt]) -> Result<TensorF32> {
        let ctx = self.tokenizer.context_length();
        let n = tokens.len();
        let ids = TensorI64::new(
            vec![n, ctx],
            tokens.iter().flat_map(|t| t.ids.iter().copied()).collect(),
        );
        let mask = TensorI64::new(
            vec![n, ctx],
            tokens.iter().flat_map(|t| t.mask.iter().copied()).collect(),
        );
        let mut out = self.text_encoder.run(
            &[
                ("input_ids", Input::I64(&ids)),
                ("attention_mask", Input::I64(&mask)),
            ],
            &["text_features"],
        )?;
        Ok(out.remove(0))
    }

    /// Preprocesses a picture and runs the image encoder.
    pub fn encode_image(&self, frame: &Frame) -> Result<ImageFeatures> {
        let pixels = preprocess(frame, &self.bundle.manifest.preprocess)?;
        self.encode_pixels(&pixels, (frame.width, frame.height))
    }

    /// Runs the image encoder on an already preprocessed [1, 3, S, S] tensor.
    pub fn encode_pixels(
        &self,
        pixel_values: &TensorF32,
        source_size: (usize, usize),
    ) -> Result<ImageFeatures> {
        let levels = self.image_encoder.run(
            &[("pixel_values", Input::F32(pixel_values))],
            &IMAGE_OUTPUTS,
        )?;
        Ok(ImageFeatures {
            levels,
            source_size,
        })
    }

    /// Matches one picture's features against a batch of prompts.
    pub fn decode(
        &self,
        image: &ImageFeatures,
        texts: &[Arc<TextFeatures>],
    ) -> Result<DecoderOutput> {
        if texts.is_empty() {
            return Err(Error::InvalidInput(
                "decode needs at least one prompt".into(),
            ));
        }
        let parts: Vec<&TensorF32> = texts.iter().map(|t| &t.features).collect();
        let features = TensorF32::concat(&parts).ok_or_else(|| {
            Error::InvalidInput("text features of different shapes cannot be batched".into())
        })?;
        let ctx = self.tokenizer.context_length();
        let mask = TensorI64::new(
            vec![texts.len(), ctx],
            texts
                .iter()
                .flat_map(|t| t.tokens.mask.iter().copied())
                .collect(),
        );
        let mut inputs: Vec<(&str, Input)> = IMAGE_OUTPUTS
            .iter()
            .zip(&image.levels)
            .map(|(n, t)| (*n, Input::F32(t)))
            .collect();
        inputs.push(("text_features", Input::F32(&features)));
        inputs.push(("attention_mask", Input::I64(&mask)));
        let mut out = self.decoder.run(&inputs, &DECODER_OUTPUTS)?.into_iter();
        let mut next = || {
            out.next()
                .ok_or_else(|| Error::InvalidInput("decoder returned too few outputs".into()))
        };
        Ok(DecoderOutput {
            pred_logits: next()?,
            pred_boxes: next()?,
            pred_masks: next()?,
            presence_logits: next()?,
        })
    }

    /// Instances of every prompt in the decoder output, at the picture's size.
    pub fn postprocess(
        &self,
        out: &DecoderOutput,
        texts: &[Arc<TextFeatures>],
        image_size: (usize, usize),
        opts: &PostprocessOptions,
    ) -> Vec<Instance> {
        texts
            .iter()
            .enumerate()
            .flat_map(|(p, t)| instances(&out.prompt(p), &t.prompt, p, image_size, opts))
            .collect()
    }

    /// The whole pipeline for one picture and several prompts.
    pub fn segment(
        &self,
        frame: &Frame,
        prompts: &[&str],
        opts: &PostprocessOptions,
    ) -> Result<Vec<Instance>> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let texts = self.encode_texts(prompts)?;
        let image = self.encode_image(frame)?;
        let out = self.decode(&image, &texts)?;
        Ok(self.postprocess(&out, &texts, (frame.width, frame.height), opts))
    }
}
