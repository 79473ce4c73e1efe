//! What users type and point the element at: odd prompts (empty, blank, huge,
//! control characters, emoji, other scripts, invalid UTF-8 through the C API,
//! a new prompt on every frame) never crash or stall it and the metadata
//! states the prompt actually used; damaged bundles are an error at start,
//! never on the first frame.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use common::*;
use gst::prelude::*;
use gstsamclipseg::SamClipSegMeta;
use samclipseg::prompt::tokenizer::{PromptTokenizer, normalise_prompt};

const TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(120);

/// Warnings of the `samclipseg` debug category, as logged (the core
/// library's `log` records are routed there too).
static WARNINGS: LazyLock<Mutex<Vec<String>>> = LazyLock::new(|| {
    init();
    let ours = |c: gst::DebugCategory| c.name() == "samclipseg";
    if gst::DebugCategory::get("samclipseg")
        .is_none_or(|c| c.threshold() < gst::DebugLevel::Warning)
    {
        gst::log::set_threshold_for_name("samclipseg", gst::DebugLevel::Warning);
    }
    gst::log::add_log_function(move |cat, level, _file, _func, _line, _obj, msg| {
        if ours(cat)
            && level <= gst::DebugLevel::Warning
            && let Some(text) = msg.get()
        {
            WARNINGS.lock().unwrap().push(text.to_string());
        }
    });
    Mutex::new(Vec::new())
});

/// The warnings logged so far that contain `needle`.
fn warnings_with(needle: &str) -> Vec<String> {
    WARNINGS
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains(needle))
        .cloned()
        .collect()
}

/// Counts buffers going into and out of the element; in place, so the
/// timestamps must match one for one.
struct Accounting {
    inputs: Arc<Mutex<Vec<Option<gst::ClockTime>>>>,
    outputs: Arc<Mutex<Vec<Option<gst::ClockTime>>>>,
}

impl Accounting {
    fn on(element: &gst::Element) -> Accounting {
        let probe = |pad: &str| {
            let log: Arc<Mutex<Vec<Option<gst::ClockTime>>>> = Arc::default();
            let l = log.clone();
            element.static_pad(pad).unwrap().add_probe(
                gst::PadProbeType::BUFFER,
                move |_, info| {
                    if let Some(b) = info.buffer() {
                        l.lock().unwrap().push(b.pts());
                    }
                    gst::PadProbeReturn::Ok
                },
            );
            log
        };
        Accounting {
            inputs: probe("sink"),
            outputs: probe("src"),
        }
    }

    fn assert_balanced(&self, expected: usize) {
        let (i, o) = (self.inputs.lock().unwrap(), self.outputs.lock().unwrap());
        assert_eq!(i.len(), expected, "buffers in");
        assert_eq!(
            *i, *o,
            "one buffer out per buffer in, in order, same timestamps"
        );
    }
}

/// Pushes the photo with `prompt` set just before; returns the meta's prompt.
fn push_with_prompt(
    h: &mut gst_check::Harness,
    p: &Photo,
    n: u64,
    prompt: &str,
) -> (String, usize) {
    h.element().unwrap().set_property("prompt", prompt);
    let out = h.push_and_pull(p.rgba_buffer(n)).unwrap();
    let meta = SamClipSegMeta::from_buffer(&out).expect("every buffer has a meta");
    assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(40 * n)));
    for inst in meta.instances() {
        assert!(meta.prompt().contains(inst.label.as_str()));
    }
    (meta.prompt().to_string(), meta.instances().len())
}

#[test]
fn odd_prompts_run_and_the_meta_states_the_prompt_used() {
    let p = photo("astronaut.png");
    let mut h = harness(&[("max-instances", &3u32), ("smoothness", &1u32)]);
    let element = h.element().unwrap();
    let acc = Accounting::on(&element);
    h.set_src_caps(p.caps("RGBA"));
    let long: String = "a person in a white space suit "
        .chars()
        .cycle()
        .take(10_000)
        .collect();
    let prompts = [
        "",
        "   \t\n  ",
        long.as_str(),
        "\u{7}\u{1b}[31mred\u{1b}[0m car\u{7f}\r\u{0b}",
        "🧑‍🚀 astronaut 🚀",
        "🐶🐱🦊",
        "穿着宇航服的人",
        "\u{202e}person\u{200b}\u{feff}",
        "a person",
    ];
    for (n, prompt) in prompts.iter().enumerate() {
        let (used, found) = push_with_prompt(&mut h, &p, n as u64, prompt);
        let set: String = element.property("prompt");
        assert_eq!(set, *prompt);
        assert_eq!(used, prompt.trim(), "meta states the prompt used");
        if prompt.trim().is_empty() {
            assert_eq!(found, 0, "a blank prompt runs no inference");
        }
    }
    acc.assert_balanced(prompts.len());
    // The element still works normally afterwards.
    let (used, found) = push_with_prompt(&mut h, &p, 100, "a person");
    assert_eq!(used, "a person");
    assert_eq!(
        found,
        reference(&p, "a person", 0.5, 1, 3).len(),
        "same result as the core library"
    );
}

/// A plain frame of `width` x `height` RGBA for caps `caps`.
fn plain_rgba(width: usize, height: usize, n: u64) -> (gst::Caps, gst::Buffer) {
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGBA")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("framerate", gst::Fraction::new(25, 1))
        .build();
    let data: Vec<u8> = (0..width * height * 4)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut buf = gst::Buffer::from_slice(data);
    buf.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(40 * n));
    (caps, buf)
}

#[test]
fn odd_prompts_draw_and_cut_out_on_tiny_and_wide_frames() {
    // Threshold 0: every query is an instance, so labels are drawn for all.
    let long: String = "a person in a white space suit "
        .chars()
        .cycle()
        .take(10_000)
        .collect();
    let prompts = [
        long.as_str(),
        "🧑‍🚀🚀",
        "穿着宇航服的人; cat; dog; a; b; c; d; e; f; g; h; i; j",
        "x:0.0; -y",
    ];
    for mode in [
        gstsamclipseg::OutputMode::Overlay,
        gstsamclipseg::OutputMode::Alpha,
    ] {
        let mut h = harness(&[
            ("prompt", &"cat"),
            ("threshold", &0.0f32),
            ("output-mode", &mode),
        ]);
        let element = h.element().unwrap();
        let acc = Accounting::on(&element);
        let mut n = 0;
        for (w, ht) in [(1, 1), (2, 3), (207, 301), (7680, 2)] {
            for prompt in prompts {
                let (caps, buf) = plain_rgba(w, ht, n);
                h.set_src_caps(caps);
                element.set_property("prompt", prompt);
                let out = h.push_and_pull(buf).unwrap();
                let meta = SamClipSegMeta::from_buffer(&out).unwrap();
                assert_eq!(meta.prompt(), prompt, "{mode:?} {w}x{ht}");
                assert_eq!(meta.frame_size(), (w as u32, ht as u32));
                n += 1;
            }
        }
        acc.assert_balanced(n as usize);
    }
}

#[test]
fn prompt_change_on_every_frame() {
    let p = photo("chelsea.png");
    let mut h = harness(&[("max-instances", &2u32), ("smoothness", &1u32)]);
    let acc = Accounting::on(&h.element().unwrap());
    h.set_src_caps(p.caps("RGBA"));
    let prompts = [
        "cat",
        "",
        "a cat",
        "dog",
        "  cat  ",
        "猫",
        "remote control",
        "cat",
    ];
    let frames = 40;
    for n in 0..frames {
        let prompt = prompts[n % prompts.len()];
        let (used, found) = push_with_prompt(&mut h, &p, n as u64, prompt);
        assert_eq!(used, prompt.trim(), "frame {n}");
        if prompt.trim().is_empty() {
            assert_eq!(found, 0);
        }
    }
    acc.assert_balanced(frames);
}

#[test]
fn other_scripts_warn_on_the_bus_once_per_value_and_still_run() {
    let p = photo("chelsea.png");
    let mut h = harness(&[("smoothness", &1u32)]);
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    h.set_src_caps(p.caps("RGBA"));
    let chinese = "一只橘色的猫";
    let emoji = "🐈🐈‍⬛";
    let russian = "рыжая кошка";
    let english = "an orange cat";
    let sequence = [chinese, english, emoji, russian, emoji, english, russian];
    for (n, prompt) in sequence.iter().enumerate() {
        let (used, _) = push_with_prompt(&mut h, &p, n as u64, prompt);
        assert_eq!(used, *prompt, "the meta states the prompt as typed");
    }
    let mut warnings = Vec::new();
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Warning]) {
        if let gst::MessageView::Warning(w) = msg.view() {
            warnings.push(w.error().to_string());
        }
    }
    // Chinese is translated (no warning: every word is known); each other
    // script is one warning per value, saying it is sent as typed.
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for (w, foreign) in warnings.iter().zip([emoji, russian]) {
        assert!(
            w.contains(foreign) && w.contains("sent as typed") && w.contains("English"),
            "{w}"
        );
    }
    assert_eq!(
        h.element().unwrap().property::<String>("prompt-in-use"),
        russian,
        "other scripts go to the encoder as typed"
    );
}

#[test]
fn invalid_utf8_through_the_c_api() {
    let _ = &*WARNINGS;
    let p = photo("astronaut.png");
    let mut h = harness(&[("smoothness", &1u32)]);
    let element = h.element().unwrap();
    h.set_src_caps(p.caps("RGBA"));
    // What a C application may hand over: Latin-1 bytes and a stray byte.
    let bad: &[u8] = b"a person \xe9t\xe9 \xff\xfe\0";
    unsafe {
        glib::gobject_ffi::g_object_set(
            element.as_ptr() as *mut glib::gobject_ffi::GObject,
            c"prompt".as_ptr(),
            bad.as_ptr() as *const std::ffi::c_char,
            std::ptr::null::<std::ffi::c_char>(),
        );
    }
    let set: String = element.property("prompt");
    assert_eq!(set, "a person \u{fffd}t\u{fffd} \u{fffd}\u{fffd}");
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let meta = SamClipSegMeta::from_buffer(&out).unwrap();
    assert_eq!(meta.prompt(), set, "the meta states a valid prompt");
    let w = warnings_with("not valid UTF-8");
    assert!(
        w.iter().any(|w| w.contains("prompt")),
        "the replacement is logged: {w:?}"
    );
    // Other string properties take the same path.
    unsafe {
        glib::gobject_ffi::g_object_set(
            element.as_ptr() as *mut glib::gobject_ffi::GObject,
            c"negative-prompt".as_ptr(),
            c"\xc3\x28 helmet".as_ptr(),
            std::ptr::null::<std::ffi::c_char>(),
        );
    }
    assert_eq!(
        element.property::<String>("negative-prompt"),
        "\u{fffd}( helmet"
    );
    let out = h.push_and_pull(p.rgba_buffer(1)).unwrap();
    assert!(SamClipSegMeta::from_buffer(&out).is_some());
    // A C string ends at its NUL: "cat\0dog" is "cat".
    let cat_dog: &[u8] = b"cat\0dog\0";
    unsafe {
        glib::gobject_ffi::g_object_set(
            element.as_ptr() as *mut glib::gobject_ffi::GObject,
            c"prompt".as_ptr(),
            cat_dog.as_ptr() as *const std::ffi::c_char,
            std::ptr::null::<std::ffi::c_char>(),
        );
    }
    let out = h.push_and_pull(p.rgba_buffer(2)).unwrap();
    assert_eq!(SamClipSegMeta::from_buffer(&out).unwrap().prompt(), "cat");
}

#[test]
fn tokenizer_truncates_a_10000_character_prompt_and_warns() {
    let _ = &*WARNINGS;
    let tok = PromptTokenizer::from_file(&tiny_bundle().join("tokenizer.json"), 32, 49407).unwrap();
    let long: String = "astronaut ".chars().cycle().take(10_000).collect();
    let t = tok.encode(&long).unwrap();
    assert!(t.truncated);
    assert_eq!(t.ids.len(), 32);
    assert_eq!(t.mask, vec![1; 32], "every position is a real token");
    assert_eq!(t.ids[0], 49406, "start token");
    assert_eq!(t.ids[31], 49407, "the last real token is the end token");
    let w = warnings_with("longer than the model's context of 32");
    assert!(!w.is_empty(), "truncation is logged");
    // The cache key of such a prompt is its normal form, not a crash.
    assert_eq!(normalise_prompt(&long).len(), long.trim_end().len());
}

// ---------------------------------------------------------------------------
// Damaged bundles: an element error at start (READY -> PAUSED fails), with a
// bus message that names the problem; no buffer gets through.

/// A private copy of the tiny bundle that a test may damage.
fn bundle_copy(name: &str) -> PathBuf {
    bundle_copy_of(&tiny_bundle(), name)
}

/// Starts a pipeline on `dir` and returns the error the element posted.
fn start_error(dir: &Path) -> String {
    init();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 \
         ! samclipseg name=seg prompt=cat bundle=\"{}\" ! fakesink",
        dir.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let seg = p.by_name("seg").unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    for pad in ["sink", "src"] {
        let seen = seen.clone();
        seg.static_pad(pad)
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                seen.fetch_add(1, Ordering::SeqCst);
                gst::PadProbeReturn::Ok
            });
    }
    assert_eq!(
        p.set_state(gst::State::Ready),
        Ok(gst::StateChangeSuccess::Success)
    );
    assert!(
        p.set_state(gst::State::Paused).is_err(),
        "{} started although it is broken",
        dir.display()
    );
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(TIMEOUT, &[gst::MessageType::Error])
        .expect("an error message on the bus");
    let gst::MessageView::Error(err) = msg.view() else {
        unreachable!()
    };
    assert_eq!(msg.src().unwrap().name(), "seg");
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "no frame reached the element"
    );
    let text = err.error().to_string();
    eprintln!("{}: {text}", dir.display());
    text
}

#[test]
fn damaged_bundles_fail_at_start_naming_the_problem() {
    let dir = bundle_copy("not-toml");
    std::fs::write(dir.join("bundle.toml"), "[bundle\nfamily = \"sam3").unwrap();
    let err = start_error(&dir);
    assert!(
        err.contains("bundle.toml") && err.contains("not a valid bundle manifest"),
        "{err}"
    );

    let dir = bundle_copy("shape");
    edit_bundle_manifest(
        &dir,
        "{ name = \"pixel_values\", dtype = \"float32\", shape = [\"image_batch\", 3, 112, 112] }",
        "{ name = \"pixel_values\", dtype = \"float32\", shape = [\"image_batch\", 3, 224, 224] }",
    );
    let err = start_error(&dir);
    assert!(
        err.contains("image_encoder") && err.contains("pixel_values") && err.contains("224"),
        "{err}"
    );

    let dir = bundle_copy("truncated");
    let path = dir.join("decoder.onnx");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = start_error(&dir);
    assert!(err.contains("decoder.onnx"), "{err}");

    let dir = bundle_copy("family");
    edit_bundle_manifest(&dir, "family = \"sam3\"", "family = \"owlvit\"");
    let err = start_error(&dir);
    assert!(err.contains("owlvit") && err.contains("sam3"), "{err}");

    let dir = bundle_copy("tokenizer");
    std::fs::write(
        dir.join("tokenizer.json"),
        "{\"model\": \"not a tokenizer\"}",
    )
    .unwrap();
    let err = start_error(&dir);
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn a_prompt_over_the_phrase_cap_is_cut_with_one_warning_on_the_bus() {
    use samclipseg::prompt::syntax::MAX_PHRASES;
    let many: Vec<String> = (0..MAX_PHRASES + 4).map(|i| format!("thing {i}")).collect();
    let p = photo("astronaut.png");
    let mut h = harness(&[]);
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    h.element().unwrap().set_property("prompt", many.join("; "));
    let msg = bus
        .pop_filtered(&[gst::MessageType::Warning])
        .expect("a warning on the bus");
    let gst::MessageView::Warning(w) = msg.view() else {
        unreachable!()
    };
    let text = w.error().to_string();
    assert!(text.contains(&format!("cap of {MAX_PHRASES}")), "{text}");
    assert!(text.contains("thing 19"), "names what was dropped: {text}");
    // Frames segment the first MAX_PHRASES phrases, and warn no more.
    h.set_src_caps(p.caps("RGBA"));
    for n in 0..2 {
        let out = h.push_and_pull(p.rgba_buffer(n)).unwrap();
        let meta = SamClipSegMeta::from_buffer(&out).unwrap();
        assert!(
            meta.instances()
                .iter()
                .all(|i| (i.phrase_index as usize) < MAX_PHRASES)
        );
    }
    assert!(bus.pop_filtered(&[gst::MessageType::Warning]).is_none());
}
