//! Part D (`--remote`): the engines on a Triton server on loopback against
//! the same engines in this process, for 1 and 4 streams sharing one model;
//! the bytes of a fresh frame up and down, and the latency the hop adds.
//!
//! The server is the nvidia-pytriton build (python backend, ONNX Runtime on
//! the CPU) started through engines/triton_serve.py, on the same cores as
//! this process: what this measures is the protocol's cost, not scale-out.

use std::sync::Arc;
use std::time::Instant;

use samclipseg::remote::RemoteOptions;
use samclipseg::{BackendKind, BackendOptions, Frame, PackedLayout, PostprocessOptions, Sam3Model};

#[path = "../../../tests/common/triton.rs"]
mod triton;

use crate::args::Args;
use crate::error::BoxResult;
use crate::photo::{HEIGHT, WIDTH};
use crate::stats::{Stats, stats};

pub struct Streams {
    pub streams: usize,
    pub frames: usize,
    pub seconds: f64,
}

impl Streams {
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds
    }
}

pub struct PartD {
    pub server: String,
    pub ready_s: f64,
    pub local: Vec<Streams>,
    pub remote: Vec<Streams>,
    /// One fresh frame, text features cached: protobuf bytes up and down.
    pub up: u64,
    pub down: u64,
    pub kept: usize,
    pub local_frame: Stats,
    pub remote_frame: Stats,
    /// (inferences, executions) of the image encoder during the 4-stream run.
    pub batching: (u64, u64),
}

/// `streams` threads on one model, `frames` fresh frames each.
fn run_streams(
    model: &Arc<Sam3Model>,
    rgba: &[u8],
    prompt: &str,
    streams: usize,
    frames: usize,
) -> BoxResult<Streams> {
    let started = Instant::now();
    std::thread::scope(|scope| -> BoxResult<()> {
        let handles: Vec<_> = (0..streams)
            .map(|_| {
                let model = model.clone();
                scope.spawn(move || -> Result<(), String> {
                    let frame = Frame::packed(rgba, WIDTH, HEIGHT, WIDTH * 4, PackedLayout::Rgba)
                        .map_err(|e| e.to_string())?;
                    for _ in 0..frames {
                        model
                            .segment(&frame, &[prompt], &PostprocessOptions::default())
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a stream panicked")??;
        }
        Ok(())
    })?;
    Ok(Streams {
        streams,
        frames: streams * frames,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Milliseconds of one fresh frame.
fn frame_ms(model: &Sam3Model, frame: &Frame, prompt: &str) -> BoxResult<f64> {
    let t = Instant::now();
    model.segment(frame, &[prompt], &PostprocessOptions::default())?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

pub fn run(a: &Args, rgba: &[u8]) -> BoxResult<PartD> {
    eprintln!(
        "bench: part D: writing a Triton repository for {}",
        a.bundle.display()
    );
    let repo = triton::repository("bench", &[&a.bundle]);
    let t = Instant::now();
    let server = triton::Triton::start(&repo);
    let ready_s = t.elapsed().as_secs_f64();
    let local_options = BackendOptions {
        intra_threads: a.threads,
        ..Default::default()
    };
    let remote_options = BackendOptions {
        kind: BackendKind::Remote,
        remote: RemoteOptions {
            server: server.url(),
            timeout: std::time::Duration::from_secs(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let local = Arc::new(Sam3Model::load(&a.bundle, &local_options)?);
    let remote = Arc::new(Sam3Model::load(&a.bundle, &remote_options)?);
    let frame = Frame::packed(rgba, WIDTH, HEIGHT, WIDTH * 4, PackedLayout::Rgba)?;
    let prompt = a.prompt.as_str();
    // Warm both, and cache the text features.
    local.segment(&frame, &[prompt], &PostprocessOptions::default())?;
    let kept = remote
        .segment(&frame, &[prompt], &PostprocessOptions::default())?
        .len();
    let before = remote.transfers();
    remote.segment(&frame, &[prompt], &PostprocessOptions::default())?;
    let after = remote.transfers();
    let n = a.iters().min(5);
    // Alternating, so that drift in the machine's load hits both alike.
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for _ in 0..n {
        l.push(frame_ms(&local, &frame, prompt)?);
        r.push(frame_ms(&remote, &frame, prompt)?);
    }
    let frames = a.share_frames as usize;
    let mut d = PartD {
        server: server.url(),
        ready_s,
        local: Vec::new(),
        remote: Vec::new(),
        up: after.host_to_device - before.host_to_device,
        down: after.device_to_host - before.device_to_host,
        kept,
        local_frame: stats(l),
        remote_frame: stats(r),
        batching: (0, 0),
    };
    let encoder = format!("{}-image_encoder", remote.manifest().bundle.name);
    for streams in [1, 4] {
        d.local
            .push(run_streams(&local, rgba, prompt, streams, frames)?);
        let server_stats = remote.remote().ok_or("not remote")?;
        let (i0, e0) = server_stats.statistics(&encoder)?;
        d.remote
            .push(run_streams(&remote, rgba, prompt, streams, frames)?);
        let (i1, e1) = server_stats.statistics(&encoder)?;
        if streams == 4 {
            d.batching = (i1 - i0, e1 - e0);
        }
    }
    drop(server);
    // The repository holds a copy of every engine file.
    let _ = std::fs::remove_dir_all(&repo);
    Ok(d)
}
