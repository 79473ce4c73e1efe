//! Still-image counterpart of the `samclipseg` element: segment what the
//! prompts name in image files and write, per image, a cut-out PNG (mask as
//! alpha), an annotated PNG and a JSON list of instances. Each `--prompt`
//! takes the element's prompt syntax (`red car; -toy car`, Chinese too); the
//! phrases as the text encoder gets them are printed first ("prompt in use").
//!
//!     cargo run --release --example segment_image -- \
//!         --bundle tests/fixtures/tiny-sam3 --prompt "a person" --prompt cat \
//!         --out-dir out photo.jpg

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use samclipseg::Request;
use samclipseg::image::file::OwnedImage;
use samclipseg::image::render::{Canvas, union_mask};
use samclipseg::prompt::chinese::is_chinese;
use samclipseg::prompt::request::DEFAULT_NEGATIVE_OVERLAP;
use samclipseg::prompt::suggest::default_vocabulary;
use samclipseg::{
    BackendKind, BackendOptions, Instance, PackedLayout, PostprocessOptions, Precision, Sam3Model,
};

const USAGE: &str = "usage: segment_image --bundle DIR --prompt TEXT [--prompt TEXT]... \
[--threshold 0.5] [--smoothness 1] [--suggest K] [--max-instances 0] [--threads 0] [--backend cpu|cuda|tensorrt|remote] [--server grpc://HOST:PORT] [--request-timeout MS] [--authorization VALUE] [--model-prefix NAME] [--ca-file PEM] [--precision auto|fp32|bf16|int8] [--strict-gpu] [--trt-cache DIR] [--out-dir .] IMAGE...

--precision (backend cpu, default auto): int8 or bf16 where this CPU runs them natively, int8 on ONNX Runtime where it has AVX2 only (with the bundle's dynamic int8 engines), else fp32 (exact).
--strict-gpu: on cuda / tensorrt, refuse to load an engine with nodes that would run on the CPU.
--server (backend remote): a Triton server with the repository engines/triton_repo.py wrote for the bundle.";

struct Args {
    bundle: PathBuf,
    prompts: Vec<String>,
    post: PostprocessOptions,
    threshold: samclipseg::Threshold,
    threads: usize,
    backend: BackendKind,
    precision: Precision,
    strict_gpu: bool,
    trt_cache: Option<PathBuf>,
    remote: samclipseg::remote::RemoteOptions,
    suggest: usize,
    out_dir: PathBuf,
    images: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        bundle: PathBuf::new(),
        prompts: Vec::new(),
        post: PostprocessOptions::default(),
        threshold: samclipseg::Threshold::Bundle,
        threads: 0,
        backend: BackendKind::Cpu,
        precision: Precision::Auto,
        strict_gpu: false,
        trt_cache: None,
        remote: Default::default(),
        suggest: 0,
        out_dir: PathBuf::from("."),
        images: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |name: &str, v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{name}: `{v}` is not a number"))
        };
        match arg.as_str() {
            "--bundle" => a.bundle = value("--bundle")?.into(),
            "--prompt" => a.prompts.push(value("--prompt")?),
            "--threshold" => {
                let t = num("--threshold", value("--threshold")?)? as f32;
                a.threshold = samclipseg::Threshold::from_option(Some(t))
                    .ok_or(format!("--threshold {t} is outside 0-1"))?
            }
            "--smoothness" => {
                a.post.smoothness = num("--smoothness", value("--smoothness")?)? as u32
            }
            "--max-instances" => {
                a.post.max_instances = num("--max-instances", value("--max-instances")?)? as usize
            }
            "--threads" => a.threads = num("--threads", value("--threads")?)? as usize,
            "--precision" => {
                let v = value("--precision")?;
                a.precision = Precision::from_name(&v).ok_or(format!(
                    "--precision: `{v}` is not auto, fp32, bf16 or int8"
                ))?;
            }
            "--backend" => {
                a.backend = match value("--backend")?.as_str() {
                    "cpu" => BackendKind::Cpu,
                    "cuda" => BackendKind::Cuda,
                    "tensorrt" => BackendKind::TensorRt,
                    "remote" => BackendKind::Remote,
                    other => {
                        return Err(format!(
                            "--backend: `{other}` is not cpu, cuda, tensorrt or remote"
                        ));
                    }
                }
            }
            "--server" => a.remote.server = value("--server")?,
            "--request-timeout" => {
                let ms = num("--request-timeout", value("--request-timeout")?)?;
                a.remote.timeout = std::time::Duration::from_millis(ms as u64);
            }
            "--authorization" => a.remote.authorization = Some(value("--authorization")?),
            "--model-prefix" => a.remote.model_prefix = Some(value("--model-prefix")?),
            "--ca-file" => a.remote.ca_file = Some(value("--ca-file")?.into()),
            "--strict-gpu" => a.strict_gpu = true,
            "--trt-cache" => a.trt_cache = Some(value("--trt-cache")?.into()),
            "--suggest" => a.suggest = num("--suggest", value("--suggest")?)? as usize,
            "--out-dir" => a.out_dir = value("--out-dir")?.into(),
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => a.images.push(arg.into()),
        }
    }
    if a.bundle.as_os_str().is_empty() || a.prompts.is_empty() || a.images.is_empty() {
        return Err(USAGE.into());
    }
    if a.post.smoothness.is_multiple_of(2) {
        return Err(format!(
            "--smoothness must be odd (1 = off), not {}",
            a.post.smoothness
        ));
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("segment_image: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = parse_args()?;
    let options = BackendOptions {
        kind: args.backend,
        intra_threads: args.threads,
        tensorrt: samclipseg::model::backend::TensorRtOptions {
            engine_cache_dir: args.trt_cache.clone(),
            ..Default::default()
        },
        strict: args.strict_gpu,
        precision: args.precision,
        remote: args.remote.clone(),
        ..Default::default()
    };
    let model = Sam3Model::load(&args.bundle, &options).map_err(|e| e.to_string())?;
    let choice = model.precision();
    eprintln!("segment_image: {} ({})", choice.precision, choice.reason);
    args.post.threshold = args.threshold.resolve(model.manifest());
    args.post.mask_threshold = model.manifest().decoder.mask_threshold;
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("{}: {e}", args.out_dir.display()))?;
    let request = Request::new(
        &args.prompts.join("; "),
        "",
        args.post.clone(),
        DEFAULT_NEGATIVE_OVERLAP,
    );
    if let Some(w) = request.set.cap_warning() {
        eprintln!("segment_image: warning: {w}");
    }
    if let Some(w) = request.set.translation_warning() {
        eprintln!("segment_image: warning: {w}");
    }
    println!("prompt in use: {}", request.set.in_use());
    for path in &args.images {
        segment_one(&model, path, &request, &args)?;
    }
    Ok(())
}

fn segment_one(
    model: &Sam3Model,
    path: &Path,
    request: &Request,
    args: &Args,
) -> Result<(), String> {
    let picture = OwnedImage::open(path).map_err(|e| e.to_string())?;
    let (w, h) = (picture.width, picture.height);
    let frame = picture.frame().map_err(|e| e.to_string())?;
    let before = model.transfers();
    let found = model
        .segment(&frame, &request.texts(), &request.model_options())
        .map_err(|e| e.to_string())?;
    // Labelled as typed; negative phrases remove what they cover.
    let (instances, _negatives) = request.resolve(found);
    let prompts = request.phrases();
    if model.remote().is_some() {
        // What crossing the network cost (protobuf message bytes).
        let after = model.transfers();
        eprintln!(
            "segment_image: {}: {} bytes up, {} bytes down",
            path.display(),
            after.host_to_device - before.host_to_device,
            after.device_to_host - before.device_to_host
        );
    }
    let img = image::RgbaImage::from_raw(w as u32, h as u32, picture.rgba.clone())
        .ok_or("image buffer size")?;

    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let out = |suffix: &str| args.out_dir.join(format!("{stem}.{suffix}"));

    let mut cutout = img.clone();
    Canvas {
        data: &mut cutout,
        width: w,
        height: h,
        stride: w * 4,
        layout: PackedLayout::Rgba,
    }
    .write_alpha(&union_mask(&instances, w, h));
    save(&cutout, &out("cutout.png"))?;

    let mut annotated = img.clone();
    let mut canvas = Canvas {
        data: &mut annotated,
        width: w,
        height: h,
        stride: w * 4,
        layout: PackedLayout::Rgba,
    };
    canvas.draw_overlay(&instances);
    if prompts.len() > 1 {
        canvas.draw_legend(&prompts);
    }
    save(&annotated, &out("annotated.png"))?;

    let suggestions = if args.suggest > 0 {
        // In Chinese when the prompt is.
        let vocabulary = default_vocabulary(prompts.iter().any(|p| is_chinese(p)));
        let image = model.encode_image(&frame).map_err(|e| e.to_string())?;
        let top = model
            .suggest_entries(&image, &vocabulary, args.suggest)
            .map_err(|e| e.to_string())?;
        for s in &top {
            println!("  suggestion: {:<24} presence {:.3}", s.phrase, s.presence);
        }
        top.iter()
            .map(|s| serde_json::json!({"phrase": s.phrase, "presence": s.presence}))
            .collect()
    } else {
        Vec::new()
    };
    let json = serde_json::json!({
        "suggestions": suggestions,
        "image": path.display().to_string(),
        "width": w,
        "height": h,
        "prompts": prompts,
        "prompt_in_use": request.set.in_use(),
        "threshold": args.post.threshold,
        "instances": instances.iter().map(instance_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(out("json"), text).map_err(|e| format!("{}: {e}", out("json").display()))?;
    println!(
        "{}: {} instance(s) -> {}",
        path.display(),
        instances.len(),
        out("*").display()
    );
    Ok(())
}

fn instance_json(i: &Instance) -> serde_json::Value {
    serde_json::json!({
        "label": i.label,
        "prompt_index": i.prompt_index,
        "score": i.score,
        "box": i.bbox,
        "mask_area": i.mask.area(),
        "mask_extent": i.mask.extent(),
    })
}

fn save(img: &image::RgbaImage, path: &Path) -> Result<(), String> {
    img.save(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}
