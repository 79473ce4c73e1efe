//! The element alone, driven by gst_check::Harness with real photos: what it
//! attaches and draws must be exactly what the core library computes for the
//! same frame and settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use gst::prelude::*;
use gstsamclipseg::{InferenceState, ROI_PARAM_NAME, SamClipSegMeta};
use samclipseg::image::render::union_mask;

const PROMPT: &str = "a person";
const MAX_INSTANCES: u32 = 3;

/// (roi type, rect, samclipseg parameter structure) of each ROI meta.
type Roi = (String, (u32, u32, u32, u32), gst::Structure);

fn rois(buf: &gst::BufferRef) -> Vec<Roi> {
    buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .map(|m| {
            let param = m
                .param(ROI_PARAM_NAME)
                .expect("ROI meta has the samclipseg parameter")
                .to_owned();
            (m.roi_type().to_string(), m.rect(), param)
        })
        .collect()
}

#[test]
fn meta_and_rois_match_the_core_library() {
    let p = photo("astronaut.png");
    let mut h = harness(&[("prompt", &PROMPT), ("max-instances", &MAX_INSTANCES)]);
    h.set_src_caps(p.caps("RGBA"));
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();

    let expected = reference(&p, PROMPT, 0.5, 3, MAX_INSTANCES as usize);
    assert!(!expected.is_empty(), "the tiny model finds something here");

    let meta = SamClipSegMeta::from_buffer(&out).expect("meta attached");
    assert_eq!(meta.prompt(), PROMPT);
    assert_eq!(meta.state(), InferenceState::Fresh);
    assert_eq!(meta.frame_size(), (p.width as u32, p.height as u32));
    assert_eq!(meta.instances().len(), expected.len());
    for (got, want) in meta.instances().iter().zip(&expected) {
        assert_eq!(got.label, PROMPT);
        assert!((got.score - want.score).abs() < 1e-5, "{got:?} {want:?}");
        assert_eq!(got.bbox, want.bbox);
        let (x, y, w, h) = got.rect();
        assert!(
            x + w <= p.width as u32 && y + h <= p.height as u32,
            "rect inside frame"
        );
        assert!(w > 0 && h > 0);
        assert_eq!(got.mask.len(), (w * h) as usize, "mask covers the rect");
        assert!(got.mask.iter().all(|v| *v == 0 || *v == 255));
        // The rect holds every mask pixel: the crop is the whole mask.
        let crop = want
            .mask
            .crop(x as usize, y as usize, w as usize, h as usize);
        assert_eq!(got.mask, crop.data);
        assert_eq!(crop.area(), want.mask.area());
        // The rect covers the predicted box, clipped to the frame.
        assert!(x as f32 <= want.bbox[0].max(0.0) && y as f32 <= want.bbox[1].max(0.0));
        assert!((x + w) as f32 >= want.bbox[2].min(p.width as f32));
        assert!((y + h) as f32 >= want.bbox[3].min(p.height as f32));
    }

    let rois = rois(&out);
    assert_eq!(rois.len(), expected.len());
    for (inst, (kind, rect, param)) in meta.instances().iter().zip(&rois) {
        assert_eq!(kind, PROMPT);
        assert_eq!(*rect, inst.rect());
        assert_eq!(param.get::<u32>("index").unwrap(), inst.index);
        assert_eq!(param.get::<f64>("score").unwrap(), inst.score as f64);
        assert_eq!(param.get::<&str>("label").unwrap(), PROMPT);
    }

    // Meta mode leaves the pixels alone.
    assert_eq!(out.map_readable().unwrap().as_slice(), &p.rgba[..]);
    assert_eq!(out.pts(), Some(gst::ClockTime::ZERO));
}

#[test]
fn alpha_mode_writes_the_core_union_mask() {
    let p = photo("chelsea.png");
    let mut h = harness(&[
        ("prompt", &"cat"),
        ("max-instances", &MAX_INSTANCES),
        ("output-mode", &gstsamclipseg::OutputMode::Alpha),
    ]);
    h.set_src_caps(p.caps("RGBA"));
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();

    let expected = reference(&p, "cat", 0.5, 3, MAX_INSTANCES as usize);
    assert!(!expected.is_empty());
    let alpha = union_mask(&expected, p.width, p.height);
    let inside = alpha.iter().filter(|a| **a == 255).count();
    assert!(inside > 0 && inside < alpha.len(), "a partial mask");

    let map = out.map_readable().unwrap();
    for (i, (px, src)) in map.chunks_exact(4).zip(p.rgba.chunks_exact(4)).enumerate() {
        assert_eq!(px[3], alpha[i], "alpha of pixel {i}");
        assert_eq!(&px[..3], &src[..3], "colour of pixel {i} unchanged");
    }
    assert_eq!(
        SamClipSegMeta::from_buffer(&out).unwrap().instances().len(),
        expected.len()
    );
}

/// BT.601 limited range, so that the element reads back what was written.
fn rgb_to_ayuv(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|p| {
            let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
            let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
            let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
            let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
            [77, y.round() as u8, u.round() as u8, v.round() as u8]
        })
        .collect()
}

#[test]
fn alpha_mode_on_ayuv_uses_the_yuv_matrix_of_the_caps() {
    let p = photo("coffee.png");
    let ayuv = rgb_to_ayuv(&p.rgba);
    let mut h = harness(&[
        ("prompt", &"a cup of coffee"),
        ("max-instances", &2u32),
        ("output-mode", &gstsamclipseg::OutputMode::Alpha),
    ]);
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "AYUV")
        .field("width", p.width as i32)
        .field("height", p.height as i32)
        .field("framerate", gst::Fraction::new(25, 1))
        .field("colorimetry", "bt601")
        .build();
    h.set_src_caps(caps);
    let out = h
        .push_and_pull(gst::Buffer::from_slice(ayuv.clone()))
        .unwrap();

    let frame = samclipseg::Frame {
        width: p.width,
        height: p.height,
        pixels: samclipseg::Pixels::Packed {
            plane: samclipseg::Plane {
                data: &ayuv,
                stride: p.width * 4,
            },
            layout: samclipseg::PackedLayout::Ayuv,
        },
        matrix: samclipseg::YuvMatrix::Bt601,
    };
    let m = model();
    let opts = samclipseg::PostprocessOptions {
        threshold: 0.5,
        mask_threshold: m.manifest().decoder.mask_threshold,
        smoothness: 3,
        max_instances: 2,
    };
    let expected = m.segment(&frame, &["a cup of coffee"], &opts).unwrap();
    let alpha = union_mask(&expected, p.width, p.height);
    let map = out.map_readable().unwrap();
    for (i, (px, src)) in map.chunks_exact(4).zip(ayuv.chunks_exact(4)).enumerate() {
        assert_eq!(px[0], alpha[i], "alpha of pixel {i}");
        assert_eq!(&px[1..], &src[1..]);
    }
}

/// The label tag of `draw_overlay`: an 8x8 font at an integer scale, placed
/// at the box's top-left corner and kept inside the frame; "#id label score".
fn label_rect(
    inst: &gstsamclipseg::SegmentedInstance,
    w: usize,
    h: usize,
) -> (usize, usize, usize, usize) {
    let scale = (h.min(w) / 240).max(1);
    let text = format!("#{} {} {:.2}", inst.id, inst.label, inst.score);
    let (tw, th) = (text.chars().count() * 8 * scale + 2 * scale, 10 * scale);
    let x = (inst.bbox[0].max(0.0) as usize).min(w.saturating_sub(tw));
    let y = (inst.bbox[1].max(0.0) as usize).min(h.saturating_sub(th));
    (x, y, tw, th)
}

#[test]
fn overlay_changes_pixels_only_in_masks_and_labels_of_a_padded_frame() {
    let p = photo("astronaut.png");
    const PAD: usize = 29;
    let mut h = harness(&[
        ("prompt", &PROMPT),
        ("max-instances", &2u32),
        ("output-mode", &gstsamclipseg::OutputMode::Overlay),
    ]);
    h.set_src_caps(p.caps("RGB"));
    let input = p.padded_rgb_buffer(PAD);
    let out = h.push_and_pull(input).unwrap();
    let meta = SamClipSegMeta::from_buffer(&out).unwrap();
    let expected = reference(&p, PROMPT, 0.5, 3, 2);
    assert_eq!(meta.instances().len(), expected.len());
    assert!(!expected.is_empty());

    let (w, ht) = (p.width, p.height);
    let union = union_mask(&expected, w, ht);
    let mut allowed = union.iter().map(|v| *v != 0).collect::<Vec<bool>>();
    for inst in meta.instances() {
        let (x, y, tw, th) = label_rect(inst, w, ht);
        for yy in y..(y + th).min(ht) {
            for xx in x..(x + tw).min(w) {
                allowed[yy * w + xx] = true;
            }
        }
    }
    let stride = w * 3 + PAD;
    let rgb = p.rgb();
    let map = out.map_readable().unwrap();
    let (mut changed_in_mask, mut mask_pixels) = (0, 0);
    for y in 0..ht {
        let row = &map[y * stride..(y + 1) * stride];
        assert!(
            row[w * 3..].iter().all(|b| *b == 0xAA),
            "row {y}: padding bytes untouched"
        );
        for x in 0..w {
            let changed = row[x * 3..x * 3 + 3] != rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
            assert!(
                !changed || allowed[y * w + x],
                "pixel ({x},{y}) changed outside masks and labels"
            );
            if union[y * w + x] != 0 {
                mask_pixels += 1;
                changed_in_mask += changed as usize;
            }
        }
    }
    assert!(
        changed_in_mask * 100 >= mask_pixels * 95,
        "{changed_in_mask} of {mask_pixels} mask pixels drawn"
    );
}

#[test]
fn empty_prompt_still_attaches_an_empty_meta() {
    let p = photo("coffee.png");
    let mut h = harness(&[]);
    h.set_src_caps(p.caps("RGBA"));
    let element = h.element().unwrap();
    for (n, prompt) in ["", "   "].into_iter().enumerate() {
        element.set_property("prompt", prompt);
        let out = h.push_and_pull(p.rgba_buffer(n as u64)).unwrap();
        let meta = SamClipSegMeta::from_buffer(&out).expect("meta on every buffer");
        assert_eq!(meta.prompt(), "");
        assert!(meta.instances().is_empty());
        assert_eq!(meta.frame_size(), (p.width as u32, p.height as u32));
        assert!(rois(&out).is_empty());
        assert_eq!(out.map_readable().unwrap().as_slice(), &p.rgba[..]);
    }
}

#[test]
fn prompt_and_threshold_changes_apply_from_the_next_buffer() {
    let p = photo("chelsea.png");
    let mut h = harness(&[("prompt", &"cat"), ("max-instances", &MAX_INSTANCES)]);
    h.set_src_caps(p.caps("RGBA"));
    let element = h.element().unwrap();

    let first = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    element.set_property("prompt", "a cup of coffee");
    let second = h.push_and_pull(p.rgba_buffer(1)).unwrap();
    element.set_property("threshold", 0.99f32);
    let third = h.push_and_pull(p.rgba_buffer(2)).unwrap();

    let meta = |b: &gst::Buffer| {
        SamClipSegMeta::from_buffer(b)
            .unwrap()
            .segmentation()
            .clone()
    };
    let (m1, m2, m3) = (meta(&first), meta(&second), meta(&third));
    assert_eq!(m1.prompt, "cat");
    assert!(m1.instances.iter().all(|i| i.label == "cat"));
    assert_eq!(
        m1.instances.len(),
        reference(&p, "cat", 0.5, 3, MAX_INSTANCES as usize).len()
    );
    assert_eq!(m2.prompt, "a cup of coffee");
    let want = reference(&p, "a cup of coffee", 0.5, 3, MAX_INSTANCES as usize);
    assert_eq!(m2.instances.len(), want.len());
    for (g, w) in m2.instances.iter().zip(&want) {
        assert!((g.score - w.score).abs() < 1e-5);
        assert_eq!(g.label, "a cup of coffee");
    }
    assert_eq!(m3.prompt, "a cup of coffee");
    assert_eq!(
        m3.instances.len(),
        reference(&p, "a cup of coffee", 0.99, 3, MAX_INSTANCES as usize).len()
    );
    assert!(m3.instances.iter().all(|i| i.score > 0.99));
    let pts: Vec<_> = [&first, &second, &third].iter().map(|b| b.pts()).collect();
    assert_eq!(
        pts,
        [0, 40, 80].map(|ms| Some(gst::ClockTime::from_mseconds(ms)))
    );
}

#[test]
fn alpha_mode_refuses_caps_without_alpha() {
    let mut h = harness(&[("output-mode", &gstsamclipseg::OutputMode::Alpha)]);
    let sinkpad = h.element().unwrap().static_pad("sink").unwrap();
    let caps = sinkpad.query_caps(None);
    assert!(!caps.is_empty());
    for s in caps.iter() {
        let formats: Vec<String> = match s.get::<gst::List>("format") {
            Ok(list) => list.iter().map(|v| v.get::<String>().unwrap()).collect(),
            Err(_) => vec![s.get::<String>("format").unwrap()],
        };
        for f in formats {
            assert!(
                ["RGBA", "BGRA", "ARGB", "ABGR", "AYUV"].contains(&f.as_str()),
                "{f} offered in alpha mode"
            );
        }
    }
    let rgb = photo("astronaut.png").caps("RGB");
    assert!(!sinkpad.query_accept_caps(&rgb));
    // The pad refuses the caps event (GStreamer's accept-caps check runs
    // before set_caps), so the next buffer cannot be processed.
    h.push_event(gst::event::Caps::new(&rgb));
    assert!(sinkpad.current_caps().is_none());
    let buf = gst::Buffer::from_slice(vec![0u8; 207 * 301 * 3]);
    assert_eq!(h.push(buf), Err(gst::FlowError::NotNegotiated));
}

#[test]
fn overlay_mode_refuses_yuv() {
    let mut h = harness(&[("output-mode", &gstsamclipseg::OutputMode::Overlay)]);
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", 64)
        .field("height", 48)
        .field("framerate", gst::Fraction::new(25, 1))
        .build();
    let sinkpad = h.element().unwrap().static_pad("sink").unwrap();
    assert!(!sinkpad.query_accept_caps(&caps));
    h.push_event(gst::event::Caps::new(&caps));
    assert!(sinkpad.current_caps().is_none());
    let rgbx = gst::Caps::builder("video/x-raw")
        .field("format", "RGBx")
        .field("width", 64)
        .field("height", 48)
        .field("framerate", gst::Fraction::new(25, 1))
        .build();
    assert!(sinkpad.query_accept_caps(&rgbx));
}

#[test]
fn meta_survives_buffer_copies() {
    let p = photo("astronaut.png");
    let mut h = harness(&[("prompt", &PROMPT), ("max-instances", &2u32)]);
    h.set_src_caps(p.caps("RGBA"));
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let original = SamClipSegMeta::from_buffer(&out)
        .unwrap()
        .segmentation()
        .clone();
    assert!(!original.instances.is_empty());
    for copy in [out.copy(), out.copy_deep().unwrap()] {
        let meta = SamClipSegMeta::from_buffer(&copy).expect("meta copied");
        assert_eq!(meta.segmentation(), &original);
        assert_eq!(rois(&copy).len(), original.instances.len());
    }
    // Exactly one samclipseg meta per buffer, also when a buffer passes twice.
    let again = h.push_and_pull(out).unwrap();
    assert_eq!(again.iter_meta::<SamClipSegMeta>().count(), 1);
    assert_eq!(rois(&again).len(), original.instances.len());
}

/// The photo converted by GStreamer's own video converter into `format`.
fn converted(p: &Photo, format: gst_video::VideoFormat) -> (gst::Caps, gst::Buffer) {
    let rgba_info = gst_video::VideoInfo::builder(
        gst_video::VideoFormat::Rgba,
        p.width as u32,
        p.height as u32,
    )
    .fps(gst::Fraction::new(25, 1))
    .build()
    .unwrap();
    let info = gst_video::VideoInfo::builder(format, p.width as u32, p.height as u32)
        .fps(gst::Fraction::new(25, 1))
        .build()
        .unwrap();
    let src = gst::Buffer::from_slice(p.rgba.clone());
    let src = gst_video::VideoFrameRef::from_buffer_ref_readable(&src, &rgba_info).unwrap();
    let mut out = gst::Buffer::with_size(info.size()).unwrap();
    {
        let mut dest =
            gst_video::VideoFrameRef::from_buffer_ref_writable(out.get_mut().unwrap(), &info)
                .unwrap();
        let mut config = gst_video::VideoConverterConfig::new();
        config.set_dither_method(gst_video::VideoDitherMethod::None);
        gst_video::VideoConverter::new(&rgba_info, &info, Some(config))
            .unwrap()
            .frame_ref(&src, &mut dest);
    }
    (info.to_caps().unwrap(), out)
}

#[test]
fn every_format_is_read_as_the_same_picture() {
    use gst_video::VideoFormat as F;
    let p = photo("astronaut.png");
    let expected = reference(&p, PROMPT, 0.5, 1, 2);
    assert!(!expected.is_empty());
    // One element, formats changing mid-stream: each caps change reconfigures it.
    let mut h = harness(&[
        ("prompt", &PROMPT),
        ("max-instances", &2u32),
        ("smoothness", &1u32),
    ]);
    let packed_rgb = [
        F::Rgba,
        F::Bgra,
        F::Argb,
        F::Abgr,
        F::Rgbx,
        F::Bgrx,
        F::Xrgb,
        F::Xbgr,
        F::Rgb,
        F::Bgr,
    ];
    for format in packed_rgb {
        let (caps, buf) = converted(&p, format);
        h.set_src_caps(caps);
        let out = h.push_and_pull(buf).unwrap();
        let meta = SamClipSegMeta::from_buffer(&out).unwrap();
        assert_eq!(meta.instances().len(), expected.len(), "{format:?}");
        for (g, w) in meta.instances().iter().zip(&expected) {
            assert!((g.score - w.score).abs() < 1e-5, "{format:?}");
            let (x, y, wd, ht) = g.rect();
            let crop = w
                .mask
                .crop(x as usize, y as usize, wd as usize, ht as usize);
            assert_eq!(g.mask, crop.data, "{format:?}");
        }
    }
    // 4:2:0 YUV with odd sizes: I420 and NV12 carry the same samples.
    let mut yuv = Vec::new();
    for format in [F::I420, F::Nv12, F::Ayuv] {
        let (caps, buf) = converted(&p, format);
        h.set_src_caps(caps);
        let out = h.push_and_pull(buf).unwrap();
        let meta = SamClipSegMeta::from_buffer(&out).unwrap();
        assert_eq!(meta.frame_size(), (207, 301));
        for inst in meta.instances() {
            assert!(inst.x + inst.width <= 207 && inst.y + inst.height <= 301);
            assert_eq!(inst.mask.len(), (inst.width * inst.height) as usize);
        }
        yuv.push(meta.segmentation().clone());
    }
    assert_eq!(yuv[0], yuv[1], "I420 and NV12 agree");
    assert!(!yuv[0].instances.is_empty());
}

#[test]
fn gap_buffers_pass_with_an_empty_meta() {
    let p = photo("coffee.png");
    let mut h = harness(&[("prompt", &"a cup of coffee")]);
    h.set_src_caps(p.caps("RGBA"));
    let mut buf = p.rgba_buffer(0);
    buf.get_mut().unwrap().set_flags(gst::BufferFlags::GAP);
    let out = h.push_and_pull(buf).unwrap();
    assert!(out.flags().contains(gst::BufferFlags::GAP));
    let meta = SamClipSegMeta::from_buffer(&out).unwrap();
    assert!(meta.instances().is_empty());
    assert_eq!(meta.prompt(), "a cup of coffee");
}
