//! `samclipseg backend=remote` against a real Triton Inference Server (the
//! nvidia-pytriton build, python backend, on loopback): the local backend's
//! results in a pipeline, four elements batched on one server, and a server
//! killed and restarted mid-stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../../tests/common/triton.rs"]
mod triton;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gstsamclipseg::{SamClipSegMeta, Segmentation};
use samclipseg::InferenceState;
use triton::Triton;

const TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(120);

fn launch(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Plays to EOS; the metadata of every buffer out of each named element.
fn play(p: &gst::Pipeline, names: &[&str]) -> Vec<Vec<Segmentation>> {
    let logs: Vec<_> = names
        .iter()
        .map(|name| {
            let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let l = log.clone();
            p.by_name(name)
                .unwrap()
                .static_pad("src")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if let Some(buf) = info.buffer() {
                        let meta = SamClipSegMeta::from_buffer(buf).expect("meta on every buffer");
                        l.lock().unwrap().push(meta.segmentation().clone());
                    }
                    gst::PadProbeReturn::Ok
                });
            log
        })
        .collect();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    loop {
        let msg = bus.timed_pop(TIMEOUT).expect("pipeline finished in time");
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} ({:?})", e.error(), e.debug()),
            _ => {}
        }
    }
    p.set_state(gst::State::Null).unwrap();
    logs.iter().map(|l| l.lock().unwrap().clone()).collect()
}

fn source(photo: &str, buffers: u32) -> String {
    format!(
        "filesrc location=\"{}\" ! pngdec ! videoconvert ! video/x-raw,format=RGBA ! imagefreeze num-buffers={buffers}",
        photo_path(photo).display()
    )
}

fn element(name: &str, backend: &str) -> String {
    format!(
        "samclipseg name={name} bundle=\"{}\" precision=fp32 threshold=0.1 prompt=\"a person; a cat\" reuse-threshold=0 request-timeout=60000 {backend}",
        tiny_bundle().display()
    )
}

fn assert_same(remote: &Segmentation, local: &Segmentation) {
    assert_eq!(remote.state, local.state);
    assert_eq!(remote.instances.len(), local.instances.len());
    assert!(!local.instances.is_empty());
    for (r, l) in remote.instances.iter().zip(&local.instances) {
        assert_eq!(r.label, l.label);
        assert!(
            (r.score - l.score).abs() <= 1e-5,
            "{} vs {}",
            r.score,
            l.score
        );
        let (a, b) = (r.rect(), l.rect());
        let near = |x: u32, y: u32| x.abs_diff(y) <= 1;
        assert!(
            near(a.0, b.0) && near(a.1, b.1) && near(a.2, b.2) && near(a.3, b.3),
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn a_pipeline_on_the_server_gives_the_local_backends_result() {
    let repo = triton::repository("element-parity", &[&tiny_bundle()]);
    let server = Triton::start(&repo);
    let remote_props = format!("backend=remote server={}", server.url());
    let remote = launch(&format!(
        "{} ! {} ! fakesink",
        source("astronaut.png", 3),
        element("seg", &remote_props)
    ));
    let local = launch(&format!(
        "{} ! {} ! fakesink",
        source("astronaut.png", 3),
        element("seg", "")
    ));
    let (remote, local) = (&play(&remote, &["seg"])[0], &play(&local, &["seg"])[0]);
    assert_eq!(remote.len(), 3, "no frame lost");
    for (r, l) in remote.iter().zip(local) {
        assert_eq!(r.state, InferenceState::Fresh);
        assert_same(r, l);
    }
}

#[test]
fn four_elements_on_one_server_have_their_requests_batched() {
    let repo = triton::repository("element-four", &[&tiny_bundle()]);
    let server = Triton::start(&repo);
    let props = format!("backend=remote server={}", server.url());
    let photos = [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "astronaut.png",
    ];
    let frames = 8;
    let chains: Vec<String> = photos
        .iter()
        .enumerate()
        .map(|(i, photo)| {
            format!(
                "{} ! {} ! fakesink",
                source(photo, frames),
                element(&format!("seg{i}"), &props)
            )
        })
        .collect();
    let p = launch(&chains.join("  "));
    let names = ["seg0", "seg1", "seg2", "seg3"];
    let out = play(&p, &names);
    for (name, metas) in names.iter().zip(&out) {
        assert_eq!(metas.len(), frames as usize, "{name}: no frame lost");
        assert!(
            metas.iter().all(|m| m.state == InferenceState::Fresh),
            "{name}"
        );
    }
    // Any client reads the server's statistics.
    let options = samclipseg::BackendOptions {
        kind: samclipseg::BackendKind::Remote,
        remote: samclipseg::remote::RemoteOptions {
            server: server.url(),
            ..Default::default()
        },
        ..Default::default()
    };
    let model = samclipseg::Sam3Model::load(tiny_bundle(), &options).unwrap();
    let (runs, execs) = model
        .remote()
        .unwrap()
        .statistics("tiny-sam3-image_encoder")
        .unwrap();
    println!("image encoder: {runs} inferences in {execs} executions");
    assert_eq!(runs, 4 * frames as u64);
    assert!(
        execs < runs,
        "no request was batched: {runs} inferences in {execs} executions"
    );
}

fn warnings(bus: &gst::Bus) -> Vec<String> {
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .map(|m| match m.view() {
            gst::MessageView::Warning(w) => w.error().to_string(),
            _ => unreachable!(),
        })
        .collect()
}

/// The element on the server at `url`, as the restart tests run it: every
/// frame fresh (no reuse), a low threshold, a 2 s request timeout.
fn restart_harness(url: &str, extra: &[(&str, &dyn ToValue)]) -> gst_check::Harness {
    let mut props: Vec<(&str, &dyn ToValue)> = vec![
        ("backend", &samclipseg::BackendKind::Remote),
        ("server", &url),
        ("threshold", &0.1f32),
        ("prompt", &"a person"),
        ("reuse-threshold", &0.0f32),
        ("request-timeout", &2000u32),
    ];
    props.extend_from_slice(extra);
    harness(&props)
}

#[test]
fn a_server_killed_and_restarted_mid_stream_costs_no_frame_and_inference_resumes() {
    let repo = triton::repository("element-restart", &[&tiny_bundle()]);
    let mut server = Triton::start(&repo);
    let photo = photo("astronaut.png");
    let url = server.url();
    let mut h = restart_harness(&url, &[]);
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    let _ = warnings(&bus);
    h.set_src_caps(photo.caps("RGBA"));
    let mut n = 0u64;
    let mut push = |h: &mut gst_check::Harness| {
        let out = h
            .push_and_pull(photo.rgba_buffer(n))
            .expect("a frame out per frame in");
        n += 1;
        SamClipSegMeta::from_buffer(&out)
            .unwrap()
            .segmentation()
            .clone()
    };
    for _ in 0..3 {
        let m = push(&mut h);
        assert_eq!(m.state, InferenceState::Fresh);
        assert!(!m.instances.is_empty());
    }
    server.kill();
    for _ in 0..5 {
        let m = push(&mut h);
        assert_eq!(
            m.state,
            InferenceState::Pending,
            "a frame without its result"
        );
        assert!(m.instances.is_empty());
    }
    let lost = warnings(&bus);
    assert_eq!(lost.len(), 1, "one warning for the outage: {lost:?}");
    assert!(
        lost[0].contains(&server.url()) && lost[0].contains("does not answer"),
        "{lost:?}"
    );
    server.restart();
    let restarted = Instant::now();
    let resumed = loop {
        let m = push(&mut h);
        if m.state == InferenceState::Fresh {
            break m;
        }
        assert_eq!(m.state, InferenceState::Pending);
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "inference did not resume"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!resumed.instances.is_empty());
    let back = warnings(&bus);
    assert_eq!(
        back.len(),
        1,
        "one warning when the server is back: {back:?}"
    );
    assert!(back[0].contains("answers again"), "{back:?}");
    println!(
        "{n} frames in, {n} out; inference resumed {:.1} s after the restart",
        restarted.elapsed().as_secs_f32()
    );
}

/// A Triton server asked to stop (SIGTERM: it unloads its models and keeps
/// answering NotFound for them while it drains) and started again on the
/// same port, in both modes: every frame comes out, `pending` while the
/// server is away, one warning each way, fresh results after.
#[test]
fn a_server_stopped_with_sigterm_and_started_again_costs_no_frame_in_either_mode() {
    let repo = triton::repository("element-sigterm", &[&tiny_bundle()]);
    let mut server = Triton::start(&repo);
    let photo = photo("astronaut.png");
    let url = server.url();
    for asynchronous in [false, true] {
        let what = if asynchronous {
            "asynchronous"
        } else {
            "synchronous"
        };
        let mut h = restart_harness(
            &url,
            &[("asynchronous", &asynchronous), ("max-latency", &1500u32)],
        );
        let bus = gst::Bus::new();
        h.element().unwrap().set_bus(Some(&bus));
        h.set_src_caps(photo.caps("RGBA"));
        let mut n = 0u64;
        let mut push = |h: &mut gst_check::Harness| {
            let out = h
                .push_and_pull(photo.rgba_buffer(n))
                .unwrap_or_else(|e| panic!("{what}: frame {n} did not come out: {e:?}"));
            n += 1;
            SamClipSegMeta::from_buffer(&out)
                .unwrap()
                .segmentation()
                .clone()
        };
        let until_fresh =
            |h: &mut gst_check::Harness,
             push: &mut dyn FnMut(&mut gst_check::Harness) -> Segmentation| {
                let started = Instant::now();
                loop {
                    let m = push(h);
                    if m.state == InferenceState::Fresh {
                        assert!(!m.instances.is_empty(), "{what}");
                        return;
                    }
                    assert!(
                        matches!(
                            m.state,
                            InferenceState::Pending | InferenceState::ReusedResult
                        ),
                        "{what}: {:?}",
                        m.state
                    );
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "{what}: no fresh result"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
        until_fresh(&mut h, &mut push);
        assert!(warnings(&bus).is_empty(), "{what}");
        server.terminate();
        let mut lost = Vec::new();
        let mut lost_while_draining = false;
        while server.running() {
            let m = push(&mut h);
            if !lost.is_empty() {
                assert_eq!(m.state, InferenceState::Pending, "{what}");
                assert!(m.instances.is_empty());
            }
            lost.extend(warnings(&bus));
            lost_while_draining |= !lost.is_empty() && server.running();
            std::thread::sleep(Duration::from_millis(20));
        }
        server.wait_exit(Duration::from_secs(30));
        for _ in 0..3 {
            let m = push(&mut h);
            assert_eq!(m.state, InferenceState::Pending, "{what}");
        }
        lost.extend(warnings(&bus));
        assert!(
            lost_while_draining,
            "{what}: the outage began while the server drained"
        );
        assert_eq!(
            lost.len(),
            1,
            "{what}: one warning for the outage: {lost:?}"
        );
        assert!(
            lost[0].contains(&url)
                && lost[0].contains("does not answer")
                && lost[0].contains("model `tiny-sam3-"),
            "{what}: {lost:?}"
        );
        server.restart();
        until_fresh(&mut h, &mut push);
        let back = warnings(&bus);
        assert_eq!(
            back.len(),
            1,
            "{what}: one warning when the server is back: {back:?}"
        );
        assert!(back[0].contains("answers again"), "{what}: {back:?}");
        println!("{what}: {n} frames in, {n} out; {}", lost[0]);
    }
}
