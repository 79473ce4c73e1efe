//! Picture mode: an uploaded JPG or PNG through a one-frame pipeline
//! (appsrc ! samclipseg output-mode=overlay ! appsink), so that a picture gets
//! exactly what the element would give a frame. The preview's element keeps the
//! model loaded, and elements on the same bundle share it, so a request does
//! not load engines again.

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::Path;

use gst::prelude::*;
use image::{ExtendedColorType, ImageDecoder, ImageFormat, ImageReader};
use samclipseg::Threshold;

use crate::bus::first_error;
use crate::frames::{self, InstanceJson};
use crate::rules::{self, MAX_SIDE, MAX_UPLOAD_BYTES};

use bytes::Bytes;

/// A refused upload: a client error, with what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    TooLarge(String),
    Unsupported(String),
    Broken(String),
}

/// An upload decoded to RGBA, after its size checks.
pub struct Picture {
    pub rgba: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// What a decoder may allocate for itself, beside the picture (the JPEG
/// and PNG decoders' own buffers).
const DECODER_ALLOC: u64 = 512 * 1024 * 1024;

pub fn decode(bytes: &[u8]) -> Result<Picture, Refusal> {
    if bytes.is_empty() {
        return Err(Refusal::Broken("the image field is empty".into()));
    }
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(Refusal::TooLarge(format!(
            "the image is {} bytes; at most {} MB",
            bytes.len(),
            MAX_UPLOAD_BYTES >> 20
        )));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Refusal::Broken(format!("cannot read the upload: {e}")))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(other) => {
            return Err(Refusal::Unsupported(format!(
                "{other:?} pictures are not supported: upload a JPG or PNG"
            )));
        }
        None => {
            return Err(Refusal::Unsupported(
                "not a JPG or PNG picture (its first bytes are neither)".into(),
            ));
        }
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(DECODER_ALLOC);
    reader.limits(limits);
    // The header alone says the size: a huge picture is refused before a
    // byte of it is decoded.
    let too_large = |(w, h): (u32, u32)| {
        Refusal::TooLarge(format!(
            "the picture is {w}x{h}; at most {MAX_SIDE} px a side"
        ))
    };
    let (w, h) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map(|r| r.into_dimensions())
        .map_err(|e| Refusal::Broken(format!("cannot read the picture's header: {e}")))?
        .map_err(|e| Refusal::Broken(format!("the picture's header is broken: {e}")))?;
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(too_large((w, h)));
    }
    if w < 2 || h < 2 {
        return Err(Refusal::Broken(format!(
            "the picture is {w}x{h}: too small"
        )));
    }
    let decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => too_large((w, h)),
        e => Refusal::Broken(format!("the picture's header is broken: {e}")),
    })?;
    let color = decoder.color_type();
    let native = usize::try_from(decoder.total_bytes()).unwrap_or(usize::MAX);
    let pixels = w as usize * h as usize;
    // One buffer, RGBA-sized (or larger for 16-bit pictures): the picture is
    // decoded into its front and widened to RGBA in place, so that no second
    // full-size copy is ever made.
    let size = native.max(pixels * 4);
    let mut rgba = Vec::new();
    rgba.try_reserve_exact(size)
        .map_err(|_| Refusal::TooLarge(format!("no memory for a {w}x{h} picture")))?;
    rgba.resize(size, 0);
    decoder
        .read_image(&mut rgba[..native])
        .map_err(|e| Refusal::Broken(format!("the picture is truncated or corrupt: {e}")))?;
    widen_to_rgba(&mut rgba, color, pixels).map_err(Refusal::Unsupported)?;
    rgba.truncate(pixels * 4);
    Ok(Picture {
        width: w,
        height: h,
        rgba,
    })
}

/// Turns the `pixels` pixels of colour type `color` at the front of `buf`
/// into RGBA8, in place (`buf` holds at least `pixels * 4` bytes).
fn widen_to_rgba(buf: &mut [u8], color: image::ColorType, pixels: usize) -> Result<(), String> {
    use image::ColorType as C;
    // Samples per pixel, and whether they are 16-bit (native endian, as the
    // decoder gives them).
    let (channels, wide) = match color {
        C::Rgba8 => return Ok(()),
        C::L8 => (1, false),
        C::La8 => (2, false),
        C::Rgb8 => (3, false),
        C::L16 => (1, true),
        C::La16 => (2, true),
        C::Rgb16 => (3, true),
        C::Rgba16 => (4, true),
        other => return Err(format!("{other:?} pictures are not supported")),
    };
    // A sample as 8 bits (16-bit ones rounded as the image crate does).
    let sample = |buf: &[u8], at: usize| -> u8 {
        if wide {
            let v = u16::from_ne_bytes([buf[2 * at], buf[2 * at + 1]]);
            ((u32::from(v) + 128) / 257) as u8
        } else {
            buf[at]
        }
    };
    let pixel = |buf: &[u8], i: usize| -> [u8; 4] {
        let at = i * channels;
        let hi = |k: usize| sample(buf, at + k);
        match channels {
            1 => [hi(0), hi(0), hi(0), 255],
            2 => [hi(0), hi(0), hi(0), hi(1)],
            3 => [hi(0), hi(1), hi(2), 255],
            _ => [hi(0), hi(1), hi(2), hi(3)],
        }
    };
    let bytes_in = channels * if wide { 2 } else { 1 };
    if bytes_in <= 4 {
        // Wider out than in: from the last pixel back, each write lands at or
        // after what is still to be read.
        for i in (0..pixels).rev() {
            let px = pixel(buf, i);
            buf[i * 4..i * 4 + 4].copy_from_slice(&px);
        }
    } else {
        // Narrower out than in (16-bit RGB, RGBA): from the first pixel on.
        for i in 0..pixels {
            let px = pixel(buf, i);
            buf[i * 4..i * 4 + 4].copy_from_slice(&px);
        }
    }
    Ok(())
}

/// One segmented picture and its downloads, each kept once and shared by
/// every answer that sends it.
pub struct Outcome {
    pub width: u32,
    pub height: u32,
    pub instances: Vec<InstanceJson>,
    pub annotated_png: Bytes,
    pub cutout_png: Bytes,
    pub mask_png: Bytes,
    pub instances_json: Bytes,
}

impl Outcome {
    /// What keeping it costs, in bytes.
    pub fn size(&self) -> u64 {
        (self.annotated_png.len()
            + self.cutout_png.len()
            + self.mask_png.len()
            + self.instances_json.len()) as u64
    }
}

/// Runs `picture` (decoded from `upload`) through the element (blocking),
/// keeping at most one full-size RGBA copy alive: once in overlay mode, in
/// place, for the annotated picture and the instances; then `upload` is
/// decoded again for the cut-out, whose alpha is the mask. With an exclusion
/// in the prompt that second picture runs in alpha mode, whose alpha
/// (negative pixels cleared) is the mask; without, the mask is the union of
/// the instances, which is what alpha mode would write.
pub fn segment(
    bundle: &Path,
    upload: &[u8],
    picture: Picture,
    prompt: &str,
    threshold: Threshold,
    smoothness: u32,
) -> Result<Outcome, String> {
    let (w, h) = (picture.width, picture.height);
    let run = |rgba: Vec<u8>, mode: &str| {
        run_element(bundle, rgba, (w, h), prompt, threshold, smoothness, mode)
    };
    let overlay = run(picture.rgba, "overlay")?;
    let mut buffer = overlay.buffer_owned().ok_or("the element gave no buffer")?;
    drop(overlay);
    let meta = gstsamclipseg::SamClipSegMeta::from_buffer(&buffer)
        .ok_or("the element's buffer has no samclipseg meta")?;
    let found = meta.instances();
    let instances: Vec<InstanceJson> = found.iter().map(InstanceJson::of).collect();
    let excludes = !samclipseg::prompt::syntax::PromptSet::parse(prompt, "")
        .negatives
        .is_empty();
    let union = (!excludes).then(|| frames::union_mask(found, w as usize, h as usize));
    let annotated_png = {
        let mut map = buffer
            .make_mut()
            .map_writable()
            .map_err(|e| e.to_string())?;
        let rgb = rgba_to_rgb_in_place(&mut map);
        frames::png(rgb, w, h, ExtendedColorType::Rgb8)?
    };
    drop(buffer);

    let again = decode(upload).map_err(|e| format!("the picture does not decode again: {e:?}"))?;
    let mut cutout = match union {
        Some(mask) => {
            let mut rgba = again.rgba;
            for (px, m) in rgba.chunks_exact_mut(4).zip(&mask) {
                px[3] = *m;
            }
            CutOut::Vec(rgba)
        }
        None => {
            let alpha = run(again.rgba, "alpha")?;
            let buffer = alpha.buffer_owned().ok_or("the element gave no buffer")?;
            drop(alpha);
            CutOut::Buffer(buffer)
        }
    };
    let (cutout_png, mask_png) = {
        let mut map;
        let rgba: &mut [u8] = match &mut cutout {
            CutOut::Vec(v) => v,
            CutOut::Buffer(b) => {
                map = b.make_mut().map_writable().map_err(|e| e.to_string())?;
                &mut map
            }
        };
        // The cut-out keeps nothing of what it cuts away: a transparent pixel
        // is zero in every channel, so the PNG does not carry the whole
        // picture (the element's alpha mode keeps the colours, see
        // docs/studio.md).
        let mut mask = Vec::with_capacity(rgba.len() / 4);
        for px in rgba.chunks_exact_mut(4) {
            if px[3] == 0 {
                px.fill(0);
            }
            mask.push(px[3]);
        }
        (
            frames::png(rgba, w, h, ExtendedColorType::Rgba8)?,
            frames::png(&mask, w, h, ExtendedColorType::L8)?,
        )
    };
    drop(cutout);
    let instances_json = serde_json::to_vec_pretty(&serde_json::json!({
        "width": w,
        "height": h,
        "instances": instances,
    }))
    .map_err(|e| e.to_string())?;
    Ok(Outcome {
        width: w,
        height: h,
        instances,
        annotated_png: annotated_png.into(),
        cutout_png: cutout_png.into(),
        mask_png: mask_png.into(),
        instances_json: instances_json.into(),
    })
}

/// The RGBA picture the cut-out is made of.
enum CutOut {
    Vec(Vec<u8>),
    Buffer(gst::Buffer),
}

/// RGBA to RGB in the same memory (alpha dropped): the front three quarters.
fn rgba_to_rgb_in_place(rgba: &mut [u8]) -> &[u8] {
    let pixels = rgba.len() / 4;
    for i in 0..pixels {
        rgba.copy_within(i * 4..i * 4 + 3, i * 3);
    }
    &rgba[..pixels * 3]
}

/// One frame through appsrc ! samclipseg output-mode=MODE ! appsink.
fn run_element(
    bundle: &Path,
    rgba: Vec<u8>,
    (w, h): (u32, u32),
    prompt: &str,
    threshold: Threshold,
    smoothness: u32,
    mode: &str,
) -> Result<gst::Sample, String> {
    let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgba, w, h)
        .fps(gst::Fraction::new(0, 1))
        .build()
        .map_err(|e| format!("no caps for {w}x{h}: {e}"))?
        .to_caps()
        .map_err(|e| e.to_string())?;
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .build();
    let seg = gst::ElementFactory::make("samclipseg")
        .property("bundle", bundle.display().to_string())
        .property("prompt", prompt)
        .property("threshold", threshold.value())
        .property("smoothness", rules::smoothness_kernel(smoothness))
        .property("reuse-threshold", 0.0f32)
        .property_from_str("output-mode", mode)
        .build()
        .map_err(|e| format!("cannot make a samclipseg element: {e}"))?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([src.upcast_ref(), &seg, sink.upcast_ref()])
        .and_then(|_| gst::Element::link_many([src.upcast_ref(), &seg, sink.upcast_ref()]))
        .map_err(|e| format!("cannot build the picture pipeline: {e}"))?;
    let outcome = push_one(&pipeline, &src, &sink, rgba);
    let _ = pipeline.set_state(gst::State::Null);
    outcome
}

fn push_one(
    pipeline: &gst::Pipeline,
    src: &gst_app::AppSrc,
    sink: &gst_app::AppSink,
    rgba: Vec<u8>,
) -> Result<gst::Sample, String> {
    let failed = |fallback: String| first_error(pipeline).unwrap_or(fallback);
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| failed("the picture pipeline does not start".into()))?;
    let mut buffer = gst::Buffer::from_mut_slice(rgba);
    buffer
        .get_mut()
        .ok_or("a new buffer is not writable")?
        .set_pts(gst::ClockTime::ZERO);
    src.push_buffer(buffer)
        .map_err(|e| failed(format!("the picture was refused: {e:?}")))?;
    let _ = src.end_of_stream();
    sink.try_pull_sample(gst::ClockTime::from_seconds(120))
        .ok_or_else(|| failed("the element gave no result within 120 s".into()))
}

/// The last results, downloadable by id, within a byte budget: the oldest
/// go first, the newest always stays.
pub struct Store {
    next: u64,
    budget: u64,
    used: u64,
    kept: VecDeque<(u64, std::sync::Arc<Outcome>)>,
}

impl Store {
    pub fn new(budget: u64) -> Store {
        Store {
            next: 0,
            budget,
            used: 0,
            kept: VecDeque::new(),
        }
    }

    pub fn keep(&mut self, outcome: Outcome) -> u64 {
        self.next += 1;
        self.used += outcome.size();
        self.kept
            .push_back((self.next, std::sync::Arc::new(outcome)));
        while self.used > self.budget && self.kept.len() > 1 {
            if let Some((_, old)) = self.kept.pop_front() {
                self.used -= old.size();
            }
        }
        self.next
    }

    pub fn get(&self, id: u64) -> Option<std::sync::Arc<Outcome>> {
        self.kept
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, o)| o.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        frames::png(
            &vec![128; (w * h * 3) as usize],
            w,
            h,
            ExtendedColorType::Rgb8,
        )
        .unwrap()
    }

    #[test]
    fn every_png_kind_and_jpeg_decode_to_the_same_rgba_as_image_does() {
        use image::{DynamicImage, ImageBuffer};
        let (w, h) = (7u32, 5u32);
        let v = |i: u32| (i * 37 % 251) as u8;
        let w16 = |i: u32| (i * 2897 % 65521) as u16;
        let pictures = [
            DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, y| {
                image::Luma([v(x + 9 * y)])
            })),
            DynamicImage::ImageLumaA8(ImageBuffer::from_fn(w, h, |x, y| {
                image::LumaA([v(x + 9 * y), v(3 * x + y)])
            })),
            DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
                image::Rgb([v(x), v(y + 40), v(x * y)])
            })),
            DynamicImage::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
                image::Rgba([v(x), v(y + 40), v(x * y), v(x + y)])
            })),
            DynamicImage::ImageLuma16(ImageBuffer::from_fn(w, h, |x, y| {
                image::Luma([w16(x + 9 * y)])
            })),
            DynamicImage::ImageRgb16(ImageBuffer::from_fn(w, h, |x, y| {
                image::Rgb([w16(x), w16(y + 40), w16(x * y)])
            })),
            DynamicImage::ImageRgba16(ImageBuffer::from_fn(w, h, |x, y| {
                image::Rgba([w16(x), w16(y + 40), w16(x * y), w16(x + y + 1)])
            })),
        ];
        for (k, picture) in pictures.iter().enumerate() {
            for format in [ImageFormat::Png, ImageFormat::Jpeg] {
                let mut bytes = Cursor::new(Vec::new());
                if picture.write_to(&mut bytes, format).is_err() {
                    continue; // JPEG takes 8-bit L and RGB only
                }
                let bytes = bytes.into_inner();
                let expected = image::load_from_memory(&bytes).unwrap().to_rgba8();
                let got = decode(&bytes).unwrap();
                assert_eq!((got.width, got.height), (w, h));
                assert_eq!(got.rgba, expected.into_raw(), "picture {k} as {format:?}");
            }
        }
    }

    #[test]
    fn uploads_are_checked_before_decoding() {
        assert!(matches!(decode(b""), Err(Refusal::Broken(_))));
        assert!(matches!(
            decode(b"GIF89a not really"),
            Err(Refusal::Unsupported(_))
        ));
        assert!(matches!(
            decode(b"hello, world"),
            Err(Refusal::Unsupported(_))
        ));
        let good = png_bytes(8, 6);
        let p = decode(&good).unwrap();
        assert_eq!((p.width, p.height, p.rgba.len()), (8, 6, 8 * 6 * 4));
        let truncated = &good[..good.len() - 20];
        assert!(matches!(decode(truncated), Err(Refusal::Broken(_))));
    }
}
