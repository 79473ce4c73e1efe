//! The element's debug category, and the core library's `log` records routed
//! into it, so `GST_DEBUG=samclipseg:5` shows them next to the element's own.

use std::sync::LazyLock;

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "samclipseg",
        gst::DebugColorFlags::empty(),
        Some("SAM 3 text-prompted segmentation"),
    )
});

static LOGGER: LazyLock<CoreLogger> =
    LazyLock::new(|| CoreLogger(gst::DebugCategoryLogger::new(*CAT)));

/// Forwards records of the samclipseg crates only; other crates' logging is
/// not GStreamer's business.
struct CoreLogger(gst::DebugCategoryLogger);

fn ours(target: &str) -> bool {
    target.starts_with("samclipseg") || target.starts_with("gstsamclipseg")
}

impl log::Log for CoreLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        ours(metadata.target()) && self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if ours(record.target()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {}
}

/// Installs the logger unless the application already has one (the `log`
/// crate allows one per process; the application's choice wins).
pub fn install() {
    if log::set_logger(&*LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}
