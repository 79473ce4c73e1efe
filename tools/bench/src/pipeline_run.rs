//! One measured pipeline run of part B: the photo through samclipseg
//! elements after a tee, with the inference state of every output buffer
//! counted, its span timed and the process's memory read. `pipelines.rs`
//! runs the cases in this process and `children.rs` the sharing cases in a
//! child process, both through [`run_pipeline`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use gstsamclipseg::{InferenceState, SamClipSegMeta};

use crate::args::Args;
use crate::error::BoxResult;
use crate::machine::proc_status_kb;
use crate::photo::{HEIGHT, WIDTH};

/// The prompts the prompt-change pipeline cycles through, one per 10 frames.
const PROMPTS: [&str; 3] = ["a person", "a cat", "a red car"];

/// One pipeline run: its frame counts by state, its span and its memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PipelineRun {
    pub frames: u64,
    /// From the first buffer entering an element to the last leaving one.
    pub seconds: f64,
    /// From the first buffer leaving an element to the last: the steady rate
    /// without the first frame (which is always fresh).
    pub steady_seconds: f64,
    pub fresh: u64,
    pub reused_features: u64,
    pub reused_result: u64,
    pub rss_before_kb: u64,
    pub rss_started_kb: u64,
    pub hwm_kb: u64,
}

impl PipelineRun {
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }

    pub fn steady_fps(&self) -> f64 {
        self.frames.saturating_sub(1) as f64 / self.steady_seconds.max(1e-9)
    }
}

/// What a pipeline case does besides counting.
#[derive(Clone, Copy, PartialEq)]
pub enum Extra {
    None,
    /// A square moves across the picture: every frame differs.
    MovingSquare,
    /// The prompt changes every 10 frames, cycling through `PROMPTS`.
    PromptChange,
}

#[derive(Default)]
struct Clock {
    first_in: Option<Instant>,
    first_out: Option<Instant>,
    last_out: Option<Instant>,
}

fn element_props(a: &Args, reuse: Option<f32>) -> String {
    let mut p = format!(
        "bundle=\"{}\" threads={} prompt=\"{}\" threshold=0.5 smoothness=3",
        a.bundle.display(),
        a.threads,
        a.prompt
    );
    if let Some(r) = reuse {
        p.push_str(&format!(" reuse-threshold={r}"));
    }
    p
}

fn pipeline_desc(png: &Path, frames: u32, elements: usize, props: &str) -> String {
    let mut d = format!(
        "filesrc location=\"{}\" ! pngdec ! videoconvert ! video/x-raw,format=RGBA,width={WIDTH},height={HEIGHT} \
         ! imagefreeze name=frz num-buffers={frames} ! tee name=t",
        png.display()
    );
    for i in 0..elements {
        d.push_str(&format!(
            " t. ! queue max-size-buffers=2 ! samclipseg name=seg{i} {props} ! fakesink name=sink{i} sync=false"
        ));
    }
    d
}

/// Draws a 160x160 square whose position and colour depend on `i` into an
/// RGBA buffer.
fn draw_square(buffer: &mut gst::BufferRef, stride: usize, i: u64) {
    let Ok(mut map) = buffer.map_writable() else {
        return;
    };
    let data = map.as_mut_slice();
    let side = 160;
    let x0 = (i as usize * 97) % (WIDTH - side);
    let y0 = (i as usize * 53) % (HEIGHT - side);
    let colour = [(i * 40 % 256) as u8, (255 - i * 40 % 256) as u8, 128, 255];
    for y in y0..y0 + side {
        let row = y * stride;
        for x in x0..x0 + side {
            let o = row + x * 4;
            if let Some(px) = data.get_mut(o..o + 4) {
                px.copy_from_slice(&colour);
            }
        }
    }
}

/// Runs `frames` frames of the photo through `elements` samclipseg elements
/// after a tee and measures them.
pub fn run_pipeline(
    a: &Args,
    png: &Path,
    frames: u32,
    elements: usize,
    reuse: Option<f32>,
    extra: Extra,
) -> BoxResult<PipelineRun> {
    let desc = pipeline_desc(png, frames, elements, &element_props(a, reuse));
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the bench pipeline is not a gst::Pipeline")?;
    let clock = Arc::new(Mutex::new(Clock::default()));
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());

    for i in 0..elements {
        let seg_sink = static_pad(&pipeline, &format!("seg{i}"), "sink")?;
        let c = clock.clone();
        let seg_weak = seg_sink
            .parent_element()
            .ok_or("samclipseg's sink pad has no element")?
            .downgrade();
        let seen = AtomicU64::new(0);
        seg_sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Ok(mut c) = c.lock() {
                c.first_in.get_or_insert_with(Instant::now);
            }
            let n = seen.fetch_add(1, Ordering::Relaxed);
            if extra == Extra::PromptChange
                && n.is_multiple_of(10)
                && let Some(seg) = seg_weak.upgrade()
            {
                seg.set_property("prompt", PROMPTS[(n / 10) as usize % PROMPTS.len()]);
            }
            gst::PadProbeReturn::Ok
        });
        let sink_pad = static_pad(&pipeline, &format!("sink{i}"), "sink")?;
        let c = clock.clone();
        let counts = counts.clone();
        sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let slot = match SamClipSegMeta::from_buffer(buffer).map(|m| m.state()) {
                    Some(InferenceState::Fresh) => 0,
                    Some(InferenceState::ReusedImageFeatures) => 1,
                    Some(InferenceState::ReusedResult) => 2,
                    // No meta, or a state this bench does not expect (pending).
                    _ => 3,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
            }
            if let Ok(mut c) = c.lock() {
                let now = Instant::now();
                c.first_out.get_or_insert(now);
                c.last_out = Some(now);
            }
            gst::PadProbeReturn::Ok
        });
    }
    if extra == Extra::MovingSquare {
        let pad = static_pad(&pipeline, "frz", "src")?;
        let n = AtomicU64::new(0);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let stride = pad
                .current_caps()
                .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
                .map_or(WIDTH * 4, |v| v.stride()[0] as usize);
            if let Some(buffer) = info.buffer_mut() {
                // imagefreeze pushes the same memory each time: copy, then draw.
                draw_square(buffer.make_mut(), stride, n.fetch_add(1, Ordering::Relaxed));
            }
            gst::PadProbeReturn::Ok
        });
    }

    let mut run = PipelineRun {
        rss_before_kb: proc_status_kb("VmRSS:"),
        ..Default::default()
    };
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    let result = (|| -> BoxResult<()> {
        pipeline.set_state(gst::State::Paused)?;
        // Prerolled: every element started (model loaded) and holds a frame.
        let (res, _, _) = pipeline.state(gst::ClockTime::from_seconds(600));
        if res.is_err() {
            return Err(bus_error(&bus).unwrap_or_else(|| "the pipeline did not preroll".into()));
        }
        run.rss_started_kb = proc_status_kb("VmRSS:");
        pipeline.set_state(gst::State::Playing)?;
        loop {
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(1)) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Eos(..) => break Ok(()),
                gst::MessageView::Error(e) => break Err(error_text(e).into()),
                _ => {}
            }
        }
    })();
    run.hwm_kb = proc_status_kb("VmHWM:");
    pipeline.set_state(gst::State::Null)?;
    result?;
    let c = clock.lock().map_err(|_| "clock lock poisoned")?;
    let span = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    run.seconds = span(c.first_in, c.last_out);
    run.steady_seconds = span(c.first_out, c.last_out);
    run.fresh = counts[0].load(Ordering::Relaxed);
    run.reused_features = counts[1].load(Ordering::Relaxed);
    run.reused_result = counts[2].load(Ordering::Relaxed);
    run.frames =
        run.fresh + run.reused_features + run.reused_result + counts[3].load(Ordering::Relaxed);
    Ok(run)
}

/// Pad `pad` of the element named `element` in the bench pipeline.
fn static_pad(pipeline: &gst::Pipeline, element: &str, pad: &str) -> BoxResult<gst::Pad> {
    pipeline
        .by_name(element)
        .and_then(|e| e.static_pad(pad))
        .ok_or_else(|| format!("no pad {element}:{pad} in the bench pipeline").into())
}

fn error_text(e: &gst::message::Error) -> String {
    format!("{}: {}", e.error(), e.debug().unwrap_or_default())
}

fn bus_error(bus: &gst::Bus) -> Option<Box<dyn std::error::Error>> {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(error_text(e).into());
        }
    }
    None
}
