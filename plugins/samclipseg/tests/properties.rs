//! What gst-inspect-1.0 shows, checked through GLib's ParamSpec introspection,
//! and how bad or badly timed property values are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use gst::prelude::*;
use gstsamclipseg::{BackendKind, OutputMode};

/// Sets a property from text through GLib's C path, as gst-launch-1.0
/// `name=text` does (GLib validates against the range and warns).
fn set_from_text(e: &gst::Element, name: &std::ffi::CStr, text: &str) {
    let value = std::ffi::CString::new(text).unwrap();
    unsafe {
        gst::ffi::gst_util_set_object_arg(
            e.as_ptr() as *mut glib::gobject_ffi::GObject,
            name.as_ptr(),
            value.as_ptr(),
        );
    }
}

fn element() -> gst::Element {
    init();
    gst::ElementFactory::make("samclipseg").build().unwrap()
}

#[test]
fn factory_documents_every_property_with_its_default() {
    init();
    let factory = gst::ElementFactory::find("samclipseg").expect("registered");
    assert_eq!(
        factory.metadata(gst::ELEMENT_METADATA_KLASS),
        Some("Filter/Analyzer/Video")
    );
    let e = element();

    let expect_flags = |name: &str, live: bool| {
        let p = e.find_property(name).unwrap_or_else(|| panic!("{name}"));
        assert!(
            !p.nick().is_empty() && p.blurb().is_some_and(|b| b.len() > 20),
            "{name}"
        );
        let flags = p.flags();
        assert!(flags.contains(glib::ParamFlags::READWRITE), "{name}");
        let flag = if live {
            gst::PARAM_FLAG_MUTABLE_PLAYING
        } else {
            gst::PARAM_FLAG_MUTABLE_READY
        };
        assert!(flags.contains(flag), "{name} mutability");
        p
    };

    let bundle = expect_flags("bundle", false);
    assert_eq!(
        bundle.default_value().get::<Option<String>>().unwrap(),
        Some(gstsamclipseg::default_bundle_path())
    );
    // Nothing is installed on a test machine: the system location is named.
    if !gstsamclipseg::bundle_search_path()
        .iter()
        .any(|d| d.join("bundle.toml").is_file())
    {
        assert_eq!(
            gstsamclipseg::default_bundle_path(),
            "/usr/share/samclipseg/sam3"
        );
    }
    assert_eq!(
        e.property::<String>("bundle"),
        gstsamclipseg::default_bundle_path()
    );

    let backend = expect_flags("backend", false);
    assert_eq!(
        backend.default_value().get::<BackendKind>().unwrap(),
        BackendKind::Cpu
    );
    let backend = backend.downcast_ref::<glib::ParamSpecEnum>().unwrap();
    let nicks: Vec<&str> = backend
        .enum_class()
        .values()
        .iter()
        .map(|v| v.nick())
        .collect();
    assert_eq!(nicks, ["cpu", "cuda", "tensorrt", "remote"]);

    let threads = expect_flags("threads", false);
    let threads = threads.downcast_ref::<glib::ParamSpecUInt>().unwrap();
    assert_eq!(
        (
            threads.minimum(),
            threads.maximum(),
            threads.default_value()
        ),
        (0, 1024, 0)
    );

    let prompt = expect_flags("prompt", true);
    assert_eq!(
        prompt.default_value().get::<Option<String>>().unwrap(),
        Some(String::new())
    );

    let threshold = expect_flags("threshold", true);
    let threshold = threshold.downcast_ref::<glib::ParamSpecFloat>().unwrap();
    assert_eq!(
        (
            threshold.minimum(),
            threshold.maximum(),
            threshold.default_value()
        ),
        (-1.0, 1.0, -1.0)
    );
    assert!(threshold.blurb().unwrap().contains("default_threshold"));

    let smoothness = expect_flags("smoothness", true);
    let smoothness = smoothness.downcast_ref::<glib::ParamSpecUInt>().unwrap();
    assert_eq!(
        (
            smoothness.minimum(),
            smoothness.maximum(),
            smoothness.default_value()
        ),
        (1, 99, 3)
    );

    let max = expect_flags("max-instances", true);
    let max = max.downcast_ref::<glib::ParamSpecUInt>().unwrap();
    assert_eq!(
        (max.minimum(), max.maximum(), max.default_value()),
        (0, 1024, 0)
    );

    let mode = expect_flags("output-mode", false);
    assert_eq!(
        mode.default_value().get::<OutputMode>().unwrap(),
        OutputMode::Meta
    );
    let mode = mode.downcast_ref::<glib::ParamSpecEnum>().unwrap();
    let nicks: Vec<&str> = mode
        .enum_class()
        .values()
        .iter()
        .map(|v| v.nick())
        .collect();
    assert_eq!(nicks, ["meta", "alpha", "overlay"]);
    assert!(mode.blurb().unwrap().contains("packed RGB"));

    let post = expect_flags("post-messages", true);
    assert!(!post.default_value().get::<bool>().unwrap());

    let reuse = expect_flags("reuse-threshold", true);
    assert_eq!(reuse.default_value().get::<f32>().unwrap(), 3.0);
    let interval = expect_flags("inference-interval", true);
    assert_eq!(interval.default_value().get::<u32>().unwrap(), 1);
    let asynchronous = expect_flags("asynchronous", false);
    assert!(!asynchronous.default_value().get::<bool>().unwrap());
    let latency = expect_flags("max-latency", true);
    assert_eq!(latency.default_value().get::<u32>().unwrap(), 0);

    for name in [
        "negative-prompt",
        "negative-overlap",
        "track-patience",
        "temporal-smoothing",
        "vocabulary",
    ] {
        expect_flags(name, true);
    }

    // QoS would let the base class drop late frames: off by default.
    assert!(!e.property::<bool>("qos"));
}

#[test]
fn threshold_outside_its_range_is_refused() {
    let e = element();
    e.set_property("threshold", 0.25f32);
    // glib-rs checks values against the ParamSpec range before GLib sees
    // them and panics on a bad one.
    let bad = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        e.set_property("threshold", 1.5f32);
    }));
    assert!(bad.is_err());
    assert_eq!(e.property::<f32>("threshold"), 0.25);
    // NaN is refused as well (by GLib's range check; the element would too).
    let nan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        e.set_property("threshold", f32::NAN);
    }));
    assert!(nan.is_err());
    assert_eq!(e.property::<f32>("threshold"), 0.25);
    // The C path (what gst-launch-1.0 `threshold=1.5` does): GLib's
    // g_object_set_property validates against the range, warns and does not
    // call set_property, so the old value stays.
    for text in ["1.5", "-1.5", "nan"] {
        set_from_text(&e, c"threshold", text);
        assert_eq!(e.property::<f32>("threshold"), 0.25, "{text}");
    }
    e.set_property("threshold", 1.0f32);
    assert_eq!(e.property::<f32>("threshold"), 1.0);
}

#[test]
fn threshold_defaults_to_the_bundles_and_negative_values_mean_it() {
    let e = element();
    assert_eq!(
        e.property::<f32>("threshold"),
        -1.0,
        "default: the bundle's"
    );
    e.set_property("threshold", 0.7f32);
    assert_eq!(e.property::<f32>("threshold"), 0.7);
    e.set_property("threshold", -1.0f32);
    assert_eq!(e.property::<f32>("threshold"), -1.0);
    // Any negative value means the bundle's, read back as exactly -1.
    e.set_property("threshold", 0.7f32);
    e.set_property("threshold", -0.3f32);
    assert_eq!(e.property::<f32>("threshold"), -1.0);
    // 0 is a threshold (keep everything), not the bundle's.
    e.set_property("threshold", 0.0f32);
    assert_eq!(e.property::<f32>("threshold"), 0.0);
    // What gst-launch-1.0 `threshold=-1` does.
    let name = c"threshold";
    for (text, expected) in [("0.6", 0.6f32), ("-1", -1.0), ("-0.1", -1.0)] {
        set_from_text(&e, name, text);
        assert_eq!(e.property::<f32>("threshold"), expected, "{text}");
    }
    // NaN and out-of-range values keep the old value, also when that is the
    // bundle's: through glib-rs (which panics) and through GLib's C path.
    for bad in [f32::NAN, 1.5, -1.5] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            e.set_property("threshold", bad);
        }));
        assert!(r.is_err(), "{bad}");
        assert_eq!(e.property::<f32>("threshold"), -1.0, "{bad}");
        let value = bad.to_value();
        unsafe {
            glib::gobject_ffi::g_object_set_property(
                e.as_ptr() as *mut glib::gobject_ffi::GObject,
                name.as_ptr(),
                glib::translate::ToGlibPtr::to_glib_none(&value).0,
            );
        }
        assert_eq!(e.property::<f32>("threshold"), -1.0, "{bad} (C)");
    }
}

#[test]
fn even_smoothness_is_refused_and_the_old_value_kept() {
    let e = element();
    assert_eq!(e.property::<u32>("smoothness"), 3);
    e.set_property("smoothness", 4u32);
    assert_eq!(e.property::<u32>("smoothness"), 3);
    e.set_property("smoothness", 5u32);
    assert_eq!(e.property::<u32>("smoothness"), 5);
    e.set_property("smoothness", 2u32);
    assert_eq!(e.property::<u32>("smoothness"), 5);
    e.set_property("smoothness", 1u32);
    assert_eq!(e.property::<u32>("smoothness"), 1);
}

#[test]
fn empty_bundle_is_refused() {
    let e = element();
    let before = e.property::<String>("bundle");
    e.set_property("bundle", "");
    assert_eq!(e.property::<String>("bundle"), before);
}

#[test]
fn reload_properties_are_refused_while_running_live_ones_accepted() {
    let h = harness(&[("prompt", &"cat")]);
    let e = h.element().unwrap();
    let bundle = e.property::<String>("bundle");
    e.set_property("bundle", "/somewhere/else");
    e.set_property("threads", 3u32);
    e.set_property("backend", BackendKind::Cuda);
    e.set_property("output-mode", OutputMode::Alpha);
    e.set_property("strict-gpu", true);
    assert_eq!(e.property::<String>("bundle"), bundle);
    assert!(!e.property::<bool>("strict-gpu"));
    assert_eq!(e.property::<u32>("threads"), 0);
    assert_eq!(e.property::<BackendKind>("backend"), BackendKind::Cpu);
    assert_eq!(e.property::<OutputMode>("output-mode"), OutputMode::Meta);

    e.set_property("prompt", "dog");
    e.set_property("max-instances", 2u32);
    e.set_property("post-messages", true);
    assert_eq!(e.property::<String>("prompt"), "dog");
    assert_eq!(e.property::<u32>("max-instances"), 2);
    assert!(e.property::<bool>("post-messages"));

    // Back in READY the model is released and reload properties apply again.
    e.set_state(gst::State::Ready).unwrap();
    e.set_property("threads", 3u32);
    assert_eq!(e.property::<u32>("threads"), 3);
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn every_writable_property_reads_back_what_was_set() {
    init();
    let e = element();
    e.set_property("prompt", "red car; -toy car");
    e.set_property("threshold", 0.25f32);
    e.set_property("smoothness", 5u32);
    e.set_property("max-instances", 4u32);
    e.set_property("post-messages", true);
    e.set_property("reuse-threshold", 7.5f32);
    e.set_property("inference-interval", 3u32);
    e.set_property("asynchronous", true);
    e.set_property("max-latency", 40u32);
    e.set_property("negative-prompt", "bus");
    e.set_property("negative-overlap", 0.8f32);
    e.set_property("track-patience", 9u32);
    e.set_property("temporal-smoothing", 0.5f32);
    e.set_property("vocabulary", "/tmp/words.txt");
    e.set_property("threads", 2u32);
    e.set_property("device-id", 1i32);
    e.set_property("tensorrt-fp16", false);
    e.set_property("tensorrt-cache-dir", "/tmp/trt");
    e.set_property("tensorrt-workspace", 2048u32);
    e.set_property("strict-gpu", true);
    assert!(e.property::<bool>("strict-gpu"));
    assert_eq!(e.property::<i32>("device-id"), 1);
    assert!(!e.property::<bool>("tensorrt-fp16"));
    assert_eq!(e.property::<String>("tensorrt-cache-dir"), "/tmp/trt");
    assert_eq!(e.property::<u32>("tensorrt-workspace"), 2048);
    assert_eq!(e.property::<String>("prompt"), "red car; -toy car");
    assert_eq!(e.property::<f32>("threshold"), 0.25);
    assert_eq!(e.property::<u32>("smoothness"), 5);
    assert_eq!(e.property::<u32>("max-instances"), 4);
    assert!(e.property::<bool>("post-messages"));
    assert_eq!(e.property::<f32>("reuse-threshold"), 7.5);
    assert_eq!(e.property::<u32>("inference-interval"), 3);
    assert!(e.property::<bool>("asynchronous"));
    assert_eq!(e.property::<u32>("max-latency"), 40);
    assert_eq!(e.property::<String>("negative-prompt"), "bus");
    assert_eq!(e.property::<f32>("negative-overlap"), 0.8);
    assert_eq!(e.property::<u32>("track-patience"), 9);
    assert_eq!(e.property::<f32>("temporal-smoothing"), 0.5);
    assert_eq!(e.property::<String>("vocabulary"), "/tmp/words.txt");
    assert_eq!(e.property::<u32>("threads"), 2);
    e.set_property("backend", BackendKind::Remote);
    e.set_property("server", "grpcs://triton.example:8001");
    e.set_property("request-timeout", 2500u32);
    e.set_property("connect-timeout", 900u32);
    e.set_property("authorization", "Bearer abc");
    e.set_property("model-prefix", "site-a");
    e.set_property("ca-file", "/etc/ssl/site-ca.pem");
    assert_eq!(e.property::<BackendKind>("backend"), BackendKind::Remote);
    assert_eq!(
        e.property::<String>("server"),
        "grpcs://triton.example:8001"
    );
    assert_eq!(e.property::<u32>("request-timeout"), 2500);
    assert_eq!(e.property::<u32>("connect-timeout"), 900);
    assert_eq!(e.property::<String>("authorization"), "Bearer abc");
    assert_eq!(e.property::<String>("model-prefix"), "site-a");
    assert_eq!(e.property::<String>("ca-file"), "/etc/ssl/site-ca.pem");
}

#[test]
fn remote_properties_are_documented_and_a_server_without_a_grpc_scheme_is_refused() {
    init();
    let e = element();
    for name in [
        "server",
        "request-timeout",
        "connect-timeout",
        "authorization",
        "model-prefix",
        "ca-file",
    ] {
        let p = e.find_property(name).unwrap_or_else(|| panic!("{name}"));
        assert!(
            p.blurb().is_some_and(|b| b.contains("backend=remote")),
            "{name}"
        );
        assert!(p.flags().contains(gst::PARAM_FLAG_MUTABLE_READY), "{name}");
    }
    assert_eq!(e.property::<String>("server"), "");
    assert_eq!(e.property::<u32>("request-timeout"), 10_000);
    e.set_property("server", "grpc://127.0.0.1:8001");
    for bad in ["127.0.0.1:8001", "http://127.0.0.1:8000"] {
        e.set_property("server", bad);
        assert_eq!(
            e.property::<String>("server"),
            "grpc://127.0.0.1:8001",
            "{bad}"
        );
    }
}

#[test]
fn backend_remote_without_a_reachable_server_fails_at_start_naming_the_address() {
    init();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("grpc://127.0.0.1:{port}");
    for (server, expect) in [
        (server.as_str(), server.clone()),
        ("", "needs the address of the server".to_string()),
    ] {
        let e = element();
        e.set_property("bundle", tiny_bundle_str());
        e.set_property("backend", BackendKind::Remote);
        e.set_property("server", server);
        e.set_property("connect-timeout", 500u32);
        let bus = gst::Bus::new();
        e.set_bus(Some(&bus));
        assert!(e.set_state(gst::State::Paused).is_err(), "{server:?}");
        let msg = bus
            .pop_filtered(&[gst::MessageType::Error])
            .expect("an error on the bus");
        let gst::MessageView::Error(err) = msg.view() else {
            unreachable!()
        };
        let text = format!("{} {:?}", err.error(), err.debug());
        assert!(text.contains(&expect), "{server:?}: {text}");
        if !server.is_empty() {
            assert!(text.contains("500 ms"), "{text}");
        }
        e.set_state(gst::State::Null).unwrap();
    }
}
