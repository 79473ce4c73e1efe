//! The tracker engines as the loop calls them: inputs assembled on the host,
//! every output checked for its shape before it is read.

use crate::error::{Error, Result};
use crate::gpu::memory::DeviceTensor;
use crate::model::backend::{Bound, Engine, Input};
use crate::model::bundle::TrackerSpec;
use crate::model::sam3::TrackerEngines;
use crate::model::tensor::{TensorF32, TensorI64};

/// The image encoder's tracker levels of the current frame.
pub(crate) struct Levels<'a> {
    pub feat_0: &'a DeviceTensor,
    pub feat_1: &'a DeviceTensor,
    pub feat_2: &'a DeviceTensor,
    pub pos_2: &'a DeviceTensor,
}

/// One object's tracker output on one frame.
pub(crate) struct TrackerOutput {
    /// [M, M] mask logits (-1024 where the object is not there).
    pub low: Vec<f32>,
    /// [S, S] mask logits at the image size: read within the frame only.
    pub high: Vec<f32>,
    /// [C] object pointer.
    pub pointer: Vec<f32>,
    /// Object score logit.
    pub score: f32,
}

/// The sizes the outputs must have.
pub(crate) struct Sizes {
    pub hidden: usize,
    pub memory_dim: usize,
    pub feature: usize,
    pub mask: usize,
    pub image: usize,
}

impl Sizes {
    pub fn of(t: &TrackerSpec, image_size: usize) -> Sizes {
        Sizes {
            hidden: t.hidden_size,
            memory_dim: t.memory_dim,
            feature: t.feature_size,
            mask: t.mask_size,
            image: image_size,
        }
    }

    /// Floats in one memory: [memory_dim, h, w].
    pub fn memory_len(&self) -> usize {
        self.memory_dim * self.feature * self.feature
    }
}

fn shape_error(engine: &Engine, tensor: &str, found: &[usize], want: &[usize]) -> Error {
    Error::Engine {
        engine: engine.key().to_string(),
        path: engine.path().to_path_buf(),
        message: format!("output `{tensor}` has shape {found:?}, expected {want:?}"),
    }
}

/// `engine`'s output `name` on the host, checked to be `want`.
fn host(engine: &Engine, name: &str, t: DeviceTensor, want: &[usize]) -> Result<TensorF32> {
    if t.shape() != want {
        return Err(shape_error(engine, name, t.shape(), want));
    }
    t.to_host()
}

/// The four outputs shared by the mask decoder and the mask prompt, per object.
fn mask_outputs(
    engine: &Engine,
    out: Vec<DeviceTensor>,
    n: usize,
    s: &Sizes,
) -> Result<Vec<TrackerOutput>> {
    let names = MASK_OUTPUTS;
    let wants: [Vec<usize>; 4] = [
        vec![n, 1, s.mask, s.mask],
        vec![n, 1, s.image, s.image],
        vec![n, s.hidden],
        vec![n, 1],
    ];
    if out.len() != names.len() {
        return Err(Error::Engine {
            engine: engine.key().to_string(),
            path: engine.path().to_path_buf(),
            message: format!("returned {} outputs, expected {}", out.len(), names.len()),
        });
    }
    let mut host_out = Vec::with_capacity(4);
    for ((name, want), t) in names.iter().zip(&wants).zip(out) {
        host_out.push(host(engine, name, t, want)?);
    }
    let [low, high, pointer, score] = <[TensorF32; 4]>::try_from(host_out)
        .map_err(|_| Error::InvalidInput("tracker outputs lost".into()))?;
    Ok((0..n)
        .map(|i| TrackerOutput {
            low: low.item(i).to_vec(),
            high: high.item(i).to_vec(),
            pointer: pointer.item(i).to_vec(),
            score: score.item(i)[0],
        })
        .collect())
}

const MASK_OUTPUTS: [&str; 4] = [
    "mask_logits",
    "high_res_mask_logits",
    "object_pointer",
    "object_score_logits",
];

/// One batch of objects with the same number of memories T and pointers P:
/// memory attention over their pasts, then the mask decoder with no prompt.
pub(crate) struct PropagateBatch {
    /// [n, T, memory_dim, h, w]
    pub memory: TensorF32,
    /// [n, T]
    pub memory_offset: TensorI64,
    /// [n, P, C]
    pub pointers: TensorF32,
    /// [n, P]
    pub pointer_offset: TensorF32,
}

pub(crate) fn propagate(
    e: &TrackerEngines,
    levels: &Levels,
    batch: &PropagateBatch,
    s: &Sizes,
) -> Result<Vec<TrackerOutput>> {
    let n = batch.memory.shape[0];
    let mut cond = e.memory_attention.run_bound(
        &[
            ("tracker_feat_2", Bound::Device(levels.feat_2)),
            ("tracker_pos_2", Bound::Device(levels.pos_2)),
            ("memory", Bound::Host(Input::F32(&batch.memory))),
            (
                "memory_offset",
                Bound::Host(Input::I64(&batch.memory_offset)),
            ),
            ("object_pointers", Bound::Host(Input::F32(&batch.pointers))),
            (
                "pointer_offset",
                Bound::Host(Input::F32(&batch.pointer_offset)),
            ),
        ],
        &["conditioned_feat"],
    )?;
    let cond = cond.remove(0);
    let want = [n, s.hidden, s.feature, s.feature];
    if cond.shape() != want {
        return Err(shape_error(
            &e.memory_attention,
            "conditioned_feat",
            cond.shape(),
            &want,
        ));
    }
    let out = e.mask_decoder.run_bound(
        &[
            ("conditioned_feat", Bound::Device(&cond)),
            ("tracker_feat_0", Bound::Device(levels.feat_0)),
            ("tracker_feat_1", Bound::Device(levels.feat_1)),
        ],
        &MASK_OUTPUTS,
    )?;
    mask_outputs(&e.mask_decoder, out, n, s)
}

/// `_use_mask_as_output`: each new object's 0/1 mask [M, M] (flat, one after
/// the other) as its first output.
pub(crate) fn mask_prompt(
    e: &TrackerEngines,
    levels: &Levels,
    masks: Vec<f32>,
    s: &Sizes,
) -> Result<Vec<TrackerOutput>> {
    let n = masks.len() / (s.mask * s.mask);
    let masks = TensorF32::new(vec![n, 1, s.mask, s.mask], masks);
    let out = e.mask_prompt.run_bound(
        &[
            ("mask", Bound::Host(Input::F32(&masks))),
            ("tracker_feat_0", Bound::Device(levels.feat_0)),
            ("tracker_feat_1", Bound::Device(levels.feat_1)),
            ("tracker_feat_2", Bound::Device(levels.feat_2)),
        ],
        &MASK_OUTPUTS,
    )?;
    mask_outputs(&e.mask_prompt, out, n, s)
}

/// The memory encoder on N square masks of side `side` (flat, one after the
/// other) with their object score logits: N memories [memory_dim, h, w].
pub(crate) fn encode_memory(
    e: &TrackerEngines,
    levels: &Levels,
    masks: Vec<f32>,
    side: usize,
    scores: &[f32],
    binarize: bool,
    s: &Sizes,
) -> Result<Vec<Vec<f32>>> {
    let n = scores.len();
    if masks.len() != n * side * side {
        return Err(Error::InvalidInput(format!(
            "memory encoder: {} mask values for {n} masks of {side}x{side}",
            masks.len()
        )));
    }
    let masks = TensorF32::new(vec![n, 1, side, side], masks);
    let scores = TensorF32::new(vec![n, 1], scores.to_vec());
    let flag = TensorF32::new(vec![1], vec![if binarize { 1.0 } else { 0.0 }]);
    let mut out = e.memory_encoder.run_bound(
        &[
            ("tracker_feat_2", Bound::Device(levels.feat_2)),
            ("mask_logits", Bound::Host(Input::F32(&masks))),
            ("object_score_logits", Bound::Host(Input::F32(&scores))),
            ("binarize", Bound::Host(Input::F32(&flag))),
        ],
        &["memory"],
    )?;
    let want = [n, s.memory_dim, s.feature, s.feature];
    let memory = host(&e.memory_encoder, "memory", out.remove(0), &want)?;
    Ok((0..n).map(|i| memory.item(i).to_vec()).collect())
}
