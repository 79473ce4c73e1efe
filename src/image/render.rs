//! Drawing results into packed pixels: the alpha channel (union of masks) and
//! a preview overlay (translucent fill, outline, label and score).
//!
//! Labels use embedded bitmap fonts scaled by an integer factor, so they
//! need no font file and stay crisp from 640x360 to 4K: ASCII from an 8x8
//! font, everything else (Chinese labels as typed, accented letters) from GNU
//! Unifont's 8x16 and 16x16 glyphs.

use font8x8::UnicodeFonts;

use crate::image::frame::PackedLayout;
use crate::image::postprocess::{Instance, mask_from_logits};

/// A packed image being drawn on.
pub struct Canvas<'a> {
    pub data: &'a mut [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub layout: PackedLayout,
}

/// Distinct, saturated colours; instance `i` of prompt `p` uses `PALETTE[p % len]`.
pub const PALETTE: [[u8; 3]; 8] = [
    [255, 64, 64],
    [64, 200, 255],
    [255, 200, 0],
    [80, 230, 80],
    [230, 80, 230],
    [255, 140, 40],
    [40, 120, 255],
    [180, 255, 120],
];

/// The union of the instances' masks at `width` x `height`: 255 inside any mask.
pub fn union_mask(instances: &[Instance], width: usize, height: usize) -> Vec<u8> {
    let mut out = vec![0u8; width * height];
    for inst in instances {
        if inst.mask.width != width || inst.mask.height != height {
            continue;
        }
        for (o, m) in out.iter_mut().zip(&inst.mask.data) {
            *o |= *m;
        }
    }
    out
}

/// The union of the masks of `logits` (masks of `mask_size` = (width, height)
/// one after the other, see [`mask_from_logits`]) at the canvas size, written
/// into its alpha channel. The CPU twin of `gpu::GpuKernels::alpha_from_logits`.
/// Returns false, writing nothing, when the layout has no alpha channel.
pub fn alpha_from_logits(
    canvas: &mut Canvas,
    logits: &[f32],
    mask_size: (usize, usize),
    mask_threshold: f32,
) -> bool {
    let (w, h) = (canvas.width, canvas.height);
    let mut alpha = vec![0u8; w * h];
    let per = mask_size.0 * mask_size.1;
    for m in logits
        .chunks_exact(per.max(1))
        .take(if per == 0 { 0 } else { usize::MAX })
    {
        let mask = mask_from_logits(m, mask_size, (w, h), mask_threshold);
        for (o, v) in alpha.iter_mut().zip(&mask.data) {
            *o |= *v;
        }
    }
    canvas.write_alpha(&alpha)
}

impl Canvas<'_> {
    fn offset(&self, x: usize, y: usize) -> usize {
        y * self.stride + x * self.layout.bytes_per_pixel()
    }

    /// Writes `alpha` (width x height) into the alpha byte of every pixel.
    /// Returns false when the layout has no alpha channel.
    pub fn write_alpha(&mut self, alpha: &[u8]) -> bool {
        let Some(a) = self.layout.alpha_offset() else {
            return false;
        };
        for y in 0..self.height {
            for x in 0..self.width {
                let o = self.offset(x, y) + a;
                self.data[o] = alpha[y * self.width + x];
            }
        }
        true
    }

    fn blend(&mut self, x: usize, y: usize, colour: [u8; 3], opacity: u16) {
        let o = self.offset(x, y);
        let idx = self.layout.channel_offsets();
        for c in 0..3 {
            let p = &mut self.data[o + idx[c]];
            *p = ((*p as u16 * (256 - opacity) + colour[c] as u16 * opacity) >> 8) as u8;
        }
    }

    /// Blends `colour` over a rectangle (clipped to the canvas); opacity 256
    /// paints it solid.
    pub fn fill_rect(
        &mut self,
        x: usize,
        y: usize,
        w: usize,
        h: usize,
        colour: [u8; 3],
        opacity: u16,
    ) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.blend(xx, yy, colour, opacity);
            }
        }
    }

    /// Draws text with its top-left corner at (x, y), `scale` pixels per font
    /// dot, on a line of [`text_size`]'s height (8x8 glyphs centred on it).
    pub fn draw_text(&mut self, x: usize, y: usize, text: &str, scale: usize, colour: [u8; 3]) {
        let line = line_height(text);
        let mut pen = x;
        for ch in text.chars() {
            let glyph = Glyph::of(ch);
            let top = y + (line - glyph.height()) / 2 * scale;
            for row in 0..glyph.height() {
                for col in 0..glyph.width() {
                    if glyph.dot(col, row) {
                        let px = pen + col * scale;
                        self.fill_rect(px, top + row * scale, scale, scale, colour, 256);
                    }
                }
            }
            pen += glyph.width() * scale;
        }
    }

    /// Translucent masks, outlines, and a "label score" tag per instance
    /// ("#id label score" for tracked instances, whose id is not 0).
    pub fn draw_overlay(&mut self, instances: &[Instance]) {
        let thickness = (self.height.min(self.width) / 360).max(1);
        let scale = (self.height.min(self.width) / 240).max(1);
        for inst in instances {
            let m = &inst.mask;
            if m.width != self.width || m.height != self.height {
                continue;
            }
            let colour = PALETTE[inst.prompt_index % PALETTE.len()];
            let Some((x0, y0, w, h)) = m.extent() else {
                continue;
            };
            for y in y0..y0 + h {
                for x in x0..x0 + w {
                    if m.data[y * m.width + x] == 0 {
                        continue;
                    }
                    let edge = is_edge(&m.data, m.width, m.height, x, y, thickness);
                    self.blend(x, y, colour, if edge { 256 } else { 110 });
                }
            }
        }
        // Labels last, so that no mask covers another instance's text.
        for inst in instances {
            let colour = PALETTE[inst.prompt_index % PALETTE.len()];
            let text = match inst.id {
                0 => format!("{} {:.2}", inst.label, inst.score),
                id => format!("#{id} {} {:.2}", inst.label, inst.score),
            };
            let (w, h) = text_size(&text);
            let (tw, th) = ((w + 2) * scale, (h + 2) * scale);
            let x = (inst.bbox[0].max(0.0) as usize).min(self.width.saturating_sub(tw));
            let y = (inst.bbox[1].max(0.0) as usize).min(self.height.saturating_sub(th));
            // Opaque, so that a tag drawn over another stays readable.
            self.fill_rect(x, y, tw, th, [0, 0, 0], 256);
            self.draw_text(x + scale, y + scale, &text, scale, colour);
        }
    }
}

impl Canvas<'_> {
    /// A key in the top-right corner: each phrase in its colour.
    pub fn draw_legend(&mut self, phrases: &[&str]) {
        let scale = (self.height.min(self.width) / 240).max(1);
        let widest = phrases.iter().map(|p| text_size(p).0).max().unwrap_or(0);
        let tallest = phrases.iter().map(|p| text_size(p).1).max().unwrap_or(8);
        let (w, line) = ((widest + 16) * scale + 2 * scale, (tallest + 2) * scale);
        let x = self.width.saturating_sub(w + scale);
        self.fill_rect(x, scale, w, line * phrases.len() + scale, [0, 0, 0], 180);
        for (i, phrase) in phrases.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let y = scale + i * line + scale;
            self.fill_rect(x + scale, y, 8 * scale, 8 * scale, colour, 256);
            self.draw_text(x + 2 * 8 * scale, y, phrase, scale, colour);
        }
    }
}

/// One character's bitmap.
enum Glyph {
    /// ASCII, 8x8.
    Small([u8; 8]),
    /// GNU Unifont: 8x16 (half width) or 16x16 (CJK and other wide scripts).
    Unifont(&'static unifont::Glyph),
}

impl Glyph {
    /// The glyph for `ch`; '?' for a character neither font has.
    fn of(ch: char) -> Glyph {
        if ch.is_ascii() {
            if let Some(g) = font8x8::BASIC_FONTS.get(ch) {
                return Glyph::Small(g);
            }
        } else if let Some(g) = unifont::get_glyph(ch) {
            return Glyph::Unifont(g);
        }
        Glyph::Small(font8x8::BASIC_FONTS.get('?').unwrap_or([0; 8]))
    }

    fn width(&self) -> usize {
        match self {
            Glyph::Small(_) => 8,
            Glyph::Unifont(g) => g.get_width(),
        }
    }

    fn height(&self) -> usize {
        match self {
            Glyph::Small(_) => 8,
            Glyph::Unifont(_) => 16,
        }
    }

    fn dot(&self, x: usize, y: usize) -> bool {
        match self {
            Glyph::Small(rows) => rows[y] & (1 << x) != 0,
            Glyph::Unifont(g) => g.get_pixel(x, y),
        }
    }
}

/// Height of a line of `text` in font dots: 16 when a Unifont glyph is in
/// it, else 8.
fn line_height(text: &str) -> usize {
    text.chars()
        .map(|c| Glyph::of(c).height())
        .max()
        .unwrap_or(8)
}

/// Width and height of `text` in font dots (multiply by the scale).
pub fn text_size(text: &str) -> (usize, usize) {
    let width = text.chars().map(|c| Glyph::of(c).width()).sum();
    (width, line_height(text))
}

/// Whether a set pixel lies within `t` pixels of an unset one or the border.
fn is_edge(mask: &[u8], w: usize, h: usize, x: usize, y: usize, t: usize) -> bool {
    if x < t || y < t || x + t >= w || y + t >= h {
        return true;
    }
    [(x - t, y), (x + t, y), (x, y - t), (x, y + t)]
        .iter()
        .any(|&(xx, yy)| mask[yy * w + xx] == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::postprocess::Mask;

    fn square(w: usize, h: usize) -> Instance {
        let mut data = vec![0u8; w * h];
        for y in h / 4..h / 2 {
            for x in w / 4..w / 2 {
                data[y * w + x] = 255;
            }
        }
        Instance {
            label: "cat".into(),
            id: 0,
            prompt_index: 0,
            query: 0,
            score: 0.9,
            bbox: [
                (w / 4) as f32,
                (h / 4) as f32,
                (w / 2) as f32,
                (h / 2) as f32,
            ],
            mask: Mask {
                width: w,
                height: h,
                data,
            },
        }
    }

    #[test]
    fn alpha_is_the_union_and_other_bytes_stay() {
        let (w, h) = (8, 8);
        let inst = square(w, h);
        let alpha = union_mask(std::slice::from_ref(&inst), w, h);
        let mut px = vec![7u8; w * h * 4];
        let mut c = Canvas {
            data: &mut px,
            width: w,
            height: h,
            stride: w * 4,
            layout: PackedLayout::Argb,
        };
        assert!(c.write_alpha(&alpha));
        for (i, p) in px.chunks_exact(4).enumerate() {
            assert_eq!(p[0], inst.mask.data[i]);
            assert_eq!(&p[1..], &[7, 7, 7]);
        }
        let mut rgb = vec![0u8; 8 * 8 * 3];
        let mut c = Canvas {
            data: &mut rgb,
            width: 8,
            height: 8,
            stride: 24,
            layout: PackedLayout::Rgb,
        };
        assert!(!c.write_alpha(&alpha));
    }

    #[test]
    fn alpha_from_logits_is_the_union_of_the_thresholded_masks() {
        // Two 2x2 masks: left column, then top row; 8x6 BGRA with row padding.
        let logits = [5.0, -5.0, 5.0, -5.0, 5.0, 5.0, -5.0, -5.0];
        let (w, h, stride) = (8, 6, 8 * 4 + 4);
        let mut px = vec![9u8; stride * h];
        let mut c = Canvas {
            data: &mut px,
            width: w,
            height: h,
            stride,
            layout: PackedLayout::Bgra,
        };
        assert!(alpha_from_logits(&mut c, &logits, (2, 2), 0.5));
        for y in 0..h {
            for x in 0..w {
                let want = if x < w / 2 || y < h / 2 { 255 } else { 0 };
                assert_eq!(px[y * stride + x * 4 + 3], want, "({x},{y})");
                assert_eq!(&px[y * stride + x * 4..y * stride + x * 4 + 3], &[9, 9, 9]);
            }
            assert_eq!(&px[y * stride + w * 4..(y + 1) * stride], &[9, 9, 9, 9]);
        }
        // No masks clears alpha; no alpha channel writes nothing.
        let mut c = Canvas {
            data: &mut px,
            width: w,
            height: h,
            stride,
            layout: PackedLayout::Bgra,
        };
        assert!(alpha_from_logits(&mut c, &[], (2, 2), 0.5));
        assert!(px.chunks_exact(4).take(w).all(|p| p[3] == 0));
        let mut rgb = vec![1u8; 4 * 3];
        let mut c = Canvas {
            data: &mut rgb,
            width: 2,
            height: 2,
            stride: 6,
            layout: PackedLayout::Rgb,
        };
        assert!(!alpha_from_logits(&mut c, &logits, (2, 2), 0.5));
        assert_eq!(rgb, vec![1u8; 12]);
    }

    #[test]
    fn overlay_touches_only_masks_and_labels() {
        let (w, h) = (640, 360);
        let inst = square(w, h);
        let mut px = vec![0u8; w * h * 3];
        let mut c = Canvas {
            data: &mut px,
            width: w,
            height: h,
            stride: w * 3,
            layout: PackedLayout::Rgb,
        };
        c.draw_overlay(std::slice::from_ref(&inst));
        let label_rows = h / 4..h / 4 + 10 * (h / 240).max(1);
        for y in 0..h {
            for x in 0..w {
                let changed = px[(y * w + x) * 3..(y * w + x) * 3 + 3] != [0, 0, 0];
                let inside = inst.mask.data[y * w + x] != 0;
                if changed && !inside {
                    assert!(
                        label_rows.contains(&y),
                        "pixel ({x},{y}) changed outside mask and label"
                    );
                }
                if inside && !label_rows.contains(&y) {
                    assert!(changed, "mask pixel ({x},{y}) not drawn");
                }
            }
        }
    }

    /// The pixels `draw_text` sets for `text` at scale 1 on a black canvas.
    fn drawn(text: &str) -> Vec<bool> {
        let (w, h) = (40, 20);
        let mut px = vec![0u8; w * h * 3];
        let mut c = Canvas {
            data: &mut px,
            width: w,
            height: h,
            stride: w * 3,
            layout: PackedLayout::Rgb,
        };
        c.draw_text(0, 0, text, 1, [255, 255, 255]);
        px.chunks(3).map(|p| p[0] != 0).collect()
    }

    #[test]
    fn chinese_labels_are_drawn_with_their_own_glyphs() {
        assert_eq!(text_size("cat"), (24, 8));
        assert_eq!(text_size("红色"), (32, 16));
        assert_eq!(text_size("红 cat"), (16 + 4 * 8, 16));
        let red = drawn("红");
        let unknown = drawn("?");
        assert!(red.iter().filter(|p| **p).count() > 20, "红 is drawn");
        assert_ne!(red, unknown, "not as a question mark");
        assert_ne!(drawn("红"), drawn("绿"));
        // The 8x8 ASCII is centred on a 16-dot line beside CJK: dot rows 4..12.
        let mixed = drawn("红a");
        let a_rows: Vec<usize> = (0..20)
            .filter(|y| (16..24).any(|x| mixed[y * 40 + x]))
            .collect();
        assert!(a_rows.iter().all(|y| (4..12).contains(y)), "{a_rows:?}");
    }
}
