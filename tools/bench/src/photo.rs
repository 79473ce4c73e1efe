//! The one input picture of every part: the fixture's astronaut at 1280x720,
//! in memory for the stages and as a PNG for the pipelines and the reference.

use std::path::{Path, PathBuf};

use crate::args::repo;
use crate::error::BoxResult;

pub const WIDTH: usize = 1280;
pub const HEIGHT: usize = 720;
/// Its file name under `--work`, where the sharing child process finds it too.
pub const FILE_NAME: &str = "astronaut-1280x720.png";

/// The fixture's astronaut scaled to 1280x720, as RGBA; also saved as an RGB
/// PNG under `work` for the pipelines and the PyTorch reference.
pub fn bench_photo(work: &Path) -> BoxResult<(Vec<u8>, PathBuf)> {
    let src = repo().join("tests/fixtures/tiny-sam3/golden/astronaut.png");
    let img = image::open(&src)
        .map_err(|e| format!("cannot read the bench photo {}: {e}", src.display()))?
        .to_rgb8();
    let scaled = image::imageops::resize(
        &img,
        WIDTH as u32,
        HEIGHT as u32,
        image::imageops::FilterType::Triangle,
    );
    std::fs::create_dir_all(work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let png = work.join(FILE_NAME);
    scaled
        .save(&png)
        .map_err(|e| format!("cannot write {}: {e}", png.display()))?;
    let rgba = image::DynamicImage::ImageRgb8(scaled).to_rgba8().into_raw();
    Ok((rgba, png))
}
