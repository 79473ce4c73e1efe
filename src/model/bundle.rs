//! The engine bundle: `bundle.toml` parsed and checked against the files beside
//! it. The format is described in `engines/BUNDLE.md`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const FORMAT_VERSION: u32 = 1;
pub const FAMILY: &str = "sam3";
pub const MANIFEST: &str = "bundle.toml";

/// The three engines, by their role in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineRole {
    TextEncoder,
    ImageEncoder,
    Decoder,
}

impl EngineRole {
    pub const ALL: [EngineRole; 3] = [
        EngineRole::TextEncoder,
        EngineRole::ImageEncoder,
        EngineRole::Decoder,
    ];

    pub fn key(self) -> &'static str {
        match self {
            EngineRole::TextEncoder => "text_encoder",
            EngineRole::ImageEncoder => "image_encoder",
            EngineRole::Decoder => "decoder",
        }
    }

    /// Tensors the pipeline feeds or reads, by name; the manifest may declare more.
    pub fn required_tensors(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            EngineRole::TextEncoder => (&["input_ids", "attention_mask"], &["text_features"]),
            EngineRole::ImageEncoder => (
                &["pixel_values"],
                &["fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2"],
            ),
            EngineRole::Decoder => (
                &[
                    "fpn_feat_0",
                    "fpn_feat_1",
                    "fpn_feat_2",
                    "fpn_pos_2",
                    "text_features",
                    "attention_mask",
                ],
                &["pred_logits", "pred_boxes", "pred_masks", "presence_logits"],
            ),
        }
    }
}

/// One dimension of a declared shape: a number, or a symbolic name such as `batch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(i64),
    Symbolic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => write!(f, "{s}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(Dim::to_string).collect();
        format!("[{}]", dims.join(", "))
    }
}

/// A reduced-precision file of an engine, with the same tensors as its fp32
/// file (`engines/quantize_bundle.py` writes them).
#[derive(Debug, Clone, Deserialize)]
pub struct VariantSpec {
    pub file: String,
    /// The operator types that were quantised, for the record.
    #[serde(default)]
    pub quantized_ops: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EngineSpec {
    /// The engine in fp32: what every bundle has.
    pub file: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Other precisions of the same engine, by name (`int8`, `int8_dynamic`).
    #[serde(default)]
    pub variants: std::collections::BTreeMap<String, VariantSpec>,
    /// The dimensions of this engine's tensors that manifest numbers fix
    /// ([`Manifest::sized_dims`]); filled by [`parse_manifest`], so that the
    /// backend checks them against the engine itself when it opens it.
    #[serde(skip)]
    pub sized: Vec<SizedDim>,
}

impl EngineSpec {
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct BundleInfo {
    pub format_version: u32,
    pub family: String,
    pub name: String,
    #[serde(default)]
    pub source_checkpoint: String,
    #[serde(default)]
    pub source_sha256: String,
    #[serde(default)]
    pub weights_licence: String,
    #[serde(default)]
    pub exported_with: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PreprocessSpec {
    pub image_size: u32,
    #[serde(default = "default_resample")]
    pub resample: String,
    pub rescale_factor: f64,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

fn default_resample() -> String {
    "bilinear".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct TextSpec {
    pub tokenizer: String,
    pub context_length: usize,
    pub pad_token_id: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DecoderSpec {
    pub num_queries: usize,
    pub mask_size: usize,
    pub default_threshold: f32,
    pub mask_threshold: f32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Engines {
    pub text_encoder: EngineSpec,
    pub image_encoder: EngineSpec,
    pub decoder: EngineSpec,
    /// SAM 3's video tracker (optional, with `[tracker]`; BUNDLE.md "Video
    /// tracker engines"): recorded and checked here, not run yet.
    #[serde(default)]
    pub tracker_memory_attention: Option<EngineSpec>,
    #[serde(default)]
    pub tracker_mask_decoder: Option<EngineSpec>,
    #[serde(default)]
    pub tracker_mask_prompt: Option<EngineSpec>,
    #[serde(default)]
    pub tracker_memory_encoder: Option<EngineSpec>,
}

/// The tracker engines, by their `[engines.*]` key, with the tensors the
/// streaming loop feeds and reads (the manifest may declare more).
pub const TRACKER_ENGINES: [(&str, &[&str], &[&str]); 4] = [
    (
        "tracker_memory_attention",
        &[
            "tracker_feat_2",
            "tracker_pos_2",
            "memory",
            "memory_offset",
            "object_pointers",
            "pointer_offset",
        ],
        &["conditioned_feat"],
    ),
    (
        "tracker_mask_decoder",
        &["conditioned_feat", "tracker_feat_0", "tracker_feat_1"],
        &[
            "mask_logits",
            "high_res_mask_logits",
            "object_pointer",
            "object_score_logits",
        ],
    ),
    (
        "tracker_mask_prompt",
        &["mask", "tracker_feat_0", "tracker_feat_1", "tracker_feat_2"],
        &[
            "mask_logits",
            "high_res_mask_logits",
            "object_pointer",
            "object_score_logits",
        ],
    ),
    (
        "tracker_memory_encoder",
        &[
            "tracker_feat_2",
            "mask_logits",
            "object_score_logits",
            "binarize",
        ],
        &["memory"],
    ),
];

/// The image encoder outputs a bundle with tracker engines adds.
pub const TRACKER_IMAGE_OUTPUTS: [&str; 4] = [
    "tracker_feat_0",
    "tracker_feat_1",
    "tracker_feat_2",
    "tracker_pos_2",
];

impl Engines {
    /// A tracker engine by its `[engines.*]` key, if the bundle has it.
    pub fn tracker(&self, key: &str) -> Option<&EngineSpec> {
        match key {
            "tracker_memory_attention" => self.tracker_memory_attention.as_ref(),
            "tracker_mask_decoder" => self.tracker_mask_decoder.as_ref(),
            "tracker_mask_prompt" => self.tracker_mask_prompt.as_ref(),
            "tracker_memory_encoder" => self.tracker_memory_encoder.as_ref(),
            _ => None,
        }
    }
}

/// `[tracker]`: the numbers of SAM 3's streaming video loop (`Sam3VideoConfig`
/// and the tracker's config), written by `engines/export_sam3_tracker.py`.
#[derive(Debug, Clone, Deserialize)]
pub struct TrackerSpec {
    /// Feature width C and the memories' width (64 in SAM 3).
    pub hidden_size: usize,
    pub memory_dim: usize,
    /// Side of the tracker's lowest-resolution features (h = w) and of its masks (4 h).
    pub feature_size: usize,
    pub mask_size: usize,
    /// Memory frames an object attends to: the conditioning frame(s) plus
    /// `num_maskmem - 1` recent ones; conditioning frames used, at most.
    pub num_maskmem: usize,
    pub max_cond_frame_num: usize,
    /// Object pointers of past frames an object attends to, at most.
    pub max_object_pointers: usize,
    pub score_threshold_detection: f32,
    pub det_nms_thresh: f32,
    pub assoc_iou_thresh: f32,
    pub trk_assoc_iou_thresh: f32,
    pub new_det_thresh: f32,
    pub high_conf_thresh: f32,
    pub high_iou_thresh: f32,
    pub recondition_every_nth_frame: usize,
    pub recondition_on_trk_masks: bool,
    pub init_trk_keep_alive: i64,
    pub max_trk_keep_alive: i64,
    pub min_trk_keep_alive: i64,
    pub decrease_trk_keep_alive_for_empty_masklets: bool,
    pub suppress_overlapping_based_on_recent_occlusion_threshold: f32,
    pub fill_hole_area: usize,
    pub max_num_objects: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub bundle: BundleInfo,
    pub preprocess: PreprocessSpec,
    pub text: TextSpec,
    pub decoder: DecoderSpec,
    pub engines: Engines,
    /// Present when the bundle has SAM 3's video tracker engines.
    #[serde(default)]
    pub tracker: Option<TrackerSpec>,
}

impl Manifest {
    pub fn engine(&self, role: EngineRole) -> &EngineSpec {
        match role {
            EngineRole::TextEncoder => &self.engines.text_encoder,
            EngineRole::ImageEncoder => &self.engines.image_encoder,
            EngineRole::Decoder => &self.engines.decoder,
        }
    }

    /// Whether the bundle carries SAM 3's video tracker (`[tracker]` and its
    /// four engines; [`validate`] refuses one without the other).
    pub fn has_tracker(&self) -> bool {
        self.tracker.is_some()
    }
}

/// Upper bounds on the manifest numbers that size allocations: a manifest is
/// untrusted input, and a huge number would abort the process on allocation
/// (which no panic guard catches) before any engine is opened. Each allows
/// several times the real SAM 3 value.
///
/// Square input side: SAM 3 uses 1008; 4096 is a 201 MB float input tensor.
pub const MAX_IMAGE_SIZE: u32 = 4096;
/// Tokens per prompt: SAM 3 uses 32, CLIP 77.
pub const MAX_CONTEXT_LENGTH: usize = 512;
/// Decoder queries: SAM 3 uses 200.
pub const MAX_QUERIES: usize = 1024;
/// Mask side: SAM 3 uses 288.
pub const MAX_MASK_SIZE: usize = 1024;
/// Mask logits per phrase (queries x mask side²): SAM 3 has 16.6 M (66 MB);
/// 64 Mi floats is 256 MiB per phrase, times the phrase cap
/// ([`crate::prompt::syntax::MAX_PHRASES`]) per decoder run.
pub const MAX_MASK_VALUES_PER_PHRASE: usize = 64 << 20;

/// One tensor dimension that a manifest number fixes, e.g. `input_ids`'
/// dimension 1 is `text.context_length`. Checked twice: against the tensor
/// shapes the manifest declares (when it is parsed) and against the engine's
/// own signature (when the backend opens it), so the numbers the pipeline
/// allocates with are the ones the engines really take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizedDim {
    /// The manifest field, as written in bundle.toml (`text.context_length`).
    pub field: &'static str,
    pub value: i64,
    /// An input tensor (else an output).
    pub input: bool,
    pub tensor: &'static str,
    pub dim: usize,
}

impl SizedDim {
    pub fn side(&self) -> &'static str {
        if self.input { "input" } else { "output" }
    }
}

impl Manifest {
    /// The dimensions of `role`'s tensors that the manifest's numbers fix.
    pub fn sized_dims(&self, role: EngineRole) -> Vec<SizedDim> {
        let ctx = ("text.context_length", self.text.context_length as i64);
        let size = (
            "preprocess.image_size",
            i64::from(self.preprocess.image_size),
        );
        let queries = ("decoder.num_queries", self.decoder.num_queries as i64);
        let mask = ("decoder.mask_size", self.decoder.mask_size as i64);
        let d = |(field, value): (&'static str, i64), input, tensor, dim| SizedDim {
            field,
            value,
            input,
            tensor,
            dim,
        };
        match role {
            EngineRole::TextEncoder => vec![
                d(ctx, true, "input_ids", 1),
                d(ctx, true, "attention_mask", 1),
                d(ctx, false, "text_features", 1),
            ],
            EngineRole::ImageEncoder => vec![
                d(size, true, "pixel_values", 2),
                d(size, true, "pixel_values", 3),
            ],
            EngineRole::Decoder => vec![
                d(ctx, true, "text_features", 1),
                d(ctx, true, "attention_mask", 1),
                d(queries, false, "pred_logits", 1),
                d(queries, false, "pred_boxes", 1),
                d(queries, false, "pred_masks", 1),
                d(mask, false, "pred_masks", 2),
                d(mask, false, "pred_masks", 3),
            ],
        }
    }
}

/// A bundle directory whose manifest parsed and whose files exist. The engines
/// themselves are checked against the manifest when the backend opens them.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

pub const BUILD_HINT: &str = "build one with `engines/export_sam3.py` (see engines/README.md), \
     or name the test bundle `tests/fixtures/tiny-sam3`";

impl Bundle {
    pub fn open(dir: impl AsRef<Path>) -> Result<Bundle> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::BundleMissing {
                path: dir,
                hint: BUILD_HINT.to_string(),
            });
        }
        let manifest_path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
            Error::bundle_file(
                &manifest_path,
                format!("cannot be read ({e}); {BUILD_HINT}"),
            )
        })?;
        let manifest = parse_manifest(&text).map_err(|m| Error::bundle_file(&manifest_path, m))?;
        let bundle = Bundle { dir, manifest };
        bundle.check_files()?;
        Ok(bundle)
    }

    pub fn engine_path(&self, role: EngineRole) -> PathBuf {
        self.dir.join(&self.manifest.engine(role).file)
    }

    /// The file of `role`'s `variant` (`int8`, `int8_dynamic`), if the bundle has one.
    pub fn variant_path(&self, role: EngineRole, variant: &str) -> Option<PathBuf> {
        let v = self.manifest.engine(role).variants.get(variant)?;
        Some(self.dir.join(&v.file))
    }

    /// Whether the image encoder, where a frame's time goes, has `variant`
    /// (the decoder may have one too; without, it runs its fp32 file).
    pub fn has_variant(&self, variant: &str) -> bool {
        self.variant_path(EngineRole::ImageEncoder, variant)
            .is_some()
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.text.tokenizer)
    }

    fn check_files(&self) -> Result<()> {
        for role in EngineRole::ALL {
            require_file(
                &self.engine_path(role),
                format!("engine `{}` is missing from the bundle", role.key()),
            )?;
            for (name, v) in &self.manifest.engine(role).variants {
                require_file(
                    &self.dir.join(&v.file),
                    format!(
                        "the {name} variant of engine `{}` is missing from the bundle \
                         (bundle.toml names it); run engines/quantize_bundle.py again or \
                         remove its [engines.{}.variants.{name}] table",
                        role.key(),
                        role.key()
                    ),
                )?;
            }
        }
        for (key, _, _) in TRACKER_ENGINES {
            if let Some(spec) = self.manifest.engines.tracker(key) {
                require_file(
                    &self.dir.join(&spec.file),
                    format!(
                        "tracker engine `{key}` is missing from the bundle (bundle.toml names it)"
                    ),
                )?;
            }
        }
        require_file(
            &self.tokenizer_path(),
            "tokenizer file is missing from the bundle",
        )?;
        Ok(())
    }
}

/// An error naming `path` with `message` unless it is a file.
fn require_file(path: &Path, message: impl Into<String>) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(Error::bundle_file(path, message))
    }
}

/// The variant name of the static QDQ int8 files (OpenVINO).
pub const INT8_STATIC: &str = "int8";
/// The variant name of the dynamically quantised int8 files (ONNX Runtime's
/// CPU provider).
pub const INT8_DYNAMIC: &str = "int8_dynamic";

/// The precisions an engine file may have besides fp32 (which one runs is
/// chosen in model/precision.rs).
pub const KNOWN_VARIANTS: &[&str] = &[INT8_STATIC, INT8_DYNAMIC];

/// Parses and validates a manifest; the error is a message about `bundle.toml`.
pub fn parse_manifest(text: &str) -> std::result::Result<Manifest, String> {
    let mut manifest: Manifest =
        toml::from_str(text).map_err(|e| format!("is not a valid bundle manifest: {e}"))?;
    validate(&manifest)?;
    for role in EngineRole::ALL {
        let sized = manifest.sized_dims(role);
        match role {
            EngineRole::TextEncoder => manifest.engines.text_encoder.sized = sized,
            EngineRole::ImageEncoder => manifest.engines.image_encoder.sized = sized,
            EngineRole::Decoder => manifest.engines.decoder.sized = sized,
        }
    }
    Ok(manifest)
}

/// `value` within `1..=max`, else an error naming the field, the bound and the value.
fn in_range(field: &str, value: usize, max: usize) -> std::result::Result<(), String> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{field} = {value} is out of range: it must be 1 to {max}; re-export the bundle or correct bundle.toml"
        ))
    }
}

/// A file the manifest names must lie inside the bundle directory: a plain
/// relative path, no root, no `..`.
fn check_file_name(field: &str, name: &str) -> std::result::Result<(), String> {
    use std::path::Component;
    let path = Path::new(name);
    let inside = !name.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)));
    if inside {
        Ok(())
    } else {
        Err(format!(
            "{field} = {name:?} is refused: files must be named relative to the bundle directory, \
             without a leading `/` or `..` (for example \"decoder.onnx\")"
        ))
    }
}

/// The manifest's numbers against the tensor shapes it declares.
fn check_declared_sizes(m: &Manifest, role: EngineRole) -> std::result::Result<(), String> {
    let spec = m.engine(role);
    for s in m.sized_dims(role) {
        let t = if s.input {
            spec.input(s.tensor)
        } else {
            spec.output(s.tensor)
        };
        // Required tensors are checked before this; others may be absent.
        let Some(t) = t else { continue };
        if t.shape.get(s.dim) != Some(&Dim::Fixed(s.value)) {
            return Err(format!(
                "engines.{}: {} `{}` is declared with shape {}, but {} = {} requires {} at dimension {}",
                role.key(),
                s.side(),
                s.tensor,
                t.shape_string(),
                s.field,
                s.value,
                s.value,
                s.dim
            ));
        }
    }
    Ok(())
}

/// A score threshold of the manifest: a number in 0-1.
fn check_bundle_threshold(name: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "{name} = {v} must be a number in 0-1 (a score threshold); re-export or edit bundle.toml"
        ))
    }
}

fn validate(m: &Manifest) -> std::result::Result<(), String> {
    if m.bundle.family != FAMILY {
        return Err(format!(
            "bundle family is `{}`, but samclipseg runs `{FAMILY}` bundles only",
            m.bundle.family
        ));
    }
    if m.bundle.format_version != FORMAT_VERSION {
        return Err(format!(
            "bundle format version {} is not supported (this build reads version {FORMAT_VERSION}); re-export the bundle",
            m.bundle.format_version
        ));
    }
    let p = &m.preprocess;
    in_range(
        "preprocess.image_size",
        p.image_size as usize,
        MAX_IMAGE_SIZE as usize,
    )?;
    if p.image_std.iter().any(|s| *s <= 0.0 || !s.is_finite()) || !p.rescale_factor.is_finite() {
        return Err("preprocess.image_std must be positive and rescale_factor finite".into());
    }
    if p.resample != "bilinear" {
        return Err(format!(
            "preprocess.resample `{}` is not supported (only `bilinear`)",
            p.resample
        ));
    }
    if m.text.context_length < 2 {
        return Err(format!(
            "text.context_length = {} is too small: a prompt needs at least its start and end tokens",
            m.text.context_length
        ));
    }
    in_range(
        "text.context_length",
        m.text.context_length,
        MAX_CONTEXT_LENGTH,
    )?;
    check_bundle_threshold("decoder.default_threshold", m.decoder.default_threshold)?;
    check_bundle_threshold("decoder.mask_threshold", m.decoder.mask_threshold)?;
    in_range("decoder.num_queries", m.decoder.num_queries, MAX_QUERIES)?;
    in_range("decoder.mask_size", m.decoder.mask_size, MAX_MASK_SIZE)?;
    // Both within their bounds, so the product cannot overflow.
    let per_phrase = m.decoder.num_queries * m.decoder.mask_size * m.decoder.mask_size;
    if per_phrase > MAX_MASK_VALUES_PER_PHRASE {
        return Err(format!(
            "decoder.num_queries x decoder.mask_size² = {} x {}² = {per_phrase} mask logits per phrase, \
             more than the {MAX_MASK_VALUES_PER_PHRASE} samclipseg allows",
            m.decoder.num_queries, m.decoder.mask_size
        ));
    }
    check_file_name("text.tokenizer", &m.text.tokenizer)?;
    for role in EngineRole::ALL {
        let spec = m.engine(role);
        check_file_name(&format!("engines.{}.file", role.key()), &spec.file)?;
        for (name, v) in &spec.variants {
            if !KNOWN_VARIANTS.contains(&name.as_str()) {
                return Err(format!(
                    "engines.{}.variants.{name}: unknown precision (known: {})",
                    role.key(),
                    KNOWN_VARIANTS.join(", ")
                ));
            }
            check_file_name(
                &format!("engines.{}.variants.{name}.file", role.key()),
                &v.file,
            )?;
        }
        let (ins, outs) = role.required_tensors();
        for name in ins {
            if spec.input(name).is_none() {
                return Err(format!(
                    "engines.{}: required input tensor `{name}` is not declared (declared: {})",
                    role.key(),
                    names(&spec.inputs)
                ));
            }
        }
        for name in outs {
            if spec.output(name).is_none() {
                return Err(format!(
                    "engines.{}: required output tensor `{name}` is not declared (declared: {})",
                    role.key(),
                    names(&spec.outputs)
                ));
            }
        }
        for t in spec.inputs.iter().chain(&spec.outputs) {
            if !matches!(
                t.dtype.as_str(),
                "float32" | "int64" | "float16" | "bool" | "int32"
            ) {
                return Err(format!(
                    "engines.{}: tensor `{}` has unknown dtype `{}`",
                    role.key(),
                    t.name,
                    t.dtype
                ));
            }
        }
        check_declared_sizes(m, role)?;
    }
    validate_tracker(m)
}

/// Upper bounds on `[tracker]`'s counts (SAM 3: 7 memory frames, 4 conditioning
/// frames, 16 pointers; `max_num_objects` 10,000 means "no limit" there).
const MAX_TRACKER_MEMORY: usize = 64;
const MAX_TRACKER_OBJECTS: usize = 10_000;

/// The tracker is all or nothing: `[tracker]` with its four engines (each with
/// the tensors the loop uses) and the image encoder's tracker outputs, or none.
fn validate_tracker(m: &Manifest) -> std::result::Result<(), String> {
    let declared: Vec<&str> = TRACKER_ENGINES
        .iter()
        .filter(|(k, _, _)| m.engines.tracker(k).is_some())
        .map(|(k, _, _)| *k)
        .collect();
    let Some(t) = &m.tracker else {
        if let Some(k) = declared.first() {
            return Err(format!(
                "engines.{k} is declared but the [tracker] table is missing; re-export with \
                 `export_sam3.py --tracker` or remove the tracker engines"
            ));
        }
        return Ok(());
    };
    for (key, ins, outs) in TRACKER_ENGINES {
        let Some(spec) = m.engines.tracker(key) else {
            return Err(format!(
                "[tracker] is present but engines.{key} is not declared (a tracker needs all of {})",
                TRACKER_ENGINES.map(|(k, _, _)| k).join(", ")
            ));
        };
        check_file_name(&format!("engines.{key}.file"), &spec.file)?;
        for (side, want, have) in [
            ("input", ins, &spec.inputs),
            ("output", outs, &spec.outputs),
        ] {
            for name in want {
                if !have.iter().any(|t| t.name == *name) {
                    return Err(format!(
                        "engines.{key}: required {side} tensor `{name}` is not declared (declared: {})",
                        names(have)
                    ));
                }
            }
        }
    }
    for name in TRACKER_IMAGE_OUTPUTS {
        if m.engines.image_encoder.output(name).is_none() {
            return Err(format!(
                "[tracker] is present but engines.image_encoder does not declare output `{name}` \
                 (the tracker's features); re-export with `export_sam3.py --tracker`"
            ));
        }
    }
    in_range("tracker.num_maskmem", t.num_maskmem, MAX_TRACKER_MEMORY)?;
    in_range(
        "tracker.max_cond_frame_num",
        t.max_cond_frame_num,
        MAX_TRACKER_MEMORY,
    )?;
    in_range(
        "tracker.max_object_pointers",
        t.max_object_pointers,
        MAX_TRACKER_MEMORY,
    )?;
    in_range(
        "tracker.max_num_objects",
        t.max_num_objects,
        MAX_TRACKER_OBJECTS,
    )?;
    in_range("tracker.feature_size", t.feature_size, MAX_MASK_SIZE)?;
    in_range("tracker.mask_size", t.mask_size, MAX_MASK_SIZE)?;
    for (name, v) in [
        (
            "tracker.score_threshold_detection",
            t.score_threshold_detection,
        ),
        ("tracker.det_nms_thresh", t.det_nms_thresh),
        ("tracker.assoc_iou_thresh", t.assoc_iou_thresh),
        ("tracker.trk_assoc_iou_thresh", t.trk_assoc_iou_thresh),
        ("tracker.new_det_thresh", t.new_det_thresh),
        ("tracker.high_iou_thresh", t.high_iou_thresh),
        (
            "tracker.suppress_overlapping_based_on_recent_occlusion_threshold",
            t.suppress_overlapping_based_on_recent_occlusion_threshold,
        ),
    ] {
        check_bundle_threshold(name, v)?;
    }
    Ok(())
}

fn names(ts: &[TensorSpec]) -> String {
    ts.iter()
        .map(|t| format!("`{}`", t.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_threshold_outside_0_1_or_nan_is_refused() {
        assert!(check_bundle_threshold("decoder.default_threshold", 0.35).is_ok());
        for bad in [1.7, -0.2, f32::NAN, f32::INFINITY] {
            let e = check_bundle_threshold("decoder.default_threshold", bad).unwrap_err();
            assert!(e.contains("decoder.default_threshold"), "{e}");
        }
    }

    const GOOD: &str = r#"
[bundle]
format_version = 1
family = "sam3"
name = "t"
[preprocess]
image_size = 112
rescale_factor = 0.00392156862745098
image_mean = [0.5, 0.5, 0.5]
image_std = [0.5, 0.5, 0.5]
[text]
tokenizer = "tokenizer.json"
context_length = 32
pad_token_id = 49407
[decoder]
num_queries = 20
mask_size = 28
default_threshold = 0.5
mask_threshold = 0.5
[engines.text_encoder]
file = "text_encoder.onnx"
inputs = [{ name = "input_ids", dtype = "int64", shape = ["batch", 32] },
          { name = "attention_mask", dtype = "int64", shape = ["batch", 32] }]
outputs = [{ name = "text_features", dtype = "float32", shape = ["batch", 32, 32] }]
[engines.image_encoder]
file = "image_encoder.onnx"
inputs = [{ name = "pixel_values", dtype = "float32", shape = [1, 3, 112, 112] }]
outputs = [{ name = "fpn_feat_0", dtype = "float32", shape = [1, 32, 32, 32] },
           { name = "fpn_feat_1", dtype = "float32", shape = [1, 32, 16, 16] },
           { name = "fpn_feat_2", dtype = "float32", shape = [1, 32, 8, 8] },
           { name = "fpn_pos_2", dtype = "float32", shape = [1, 32, 8, 8] }]
[engines.decoder]
file = "decoder.onnx"
inputs = [{ name = "fpn_feat_0", dtype = "float32", shape = [1, 32, 32, 32] },
          { name = "fpn_feat_1", dtype = "float32", shape = [1, 32, 16, 16] },
          { name = "fpn_feat_2", dtype = "float32", shape = [1, 32, 8, 8] },
          { name = "fpn_pos_2", dtype = "float32", shape = [1, 32, 8, 8] },
          { name = "text_features", dtype = "float32", shape = ["batch", 32, 32] },
          { name = "attention_mask", dtype = "int64", shape = ["batch", 32] }]
outputs = [{ name = "pred_logits", dtype = "float32", shape = ["batch", 20] },
           { name = "pred_boxes", dtype = "float32", shape = ["batch", 20, 4] },
           { name = "pred_masks", dtype = "float32", shape = ["batch", 20, 28, 28] },
           { name = "presence_logits", dtype = "float32", shape = ["batch", 1] }]
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = parse_manifest(GOOD).unwrap();
        assert_eq!(m.preprocess.image_size, 112);
        assert_eq!(
            m.engines.text_encoder.inputs[0].shape[0],
            Dim::Symbolic("batch".into())
        );
        assert_eq!(
            m.engines
                .decoder
                .output("pred_masks")
                .unwrap()
                .shape_string(),
            "[batch, 20, 28, 28]"
        );
    }

    #[test]
    fn refuses_another_family() {
        let err =
            parse_manifest(&GOOD.replace("family = \"sam3\"", "family = \"yolox\"")).unwrap_err();
        assert!(err.contains("`yolox`") && err.contains("sam3"), "{err}");
    }

    #[test]
    fn refuses_a_missing_required_tensor() {
        let err = parse_manifest(&GOOD.replace("\"pred_boxes\"", "\"boxes\"")).unwrap_err();
        assert!(
            err.contains("engines.decoder") && err.contains("`pred_boxes`"),
            "{err}"
        );
    }

    #[test]
    fn refuses_text_that_is_not_toml() {
        let err = parse_manifest("this is [not toml").unwrap_err();
        assert!(err.contains("not a valid bundle manifest"), "{err}");
    }

    #[test]
    fn numbers_that_size_allocations_are_bounded() {
        for (from, to, field, bound) in [
            (
                "context_length = 32",
                "context_length = 1000000000000",
                "text.context_length",
                "512",
            ),
            (
                "image_size = 112",
                "image_size = 100000",
                "preprocess.image_size",
                "4096",
            ),
            (
                "image_size = 112",
                "image_size = 0",
                "preprocess.image_size",
                "4096",
            ),
            (
                "num_queries = 20",
                "num_queries = 5000",
                "decoder.num_queries",
                "1024",
            ),
            (
                "mask_size = 28",
                "mask_size = 4096",
                "decoder.mask_size",
                "1024",
            ),
        ] {
            let err = parse_manifest(&GOOD.replace(from, to)).unwrap_err();
            let value = to.rsplit(' ').next().unwrap();
            assert!(
                err.contains(field) && err.contains(bound) && err.contains(value),
                "{to}: {err}"
            );
        }
        // Each within its bound, their product not.
        let err = parse_manifest(
            &GOOD
                .replace("num_queries = 20", "num_queries = 1000")
                .replace("mask_size = 28", "mask_size = 1000"),
        )
        .unwrap_err();
        assert!(
            err.contains("decoder.num_queries x decoder.mask_size") && err.contains("1000000000"),
            "{err}"
        );
    }

    #[test]
    fn numbers_must_agree_with_the_declared_shapes() {
        let err = parse_manifest(&GOOD.replace("context_length = 32", "context_length = 48"))
            .unwrap_err();
        assert!(
            err.contains("engines.text_encoder")
                && err.contains("`input_ids`")
                && err.contains("[batch, 32]")
                && err.contains("text.context_length = 48"),
            "{err}"
        );
        let err =
            parse_manifest(&GOOD.replace("num_queries = 20", "num_queries = 21")).unwrap_err();
        assert!(
            err.contains("engines.decoder")
                && err.contains("`pred_logits`")
                && err.contains("decoder.num_queries = 21"),
            "{err}"
        );
        let err = parse_manifest(&GOOD.replace("mask_size = 28", "mask_size = 14")).unwrap_err();
        assert!(
            err.contains("`pred_masks`") && err.contains("[batch, 20, 28, 28]"),
            "{err}"
        );
        let err =
            parse_manifest(&GOOD.replace("image_size = 112", "image_size = 224")).unwrap_err();
        assert!(
            err.contains("`pixel_values`") && err.contains("preprocess.image_size = 224"),
            "{err}"
        );
    }

    #[test]
    fn the_checked_dimensions_travel_with_the_engine_specs() {
        let m = parse_manifest(GOOD).unwrap();
        let masks: Vec<(usize, i64)> = m
            .engines
            .decoder
            .sized
            .iter()
            .filter(|s| s.tensor == "pred_masks")
            .map(|s| (s.dim, s.value))
            .collect();
        assert_eq!(masks, [(1, 20), (2, 28), (3, 28)]);
        assert_eq!(m.engines.text_encoder.sized.len(), 3);
        assert!(m.engines.image_encoder.sized.iter().all(|s| s.value == 112));
    }

    #[test]
    fn file_names_outside_the_bundle_are_refused() {
        for bad in [
            "../decoder.onnx",
            "/etc/passwd",
            "sub/../../decoder.onnx",
            "",
            ".",
        ] {
            let text = GOOD.replace("file = \"decoder.onnx\"", &format!("file = {bad:?}"));
            let err = parse_manifest(&text).unwrap_err();
            assert!(
                err.contains("engines.decoder.file") && err.contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
        let err = parse_manifest(&GOOD.replace(
            "tokenizer = \"tokenizer.json\"",
            "tokenizer = \"../../tokenizer.json\"",
        ))
        .unwrap_err();
        assert!(err.contains("text.tokenizer"), "{err}");
        let ok = GOOD.replace("file = \"decoder.onnx\"", "file = \"engines/decoder.onnx\"");
        assert!(parse_manifest(&ok).is_ok());
    }

    #[test]
    fn missing_directory_names_the_path_and_the_fix() {
        let err = Bundle::open("/nonexistent/sam3-bundle")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/sam3-bundle") && err.contains("export_sam3.py"),
            "{err}"
        );
    }

    /// The committed tiny video bundle (engines/make_tiny_sam3_video.py): its
    /// manifest loads with the tracker recorded, and its engine files exist.
    #[test]
    fn the_tiny_video_bundle_loads_with_its_tracker() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny-sam3-video"
        );
        let b = Bundle::open(dir).unwrap();
        let m = &b.manifest;
        assert!(m.has_tracker());
        let t = m.tracker.as_ref().unwrap();
        assert_eq!(
            (t.num_maskmem, t.max_cond_frame_num, t.max_object_pointers),
            (7, 4, 16)
        );
        assert_eq!((t.feature_size, t.mask_size, t.memory_dim), (8, 32, 64));
        assert_eq!(t.max_num_objects, 4);
        for name in TRACKER_IMAGE_OUTPUTS {
            assert!(m.engines.image_encoder.output(name).is_some(), "{name}");
        }
        let att = m.engines.tracker("tracker_memory_attention").unwrap();
        assert_eq!(
            att.input("memory").unwrap().shape_string(),
            format!("[objects, memory_frames, 64, 8, 8]")
        );
        assert_eq!(
            att.input("object_pointers").unwrap().shape_string(),
            format!("[objects, pointers, {}]", t.hidden_size)
        );
        for (key, _, _) in TRACKER_ENGINES {
            let spec = m.engines.tracker(key).unwrap();
            assert!(b.dir.join(&spec.file).is_file(), "{key}");
        }
    }

    #[test]
    fn a_bundle_without_tracker_has_none() {
        let m = parse_manifest(GOOD).unwrap();
        assert!(!m.has_tracker());
        assert!(m.engines.tracker("tracker_mask_decoder").is_none());
    }

    #[test]
    fn the_tracker_is_all_or_nothing() {
        let engine = r#"
[engines.tracker_mask_decoder]
file = "tracker_mask_decoder.onnx"
inputs = [{ name = "conditioned_feat", dtype = "float32", shape = ["objects", 128, 8, 8] },
          { name = "tracker_feat_0", dtype = "float32", shape = [1, 16, 32, 32] },
          { name = "tracker_feat_1", dtype = "float32", shape = [1, 32, 16, 16] }]
outputs = [{ name = "mask_logits", dtype = "float32", shape = ["objects", 1, 32, 32] },
           { name = "high_res_mask_logits", dtype = "float32", shape = ["objects", 1, 112, 112] },
           { name = "object_pointer", dtype = "float32", shape = ["objects", 128] },
           { name = "object_score_logits", dtype = "float32", shape = ["objects", 1] }]
"#;
        let err = parse_manifest(&format!("{GOOD}{engine}")).unwrap_err();
        assert!(
            err.contains("engines.tracker_mask_decoder") && err.contains("[tracker]"),
            "{err}"
        );
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny-sam3-video"
        );
        let text = std::fs::read_to_string(format!("{dir}/bundle.toml")).unwrap();
        let start = text.find("[engines.tracker_mask_prompt]").unwrap();
        let end = text[start..]
            .find("\n[engines.tracker_memory_encoder]")
            .unwrap()
            + start;
        let without = format!("{}{}", &text[..start], &text[end..]);
        let err = parse_manifest(&without).unwrap_err();
        assert!(err.contains("engines.tracker_mask_prompt"), "{err}");
        let err =
            parse_manifest(&text.replace("num_maskmem = 7", "num_maskmem = 100000")).unwrap_err();
        assert!(err.contains("tracker.num_maskmem"), "{err}");
        let err = parse_manifest(&text.replace("\"memory_offset\"", "\"offsets\"")).unwrap_err();
        assert!(
            err.contains("engines.tracker_memory_attention") && err.contains("`memory_offset`"),
            "{err}"
        );
    }
}
