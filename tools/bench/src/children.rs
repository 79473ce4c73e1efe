//! The sharing cases of part B run in a child process (the bench re-executes
//! itself with `--child-share N`), so that the memory it reads from
//! /proc/self/status is that run's own; the child answers with one line.

use std::process::{Command, Stdio};

use crate::args::Args;
use crate::error::BoxResult;
use crate::photo;
use crate::pipeline_run::{Extra, PipelineRun, run_pipeline};

const PREFIX: &str = "SHARE_RESULT ";

/// Runs `elements` elements sharing the bundle in a fresh process.
pub fn share(a: &Args, elements: usize) -> BoxResult<PipelineRun> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg("--child-share")
        .arg(elements.to_string())
        .arg("--bundle")
        .arg(&a.bundle)
        .args(["--threads", &a.threads.to_string()])
        .args(["--share-frames", &a.share_frames.to_string()])
        .args(["--prompt", &a.prompt])
        .arg("--work")
        .arg(&a.work)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("the {elements}-element run failed ({})", out.status).into());
    }
    parse_line(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "the sharing run printed no result".into())
}

/// The child's side: runs the case and prints its result line.
pub fn child_main(a: &Args, elements: usize) -> BoxResult<()> {
    let png = a.work.join(photo::FILE_NAME);
    if !png.is_file() {
        return Err(format!("{} is missing (the parent bench writes it)", png.display()).into());
    }
    let r = run_pipeline(
        a,
        &png,
        a.share_frames,
        elements,
        Some(0.0),
        Extra::MovingSquare,
    )?;
    println!("{}", result_line(&r));
    Ok(())
}

fn result_line(r: &PipelineRun) -> String {
    format!(
        "{PREFIX}frames={} seconds={} steady_seconds={} fresh={} reused_features={} reused_result={} \
         rss_before_kb={} rss_started_kb={} hwm_kb={}",
        r.frames,
        r.seconds,
        r.steady_seconds,
        r.fresh,
        r.reused_features,
        r.reused_result,
        r.rss_before_kb,
        r.rss_started_kb,
        r.hwm_kb
    )
}

/// The result line in the child's output; a missing field reads as 0.
fn parse_line(text: &str) -> Option<PipelineRun> {
    let line = text.lines().find_map(|l| l.strip_prefix(PREFIX))?;
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Some(PipelineRun {
        frames: field("frames") as u64,
        seconds: field("seconds"),
        steady_seconds: field("steady_seconds"),
        fresh: field("fresh") as u64,
        reused_features: field("reused_features") as u64,
        reused_result: field("reused_result") as u64,
        rss_before_kb: field("rss_before_kb") as u64,
        rss_started_kb: field("rss_started_kb") as u64,
        hwm_kb: field("hwm_kb") as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_reads_back_as_written() {
        let r = PipelineRun {
            frames: 16,
            seconds: 93.625,
            steady_seconds: 88.5,
            fresh: 15,
            reused_features: 1,
            reused_result: 0,
            rss_before_kb: 13_000,
            rss_started_kb: 1_913_000,
            hwm_kb: 2_054_000,
        };
        let output = format!("some log line\n{}\n", result_line(&r));
        assert_eq!(parse_line(&output), Some(r));
    }

    #[test]
    fn output_without_a_result_line_is_none() {
        assert_eq!(parse_line("frames=3\n"), None);
    }
}
