//! The markdown tables the bench prints (engines/BENCHMARK.md pastes them):
//! kept apart from the measuring so that their format is tested and a new
//! column is one place to change.

use std::fmt::{Result, Write};

use crate::pipeline_run::PipelineRun;
use crate::pipelines::PartB;
use crate::reference::Reference;
use crate::remote::PartD;
use crate::stages::{Fidelity, OursRun, PartA, STAGES};
use crate::stats::ms;

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Part A's table, then part C's when there are references.
pub fn part_a(out: &mut impl Write, a: &PartA, iters: usize) -> Result {
    stages(out, &a.ours, iters)?;
    fidelity(out, &a.fidelity)?;
    comparison(out, &a.ours, &a.references)
}

fn fidelity(out: &mut impl Write, rows: &[Fidelity]) -> Result {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nFidelity against fp32 on the bench photo (threshold 0.5; each fp32 instance matched to its best overlap):\n"
    )?;
    writeln!(
        out,
        "| precision | instances kept (fp32) | smallest mask IoU | largest score change |"
    )?;
    writeln!(out, "|---|---:|---:|---:|")?;
    for f in rows {
        writeln!(
            out,
            "| {} | {} ({}) | {:.4} | {:.4} |",
            f.precision, f.kept, f.kept_fp32, f.min_mask_iou, f.max_score_change
        )?;
    }
    Ok(())
}

fn stages(out: &mut impl Write, ours: &[OursRun], iters: usize) -> Result {
    writeln!(
        out,
        "\n### Part A: stages, ours (median / p90 ms of {iters} passes after one warm-up)\n"
    )?;
    write!(out, "| stage |")?;
    for o in ours {
        write!(out, " {} |", o.label())?;
    }
    writeln!(out, "\n|---|{}", "---:|".repeat(ours.len()))?;
    for (i, (name, _)) in STAGES.iter().enumerate() {
        write!(out, "| {name} |")?;
        for o in ours {
            write!(out, " {} / {} |", ms(o.rows[i].median), ms(o.rows[i].p90))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The stages of a whole frame (bench_reference.py keys), with the text cached.
pub const FRAME: [&str; 4] = ["preprocess", "image_encoder", "decoder", "postprocess"];

/// Sum of our medians over the stages with these reference keys.
pub fn our_sum(o: &OursRun, keys: &[&str]) -> f64 {
    keys.iter()
        .filter_map(|k| STAGES.iter().position(|(_, key)| key == k))
        .map(|i| o.rows[i].median)
        .sum()
}

pub fn their_sum(r: &Reference, keys: &[&str]) -> f64 {
    keys.iter()
        .filter_map(|k| r.stages.get(*k))
        .map(|s| s.median)
        .sum()
}

/// Every column's medians side by side, the whole-frame sums, and how many
/// times slower than ours at `precision=auto` each configuration is.
fn comparison(out: &mut impl Write, ours: &[OursRun], refs: &[Reference]) -> Result {
    if refs.is_empty() && ours.len() < 2 {
        return Ok(());
    }
    let kept: Vec<String> = ours
        .iter()
        .map(|o| format!("{} {}", o.precision, o.kept))
        .collect();
    writeln!(
        out,
        "\n### Part C: ours vs the PyTorch reference (medians, ms)\n"
    )?;
    let summaries: Vec<&str> = refs.iter().map(|r| r.summary.as_str()).collect();
    writeln!(
        out,
        "Reference: {}; instances kept by ours: {}.\n",
        if summaries.is_empty() {
            "not run".to_string()
        } else {
            summaries.join("; ")
        },
        kept.join(", ")
    )?;
    write!(out, "| stage |")?;
    for o in ours {
        write!(out, " {} |", o.label())?;
    }
    for r in refs {
        write!(out, " {} |", r.name)?;
    }
    writeln!(out, "\n|---|{}", "---:|".repeat(ours.len() + refs.len()))?;
    for (i, (name, key)) in STAGES.iter().enumerate() {
        write!(out, "| {name} |")?;
        for o in ours {
            write!(out, " {} |", ms(o.rows[i].median))?;
        }
        for r in refs {
            match r.stages.get(*key) {
                Some(s) => write!(out, " {} |", ms(s.median))?,
                None => write!(out, " - |")?,
            }
        }
        writeln!(out)?;
    }
    let all = [&["tokenise", "text_encoder"][..], &FRAME].concat();
    let sums: [(&str, &[&str]); 2] = [
        (
            "**whole frame, text cached** (preprocess + image encoder + decoder + post-process)",
            &FRAME,
        ),
        (
            "**whole frame, new prompt** (+ tokenise + text encoder)",
            &all,
        ),
    ];
    for (label, keys) in sums {
        write!(out, "| {label} |")?;
        for o in ours {
            write!(out, " {} |", ms(our_sum(o, keys)))?;
        }
        for r in refs {
            write!(out, " {} |", ms(their_sum(r, keys)))?;
        }
        writeln!(out)?;
    }
    let Some(auto) = ours.iter().find(|o| o.is_auto) else {
        return Ok(());
    };
    let base = our_sum(auto, &FRAME);
    let mut ratios: Vec<String> = ours
        .iter()
        .filter(|o| !o.is_auto)
        .map(|o| format!("{} {:.2}x", o.label(), our_sum(o, &FRAME) / base))
        .collect();
    ratios.extend(
        refs.iter()
            .map(|r| format!("{} {:.2}x", r.name, their_sum(r, &FRAME) / base)),
    );
    writeln!(
        out,
        "\nA whole frame with the text cached takes, compared with {} ({} ms): {}.",
        auto.label(),
        ms(base),
        ratios.join(", ")
    )?;
    match crate::reference::fastest(refs, |r| their_sum(r, &FRAME)) {
        Some((peer, t)) => writeln!(
            out,
            "\nReference peer, the fastest PyTorch configuration run on this machine: **{}** ({} ms a \
             frame with the text cached); {} is **{:.2}x** faster.",
            peer.name,
            ms(t),
            auto.label(),
            t / base
        ),
        None => Ok(()),
    }
}

/// Part B's table, the reuse speed-up and the memory of the sharing runs.
pub fn part_b(out: &mut impl Write, b: &PartB, threads: usize) -> Result {
    writeln!(
        out,
        "\n### Part B: pipelines (1280x720 RGBA, `... ! samclipseg threads={threads} ! fakesink sync=false`)\n"
    )?;
    writeln!(
        out,
        "frames/s = frames / (first buffer into samclipseg .. last buffer out); \
         steady = (frames - 1) / (first buffer out .. last buffer out), i.e. without the first (always fresh) frame.\n"
    )?;
    writeln!(
        out,
        "| case | frames | seconds | frames/s | steady frames/s | fresh | reused-image-features | reused-result |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    let row = |out: &mut dyn Write, name: &str, r: &PipelineRun| {
        writeln!(
            out,
            "| {name} | {} | {:.1} | {:.2} | {:.2} | {} | {} | {} |",
            r.frames,
            r.seconds,
            r.fps(),
            r.steady_fps(),
            r.fresh,
            r.reused_features,
            r.reused_result
        )
    };
    for (name, r) in &b.cases {
        row(out, name, r)?;
    }
    for (n, r) in &b.share {
        let name =
            format!("{n} element(s) after a tee, one shared bundle, fresh frames (all elements)");
        row(out, &name, r)?;
    }
    if let [(_, fresh), (_, still), (_, change), ..] = &b.cases[..] {
        let x = |r: &PipelineRun| r.fps() / fresh.fps().max(1e-9);
        let xs = |r: &PipelineRun| r.steady_fps() / fresh.steady_fps().max(1e-9);
        writeln!(
            out,
            "\nReuse speed-up in this run, vs fresh frames: still picture {:.1}x ({:.0}x steady); \
             prompt change every 10 frames {:.1}x ({:.1}x steady).",
            x(still),
            xs(still),
            x(change),
            xs(change)
        )?;
    }
    if let [(_, one), (_, four), ..] = &b.share[..] {
        memory(out, one, four)?;
    }
    Ok(())
}

fn memory(out: &mut impl Write, one: &PipelineRun, four: &PipelineRun) -> Result {
    writeln!(
        out,
        "\n#### Memory, 1 vs 4 elements sharing the bundle (each in its own process; VmRSS / VmHWM)\n"
    )?;
    writeln!(
        out,
        "| elements | RSS before start MB | RSS after start (prerolled) MB | peak RSS MB | aggregate frames/s |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---:|")?;
    for (n, r) in [(1, one), (4, four)] {
        writeln!(
            out,
            "| {n} | {:.0} | {:.0} | {:.0} | {:.2} |",
            mb(r.rss_before_kb),
            mb(r.rss_started_kb),
            mb(r.hwm_kb),
            r.fps()
        )?;
    }
    let first = one.rss_started_kb.saturating_sub(one.rss_before_kb);
    let extra_started = four.rss_started_kb as f64 - one.rss_started_kb as f64;
    let extra_peak = four.hwm_kb as f64 - one.hwm_kb as f64;
    writeln!(
        out,
        "\nFirst element (model loaded, one frame): +{:.0} MB; each further element: {:+.0} MB after start, \
         {:+.0} MB at peak ({:.1}% / {:.1}% of the first).",
        mb(first),
        extra_started / 3.0 / 1024.0,
        extra_peak / 3.0 / 1024.0,
        100.0 * extra_started / 3.0 / first.max(1) as f64,
        100.0 * extra_peak / 3.0 / first.max(1) as f64,
    )
}

/// Part D: local against remote, and the bytes of a fresh frame.
pub fn part_d(out: &mut impl Write, d: &PartD, m: &samclipseg::model::bundle::Manifest) -> Result {
    writeln!(
        out,
        "\n### Part D: the engines on a Triton server on loopback ({}, ready after {:.1} s)\n",
        d.server, d.ready_s
    )?;
    writeln!(
        out,
        "The server (nvidia-pytriton's tritonserver, python backend, ONNX Runtime fp32 on the CPU) \
         shares this machine's cores with the client: this measures the protocol, not scale-out.\n"
    )?;
    writeln!(
        out,
        "| streams | local frames/s | remote frames/s | remote / local |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|")?;
    for (l, r) in d.local.iter().zip(&d.remote) {
        writeln!(
            out,
            "| {} | {:.3} | {:.3} | {:.2}x |",
            l.streams,
            l.fps(),
            r.fps(),
            r.fps() / l.fps()
        )?;
    }
    let (runs, execs) = d.batching;
    writeln!(
        out,
        "\nFour streams: the server's image encoder ran {runs} pictures in {execs} executions (dynamic batching)."
    )?;
    writeln!(
        out,
        "\nOne fresh frame, 1 prompt, local {:.0} ms vs remote {:.0} ms (medians): the hop adds {:.0} ms.",
        d.local_frame.median,
        d.remote_frame.median,
        d.remote_frame.median - d.local_frame.median
    )?;
    let s = m.preprocess.image_size;
    let per_mask = 16 + 2 * m.decoder.mask_size * m.decoder.mask_size;
    writeln!(
        out,
        "On the wire per fresh frame at {s} px: {} bytes up (8-bit pixels are {}), {} bytes down with {} kept \
         ({} bytes per mask sent: index and float16 logits); text features are sent with every frame, image features never.",
        d.up,
        3 * s * s,
        d.down,
        d.kept,
        per_mask
    )?;
    Ok(())
}

/// Part E: the real-time factor of a live 1080p60 source per bundle and mode.
pub fn part_e(
    out: &mut impl Write,
    e: &[(std::path::PathBuf, u32, Vec<crate::live::LiveRun>)],
    load: &str,
) -> Result {
    writeln!(
        out,
        "\n### Part E: a live 1080p60 source (load average before {load})\n"
    )?;
    writeln!(
        out,
        "`videotestsrc is-live=true pattern=ball ! samclipseg ... ! fakesink sync=true` (synchronous mode on the \
         toy bundle only), the element's default properties (threads=0): wall time from PLAYING to EOS over \
         the video's duration (1.00 = real time). Results: the distinct model results the frames carried, \
         and how many frames carried one.\n"
    )?;
    for (bundle, frames, runs) in e {
        let video_s = *frames as f64 / 60.0;
        writeln!(
            out,
            "{}, {frames} frames ({video_s:.1} s of video):\n",
            bundle.display()
        )?;
        writeln!(
            out,
            "| pipeline | real-time factor | frames | frames with a result | results | results/s of video |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
        for r in runs {
            writeln!(
                out,
                "| {} | {:.3} | {} | {} | {} | {:.2} |",
                r.label,
                r.real_time_factor,
                r.frames,
                r.with_result,
                r.results,
                r.results as f64 / video_s
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use samclipseg::Precision;
    use std::collections::BTreeMap;

    fn flat(median: f64) -> Stats {
        Stats {
            median,
            p90: median,
        }
    }

    #[test]
    fn comparison_has_every_column_the_sums_and_the_ratios_to_auto() {
        let run = |precision, is_auto, scale: f64| OursRun {
            precision,
            is_auto,
            rows: (1..=STAGES.len())
                .map(|i| flat(i as f64 * 10.0 * scale))
                .collect(),
            kept: 6,
        };
        let stages = BTreeMap::from([
            ("decoder".to_string(), flat(150.0)),
            ("image_encoder".to_string(), flat(80.0)),
        ]);
        let r = Reference {
            name: "PyTorch",
            stages,
            summary: "PyTorch 2 / transformers 5".into(),
        };
        let part = PartA {
            ours: vec![
                run(Precision::Fp32, false, 2.0),
                run(Precision::Int8, true, 1.0),
            ],
            fidelity: vec![crate::stages::Fidelity {
                precision: Precision::Int8,
                kept: 6,
                kept_fp32: 6,
                min_mask_iou: 0.98765,
                max_score_change: 0.01,
            }],
            references: vec![r],
        };
        let mut out = String::new();
        part_a(&mut out, &part, 10).expect("writes to a String");
        assert!(
            out.contains("| stage | ours fp32 | ours int8 (auto) |\n|---|---:|---:|\n"),
            "{out}"
        );
        assert!(
            out.contains("| image encoder | 80.00 / 80.00 | 40.00 / 40.00 |\n"),
            "{out}"
        );
        assert!(out.contains(
            "Reference: PyTorch 2 / transformers 5; instances kept by ours: fp32 6, int8 6.\n"
        ));
        assert!(
            out.contains(
                "| stage | ours fp32 | ours int8 (auto) | PyTorch |\n|---|---:|---:|---:|\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("| decoder (1 prompt) | 100 | 50.00 | 150 |\n"),
            "{out}"
        );
        assert!(out.contains("| tokenise | 20.00 | 10.00 | - |\n"), "{out}");
        // Text cached: int8 30 + 40 + 50 + 70 = 190, fp32 380; theirs 80 + 150 = 230.
        assert!(out.contains("post-process) | 380 | 190 | 230 |\n"), "{out}");
        assert!(
            out.contains(
                "compared with ours int8 (auto) (190 ms): ours fp32 2.00x, PyTorch 1.21x."
            ),
            "{out}"
        );
    }

    #[test]
    fn part_b_gives_the_speed_up_and_the_memory_per_further_element() {
        let run = |frames, seconds, started_mb: u64, hwm_mb: u64| PipelineRun {
            frames,
            seconds,
            steady_seconds: seconds,
            fresh: frames,
            rss_before_kb: 10 * 1024,
            rss_started_kb: started_mb * 1024,
            hwm_kb: hwm_mb * 1024,
            ..Default::default()
        };
        let b = PartB {
            cases: vec![
                ("fresh".into(), run(10, 10.0, 0, 0)),
                ("still".into(), run(100, 5.0, 0, 0)),
                ("change".into(), run(60, 6.0, 0, 0)),
            ],
            share: vec![(1, run(4, 8.0, 1010, 1510)), (4, run(16, 32.0, 1310, 1810))],
        };
        let mut out = String::new();
        part_b(&mut out, &b, 2).expect("writes to a String");
        assert!(
            out.contains("| still | 100 | 5.0 | 20.00 | 19.80 | 100 | 0 | 0 |\n"),
            "{out}"
        );
        assert!(out.contains("still picture 20.0x"), "{out}");
        assert!(out.contains("| 4 | 10 | 1310 | 1810 | 0.50 |\n"), "{out}");
        assert!(
            out.contains("+1000 MB; each further element: +100 MB after start"),
            "{out}"
        );
        assert!(!out.contains("no `reuse-threshold`"));
    }
}
