//! The samclipseg benchmark: per-stage times of the core library (part A),
//! frames per second through real GStreamer pipelines (part B), and the
//! PyTorch reference side by side (part C), the engines on a Triton server
//! (part D) and a live source's real-time factor (part E). `make bench` builds the bench
//! bundle and runs this; engines/BENCHMARK.md says what each part measures.
//!
//!     .venv/bin/python engines/make_bench_sam3.py          # once: engines/work/bench
//!     cargo run --release -p samclipseg-bench -- --reference

mod args;
mod chart;
mod children;
mod error;
mod live;
mod machine;
mod photo;
mod pipeline_run;
mod pipelines;
mod reference;
mod remote;
mod report;
mod stages;
mod stats;
mod video;

use args::Args;
use error::BoxResult;
use photo::{HEIGHT, WIDTH};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> BoxResult<()> {
    let a = Args::from_env()?;
    if a.cpuid {
        println!("cpuid: {}", machine::cpuid_sets().join(" "));
        if let Some(masked) = machine::cpuid_mask_note() {
            println!("{masked}");
        }
        return Ok(());
    }
    gst::init()?;
    gstsamclipseg::plugin_register_static()?;
    if let Some(n) = a.child_share {
        return children::child_main(&a, n);
    }
    let (rgba, png) = photo::bench_photo(&a.work)?;
    let manifest = samclipseg::Bundle::open(&a.bundle)?.manifest;
    println!("## samclipseg benchmark\n");
    println!(
        "Machine: {}, {} logical CPUs; load average at start {}.",
        machine::cpu_model(),
        machine::cpu_count(),
        machine::load_average()
    );
    if let Some(masked) = machine::cpuid_mask_note() {
        println!("{masked}");
    }
    machine::warn_if_busy("when the bench started");
    println!(
        "Bundle: {} ({}), image {} px, {} queries, masks {}x{}; {} intra-op threads.",
        manifest.bundle.name,
        a.bundle.display(),
        manifest.preprocess.image_size,
        manifest.decoder.num_queries,
        manifest.decoder.mask_size,
        manifest.decoder.mask_size,
        a.threads,
    );
    println!(
        "Input: tests/fixtures/tiny-sam3/golden/astronaut.png scaled to {WIDTH}x{HEIGHT} ({}), prompt {:?}.",
        png.display(),
        a.prompt
    );

    let mut out = String::new();
    if a.video {
        let bench = video::run(&a, &rgba)?;
        video::report(&mut out, &bench)?;
        print!("{}", std::mem::take(&mut out));
        println!(
            "\nLoad average at the end: {} (this bench's own threads included).",
            machine::load_average()
        );
        return Ok(());
    }
    if !a.skip_stages {
        let part_a = stages::run(&a, &rgba, &png)?;
        report::part_a(&mut out, &part_a, a.iters())?;
        print!("{}", std::mem::take(&mut out));
        let chart = a.work.join("stages.png");
        let title = format!("{}: medians, {} threads", manifest.bundle.name, a.threads);
        std::fs::write(
            &chart,
            chart::png(&part_a.ours, &part_a.references, &title)?,
        )?;
        println!("\nChart: {}", chart.display());
    }
    if !a.skip_pipelines {
        let part_b = pipelines::run(&a, &png)?;
        report::part_b(&mut out, &part_b, a.threads)?;
        print!("{out}");
    }
    if a.remote {
        let part_d = remote::run(&a, &rgba)?;
        report::part_d(&mut out, &part_d, &manifest)?;
        print!("{}", std::mem::take(&mut out));
    }
    if !a.skip_live {
        machine::warn_if_busy("before the live part");
        let load = machine::load_average();
        let mut part_e = Vec::new();
        let mut bundles = vec![&a.live_toy, &a.bundle];
        bundles.dedup_by_key(|b| b.canonicalize().ok());
        // Synchronous mode on the first (toy) bundle only: see live::cases.
        for (i, bundle) in bundles.into_iter().enumerate() {
            let frames = if i == 0 {
                a.live_frames
            } else {
                a.live_bench_frames
            };
            let runs = live::run(bundle, &a.live_prompt, frames, i == 0)?;
            part_e.push((bundle.clone(), frames, runs));
        }
        report::part_e(&mut out, &part_e, &load)?;
        print!("{}", std::mem::take(&mut out));
    }
    println!(
        "\nLoad average at the end: {} (this bench's own threads included).",
        machine::load_average()
    );
    Ok(())
}
