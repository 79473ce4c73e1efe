//! Pictures: frames in every layout the element accepts, resizing, the
//! model's pre- and post-processing, change detection and drawing.

pub mod change;
pub mod file;
pub mod frame;
pub mod postprocess;
pub mod preprocess;
pub mod render;
pub mod resize;
