//! The models and tensors a bundle expects on the server, derived from its
//! `bundle.toml` exactly as `engines/triton_repo.py` writes them, and the
//! checks of what the server reports and returns against them.

use super::proto;
use super::proto::model_infer_response::InferOutputTensor;
use crate::model::bundle::{Dim, Manifest};
use crate::model::tensor::{TensorF32, TensorI64};

pub const TEXT_ENCODER: &str = "text_encoder";
pub const SEGMENT: &str = "segment";
pub const SEGMENT_OUTPUTS: [&str; 5] = [
    "pred_logits",
    "pred_boxes",
    "presence_logits",
    "kept_index",
    "kept_masks",
];

/// One tensor: -1 marks a dimension that varies (a batch).
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelContract {
    pub name: String,
    pub inputs: Vec<Expected>,
    pub outputs: Vec<Expected>,
}

fn t(name: &'static str, datatype: &'static str, shape: &[i64]) -> Expected {
    Expected {
        name,
        datatype,
        shape: shape.to_vec(),
    }
}

/// The text encoder's and the segment ensemble's contracts, named with `prefix`.
pub fn contracts(m: &Manifest, prefix: &str) -> [ModelContract; 2] {
    let ctx = m.text.context_length as i64;
    let dim = m
        .engines
        .text_encoder
        .output("text_features")
        .and_then(|s| match s.shape.last() {
            Some(Dim::Fixed(d)) => Some(*d),
            _ => None,
        })
        .unwrap_or(-1);
    let s = m.preprocess.image_size as i64;
    let q = m.decoder.num_queries as i64;
    let h = m.decoder.mask_size as i64;
    [
        ModelContract {
            name: format!("{prefix}-{TEXT_ENCODER}"),
            inputs: vec![
                t("input_ids", "INT64", &[-1, ctx]),
                t("attention_mask", "INT64", &[-1, ctx]),
            ],
            outputs: vec![t("text_features", "FP32", &[-1, ctx, dim])],
        },
        ModelContract {
            name: format!("{prefix}-{SEGMENT}"),
            inputs: vec![
                t("pixels", "UINT8", &[1, 3, s, s]),
                t("text_features", "FP32", &[-1, ctx, dim]),
                t("attention_mask", "INT64", &[-1, ctx]),
                t("score_threshold", "FP32", &[1]),
            ],
            outputs: vec![
                t("pred_logits", "FP32", &[-1, q]),
                t("pred_boxes", "FP32", &[-1, q, 4]),
                t("presence_logits", "FP32", &[-1, 1]),
                t("kept_index", "INT64", &[-1, 2]),
                t("kept_masks", "FP16", &[-1, h, h]),
            ],
        },
    ]
}

fn shape_string(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| {
            if *d < 0 {
                "-1".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

impl ModelContract {
    /// The server's metadata against the contract: every tensor present with
    /// our datatype and a shape that takes ours (a server -1 takes any size;
    /// where we vary a dimension, the server must too).
    pub fn check(&self, metadata: &proto::ModelMetadataResponse) -> Result<(), String> {
        let sides = [
            ("input", &self.inputs, &metadata.inputs),
            ("output", &self.outputs, &metadata.outputs),
        ];
        for (side, expected, found) in sides {
            for e in expected {
                let Some(f) = found.iter().find(|f| f.name == e.name) else {
                    let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
                    return Err(format!(
                        "model `{}` has no {side} `{}` (it has {names:?}); the repository was written for another bundle or by an older triton_repo.py",
                        self.name, e.name
                    ));
                };
                let fits = f.shape.len() == e.shape.len()
                    && f.shape
                        .iter()
                        .zip(&e.shape)
                        .all(|(got, want)| *got == -1 || (*want != -1 && got == want));
                if f.datatype != e.datatype || !fits {
                    return Err(format!(
                        "model `{}` {side} `{}`: expected {} {}, found {} {}; the repository does not match this bundle: write it again with engines/triton_repo.py",
                        self.name,
                        e.name,
                        e.datatype,
                        shape_string(&e.shape),
                        f.datatype,
                        shape_string(&f.shape)
                    ));
                }
            }
        }
        Ok(())
    }

    fn expected_output(&self, name: &str) -> Option<&Expected> {
        self.outputs.iter().find(|e| e.name == name)
    }

    /// An output's shape, checked against the contract and its byte length.
    fn output_shape(
        &self,
        t: &InferOutputTensor,
        raw: &[u8],
        item: usize,
    ) -> crate::error::Result<Vec<usize>> {
        let bad = |message: String| {
            crate::error::Error::InvalidInput(format!(
                "model `{}` output `{}`: {message}",
                self.name, t.name
            ))
        };
        if let Some(e) = self.expected_output(&t.name) {
            if t.datatype != e.datatype {
                return Err(bad(format!(
                    "expected {}, found {}",
                    e.datatype, t.datatype
                )));
            }
            let fits = t.shape.len() == e.shape.len()
                && t.shape
                    .iter()
                    .zip(&e.shape)
                    .all(|(g, w)| *w == -1 || g == w);
            if !fits {
                return Err(bad(format!(
                    "expected shape {}, found {}",
                    shape_string(&e.shape),
                    shape_string(&t.shape)
                )));
            }
        }
        if t.shape.iter().any(|d| *d < 0) {
            return Err(bad(format!(
                "negative dimension in {}",
                shape_string(&t.shape)
            )));
        }
        let shape: Vec<usize> = t.shape.iter().map(|d| *d as usize).collect();
        let want = shape.iter().product::<usize>() * item;
        if raw.len() != want {
            return Err(bad(format!(
                "shape {} needs {want} bytes, the server sent {}",
                shape_string(&t.shape),
                raw.len()
            )));
        }
        Ok(shape)
    }

    /// A float output (FP32, or FP16 widened) as a host tensor.
    pub fn tensor_f32(&self, t: &InferOutputTensor, raw: &[u8]) -> crate::error::Result<TensorF32> {
        let data: Vec<f32> = if t.datatype == "FP16" {
            self.output_shape(t, raw, 2)?;
            raw.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        } else {
            self.output_shape(t, raw, 4)?;
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let shape = t.shape.iter().map(|d| *d as usize).collect();
        Ok(TensorF32::new(shape, data))
    }

    pub fn tensor_i64(&self, t: &InferOutputTensor, raw: &[u8]) -> crate::error::Result<TensorI64> {
        let shape = self.output_shape(t, raw, 8)?;
        let data = raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect();
        Ok(TensorI64::new(shape, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(
        inputs: &[(&str, &str, &[i64])],
        outputs: &[(&str, &str, &[i64])],
    ) -> proto::ModelMetadataResponse {
        let conv = |v: &[(&str, &str, &[i64])]| {
            v.iter()
                .map(|(n, d, s)| proto::model_metadata_response::TensorMetadata {
                    name: n.to_string(),
                    datatype: d.to_string(),
                    shape: s.to_vec(),
                })
                .collect()
        };
        proto::ModelMetadataResponse {
            name: "m".into(),
            versions: vec![],
            platform: "ensemble".into(),
            inputs: conv(inputs),
            outputs: conv(outputs),
        }
    }

    fn contract() -> ModelContract {
        ModelContract {
            name: "b-text_encoder".into(),
            inputs: vec![t("input_ids", "INT64", &[-1, 32])],
            outputs: vec![t("text_features", "FP32", &[-1, 32, 256])],
        }
    }

    #[test]
    fn a_matching_model_passes_and_a_server_wildcard_takes_a_fixed_size() {
        let c = contract();
        let m = meta(
            &[("input_ids", "INT64", &[-1, -1])],
            &[("text_features", "FP32", &[-1, 32, 256])],
        );
        assert_eq!(c.check(&m), Ok(()));
    }

    #[test]
    fn a_wrong_shape_names_model_tensor_expected_and_found() {
        let c = contract();
        let m = meta(
            &[("input_ids", "INT64", &[-1, 32])],
            &[("text_features", "FP32", &[-1, 32, 512])],
        );
        let e = c.check(&m).unwrap_err();
        assert!(
            e.contains("`b-text_encoder`") && e.contains("`text_features`"),
            "{e}"
        );
        assert!(
            e.contains("FP32 [-1, 32, 256]") && e.contains("FP32 [-1, 32, 512]"),
            "{e}"
        );
    }

    #[test]
    fn a_fixed_server_batch_cannot_take_our_varying_one() {
        let c = contract();
        let m = meta(
            &[("input_ids", "INT64", &[1, 32])],
            &[("text_features", "FP32", &[-1, 32, 256])],
        );
        assert!(c.check(&m).unwrap_err().contains("found INT64 [1, 32]"));
    }

    #[test]
    fn a_missing_tensor_lists_what_the_model_has() {
        let c = contract();
        let m = meta(
            &[("ids", "INT64", &[-1, 32])],
            &[("text_features", "FP32", &[-1, 32, 256])],
        );
        let e = c.check(&m).unwrap_err();
        assert!(
            e.contains("no input `input_ids`") && e.contains("[\"ids\"]"),
            "{e}"
        );
    }

    #[test]
    fn outputs_are_decoded_and_their_length_checked() {
        let c = contract();
        let out = InferOutputTensor {
            name: "text_features".into(),
            datatype: "FP32".into(),
            shape: vec![1, 32, 256],
            ..Default::default()
        };
        let raw: Vec<u8> = (0..32 * 256)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        let t = c.tensor_f32(&out, &raw).unwrap();
        assert_eq!(t.shape, vec![1, 32, 256]);
        assert_eq!(t.data[5], 5.0);
        assert!(c.tensor_f32(&out, &raw[..raw.len() - 4]).is_err());
        let half = InferOutputTensor {
            name: "kept_masks".into(),
            datatype: "FP16".into(),
            shape: vec![2],
            ..Default::default()
        };
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        assert_eq!(c.tensor_f32(&half, &raw).unwrap().data, vec![1.5, -2.0]);
    }
}
