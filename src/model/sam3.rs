//! SAM 3 as three engines: text features per prompt (cached), image features
//! per picture, and a decoder that matches one picture against many prompts.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::error::{Error, Result};
use crate::gpu::memory::{DeviceMemory, DeviceTensor, Transfers, gather_host_rows};
use crate::image::frame::Frame;
use crate::image::postprocess::{
    Instance, PostprocessOptions, QueryOutputs, instances, kept_queries, query_scores,
};
use crate::image::preprocess::preprocess;
use crate::model::backend::{
    BackendKind, BackendOptions, Bound, CpuRuntime, Engine, Input, per_bundle_options,
};
use crate::model::bundle::{Bundle, EngineRole, Manifest, TRACKER_IMAGE_OUTPUTS};
use crate::model::fallback::{FallbackEngine, OpenFp32};
use crate::model::precision::{self, Choice, CpuCaps, Precision};
use crate::model::tensor::{TensorF32, TensorI64};
use crate::prompt::tokenizer::{PromptTokenizer, TokenizedPrompt, normalise_prompt};
use crate::remote::RemoteEngines;

// Room for the default suggestion vocabulary plus the prompts in use.
const TEXT_CACHE_ENTRIES: usize = 1024;
const IMAGE_OUTPUTS: [&str; 4] = ["fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2"];
const DECODER_OUTPUTS: [&str; 4] = ["pred_logits", "pred_boxes", "pred_masks", "presence_logits"];

/// One prompt's text features ([1, context, D]) and its attention mask.
///
/// The features stay in the engines' memory (on the GPU for `cuda` /
/// `tensorrt`) as one row of the text encoder's output batch, shared with the
/// prompts encoded alongside: slicing a row out would cost a copy per prompt,
/// while a decoder batch of exactly that encoder batch binds it as it is, and
/// any other batch is gathered device-to-device (see `Sam3Model::text_batch`).
#[derive(Debug, Clone)]
pub struct TextFeatures {
    pub prompt: String,
    pub tokens: TokenizedPrompt,
    batch: DeviceTensor,
    row: usize,
}

impl TextFeatures {
    /// The features on the host, [1, context, D]: copies this prompt's row.
    pub fn to_host(&self) -> Result<TensorF32> {
        self.batch.item_to_host(self.row)
    }
}

/// One picture's multi-scale features, as the decoder consumes them, kept in
/// the engines' memory and bound to the decoder without a copy. On the
/// remote backend the features stay on the server: what is kept here is the
/// picture as the server takes it, to send again for a new prompt.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    /// `fpn_feat_0..2` then `fpn_pos_2`, each [1, C, h, w]; none on `remote`.
    levels: Vec<DeviceTensor>,
    /// `tracker_feat_0..2` then `tracker_pos_2` (the video tracker's levels,
    /// [`TRACKER_IMAGE_OUTPUTS`]) when the model's tracker engines are
    /// loaded; empty otherwise (the image encoder is not asked for them).
    tracker: Vec<DeviceTensor>,
    /// `remote` only: planar RGB8, [3, S, S], resized as for the image encoder.
    pixels: Option<Arc<Vec<u8>>>,
    /// Width and height of the picture they were computed from.
    pub source_size: (usize, usize),
}

impl ImageFeatures {
    /// The features where the engines keep them (none on `remote`).
    pub fn levels(&self) -> &[DeviceTensor] {
        &self.levels
    }

    /// The four levels on the host: copies all of them.
    pub fn to_host(&self) -> Result<Vec<TensorF32>> {
        self.levels.iter().map(DeviceTensor::to_host).collect()
    }

    /// The video tracker's levels, in [`TRACKER_IMAGE_OUTPUTS`] order; empty
    /// unless the model runs a tracker ([`Sam3Model::has_tracker`]).
    pub fn tracker_levels(&self) -> &[DeviceTensor] {
        &self.tracker
    }
}

/// Decoder outputs for a batch of prompts, all on the host.
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

/// Where a decoder run's masks are.
#[derive(Debug, Clone)]
pub enum Masks {
    /// Every query's mask, [prompts, queries, h, w], where the decoder left it.
    Device(DeviceTensor),
    /// Some queries' masks on the host (what the server sent back): `masks`
    /// row k is query `index[k]` = (prompt, query) of a [prompts, queries, h, w] whole.
    Kept {
        shape: [usize; 4],
        index: Vec<(usize, usize)>,
        masks: TensorF32,
    },
}

impl Masks {
    /// [prompts, queries, h, w].
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Masks::Device(t) => t.shape().to_vec(),
            Masks::Kept { shape, .. } => shape.to_vec(),
        }
    }

    /// The whole [prompts, queries, h, w] on the host; masks the server did
    /// not send are zero logits.
    pub fn to_host(&self) -> Result<TensorF32> {
        match self {
            Masks::Device(t) => t.to_host(),
            Masks::Kept {
                shape,
                index,
                masks,
            } => {
                let n = shape[2] * shape[3];
                let mut data = vec![0f32; shape.iter().product()];
                for (k, (p, q)) in index.iter().enumerate() {
                    let at = (p * shape[1] + q) * n;
                    data[at..at + n].copy_from_slice(masks.item(k));
                }
                Ok(TensorF32::new(shape.to_vec(), data))
            }
        }
    }
}

/// Decoder outputs as a frame needs them: the small per-query outputs copied
/// to the host, the masks (1 x queries x 288 x 288 floats per prompt on the
/// full model) left in the engines' memory until the kept ones are read.
#[derive(Debug, Clone)]
pub struct DeviceDecoderOutput {
    pub pred_logits: TensorF32,
    pub pred_boxes: TensorF32,
    pub pred_masks: Masks,
    pub presence_logits: TensorF32,
}

impl DeviceDecoderOutput {
    /// Everything on the host: copies every mask.
    pub fn to_host(&self) -> Result<DecoderOutput> {
        Ok(DecoderOutput {
            pred_logits: self.pred_logits.clone(),
            pred_boxes: self.pred_boxes.clone(),
            pred_masks: self.pred_masks.to_host()?,
            presence_logits: self.presence_logits.clone(),
        })
    }

    /// Prompt `p`'s masks indexed by query as in [`DecoderOutput::prompt`],
    /// with only the rows of the `kept` queries (ascending) copied to the
    /// host; the others stay zero, and the buffer ends after the last kept row.
    pub(crate) fn kept_masks(&self, p: usize, kept: &[usize]) -> Result<Vec<f32>> {
        let s = self.pred_masks.shape();
        let (queries, mask_len) = (s[1], s[2] * s[3]);
        let rows = kept.last().map_or(0, |last| last + 1);
        let mut masks = vec![0f32; rows * mask_len];
        let device = match &self.pred_masks {
            Masks::Device(t) => t,
            Masks::Kept {
                index, masks: sent, ..
            } => {
                for &q in kept {
                    let k = index.iter().position(|&pq| pq == (p, q)).ok_or_else(|| {
                        Error::InvalidInput(format!(
                            "the server sent no mask for prompt {p}, query {q}, whose score is above the threshold"
                        ))
                    })?;
                    masks[q * mask_len..(q + 1) * mask_len].copy_from_slice(sent.item(k));
                }
                return Ok(masks);
            }
        };
        // Runs of consecutive queries are one copy each.
        let mut i = 0;
        while i < kept.len() {
            let mut j = i + 1;
            while j < kept.len() && kept[j] == kept[j - 1] + 1 {
                j += 1;
            }
            let (a, b) = (kept[i] * mask_len, (kept[j - 1] + 1) * mask_len);
            device.read(p * queries * mask_len + a, &mut masks[a..b])?;
            i = j;
        }
        Ok(masks)
    }
}

/// The last decoder batch of text features that had to be gathered, and the
/// prompts it holds: a stream decodes the same prompts every frame.
type TextBatch = Option<(Vec<Arc<TextFeatures>>, DeviceTensor)>;

/// SAM 3's four video tracker engines
/// ([`crate::model::bundle::TRACKER_ENGINES`]), fp32 files (the per-object
/// two may run in bf16 on OpenVINO: [`precision::TRACKER_BF16_ENGINES`]), run by
/// [`crate::stream::VideoTracker`].
pub(crate) struct TrackerEngines {
    pub memory_attention: FallbackEngine,
    pub mask_decoder: FallbackEngine,
    pub mask_prompt: FallbackEngine,
    pub memory_encoder: FallbackEngine,
}

impl TrackerEngines {
    fn all(&self) -> [&FallbackEngine; 4] {
        [
            &self.memory_attention,
            &self.mask_decoder,
            &self.mask_prompt,
            &self.memory_encoder,
        ]
    }

    /// What they run in, in words, as loaded (one hint for all:
    /// [`Choice::tracker_hint`]).
    fn precision(&self) -> String {
        let on_openvino: Vec<_> = self
            .all()
            .into_iter()
            .filter_map(|e| e.openvino_hint().map(|hint| (e.key(), hint)))
            .collect();
        let Some(&(_, hint)) = on_openvino.first() else {
            return "video tracker in fp32".into();
        };
        format!(
            "video tracker's {} in {hint} on OpenVINO, the rest fp32",
            on_openvino
                .iter()
                .map(|(key, _)| key.trim_start_matches("tracker_").replace('_', " "))
                .collect::<Vec<_>>()
                .join(" and ")
        )
    }
}

/// Whether the model can run the bundle's video tracker.
enum Tracker {
    /// The bundle has no `[tracker]`.
    Absent,
    /// The bundle has one that `backend` does not run: the reason, with
    /// what to do instead.
    Unsupported {
        backend: &'static str,
        message: String,
    },
    Loaded(Box<TrackerEngines>),
}

/// The three engines in this process, or on an inference server.
enum Engines {
    Local {
        text_encoder: Engine,
        image_encoder: Engine,
        decoder: Engine,
    },
    Remote {
        server: RemoteEngines,
        /// Calls of (text encoder, segment); a segment call runs the image
        /// encoder and the decoder once each.
        runs: [AtomicU64; 2],
    },
}

pub struct Sam3Model {
    bundle: Bundle,
    tokenizer: PromptTokenizer,
    // Fields drop in order: the caches hold tensors in the engines' memory, so they go first.
    text_cache: Mutex<LruCache<String, Arc<TextFeatures>>>,
    text_batch: Mutex<TextBatch>,
    tracker: Tracker,
    engines: Engines,
    memory: Arc<DeviceMemory>,
    precision: Choice,
}

/// The file and runtime of `role` under `choice`: the int8 variant of the
/// chosen route where the bundle has one (static on OpenVINO, dynamic on ONNX
/// Runtime's CPU provider), OpenVINO for bf16, the fp32 file on ONNX
/// Runtime's CPU provider otherwise (and for the text encoder).
fn engine_plan(
    bundle: &Bundle,
    role: EngineRole,
    choice: &Choice,
    caps: &CpuCaps,
) -> (std::path::PathBuf, CpuRuntime) {
    let fp32 = bundle.engine_path(role);
    let file = match choice.int8 {
        Some(route) if choice.precision == Precision::Int8 => {
            bundle.variant_path(role, route.variant()).unwrap_or(fp32)
        }
        _ => fp32,
    };
    match choice.openvino_hint(caps) {
        Some(hint) => (file, CpuRuntime::OpenVino { hint }),
        None => (file, CpuRuntime::Ort),
    }
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
        // TensorRT keeps each bundle's engines apart (see per_bundle_options).
        let options = &per_bundle_options(options, &bundle)?;
        let memory = Arc::new(DeviceMemory::new(options)?);
        let capacity = NonZeroUsize::new(TEXT_CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        if options.kind == BackendKind::Remote {
            // Made on a background thread when asked: the client's network
            // threads inherit its priority (crate::priority).
            let server = crate::priority::in_background_if(
                options.background,
                "samclipseg-connect",
                || RemoteEngines::connect(m, &options.remote),
            )?;
            let tracker = if m.has_tracker() {
                Tracker::Unsupported {
                    backend: "remote",
                    message: format!(
                        "the video tracker does not run on an inference server yet: the server at \
                         {} serves the detector's engines only; use backend=cpu or backend=cuda \
                         for tracking",
                        options.remote.server
                    ),
                }
            } else {
                Tracker::Absent
            };
            return Ok(Sam3Model {
                bundle,
                tokenizer,
                tracker,
                engines: Engines::Remote {
                    server,
                    runs: Default::default(),
                },
                memory,
                text_cache: Mutex::new(LruCache::new(capacity)),
                text_batch: Mutex::new(None),
                precision: Choice::fp32(format!(
                    "remote: the server at {} runs the engines",
                    options.remote.server
                )),
            });
        }
        let caps = CpuCaps::detect();
        let mut precision = precision::choose(
            options.precision,
            &caps,
            precision::Int8Files::of(&bundle),
            options.kind != BackendKind::Cpu,
        )?;
        log::info!(
            "bundle {}: image encoder and decoder in {} ({})",
            m.bundle.name,
            precision.precision,
            precision.reason
        );
        let load = |role, choice: &Choice| {
            let (path, runtime) = engine_plan(&bundle, role, choice, &caps);
            Engine::load_on(
                role,
                &path,
                m.engine(role),
                options,
                memory.clone(),
                runtime,
            )
        };
        // The text encoder runs once per prompt (its features are cached): fp32.
        let text_encoder = load(EngineRole::TextEncoder, &Choice::fp32("fp32"))?;
        let image_encoder = match load(EngineRole::ImageEncoder, &precision) {
            // Auto never fails for want of OpenVINO: it falls back to fp32.
            Err(Error::Backend { message, .. })
                if options.precision == Precision::Auto
                    && precision.precision != Precision::Fp32 =>
            {
                log::warn!("precision=auto: {message}; running fp32");
                precision = Choice::fp32(format!("auto: OpenVINO is not available ({message})"));
                load(EngineRole::ImageEncoder, &precision)?
            }
            other => other?,
        };
        let decoder = load(EngineRole::Decoder, &precision)?;
        let tracker = if !m.has_tracker() {
            Tracker::Absent
        } else if options.kind == BackendKind::TensorRt {
            // Its optimisation profiles and engine cache know the detector's
            // batch dimensions only, not objects x memory frames.
            Tracker::Unsupported {
                backend: "tensorrt",
                message: "the video tracker's engines are not built for TensorRT yet (its engine \
                          cache and optimisation profiles cover the detector's three engines \
                          only); use backend=cuda (the same GPU through ONNX Runtime's CUDA \
                          provider) or backend=cpu for tracking"
                    .into(),
            }
        } else {
            // fp32 files on ONNX Runtime (CPU, or the CUDA provider through
            // load_keyed); the per-object engines through OpenVINO in bf16
            // where the image encoder runs in bf16 there.
            let bf16_engines = precision::tracker_bf16_engines();
            let tracker_hint = precision.tracker_hint(&caps);
            let auto = options.precision == Precision::Auto;
            let load = |key: &'static str| -> Result<FallbackEngine> {
                let spec = m.engines.tracker(key).ok_or_else(|| {
                    Error::bundle_file(
                        bundle.dir.join(crate::model::bundle::MANIFEST),
                        format!("[tracker] is present but engines.{key} is not declared"),
                    )
                })?;
                let open = {
                    let (path, spec) = (bundle.dir.join(&spec.file), spec.clone());
                    let (options, memory) = (options.clone(), memory.clone());
                    move |runtime| {
                        Engine::load_keyed(key, &path, &spec, &options, memory.clone(), runtime)
                    }
                };
                let on_openvino = bf16_engines.iter().any(|k| k == key);
                let Some(hint) = tracker_hint.filter(|_| on_openvino) else {
                    return Ok(FallbackEngine::on_ort(open(CpuRuntime::Ort)?));
                };
                match open(CpuRuntime::OpenVino { hint }) {
                    Ok(engine) => {
                        // auto: a run OpenVINO refuses moves it to fp32
                        let fp32 =
                            auto.then(|| -> OpenFp32 { Box::new(move || open(CpuRuntime::Ort)) });
                        Ok(FallbackEngine::on_openvino(engine, hint, fp32))
                    }
                    Err(e) if auto => {
                        log::warn!("precision=auto: {key} on OpenVINO failed ({e}); running fp32");
                        Ok(FallbackEngine::on_ort(open(CpuRuntime::Ort)?))
                    }
                    Err(e) => Err(e),
                }
            };
            let engines = TrackerEngines {
                memory_attention: load("tracker_memory_attention")?,
                mask_decoder: load("tracker_mask_decoder")?,
                mask_prompt: load("tracker_mask_prompt")?,
                memory_encoder: load("tracker_memory_encoder")?,
            };
            log::info!("bundle {}: {}", m.bundle.name, engines.precision());
            Tracker::Loaded(Box::new(engines))
        };
        Ok(Sam3Model {
            bundle,
            tokenizer,
            tracker,
            engines: Engines::Local {
                text_encoder,
                image_encoder,
                decoder,
            },
            memory,
            text_cache: Mutex::new(LruCache::new(capacity)),
            text_batch: Mutex::new(None),
            precision,
        })
    }

    /// What the video tracker's engines run in, in words ("video tracker in
    /// fp32", or which run in bf16 on OpenVINO); None without a tracker.
    pub fn tracker_precision(&self) -> Option<String> {
        match &self.tracker {
            Tracker::Loaded(engines) => Some(engines.precision()),
            Tracker::Absent | Tracker::Unsupported { .. } => None,
        }
    }

    /// The tracker engines that a run OpenVINO refused moved to fp32 on ONNX
    /// Runtime ([`FallbackEngine`]), by key.
    pub fn tracker_fallbacks(&self) -> Vec<&'static str> {
        let Tracker::Loaded(e) = &self.tracker else {
            return Vec::new();
        };
        e.all()
            .into_iter()
            .filter(|engine| engine.fell_back())
            .map(|engine| engine.key())
            .collect()
    }

    /// What the image encoder and decoder run in, and why
    /// ([`crate::model::precision`]).
    pub fn precision(&self) -> &Choice {
        &self.precision
    }

    /// Whether the image encoder and decoder run on OpenVINO, whose engine
    /// runs ignore ONNX Runtime's terminate flag: a cancelled frame's run
    /// ends only when the engine in progress does.
    pub fn runs_on_openvino(&self) -> bool {
        self.precision.on_openvino()
    }

    /// The server, when the engines run on one.
    pub fn remote(&self) -> Option<&RemoteEngines> {
        match &self.engines {
            Engines::Remote { server, .. } => Some(server),
            Engines::Local { .. } => None,
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.bundle.manifest
    }

    /// Whether the bundle carries SAM 3's video tracker (`[tracker]` and its
    /// engines). Whether this backend runs it: [`crate::stream::VideoTracker::new`].
    pub fn has_tracker(&self) -> bool {
        self.bundle.manifest.has_tracker()
    }

    /// The tracker engines, or an error saying why there are none.
    pub(crate) fn tracker_engines(&self) -> Result<&TrackerEngines> {
        match &self.tracker {
            Tracker::Loaded(t) => Ok(t),
            Tracker::Unsupported { backend, message } => Err(Error::Backend {
                backend: backend.to_string(),
                message: message.clone(),
            }),
            Tracker::Absent => Err(Error::InvalidInput(format!(
                "bundle `{}` has no video tracker ([tracker] and its engines): export one with \
                 `engines/export_sam3.py --tracker` from a sam3_video checkpoint",
                self.bundle.manifest.bundle.name
            ))),
        }
    }

    /// Runs of the tracker engines since loading (memory attention, mask
    /// decoder, mask prompt, memory encoder); `None` without them.
    pub fn tracker_engine_runs(&self) -> Option<[u64; 4]> {
        match &self.tracker {
            Tracker::Loaded(t) => Some([
                t.memory_attention.runs(),
                t.mask_decoder.runs(),
                t.mask_prompt.runs(),
                t.memory_encoder.runs(),
            ]),
            _ => None,
        }
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Runs of (text encoder, image encoder, decoder) since loading: what a
    /// frame cost, and what reuse saved.
    pub fn engine_runs(&self) -> [u64; 3] {
        match &self.engines {
            Engines::Local {
                text_encoder,
                image_encoder,
                decoder,
            } => [text_encoder.runs(), image_encoder.runs(), decoder.runs()],
            Engines::Remote { runs, .. } => {
                let segment = runs[1].load(Ordering::Relaxed);
                [runs[0].load(Ordering::Relaxed), segment, segment]
            }
        }
    }

    /// Bytes copied between the host and the engines' memory since loading
    /// (see [`Transfers`]): what a frame moved, and what device residency saved.
    ///
    /// On `remote`, host to device is the protobuf bytes sent to the server
    /// and device to host those received.
    pub fn transfers(&self) -> Transfers {
        let local = self.memory.transfers();
        match &self.engines {
            Engines::Local { .. } => local,
            Engines::Remote { server, .. } => {
                let (sent, received) = server.wire_bytes();
                Transfers {
                    host_to_device: sent,
                    device_to_host: received,
                    device_to_device: local.device_to_device,
                }
            }
        }
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
                    batch: feats.clone(),
                    row: n,
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

    /// Runs the text encoder on tokenised prompts: [n, context, D], left in
    /// the engines' memory.
    pub fn run_text_encoder(&self, tokens: &[TokenizedPrompt]) -> Result<DeviceTensor> {
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
        let text_encoder = match &self.engines {
            Engines::Local { text_encoder, .. } => text_encoder,
            Engines::Remote { server, runs } => {
                runs[0].fetch_add(1, Ordering::Relaxed);
                let t = server.text_features(&ids.data, &mask.data, n)?;
                return DeviceTensor::from_host(t, self.memory.clone());
            }
        };
        let mut out = text_encoder.run_bound(
            &[
                ("input_ids", Bound::Host(Input::I64(&ids))),
                ("attention_mask", Bound::Host(Input::I64(&mask))),
            ],
            &["text_features"],
        )?;
        Ok(out.remove(0))
    }

    /// Preprocesses a picture and runs the image encoder. On `remote`, only
    /// resizes it: the server encodes it with the next decode.
    pub fn encode_image(&self, frame: &Frame) -> Result<ImageFeatures> {
        let spec = &self.bundle.manifest.preprocess;
        if let Engines::Remote { .. } = self.engines {
            return Ok(ImageFeatures {
                levels: Vec::new(),
                tracker: Vec::new(),
                pixels: Some(Arc::new(crate::image::preprocess::planar_rgb8(
                    frame, spec,
                )?)),
                source_size: (frame.width, frame.height),
            });
        }
        let pixels = preprocess(frame, spec)?;
        self.encode_pixels(&pixels, (frame.width, frame.height))
    }

    /// Runs the image encoder on an already preprocessed [1, 3, S, S] tensor.
    pub fn encode_pixels(
        &self,
        pixel_values: &TensorF32,
        source_size: (usize, usize),
    ) -> Result<ImageFeatures> {
        let Engines::Local { image_encoder, .. } = &self.engines else {
            return Err(Error::InvalidInput(
                "the remote backend encodes frames (encode_image), not normalised pixel values: \
                 its server normalises in the graph"
                    .into(),
            ));
        };
        // The tracker's levels only when a tracker will read them.
        let tracking = matches!(self.tracker, Tracker::Loaded(_));
        let outputs: Vec<&str> = if tracking {
            IMAGE_OUTPUTS
                .iter()
                .chain(&TRACKER_IMAGE_OUTPUTS)
                .copied()
                .collect()
        } else {
            IMAGE_OUTPUTS.to_vec()
        };
        let mut levels = image_encoder.run_bound(
            &[("pixel_values", Bound::Host(Input::F32(pixel_values)))],
            &outputs,
        )?;
        let tracker = levels.split_off(IMAGE_OUTPUTS.len().min(levels.len()));
        Ok(ImageFeatures {
            levels,
            tracker,
            pixels: None,
            source_size,
        })
    }

    /// The decoder's `text_features` for `texts`, [n, context, D], without a
    /// trip through the host: the text encoder's own batch when `texts` are
    /// exactly its rows in order, else its rows gathered on the device (kept
    /// for the next call with the same prompts).
    fn text_batch(&self, texts: &[Arc<TextFeatures>]) -> Result<DeviceTensor> {
        let first = &texts[0].batch;
        let whole = first.shape()[0] == texts.len()
            && texts
                .iter()
                .enumerate()
                .all(|(i, t)| t.row == i && t.batch.same_value(first));
        if whole {
            return Ok(first.clone());
        }
        let mut last = self.text_batch.lock().map_err(|_| {
            Error::InvalidInput("text batch lock poisoned by an earlier panic".into())
        })?;
        if let Some((members, batch)) = last.as_ref()
            && members.len() == texts.len()
            && members.iter().zip(texts).all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return Ok(batch.clone());
        }
        let rows: Vec<(&DeviceTensor, usize)> = texts.iter().map(|t| (&t.batch, t.row)).collect();
        let batch = match &self.engines {
            Engines::Local { decoder, .. } => decoder.gather_rows(&rows)?,
            Engines::Remote { .. } => gather_host_rows(&rows, &self.memory)?,
        };
        *last = Some((texts.to_vec(), batch.clone()));
        Ok(batch)
    }

    /// Matches one picture's features against a batch of prompts. The image
    /// and text features are bound where they are; the small outputs are
    /// copied to the host, the masks stay in the engines' memory.
    pub fn decode_on_device(
        &self,
        image: &ImageFeatures,
        texts: &[Arc<TextFeatures>],
    ) -> Result<DeviceDecoderOutput> {
        self.decode_above(image, texts, f32::NEG_INFINITY)
    }

    /// [`Sam3Model::decode_on_device`] for [`Sam3Model::postprocess_on_device`]
    /// with `opts`: on `remote`, the server sends back only the masks of the
    /// queries that can be kept (a score above the threshold).
    pub fn decode_for(
        &self,
        image: &ImageFeatures,
        texts: &[Arc<TextFeatures>],
        opts: &PostprocessOptions,
    ) -> Result<DeviceDecoderOutput> {
        // The server's float arithmetic may differ in the last bit: a margin
        // makes what it sends a superset of what is kept here.
        self.decode_above(image, texts, opts.threshold - 1e-4)
    }

    /// The decoder with, on `remote`, the masks of only the queries scoring
    /// above `score_threshold` sent back (+inf: none).
    pub(crate) fn decode_above(
        &self,
        image: &ImageFeatures,
        texts: &[Arc<TextFeatures>],
        score_threshold: f32,
    ) -> Result<DeviceDecoderOutput> {
        if texts.is_empty() {
            return Err(Error::InvalidInput(
                "decode needs at least one prompt".into(),
            ));
        }
        let features = self.text_batch(texts)?;
        let ctx = self.tokenizer.context_length();
        let mask = TensorI64::new(
            vec![texts.len(), ctx],
            texts
                .iter()
                .flat_map(|t| t.tokens.mask.iter().copied())
                .collect(),
        );
        let decoder = match &self.engines {
            Engines::Local { decoder, .. } => decoder,
            Engines::Remote { server, runs } => {
                let pixels = image.pixels.as_ref().ok_or_else(|| {
                    Error::InvalidInput(
                        "image features of a local engine given to the remote backend".into(),
                    )
                })?;
                runs[1].fetch_add(1, Ordering::Relaxed);
                let size = self.bundle.manifest.preprocess.image_size as usize;
                let out = server.segment(
                    pixels,
                    size,
                    &features.to_host()?,
                    &mask.data,
                    score_threshold,
                )?;
                let (n, q) = (texts.len(), out.pred_logits.shape[1]);
                let m = self.bundle.manifest.decoder.mask_size;
                return Ok(DeviceDecoderOutput {
                    pred_logits: out.pred_logits,
                    pred_boxes: out.pred_boxes,
                    presence_logits: out.presence_logits,
                    pred_masks: Masks::Kept {
                        shape: [n, q, m, m],
                        index: out.kept_index,
                        masks: out.kept_masks,
                    },
                });
            }
        };
        if image.levels.is_empty() {
            return Err(Error::InvalidInput(
                "image features of the remote backend given to a local engine".into(),
            ));
        }
        let mut inputs: Vec<(&str, Bound)> = IMAGE_OUTPUTS
            .iter()
            .zip(&image.levels)
            .map(|(n, t)| (*n, Bound::Device(t)))
            .collect();
        inputs.push(("text_features", Bound::Device(&features)));
        inputs.push(("attention_mask", Bound::Host(Input::I64(&mask))));
        let mut out = decoder.run_bound(&inputs, &DECODER_OUTPUTS)?.into_iter();
        let mut next = || {
            out.next()
                .ok_or_else(|| Error::InvalidInput("decoder returned too few outputs".into()))
        };
        let (logits, boxes, masks, presence) = (next()?, next()?, next()?, next()?);
        Ok(DeviceDecoderOutput {
            pred_logits: logits.to_host()?,
            pred_boxes: boxes.to_host()?,
            pred_masks: Masks::Device(masks),
            presence_logits: presence.to_host()?,
        })
    }

    /// [`Sam3Model::decode_on_device`] with every output, masks included,
    /// copied to the host.
    pub fn decode(
        &self,
        image: &ImageFeatures,
        texts: &[Arc<TextFeatures>],
    ) -> Result<DecoderOutput> {
        self.decode_on_device(image, texts)?.to_host()
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

    /// [`Sam3Model::postprocess`] on outputs whose masks are still in the
    /// engines' memory: copies only the masks of the queries that are kept.
    pub fn postprocess_on_device(
        &self,
        out: &DeviceDecoderOutput,
        texts: &[Arc<TextFeatures>],
        image_size: (usize, usize),
        opts: &PostprocessOptions,
    ) -> Result<Vec<Instance>> {
        let s = out.pred_masks.shape();
        let mut all = Vec::new();
        for (p, t) in texts.iter().enumerate() {
            let mut q = QueryOutputs {
                logits: out.pred_logits.item(p),
                boxes: out.pred_boxes.item(p),
                masks: &[],
                mask_size: (s[3], s[2]),
                presence_logit: out.presence_logits.item(p)[0],
            };
            // The masks `instances` will read, in query order for contiguous copies.
            let mut kept = kept_queries(&query_scores(&q), opts);
            kept.sort_unstable();
            let masks = out.kept_masks(p, &kept)?;
            q.masks = &masks;
            all.extend(instances(&q, &t.prompt, p, image_size, opts));
        }
        Ok(all)
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
        let out = self.decode_for(&image, &texts, opts)?;
        self.postprocess_on_device(&out, &texts, (frame.width, frame.height), opts)
    }
}
