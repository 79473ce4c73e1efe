//! Still images from files, for the command-line program and the tests.

use std::path::Path;

use crate::error::{Error, Result};
use crate::image::frame::{Frame, PackedLayout};

/// A decoded picture as tightly packed RGBA8.
pub struct OwnedImage {
    pub rgba: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

impl OwnedImage {
    pub fn open(path: &Path) -> Result<OwnedImage> {
        let img = image::open(path)
            .map_err(|e| {
                Error::Image(format!(
                    "{}: not a readable image file ({e})",
                    path.display()
                ))
            })?
            .to_rgba8();
        if img.width() == 0 || img.height() == 0 {
            return Err(Error::Image(format!(
                "{}: the image is empty",
                path.display()
            )));
        }
        Ok(OwnedImage {
            width: img.width() as usize,
            height: img.height() as usize,
            rgba: img.into_raw(),
        })
    }

    pub fn frame(&self) -> Result<Frame<'_>> {
        Frame::packed(
            &self.rgba,
            self.width,
            self.height,
            self.width * 4,
            PackedLayout::Rgba,
        )
    }
}
