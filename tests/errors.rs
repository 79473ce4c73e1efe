//! Bad input gets an error that names the problem, never a panic.

mod common;

use std::path::Path;

use common::{tiny_bundle, tiny_bundle_copy};
use samclipseg::image::file::OwnedImage;
use samclipseg::{BackendKind, BackendOptions, Error, Frame, PackedLayout, Sam3Model};

fn load_err(dir: &Path) -> String {
    match Sam3Model::load(dir, &BackendOptions::default()) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_manifest(dir: &Path, from: &str, to: &str) {
    let path = dir.join("bundle.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "bundle.toml has no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn missing_bundle_names_the_path_and_how_to_build_one() {
    let err = load_err(Path::new("/nonexistent/sam3"));
    assert!(err.contains("/nonexistent/sam3"), "{err}");
    assert!(err.contains("export_sam3.py"), "{err}");
}

#[test]
fn missing_engine_file_is_named() {
    let dir = tiny_bundle_copy("missing-file");
    std::fs::remove_file(dir.join("decoder.onnx")).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("decoder.onnx") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn manifest_that_is_not_toml() {
    let dir = tiny_bundle_copy("not-toml");
    std::fs::write(dir.join("bundle.toml"), "[bundle\nfamily = ").unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("bundle.toml") && err.contains("not a valid bundle manifest"),
        "{err}"
    );
}

#[test]
fn another_model_family_is_refused() {
    let dir = tiny_bundle_copy("family");
    edit_manifest(&dir, "family = \"sam3\"", "family = \"owlvit\"");
    let err = load_err(&dir);
    assert!(err.contains("owlvit") && err.contains("sam3"), "{err}");
}

#[test]
fn wrong_tensor_name_names_engine_and_tensor() {
    let dir = tiny_bundle_copy("tensor-name");
    edit_manifest(
        &dir,
        "name = \"semantic_seg\"",
        "name = \"semantic_segmentation\"",
    );
    let err = load_err(&dir);
    assert!(
        err.contains("decoder") && err.contains("`semantic_segmentation`"),
        "{err}"
    );
    assert!(
        err.contains("semantic_seg"),
        "should list what the engine has: {err}"
    );
}

#[test]
fn wrong_tensor_shape_says_expected_and_found() {
    // The channel count: fixed by the engine, not by a manifest number.
    let dir = tiny_bundle_copy("tensor-shape");
    edit_manifest(
        &dir,
        "{ name = \"pixel_values\", dtype = \"float32\", shape = [\"image_batch\", 3, 112, 112] }",
        "{ name = \"pixel_values\", dtype = \"float32\", shape = [\"image_batch\", 4, 112, 112] }",
    );
    let err = load_err(&dir);
    assert!(
        err.contains("image_encoder") && err.contains("pixel_values"),
        "{err}"
    );
    assert!(
        err.contains("[image_batch, 4, 112, 112]") && err.contains("[?, 3, 112, 112]"),
        "{err}"
    );

    // A side that preprocess.image_size fixes: the manifest contradicts itself.
    let dir = tiny_bundle_copy("tensor-size");
    edit_manifest(
        &dir,
        "{ name = \"pixel_values\", dtype = \"float32\", shape = [\"image_batch\", 3, 112, 112] }",
        "{ name = \"pixel_values\", dtype = \"float32\", shape = [\"image_batch\", 3, 224, 224] }",
    );
    let err = load_err(&dir);
    assert!(
        err.contains("engines.image_encoder")
            && err.contains("`pixel_values`")
            && err.contains("[image_batch, 3, 224, 224]")
            && err.contains("preprocess.image_size = 112"),
        "{err}"
    );
}

#[test]
fn huge_sizes_in_the_manifest_are_refused_before_anything_is_allocated() {
    // Before the bound, this aborted the process in the tokenizer's allocation.
    let dir = tiny_bundle_copy("huge-context");
    edit_manifest(
        &dir,
        "context_length = 32",
        "context_length = 4000000000000",
    );
    let err = load_err(&dir);
    assert!(
        err.contains("bundle.toml")
            && err.contains("text.context_length = 4000000000000")
            && err.contains("1 to 512"),
        "{err}"
    );
    let dir = tiny_bundle_copy("huge-masks");
    edit_manifest(&dir, "mask_size = 32", "mask_size = 100000");
    let err = load_err(&dir);
    assert!(
        err.contains("decoder.mask_size = 100000") && err.contains("1 to 1024"),
        "{err}"
    );
}

#[test]
fn manifest_numbers_are_checked_against_the_engines_themselves() {
    // A manifest consistent in itself (context 48 everywhere) that does not
    // describe its engines (context 32).
    let dir = tiny_bundle_copy("context-48");
    let path = dir.join("bundle.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("context_length = 32", "context_length = 48")
        .replace("[\"batch\", 32]", "[\"batch\", 48]")
        .replace("[\"batch\", 32, 32]", "[\"batch\", 48, 32]");
    std::fs::write(&path, text).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("text_encoder.onnx")
            && err.contains("input `input_ids` dimension 1 is 32 in the engine")
            && err.contains("text.context_length is 48"),
        "{err}"
    );
}

#[test]
fn manifest_file_names_outside_the_bundle_are_refused() {
    let dir = tiny_bundle_copy("escape");
    // A real file outside the bundle: refused for where it is, not for missing.
    std::fs::copy(
        dir.join("decoder.onnx"),
        dir.join("../escaped-decoder.onnx"),
    )
    .unwrap();
    edit_manifest(
        &dir,
        "file = \"decoder.onnx\"",
        "file = \"../escaped-decoder.onnx\"",
    );
    let err = load_err(&dir);
    assert!(
        err.contains("bundle.toml")
            && err.contains("engines.decoder.file")
            && err.contains("\"../escaped-decoder.onnx\" is refused"),
        "{err}"
    );
    let dir = tiny_bundle_copy("absolute");
    let absolute = dir.join("tokenizer.json").display().to_string();
    edit_manifest(
        &dir,
        "tokenizer = \"tokenizer.json\"",
        &format!("tokenizer = {absolute:?}"),
    );
    let err = load_err(&dir);
    assert!(
        err.contains("text.tokenizer") && err.contains("is refused"),
        "{err}"
    );
}

#[test]
fn truncated_onnx_is_an_error_naming_the_file() {
    let dir = tiny_bundle_copy("truncated");
    let path = dir.join("image_encoder.onnx");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("image_encoder.onnx") && err.contains("re-export"),
        "{err}"
    );
}

#[test]
fn random_bytes_onnx_is_an_error() {
    let dir = tiny_bundle_copy("random");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("text_encoder.onnx"), noise).unwrap();
    let err = load_err(&dir);
    assert!(err.contains("text_encoder.onnx"), "{err}");
}

#[test]
fn tokenizer_that_does_not_load() {
    let dir = tiny_bundle_copy("tokenizer");
    std::fs::write(dir.join("tokenizer.json"), "{\"not\": \"a tokenizer\"}").unwrap();
    let err = load_err(&dir);
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn gpu_backends_without_a_gpu_runtime_are_a_clear_error_not_a_cpu_fallback() {
    for kind in [BackendKind::Cuda, BackendKind::TensorRt] {
        let err = Sam3Model::load(
            tiny_bundle(),
            &BackendOptions {
                kind,
                intra_threads: 1,
                tensorrt: samclipseg::model::backend::TensorRtOptions {
                    engine_cache_dir: Some(
                        Path::new(env!("CARGO_TARGET_TMPDIR")).join("trt-cache"),
                    ),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .err()
        .expect("this machine's ONNX Runtime has no GPU providers")
        .to_string();
        assert!(err.contains(kind.name()), "{err}");
        assert!(
            err.contains("did not start") && err.contains("onnxruntime-gpu"),
            "{err}"
        );
    }
}

#[test]
fn non_image_and_empty_image_files() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let text = dir.join("not-an-image.png");
    std::fs::write(&text, "hello, I am text").unwrap();
    let err = OwnedImage::open(&text)
        .err()
        .expect("text is not an image")
        .to_string();
    assert!(
        err.contains("not-an-image.png") && err.contains("not a readable image"),
        "{err}"
    );
    let empty = dir.join("empty.png");
    std::fs::write(&empty, []).unwrap();
    assert!(OwnedImage::open(&empty).is_err());
    match Frame::packed(&[], 0, 0, 0, PackedLayout::Rgba) {
        Err(Error::Image(m)) => assert!(m.contains("empty"), "{m}"),
        other => panic!("empty frame accepted: {other:?}"),
    }
}

/// Runs in a child process (below): the ONNX Runtime library loads once per
/// process, so a bad one must be tried in a fresh process.
#[test]
#[ignore = "run by unloadable_runtime_library_is_a_clear_error in a child process"]
fn child_with_bad_runtime_library() {
    let err = load_err(&tiny_bundle());
    println!("CHILD-ERROR: {err}");
}

#[test]
fn unloadable_runtime_library_is_a_clear_error() {
    let bogus = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libonnxruntime.so.bogus");
    std::fs::write(&bogus, "not a shared library").unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_with_bad_runtime_library",
            "--ignored",
            "--nocapture",
        ])
        .env("ORT_DYLIB_PATH", &bogus)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("CHILD-ERROR"))
        .expect("child printed its error");
    assert!(
        line.contains("ONNX Runtime library could not be loaded"),
        "{line}"
    );
    assert!(
        line.contains("libonnxruntime.so.bogus") && line.contains("make deps"),
        "{line}"
    );
}
