//! Part B: frames per second through real GStreamer pipelines around the
//! element (fresh frames, a still picture, prompt changes, elements sharing a
//! bundle), with the inference state of every output buffer counted.

use std::path::Path;

use crate::args::Args;
use crate::children;
use crate::error::BoxResult;
use crate::pipeline_run::{Extra, PipelineRun, run_pipeline};

/// Part B's results, for the report.
pub struct PartB {
    /// One element: fresh frames, still picture, prompt change, in that order.
    pub cases: Vec<(String, PipelineRun)>,
    /// (elements, run) for 1 and 4 elements sharing the bundle.
    pub share: Vec<(usize, PipelineRun)>,
}

/// Runs every case of part B; the sharing cases each in a child process.
pub fn run(a: &Args, png: &Path) -> BoxResult<PartB> {
    let cases: [(&str, u32, Option<f32>, Extra); 3] = [
        (
            "fresh frames (moving square, reuse-threshold=0)",
            a.fresh_frames,
            Some(0.0),
            Extra::MovingSquare,
        ),
        (
            "still picture, reuse on (reuse-threshold default)",
            a.still_frames,
            None,
            Extra::None,
        ),
        (
            "still picture, prompt change every 10 frames (3 prompts)",
            a.prompt_frames,
            None,
            Extra::PromptChange,
        ),
    ];
    let mut results = Vec::new();
    for (name, frames, reuse, extra) in cases {
        eprintln!("[bench] pipeline: {name}, {frames} frames");
        let r = run_pipeline(a, png, frames, 1, reuse, extra)?;
        eprintln!("[bench]   {:.2} frames/s", r.fps());
        results.push((name.to_string(), r));
    }
    let mut share = Vec::new();
    for n in [1, 4] {
        eprintln!(
            "[bench] pipeline: {n} element(s) sharing the bundle, {} frames each (separate process)",
            a.share_frames
        );
        let r = children::share(a, n)?;
        eprintln!("[bench]   {:.2} frames/s in all", r.fps());
        share.push((n, r));
    }
    Ok(PartB {
        cases: results,
        share,
    })
}
