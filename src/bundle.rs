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

#[derive(Debug, Clone, Deserialize)]
pub struct EngineSpec {
    pub file: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
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
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub bundle: BundleInfo,
    pub preprocess: PreprocessSpec,
    pub text: TextSpec,
    pub decoder: DecoderSpec,
    pub engines: Engines,
}

impl Manifest {
    pub fn engine(&self, role: EngineRole) -> &EngineSpec {
        match role {
            EngineRole::TextEncoder => &self.engines.text_encoder,
            EngineRole::ImageEncoder => &self.engines.image_encoder,
            EngineRole::Decoder => &self.engines.decoder,
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

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.text.tokenizer)
    }

    fn check_files(&self) -> Result<()> {
        for role in EngineRole::ALL {
            let path = self.engine_path(role);
            if !path.is_file() {
                return Err(Error::bundle_file(
                    &path,
                    format!("engine `{}` is missing from the bundle", role.key()),
                ));
            }
        }
        let tok = self.tokenizer_path();
        if !tok.is_file() {
            return Err(Error::bundle_file(
                &tok,
                "tokenizer file is missing from the bundle",
            ));
        }
        Ok(())
    }
}

/// Parses and validates a manifest; the error is a message about `bundle.toml`.
pub fn parse_manifest(text: &str) -> std::result::Result<Manifest, String> {
    let manifest: Manifest =
        toml::from_str(text).map_err(|e| format!("is not a valid bundle manifest: {e}"))?;
    validate(&manifest)?;
    Ok(manifest)
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
    if p.image_size == 0 || p.image_size > 8192 {
        return Err(format!(
            "preprocess.image_size {} is out of range 1..=8192",
            p.image_size
        ));
    }
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
            "text.context_length {} is too small",
            m.text.context_length
        ));
    }
    if m.decoder.num_queries == 0 || m.decoder.mask_size == 0 {
        return Err("decoder.num_queries and decoder.mask_size must be positive".into());
    }
    for role in EngineRole::ALL {
        let spec = m.engine(role);
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
    fn missing_directory_names_the_path_and_the_fix() {
        let err = Bundle::open("/nonexistent/sam3-bundle")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/sam3-bundle") && err.contains("export_sam3.py"),
            "{err}"
        );
    }
}
