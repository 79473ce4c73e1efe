//! Errors read from a pipeline's bus, worded for the page and the log.

use gst::prelude::*;

/// The first error among the messages queued on `pipeline`'s bus.
pub fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.timed_pop(gst::ClockTime::ZERO) {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(describe_error(e));
        }
    }
    None
}

/// An error message as "element path: error (debug)".
pub fn describe_error(e: &gst::message::Error) -> String {
    let src = e
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default();
    match e.debug() {
        Some(d) => format!("{src}: {} ({d})", e.error()),
        None => format!("{src}: {}", e.error()),
    }
}
