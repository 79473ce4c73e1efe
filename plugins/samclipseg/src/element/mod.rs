//! Element `samclipseg`: the GObject wrapper and its registration.

use gst::glib;
use gst::prelude::*;

#[cfg(feature = "analytics")]
mod analytics;
mod draw;
mod imp;
mod properties;
mod result;
mod settings;
mod suggest;
mod video;

pub use properties::MAX_INSTANCES_LIMIT;
pub use result::{MESSAGE_NAME, ROI_PARAM_NAME};
pub use samclipseg::BackendKind;
pub use settings::{
    OutputMode, TrackerMode, bundle_search_path, default_bundle_path, installed_toy_bundle,
};
pub use suggest::SUGGESTIONS_NAME;

glib::wrapper! {
    /// The `samclipseg` element; create it with `gst::ElementFactory::make("samclipseg")`.
    pub struct SamClipSeg(ObjectSubclass<imp::SamClipSeg>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Enum types used by properties and metadata, documented with the plugin.
    BackendKind::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    OutputMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    TrackerMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "samclipseg",
        gst::Rank::NONE,
        SamClipSeg::static_type(),
    )
}
