//! An application reading samclipseg's results, and changing the prompt while
//! the pipeline plays.
//!
//!     cargo run -p gst-plugin-samclipseg --example read_meta -- [BUNDLE]
//!
//! BUNDLE defaults to the tiny test bundle (random weights: the numbers show
//! the plumbing, not real detections).

use std::error::Error;
use std::sync::atomic::{AtomicU32, Ordering};

use gst::prelude::*;
use gstsamclipseg::SamClipSegMeta;

fn main() -> Result<(), Box<dyn Error>> {
    gst::init()?;
    // Linked in, so no GST_PLUGIN_PATH is needed; with the .so installed, skip this.
    gstsamclipseg::plugin_register_static()?;

    let bundle = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/tiny-sam3"
        )
        .to_string()
    });
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=20 pattern=ball ! video/x-raw,width=320,height=240 ! videoconvert \
         ! samclipseg name=seg bundle=\"{bundle}\" prompt=\"a person\" ! fakesink name=sink"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let seg = pipeline.by_name("seg").ok_or("no element seg")?;
    let sink_pad = pipeline
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .ok_or("no sink pad")?;

    let frames = AtomicU32::new(0);
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        if let Some(meta) = SamClipSegMeta::from_buffer(buffer) {
            println!(
                "{} prompt {:?} ({}): {} instance(s)",
                buffer.pts().display(),
                meta.prompt(),
                meta.state().nick(),
                meta.instances().len()
            );
            for inst in meta.instances() {
                let (x, y, w, h) = inst.rect();
                let area = inst.mask.iter().filter(|v| **v != 0).count();
                println!(
                    "    #{} {} {:.2} at {x},{y} {w}x{h}, {area} mask pixels",
                    inst.index, inst.label, inst.score
                );
            }
        }
        // `prompt` is live: from the next frame on, the element looks for something else.
        if frames.fetch_add(1, Ordering::Relaxed) == 9 {
            seg.set_property("prompt", "cat");
        }
        gst::PadProbeReturn::Ok
    });

    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::NONE) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(..) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(format!("{}: {}", e.error(), e.debug().unwrap_or_default()));
            }
            _ => {}
        }
    };
    pipeline.set_state(gst::State::Null)?;
    result.map_err(Into::into)
}
