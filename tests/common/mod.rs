//! Shared helpers for the integration tests: the tiny bundle and its golden files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use samclipseg::model::tensor::Tensor;

pub fn tiny_bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sam3")
}

/// A private copy of the tiny bundle's files (not its sub-folders) that a
/// test may edit or damage, under the test target's temporary directory.
pub fn tiny_bundle_copy(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bundle-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(tiny_bundle()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[derive(Debug, serde::Deserialize)]
pub struct Case {
    pub case: String,
    pub image: String,
    pub prompts: Vec<String>,
    pub threshold: f32,
    pub image_width: usize,
    pub image_height: usize,
}

pub fn cases() -> Vec<Case> {
    let path = tiny_bundle().join("golden/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub struct Golden {
    bytes: Vec<u8>,
    path: PathBuf,
}

impl Golden {
    pub fn open(case: &str) -> Golden {
        let path = tiny_bundle().join(format!("golden/{case}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Golden { bytes, path }
    }

    fn view(&self, name: &str) -> (Vec<usize>, safetensors::Dtype, Vec<u8>) {
        let st =
            safetensors::SafeTensors::deserialize(&self.bytes).expect("golden safetensors parse");
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{}: tensor {name}: {e}", self.path.display()));
        (t.shape().to_vec(), t.dtype(), t.data().to_vec())
    }

    pub fn f32(&self, name: &str) -> Tensor<f32> {
        let (shape, dtype, data) = self.view(name);
        assert_eq!(dtype, safetensors::Dtype::F32, "{name}");
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Tensor::new(shape, v)
    }

    pub fn i64(&self, name: &str) -> Tensor<i64> {
        let (shape, dtype, data) = self.view(name);
        assert_eq!(dtype, safetensors::Dtype::I64, "{name}");
        let v = data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Tensor::new(shape, v)
    }

    /// Integer masks of any width, as 0/1 bytes.
    pub fn mask(&self, name: &str) -> Tensor<u8> {
        let (shape, dtype, data) = self.view(name);
        let width = match dtype {
            safetensors::Dtype::U8 | safetensors::Dtype::BOOL => 1,
            safetensors::Dtype::I64 => 8,
            other => panic!("{name}: unexpected mask dtype {other:?}"),
        };
        let v = data
            .chunks_exact(width)
            .map(|c| u8::from(c.iter().any(|b| *b != 0)))
            .collect();
        Tensor::new(shape, v)
    }
}

/// Largest |a - b| and whether every element is within `atol + rtol * |b|`.
pub fn compare(name: &str, ours: &[f32], reference: &[f32], atol: f32, rtol: f32) -> f32 {
    assert_eq!(ours.len(), reference.len(), "{name}: length");
    let mut worst = 0f32;
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let d = (a - b).abs();
        assert!(
            d <= atol + rtol * b.abs(),
            "{name}[{i}]: ours {a}, reference {b} (diff {d})"
        );
        worst = worst.max(d);
    }
    worst
}

pub fn load_rgb(path: &Path) -> (Vec<u8>, usize, usize) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    (img.into_raw(), w, h)
}

/// Every engine of `m` against the golden outputs of every case: the text
/// features, the image features and the decoder's outputs, each element
/// within `atol + rtol * |reference|`. `label` prefixes what is printed.
pub fn assert_engines_match_goldens(m: &samclipseg::Sam3Model, atol: f32, rtol: f32, label: &str) {
    for case in cases() {
        let g = Golden::open(&case.case);
        let prompts: Vec<&str> = case.prompts.iter().map(String::as_str).collect();

        let texts = m.encode_texts(&prompts).unwrap();
        let reference = g.f32("text_features");
        for (p, t) in texts.iter().enumerate() {
            compare(
                "text_features",
                &t.to_host().unwrap().data,
                reference.item(p),
                atol,
                rtol,
            );
        }

        let image = m
            .encode_pixels(
                &g.f32("pixel_values"),
                (case.image_width, case.image_height),
            )
            .unwrap();
        for (name, ours) in ["fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2"]
            .iter()
            .zip(&image.to_host().unwrap())
        {
            let reference = g.f32(name);
            // The golden features may be stored per prompt (repeated); compare the first.
            assert_eq!(ours.shape[1..], reference.shape[1..], "{name} shape");
            let worst = compare(name, &ours.data, reference.item(0), atol, rtol);
            println!("{}: {label}{name} max diff {worst}", case.case);
        }

        let out = m.decode(&image, &texts).unwrap();
        let pairs: [(&str, &samclipseg::model::tensor::TensorF32); 4] = [
            ("pred_logits", &out.pred_logits),
            ("pred_boxes", &out.pred_boxes),
            ("pred_masks", &out.pred_masks),
            ("presence_logits", &out.presence_logits),
        ];
        for (name, ours) in pairs {
            let reference = g.f32(name);
            assert_eq!(ours.shape, reference.shape, "{name} shape");
            let worst = compare(name, &ours.data, &reference.data, atol, rtol);
            println!("{}: {label}{name} max diff {worst}", case.case);
        }
    }
}
