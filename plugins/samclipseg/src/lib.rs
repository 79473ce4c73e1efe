//! GStreamer plugin `samclipseg`: element `samclipseg` segments the objects a
//! plain-English prompt names in video (SAM 3, through the `samclipseg` core
//! library) and attaches the result to every buffer as [`SamClipSegMeta`]
//! plus one `GstVideoRegionOfInterestMeta` per object, and with the
//! `analytics` feature (GStreamer >= 1.26) GstAnalytics Mtds in the buffer's
//! `GstAnalyticsRelationMeta` ([`analytics`] reads their masks).
//!
//! Use it as a loadable plugin (`libgstsamclipseg.so` on `GST_PLUGIN_PATH`) or
//! link it and call [`plugin_register_static`]; read results with
//! [`SamClipSegMeta::from_buffer`].
#![deny(clippy::unwrap_used, clippy::expect_used)]

use gst::glib;

#[cfg(feature = "analytics")]
pub mod analytics;
mod element;
mod logger;
pub mod meta;

pub use element::{
    BackendKind, MAX_INSTANCES_LIMIT, MESSAGE_NAME, OutputMode, ROI_PARAM_NAME, SUGGESTIONS_NAME,
    SamClipSeg, TrackerMode, bundle_search_path, default_bundle_path, installed_toy_bundle,
};
pub use meta::{InferenceState, SamClipSegMeta, Segmentation, SegmentedInstance};

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    logger::install();
    meta::register()?;
    element::register(plugin)
}

gst::plugin_define!(
    samclipseg,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    // GStreamer's name for a permissive licence; the crate is MIT OR Apache-2.0.
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
