//! Picture mode: an uploaded JPG or PNG through a one-frame pipeline
//! (appsrc ! samclipseg output-mode=overlay ! appsink), so that a picture gets
//! exactly what the element would give a frame. The preview's element keeps the
//! model loaded, and elements on the same bundle share it, so a request does
//! not load engines again.

use std::collections::VecDeque;
use std::io::Cursor;
use std::path::Path;

use gst::prelude::*;
use image::{ExtendedColorType, ImageFormat, ImageReader};
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
    let reader = ImageReader::new(Cursor::new(bytes))
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
    // The header alone says the size: refuse a huge picture before decoding it.
    let (w, h) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map(|r| r.into_dimensions())
        .map_err(|e| Refusal::Broken(format!("cannot read the picture's header: {e}")))?
        .map_err(|e| Refusal::Broken(format!("the picture's header is broken: {e}")))?;
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(Refusal::TooLarge(format!(
            "the picture is {w}x{h}; at most {MAX_SIDE} px a side"
        )));
    }
    if w < 2 || h < 2 {
        return Err(Refusal::Broken(format!(
            "the picture is {w}x{h}: too small"
        )));
    }
    let img = reader
        .decode()
        .map_err(|e| Refusal::Broken(format!("the picture is truncated or corrupt: {e}")))?;
    let rgba = img.to_rgba8();
    Ok(Picture {
        width: rgba.width(),
        height: rgba.height(),
        rgba: rgba.into_raw(),
    })
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

/// Runs `picture` through the element (blocking): once in overlay mode for
/// the annotated picture and the instances, and, when the prompt excludes
/// something, once more in alpha mode, whose alpha (negative pixels cleared)
/// is the mask; without exclusions the mask is the union of the instances,
/// which is what alpha mode would write.
pub fn segment(
    bundle: &Path,
    picture: Picture,
    prompt: &str,
    threshold: Threshold,
    smoothness: u32,
) -> Result<Outcome, String> {
    let Picture {
        mut rgba,
        width: w,
        height: h,
    } = picture;
    let run = |mode: &str| {
        run_element(
            bundle,
            rgba.clone(),
            (w, h),
            prompt,
            threshold,
            smoothness,
            mode,
        )
    };
    let overlay = run("overlay")?;
    let buffer = overlay.buffer().ok_or("the element gave no buffer")?;
    let meta = gstsamclipseg::SamClipSegMeta::from_buffer(buffer)
        .ok_or("the element's buffer has no samclipseg meta")?;
    let instances = meta.instances();
    let annotated_rgb = frames::rgb_view(
        &buffer.map_readable().map_err(|e| e.to_string())?,
        w as usize,
        false,
    );
    let excludes = !samclipseg::prompt::syntax::PromptSet::parse(prompt, "")
        .negatives
        .is_empty();
    let mask: Vec<u8> = if excludes {
        let alpha = run("alpha")?;
        let map = alpha
            .buffer()
            .ok_or("the element gave no buffer")?
            .map_readable()
            .map_err(|e| e.to_string())?;
        map.chunks_exact(4).map(|px| px[3]).collect()
    } else {
        frames::union_mask(instances, w as usize, h as usize)
    };
    // The cut-out keeps nothing of what it cuts away: a transparent pixel is
    // zero in every channel, so the PNG does not carry the whole picture
    // (the element's alpha mode keeps the colours, see docs/studio.md).
    for (px, m) in rgba.chunks_exact_mut(4).zip(&mask) {
        if *m == 0 {
            px.fill(0);
        } else {
            px[3] = *m;
        }
    }
    let instances: Vec<InstanceJson> = instances.iter().map(InstanceJson::of).collect();
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
        annotated_png: frames::png(&annotated_rgb, w, h, ExtendedColorType::Rgb8)?.into(),
        cutout_png: frames::png(&rgba, w, h, ExtendedColorType::Rgba8)?.into(),
        mask_png: frames::png(&mask, w, h, ExtendedColorType::L8)?.into(),
        instances_json: instances_json.into(),
    })
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
