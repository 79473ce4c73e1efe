//! The TensorRT engine cache and optimisation profiles, checked where no GPU
//! is needed: each bundle gets its own cache directory, keyed by its engines'
//! contents, and the profiles of the tiny bundle's engines name its dynamic
//! inputs with batches from 1 to the phrase cap.

mod common;

use std::path::{Path, PathBuf};

use common::{tiny_bundle, tiny_bundle_copy};
use samclipseg::model::backend::{TensorRtOptions, per_bundle_options, trt_profile_shapes};
use samclipseg::model::bundle::EngineRole;
use samclipseg::prompt::syntax::MAX_PHRASES;
use samclipseg::{BackendKind, BackendOptions, Bundle};

fn tensorrt(cache: &Path) -> BackendOptions {
    BackendOptions {
        kind: BackendKind::TensorRt,
        tensorrt: TensorRtOptions {
            engine_cache_dir: Some(cache.to_path_buf()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn cache_dir(dir: &Path, options: &BackendOptions) -> PathBuf {
    let bundle = Bundle::open(dir).unwrap();
    per_bundle_options(options, &bundle)
        .unwrap()
        .tensorrt
        .cache_dir()
}

#[test]
fn bundles_with_the_same_graph_and_other_weights_get_their_own_engine_cache() {
    let cache = Path::new("/var/cache/trt");
    let options = tensorrt(cache);
    let a = tiny_bundle_copy("trt-a");
    let same = tiny_bundle_copy("trt-same");
    let other = tiny_bundle_copy("trt-other-weights");
    // Another value in the last bytes of the decoder: the graph is the same,
    // the file the same size, only its contents differ.
    let path = other.join("decoder.onnx");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();

    let dir_a = cache_dir(&a, &options);
    assert_eq!(dir_a.parent(), Some(cache), "{}", dir_a.display());
    let name = dir_a.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("tiny-sam3-"),
        "named after the bundle: {name}"
    );
    assert_eq!(
        cache_dir(&same, &options),
        dir_a,
        "identical engines share their cache, wherever the bundle lies"
    );
    assert_ne!(cache_dir(&other, &options), dir_a);

    // Other backends keep their options as they are.
    let cpu = BackendOptions::default();
    let bundle = Bundle::open(&a).unwrap();
    assert_eq!(per_bundle_options(&cpu, &bundle).unwrap(), cpu);
}

#[test]
fn profiles_of_the_tiny_bundle_run_every_phrase_count_on_one_engine() {
    let bundle = Bundle::open(tiny_bundle()).unwrap();
    let profile = |role| {
        trt_profile_shapes(bundle.manifest.engine(role), MAX_PHRASES)
            .unwrap()
            .unwrap()
    };
    let text = profile(EngineRole::TextEncoder);
    assert_eq!(text.min, "input_ids:1x32,attention_mask:1x32");
    assert_eq!(
        text.max,
        format!("input_ids:{MAX_PHRASES}x32,attention_mask:{MAX_PHRASES}x32")
    );
    // The decoder's image features are fixed at one picture; only the
    // phrase inputs get a range.
    let decoder = profile(EngineRole::Decoder);
    assert_eq!(decoder.min, "text_features:1x32x32,attention_mask:1x32");
    assert_eq!(
        decoder.max,
        format!("text_features:{MAX_PHRASES}x32x32,attention_mask:{MAX_PHRASES}x32")
    );
    let image = profile(EngineRole::ImageEncoder);
    assert_eq!(image.min, "pixel_values:1x3x112x112");
    assert_eq!(image.max, image.min, "one picture per run");
}
