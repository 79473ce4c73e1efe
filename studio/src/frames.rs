//! What the page gets from a segmented frame: instances as JSON, and pictures
//! (JPEG for the live preview, PNG for downloads).

use std::io::Cursor;

use gstsamclipseg::SegmentedInstance;
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};
use samclipseg::image::render::PALETTE;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceJson {
    pub id: u64,
    pub label: String,
    pub score: f32,
    /// The model's box, (x1, y1, x2, y2) in frame pixels.
    pub r#box: [f32; 4],
    /// Mask pixels.
    pub area: u64,
    /// The overlay's colour for this instance (its phrase's), `#rrggbb`.
    pub color: String,
}

impl InstanceJson {
    pub fn of(inst: &SegmentedInstance) -> InstanceJson {
        let [r, g, b] = PALETTE[inst.phrase_index as usize % PALETTE.len()];
        InstanceJson {
            id: inst.id,
            label: inst.label.clone(),
            score: inst.score,
            r#box: inst.bbox,
            area: inst.mask.iter().filter(|&&m| m > 127).count() as u64,
            color: format!("#{r:02x}{g:02x}{b:02x}"),
        }
    }
}

/// The union of the instances' masks over a `width` x `height` frame (255 in).
pub fn union_mask(instances: &[SegmentedInstance], width: usize, height: usize) -> Vec<u8> {
    let mut out = vec![0u8; width * height];
    for inst in instances {
        let (x0, y0) = (inst.x as usize, inst.y as usize);
        let (w, h) = (inst.width as usize, inst.height as usize);
        for row in 0..h {
            let y = y0 + row;
            if y >= height {
                break;
            }
            for col in 0..w {
                let x = x0 + col;
                if x < width && inst.mask[row * w + col] > 127 {
                    out[y * width + x] = 255;
                }
            }
        }
    }
    out
}

/// Tightly packed RGBA rows out of a frame plane with `stride` bytes a row.
pub fn packed_rgba(plane: &[u8], stride: usize, width: usize, height: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(width * height * 4);
    for y in 0..height {
        out.extend_from_slice(&plane[y * stride..y * stride + width * 4]);
    }
    out
}

/// RGB of an RGBA picture: as it is, or (alpha view) blended over a grey
/// checkerboard by its alpha, as an editor shows transparency.
pub fn rgb_view(rgba: &[u8], width: usize, alpha_view: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for (i, px) in rgba.chunks_exact(4).enumerate() {
        if !alpha_view {
            out.extend_from_slice(&px[..3]);
            continue;
        }
        let (x, y) = (i % width, i / width);
        let check: u16 = if (x / 12 + y / 12) % 2 == 0 { 204 } else { 153 };
        let a = px[3] as u16;
        for &c in &px[..3] {
            out.push(((c as u16 * a + check * (255 - a) + 127) / 255) as u8);
        }
    }
    out
}

pub fn jpeg(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(rgb, width, height, ExtendedColorType::Rgb8)
        .map_err(|e| format!("JPEG encoding failed: {e}"))?;
    Ok(out)
}

pub fn png(
    data: &[u8],
    width: u32,
    height: u32,
    kind: ExtendedColorType,
) -> Result<Vec<u8>, String> {
    let mut out = Cursor::new(Vec::new());
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(data, width, height, kind)
        .map_err(|e| format!("PNG encoding failed: {e}"))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: u32, y: u32, side: u32) -> SegmentedInstance {
        SegmentedInstance {
            index: 0,
            id: 7,
            label: "square".into(),
            phrase_index: 1,
            score: 0.5,
            bbox: [x as f32, y as f32, (x + side) as f32, (y + side) as f32],
            x,
            y,
            width: side,
            height: side,
            mask: vec![255; (side * side) as usize],
        }
    }

    #[test]
    fn union_is_clipped_to_the_frame_and_counts_area() {
        let a = square(6, 6, 4);
        let m = union_mask(&[a.clone(), square(0, 0, 2)], 8, 8);
        assert_eq!(m.iter().filter(|&&v| v == 255).count(), 4 + 4);
        assert_eq!(m[7 * 8 + 7], 255);
        let j = InstanceJson::of(&a);
        assert_eq!(j.area, 16);
        let [r, g, b] = PALETTE[1];
        assert_eq!(j.color, format!("#{r:02x}{g:02x}{b:02x}"));
    }

    #[test]
    fn alpha_view_shows_the_checkerboard_where_transparent() {
        let rgba = [255, 0, 0, 255, 255, 0, 0, 0];
        assert_eq!(rgb_view(&rgba, 2, true), vec![255, 0, 0, 204, 204, 204]);
        assert_eq!(rgb_view(&rgba, 2, false), vec![255, 0, 0, 255, 0, 0]);
    }
}
