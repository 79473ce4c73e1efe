//! The bench's options (engines/BENCHMARK.md documents them), parsed by clap so
//! that `--help`, defaults and error messages come from one declaration.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::error::BoxResult;

/// The repository root: default paths and the bench photo are found from it.
pub fn repo() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // tools/bench -> the workspace root.
    manifest.ancestors().nth(2).unwrap_or(manifest)
}

/// The samclipseg benchmark: per-stage times of the core library, frames per
/// second through real GStreamer pipelines, and the PyTorch reference side by
/// side. `make bench` builds the bench bundle and runs this.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "samclipseg-bench",
    after_help = "Timings on a shared machine are noisy: compare ratios measured in one run."
)]
pub struct Args {
    /// Engine bundle (build it with `.venv/bin/python engines/make_bench_sam3.py`).
    #[arg(long, value_name = "DIR", default_value_os_t = repo().join("engines/work/bench"))]
    pub bundle: PathBuf,
    /// Intra-op threads of ONNX Runtime and of PyTorch.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// Timed runs per stage, after one warm-up.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub iters: u32,
    /// Our precisions in part A, one column each (those this CPU or the bundle
    /// cannot run are skipped with a note); part B runs the element's default,
    /// auto.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "fp32,bf16,int8",
          value_parser = parse_precision)]
    pub precisions: Vec<samclipseg::Precision>,
    /// The prompt of every stage and pipeline.
    #[arg(long, value_name = "TEXT", default_value = "a person")]
    pub prompt: String,
    /// Frames of the fresh-frames pipeline.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub fresh_frames: u32,
    /// Frames of the still-picture pipeline.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub still_frames: u32,
    /// Frames of the prompt-change pipeline.
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub prompt_frames: u32,
    /// Frames per element of the 1-vs-4-elements pipelines.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub share_frames: u32,
    /// Where the 1280x720 photo and the reference JSON go.
    #[arg(long, value_name = "DIR", default_value_os_t = repo().join("out/bench"))]
    pub work: PathBuf,
    /// Run engines/bench_reference.py (PyTorch), alternating passes with ours, and compare.
    #[arg(long)]
    pub reference: bool,
    /// The PyTorch configurations --reference runs (fp32, bf16, autocast); by
    /// default all where the CPU has native bf16, fp32 only where PyTorch
    /// would emulate bf16.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = ["fp32", "bf16", "autocast"])]
    pub reference_variants: Option<Vec<String>>,
    /// Compare with a JSON that bench_reference.py wrote earlier (instead of running it).
    #[arg(long, value_name = "FILE")]
    pub reference_json: Option<PathBuf>,
    /// Python for --reference.
    #[arg(long, value_name = "PATH", default_value_os_t = repo().join(".venv/bin/python"))]
    pub python: PathBuf,
    /// Part D: the engines on a Triton server on loopback (engines/triton_serve.py,
    /// from .venv-triton) against the same engines in this process.
    #[arg(long)]
    pub remote: bool,
    /// Skip part A (stages) and the comparison.
    #[arg(long)]
    pub skip_stages: bool,
    /// Skip part B (pipelines).
    #[arg(long)]
    pub skip_pipelines: bool,
    /// Skip part E (a live 1080p60 source through the element).
    #[arg(long)]
    pub skip_live: bool,
    /// Frames of each live pipeline of part E (60 a second of video).
    #[arg(long, value_name = "N", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub live_frames: u32,
    /// Frames of each live pipeline of part E on --bundle: a run of seconds
    /// needs a longer video to show how often its results arrive.
    #[arg(long, value_name = "N", default_value_t = 1200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub live_bench_frames: u32,
    /// Bundles of part E besides --bundle (the toy bundle: a model run as
    /// short as a frame's time at 60 frames/s).
    #[arg(long, value_name = "DIR", default_value_os_t = repo().join("tests/fixtures/toy-shapes-sam3"))]
    pub live_toy: PathBuf,
    /// The prompt of part E's pipelines (the toy bundle knows the shapes world).
    #[arg(long, value_name = "TEXT", default_value = "red circle")]
    pub live_prompt: String,
    /// The tracker bench only (engines/BENCHMARK.md, "Tracker bench"): a
    /// frame's parts with N objects through SAM 3's video loop, beside the
    /// detector-only path; with --reference, transformers' Sam3VideoModel
    /// streaming on the same frames. Needs a bundle with tracker engines
    /// (`engines/make_bench_sam3.py --tracker`). Parts A to E do not run.
    #[arg(long)]
    pub video: bool,
    /// --video: the object counts N, one run each.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "1,4,16",
          value_parser = parse_objects)]
    pub video_objects: Vec<usize>,
    /// --video: frames at the start of each run that fill the memory bank
    /// (7 memory frames) and are not counted.
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub video_warmup: u32,
    /// --video: frames timed after the warm-up, per run.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub video_frames: u32,
    /// Print the wide instruction sets CPUID reports (what ONNX Runtime,
    /// OpenVINO and PyTorch choose their kernels from) and whether it hides
    /// some that /proc/cpuinfo lists (under tools/cpuid-mask), then exit.
    #[arg(long)]
    pub cpuid: bool,
    /// --video: our side's precision (fp32, bf16 or int8). Where it runs the
    /// image encoder in bf16 on OpenVINO, the tracker's memory attention and
    /// mask decoder run there in bf16 too; PyTorch then runs in bfloat16
    /// where the CPU has it natively, else fp32.
    #[arg(long, value_name = "P", default_value = "fp32", value_parser = parse_precision)]
    pub video_precision: samclipseg::Precision,
    /// Internal: run the sharing pipeline with this many elements and print one line.
    #[arg(long, value_name = "N", hide = true)]
    pub child_share: Option<usize>,
}

fn parse_precision(s: &str) -> Result<samclipseg::Precision, String> {
    match samclipseg::Precision::from_name(s) {
        Some(samclipseg::Precision::Auto) | None => Err(format!(
            "`{s}`: expected fp32, bf16 or int8 (auto is one of them, and is marked)"
        )),
        Some(p) => Ok(p),
    }
}

fn parse_objects(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "`{s}`: an object count is a whole number, at least 1"
        )),
    }
}

impl Args {
    /// Parses the command line (exiting on `--help` or a bad option) and
    /// checks that the bundle is there.
    pub fn from_env() -> BoxResult<Args> {
        let a = Args::parse();
        if !a.cpuid {
            a.check_bundle()?;
        }
        Ok(a)
    }

    fn check_bundle(&self) -> BoxResult<()> {
        if self.bundle.join("bundle.toml").is_file() {
            return Ok(());
        }
        Err(format!(
            "{} holds no bundle.toml: build the bench bundle first with \
             `.venv/bin/python engines/make_bench_sam3.py` (or `make bench`), or pass --bundle DIR",
            self.bundle.display()
        )
        .into())
    }

    /// `--iters` as a count.
    pub fn iters(&self) -> usize {
        self.iters as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("samclipseg-bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let a = parse(&[]).expect("no options parse");
        assert_eq!(a.bundle, repo().join("engines/work/bench"));
        assert_eq!(
            (a.threads, a.iters(), a.prompt.as_str()),
            (2, 10, "a person")
        );
        assert_eq!(
            (
                a.fresh_frames,
                a.still_frames,
                a.prompt_frames,
                a.share_frames
            ),
            (10, 100, 60, 4)
        );
        assert_eq!(a.work, repo().join("out/bench"));
        assert!(!a.reference && !a.skip_stages && !a.skip_pipelines);
        assert!(!a.video);
        assert_eq!(
            (a.video_objects.as_slice(), a.video_warmup, a.video_frames),
            (&[1, 4, 16][..], 7, 5)
        );
        assert!(a.reference_json.is_none() && a.child_share.is_none());
    }

    #[test]
    fn options_of_the_makefile_and_benchmark_md_parse() {
        let a = parse(&[
            "--bundle",
            "b",
            "--reference",
            "--work",
            "w",
            "--threads",
            "4",
            "--iters",
            "3",
            "--prompt",
            "a cat",
            "--still-frames",
            "7",
            "--reference-json",
            "r.json",
            "--skip-pipelines",
            "--child-share",
            "4",
        ])
        .expect("documented options parse");
        assert_eq!(
            (a.bundle.as_path(), a.work.as_path()),
            (Path::new("b"), Path::new("w"))
        );
        assert_eq!((a.threads, a.iters(), a.still_frames), (4, 3, 7));
        assert_eq!(a.prompt, "a cat");
        assert!(a.reference && a.skip_pipelines && !a.skip_stages);
        assert_eq!(a.reference_json.as_deref(), Some(Path::new("r.json")));
        assert_eq!(a.child_share, Some(4));
    }

    #[test]
    fn bad_values_and_unknown_options_are_refused() {
        for bad in [
            &["--iters", "0"][..],
            &["--threads", "two"],
            &["--bundle"],
            &["--frobnicate"],
            &["--video-objects", "1,0"],
            &["--video-frames", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn a_directory_without_bundle_toml_is_refused_with_the_fix() {
        let a = parse(&["--bundle", "/nonexistent"]).expect("parses");
        let e = a.check_bundle().expect_err("no bundle there").to_string();
        assert!(e.contains("make_bench_sam3.py"), "{e}");
        let tiny = repo().join("tests/fixtures/tiny-sam3");
        let a = parse(&["--bundle", &tiny.to_string_lossy()]).expect("parses");
        a.check_bundle().expect("the tiny fixture is a bundle");
    }
}
