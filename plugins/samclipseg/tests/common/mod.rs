//! Shared set-up of the plugin tests: GStreamer with the plugin registered
//! statically, the tiny SAM 3 bundle, real photos as buffers, and the core
//! library as the reference the element must agree with.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{LazyLock, Once};

pub mod slow;

use gst::prelude::*;
use samclipseg::{BackendOptions, Frame, Instance, PackedLayout, PostprocessOptions, Sam3Model};

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstsamclipseg::plugin_register_static().unwrap();
    });
}

pub fn tiny_bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-sam3")
}

pub fn tiny_bundle_str() -> String {
    tiny_bundle().to_string_lossy().into_owned()
}

/// The bundle trained on the shapes world (engines/train_toy_sam3.py): its masks mean something.
pub fn toy_bundle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/toy-shapes-sam3")
}

/// An image file as tightly packed RGBA (alpha 255).
pub fn load_rgba(path: &std::path::Path) -> Photo {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    Photo {
        width: img.width() as usize,
        height: img.height() as usize,
        rgba: img.into_raw(),
    }
}

pub fn photo_path(name: &str) -> PathBuf {
    tiny_bundle().join("golden").join(name)
}

/// A photo as tightly packed RGBA (alpha 255), with its size.
pub struct Photo {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

pub fn photo(name: &str) -> Photo {
    let img = image::open(photo_path(name)).unwrap().to_rgba8();
    Photo {
        width: img.width() as usize,
        height: img.height() as usize,
        rgba: img.into_raw(),
    }
}

impl Photo {
    pub fn rgb(&self) -> Vec<u8> {
        self.rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect()
    }

    pub fn caps(&self, format: &str) -> gst::Caps {
        gst::Caps::builder("video/x-raw")
            .field("format", format)
            .field("width", self.width as i32)
            .field("height", self.height as i32)
            .field("framerate", gst::Fraction::new(25, 1))
            .build()
    }

    /// An RGBA buffer of the photo at frame `n` of a 25 fps stream.
    pub fn rgba_buffer(&self, n: u64) -> gst::Buffer {
        let mut buf = gst::Buffer::from_slice(self.rgba.clone());
        {
            let b = buf.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(40 * n));
            b.set_duration(gst::ClockTime::from_mseconds(40));
        }
        buf
    }

    /// An RGB buffer with `pad` bytes of padding after each row, as a
    /// GstVideoMeta describes it.
    pub fn padded_rgb_buffer(&self, pad: usize) -> gst::Buffer {
        let stride = self.width * 3 + pad;
        let rgb = self.rgb();
        let mut data = vec![0xAAu8; stride * self.height];
        for y in 0..self.height {
            data[y * stride..y * stride + self.width * 3]
                .copy_from_slice(&rgb[y * self.width * 3..(y + 1) * self.width * 3]);
        }
        let mut buf = gst::Buffer::from_slice(data);
        {
            let b = buf.get_mut().unwrap();
            b.set_pts(gst::ClockTime::ZERO);
            gst_video::VideoMeta::add_full(
                b,
                gst_video::VideoFrameFlags::empty(),
                gst_video::VideoFormat::Rgb,
                self.width as u32,
                self.height as u32,
                &[0],
                &[stride as i32],
            )
            .unwrap();
        }
        buf
    }

    pub fn frame(&self) -> Frame<'_> {
        Frame::packed(
            &self.rgba,
            self.width,
            self.height,
            self.width * 4,
            PackedLayout::Rgba,
        )
        .unwrap()
    }
}

/// The core model on the tiny bundle, shared by the tests of one binary.
pub fn model() -> &'static Sam3Model {
    static MODEL: LazyLock<Sam3Model> = LazyLock::new(|| {
        Sam3Model::load(tiny_bundle(), &BackendOptions::default()).expect("tiny bundle loads")
    });
    &MODEL
}

/// What the element computes for these property values, by the core library.
pub fn reference(
    photo: &Photo,
    prompt: &str,
    threshold: f32,
    smoothness: u32,
    max_instances: usize,
) -> Vec<Instance> {
    let m = model();
    let opts = PostprocessOptions {
        threshold,
        mask_threshold: m.manifest().decoder.mask_threshold,
        smoothness,
        max_instances,
    };
    m.segment(&photo.frame(), &[prompt], &opts).unwrap()
}

/// A harness around a `samclipseg` on the tiny bundle with these properties.
pub fn harness(props: &[(&str, &dyn ToValue)]) -> gst_check::Harness {
    harness_on(&tiny_bundle(), props)
}

/// A harness around a `samclipseg` on a given bundle with these properties.
pub fn harness_on(bundle: &std::path::Path, props: &[(&str, &dyn ToValue)]) -> gst_check::Harness {
    init();
    // Properties first: the harness starts the element (and loads the model) at once.
    // fp32: these tests compare the element with the core library's exact
    // path (tests/precision.rs and precision.rs here hold the others).
    let e = gst::ElementFactory::make("samclipseg")
        .property("bundle", bundle.to_string_lossy().into_owned())
        .property_from_str("precision", "fp32")
        .build()
        .unwrap();
    for (name, value) in props {
        e.set_property_from_value(name, &value.to_value());
    }
    gst_check::Harness::with_element(&e, Some("sink"), Some("src"))
}

/// A private copy of a bundle's files (not its sub-folders) that a test may
/// edit, under the test target's temporary directory.
pub fn bundle_copy_of(bundle: &std::path::Path, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("element-bundle-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(bundle).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// Replaces `from` (which must occur exactly once) by `to` in a bundle's `bundle.toml`.
pub fn edit_bundle_manifest(dir: &std::path::Path, from: &str, to: &str) {
    let path = dir.join("bundle.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} in {}",
        path.display()
    );
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// Intersection over union of two masks of the same size (0 when both are empty).
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    assert_eq!(a.len(), b.len());
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// An instance's mask (its rectangle's) placed in a `width` x `height` frame.
pub fn placed_mask(
    inst: &gstsamclipseg::SegmentedInstance,
    width: usize,
    height: usize,
) -> Vec<bool> {
    let mut full = vec![false; width * height];
    let (x, y, w) = (inst.x as usize, inst.y as usize, inst.width as usize);
    for row in 0..inst.height as usize {
        for col in 0..w {
            full[(y + row) * width + x + col] = inst.mask[row * w + col] != 0;
        }
    }
    full
}

/// The pixels of an RGBA buffer whose alpha is over half.
pub fn alpha_mask(buf: &gst::BufferRef) -> Vec<bool> {
    let map = buf.map_readable().unwrap();
    map.chunks_exact(4).map(|p| p[3] > 127).collect()
}
