//! Segment many images with many prompts in one process and write every
//! result as JSON: what evaluation scripts (engines/eval_toy.py) read, so the
//! numbers they report come from this library, not from PyTorch.
//!
//!     cargo run --release --example segment_batch -- \
//!         --bundle tests/fixtures/toy-shapes-sam3 --jobs jobs.json --out results.json
//!
//! jobs.json: `[{"image": "a.png", "prompts": ["red circle", "square"]}, ...]`
//! (relative image paths are read from the jobs file's folder).
//! results.json: per job and prompt, the presence score and the kept instances
//! with score, box and the mask as run lengths over the row-major pixels,
//! starting with a run of zeros.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use samclipseg::image::file::OwnedImage;
use samclipseg::image::postprocess::sigmoid;
use samclipseg::{BackendOptions, PostprocessOptions, Sam3Model};
use serde::Deserialize;

const USAGE: &str = "usage: segment_batch --bundle DIR --jobs FILE --out FILE [--threshold T] [--threads N] [--precision fp32|auto|bf16|int8]";

#[derive(Deserialize)]
struct Job {
    image: PathBuf,
    prompts: Vec<String>,
}

fn run_lengths(data: &[u8]) -> Vec<u32> {
    let mut runs = Vec::new();
    let (mut current, mut n) = (false, 0u32);
    for v in data {
        if (*v != 0) != current {
            runs.push(n);
            current = !current;
            n = 0;
        }
        n += 1;
    }
    runs.push(n);
    runs
}

fn run() -> Result<(), String> {
    let mut bundle = None;
    let mut jobs_path = None;
    let mut out_path = None;
    let mut threshold = samclipseg::Threshold::Bundle;
    let mut threads = 0usize;
    // Evaluations compare precisions: exact fp32 unless asked.
    let mut precision = samclipseg::Precision::Fp32;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--bundle" => bundle = Some(PathBuf::from(value()?)),
            "--jobs" => jobs_path = Some(PathBuf::from(value()?)),
            "--out" => out_path = Some(PathBuf::from(value()?)),
            "--threshold" => {
                let v = value()?;
                let t = v
                    .parse::<f32>()
                    .map_err(|_| format!("--threshold: `{v}` is not a number"))?;
                threshold = samclipseg::Threshold::from_option(Some(t))
                    .ok_or(format!("--threshold {t} is outside 0-1"))?;
            }
            "--threads" => {
                let v = value()?;
                threads = v
                    .parse()
                    .map_err(|_| format!("--threads: `{v}` is not a count"))?
            }
            "--precision" => {
                let v = value()?;
                precision = samclipseg::Precision::from_name(&v).ok_or(format!(
                    "--precision: `{v}` is not auto, fp32, bf16 or int8"
                ))?;
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    let (Some(bundle), Some(jobs_path), Some(out_path)) = (bundle, jobs_path, out_path) else {
        return Err(USAGE.into());
    };
    let text =
        std::fs::read_to_string(&jobs_path).map_err(|e| format!("{}: {e}", jobs_path.display()))?;
    let jobs: Vec<Job> = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a jobs list ({e})", jobs_path.display()))?;
    let base = jobs_path.parent().unwrap_or(Path::new("."));

    let options = BackendOptions {
        intra_threads: threads,
        precision,
        ..Default::default()
    };
    let model = Sam3Model::load(&bundle, &options).map_err(|e| e.to_string())?;
    let opts = PostprocessOptions {
        threshold: threshold.resolve(model.manifest()),
        mask_threshold: model.manifest().decoder.mask_threshold,
        ..Default::default()
    };

    let mut results = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let path = base.join(&job.image);
        let picture = OwnedImage::open(&path).map_err(|e| e.to_string())?;
        let frame = picture.frame().map_err(|e| e.to_string())?;
        let prompts: Vec<&str> = job.prompts.iter().map(String::as_str).collect();
        let texts = model.encode_texts(&prompts).map_err(|e| e.to_string())?;
        let image = model.encode_image(&frame).map_err(|e| e.to_string())?;
        let out = model
            .decode_on_device(&image, &texts)
            .map_err(|e| e.to_string())?;
        let instances = model
            .postprocess_on_device(&out, &texts, (frame.width, frame.height), &opts)
            .map_err(|e| e.to_string())?;
        let per_prompt: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(p, prompt)| {
                let kept: Vec<_> = instances
                    .iter()
                    .filter(|i| i.prompt_index == p)
                    .map(|i| {
                        serde_json::json!({
                            "score": i.score,
                            "box": i.bbox,
                            "rle": run_lengths(&i.mask.data),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "prompt": prompt,
                    "presence": sigmoid(out.presence_logits.item(p)[0]),
                    "instances": kept,
                })
            })
            .collect();
        results.push(serde_json::json!({
            "image": job.image,
            "width": frame.width,
            "height": frame.height,
            "prompts": per_prompt,
        }));
    }
    let doc =
        serde_json::json!({ "bundle": bundle, "threshold": opts.threshold, "results": results });
    std::fs::write(&out_path, doc.to_string())
        .map_err(|e| format!("{}: {e}", out_path.display()))?;
    eprintln!(
        "segment_batch: {} images -> {}",
        jobs.len(),
        out_path.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("segment_batch: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::run_lengths;

    #[test]
    fn run_lengths_start_with_zeros() {
        assert_eq!(run_lengths(&[0, 0, 255, 255, 255, 0]), vec![2, 3, 1]);
        assert_eq!(run_lengths(&[255, 0]), vec![0, 1, 1]);
        assert_eq!(run_lengths(&[]), vec![0]);
    }
}
