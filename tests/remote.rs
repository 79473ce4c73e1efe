//! The remote backend against a real Triton Inference Server (the
//! nvidia-pytriton build, python backend, on loopback) serving the repository
//! `engines/triton_repo.py` writes for the tiny bundle.

mod common;
#[path = "common/triton.rs"]
mod triton;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{cases, load_rgb, tiny_bundle, tiny_bundle_copy};
use samclipseg::image::postprocess::query_scores;
use samclipseg::remote::RemoteOptions;
use samclipseg::stream::{InferenceState, Notice};
use samclipseg::{
    BackendKind, BackendOptions, Frame, FrameSettings, Instance, PackedLayout, PostprocessOptions,
    Request, Sam3Model, Segmenter, Stream,
};
use triton::Triton;

/// One server for the tests of this file: the tiny bundle's models, and those
/// of a renamed copy whose segment model is left out.
struct Shared {
    server: Triton,
    half_bundle: PathBuf,
    /// Only the batching test uses its models, so that its statistics count it alone.
    four_bundle: PathBuf,
}

fn shared() -> &'static Shared {
    static SERVER: OnceLock<Shared> = OnceLock::new();
    SERVER.get_or_init(|| {
        let half_bundle = renamed_copy("half-sam3");
        let four_bundle = renamed_copy("four-sam3");
        let repo = triton::repository("main", &[&tiny_bundle(), &half_bundle, &four_bundle]);
        std::fs::remove_dir_all(repo.join("half-sam3-segment")).unwrap();
        let server = Triton::start(&repo);
        server.stop_at_exit();
        Shared {
            server,
            half_bundle,
            four_bundle,
        }
    })
}

fn renamed_copy(name: &str) -> PathBuf {
    let dir = tiny_bundle_copy(name);
    edit(&dir, "name = \"tiny-sam3\"", &format!("name = \"{name}\""));
    dir
}

fn edit(dir: &Path, from: &str, to: &str) {
    let path = dir.join("bundle.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn remote_options(server: &str) -> BackendOptions {
    BackendOptions {
        kind: BackendKind::Remote,
        remote: RemoteOptions {
            server: server.to_string(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn remote_model() -> Arc<Sam3Model> {
    static MODEL: OnceLock<Arc<Sam3Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let url = shared().server.url();
            Arc::new(Sam3Model::load(tiny_bundle(), &remote_options(&url)).expect("remote model"))
        })
        .clone()
}

fn local_model() -> Sam3Model {
    Sam3Model::load(tiny_bundle(), &BackendOptions::default()).expect("local model")
}

fn photo(name: &str) -> (Vec<u8>, usize, usize) {
    load_rgb(&tiny_bundle().join("golden").join(name))
}

fn load_error(bundle: &Path, options: &BackendOptions) -> String {
    match Sam3Model::load(bundle, options) {
        Ok(_) => panic!(
            "{} loaded against {}",
            bundle.display(),
            options.remote.server
        ),
        Err(e) => e.to_string(),
    }
}

/// Same instances (label, prompt), scores within 1e-5, boxes within 1e-4,
/// masks with IoU >= 0.99.
fn assert_same(what: &str, remote: &[Instance], local: &[Instance]) {
    assert_eq!(remote.len(), local.len(), "{what}: instance count");
    assert!(!local.is_empty(), "{what}: the case keeps no instance");
    for (r, l) in remote.iter().zip(local) {
        assert_eq!(
            (&r.label, r.prompt_index),
            (&l.label, l.prompt_index),
            "{what}"
        );
        assert!(
            (r.score - l.score).abs() <= 1e-5,
            "{what}: score {} vs {}",
            r.score,
            l.score
        );
        for (a, b) in r.bbox.iter().zip(&l.bbox) {
            assert!(
                (a - b).abs() <= 1e-3,
                "{what}: box {:?} vs {:?}",
                r.bbox,
                l.bbox
            );
        }
        let iou = samclipseg::stream::mask_iou(&r.mask, &l.mask);
        assert!(iou >= 0.99, "{what}: mask IoU {iou}");
    }
}

#[test]
fn the_remote_backend_gives_the_local_result_within_the_wire_budget() {
    let remote = remote_model();
    let local = local_model();
    let m = local.manifest();
    let s = m.preprocess.image_size as usize;
    let (ctx, q, h) = (
        m.text.context_length,
        m.decoder.num_queries,
        m.decoder.mask_size,
    );
    let dim = 32; // the tiny bundle's text feature width
    for case in cases() {
        let (rgb, w, hgt) = photo(&case.image);
        let frame = Frame::packed(&rgb, w, hgt, w * 3, PackedLayout::Rgb).unwrap();
        let prompts: Vec<&str> = case.prompts.iter().map(String::as_str).collect();
        let opts = PostprocessOptions {
            threshold: case.threshold,
            ..Default::default()
        };
        let want = local.segment(&frame, &prompts, &opts).unwrap();
        // Text features first, so that the frame's own traffic is measured.
        remote.encode_texts(&prompts).unwrap();
        let before = remote.transfers();
        let runs = remote.engine_runs();
        let got = remote.segment(&frame, &prompts, &opts).unwrap();
        let after = remote.transfers();
        assert_eq!(
            remote.engine_runs()[0],
            runs[0],
            "cached text features are not sent again"
        );
        assert_same(&case.case, &got, &want);

        // Up: 8-bit pixels and the text features; down: per-query scores and
        // boxes, and only the masks above the threshold, as float16.
        let p = prompts.len();
        let up = after.host_to_device - before.host_to_device;
        let tensors_up = 3 * s * s + p * ctx * dim * 4 + p * ctx * 8 + 4;
        assert!(
            up as usize <= tensors_up + 512,
            "{}: {up} bytes up, tensors {tensors_up}",
            case.case
        );
        let texts = local.encode_texts(&prompts).unwrap();
        let out = local
            .decode(&local.encode_image(&frame).unwrap(), &texts)
            .unwrap();
        let sent_masks: usize = (0..p)
            .map(|i| {
                query_scores(&out.prompt(i))
                    .iter()
                    .filter(|v| **v > opts.threshold - 1e-4)
                    .count()
            })
            .sum();
        let down = after.device_to_host - before.device_to_host;
        let tensors_down = p * q * (4 + 16) + p * 4 + sent_masks * (16 + h * h * 2);
        assert!(
            down as usize <= tensors_down + 512,
            "{}: {down} bytes down, tensors {tensors_down} ({sent_masks} masks)",
            case.case
        );
        println!(
            "{}: {} prompt(s), {} kept, {} sent: {up} bytes up, {down} down",
            case.case,
            p,
            want.len(),
            sent_masks
        );
    }
}

#[test]
fn a_repository_for_another_bundle_or_without_a_model_is_refused_at_start() {
    let url = shared().server.url();
    let other = renamed_copy("other-sam3");
    let e = load_error(&other, &remote_options(&url));
    assert!(
        e.contains("model `other-sam3-text_encoder` is not ready") && e.contains("triton_repo.py"),
        "{e}"
    );
    let e = load_error(&shared().half_bundle, &remote_options(&url));
    assert!(e.contains("model `half-sam3-segment` is not ready"), "{e}");
}

#[test]
fn a_model_whose_tensors_do_not_match_the_bundle_is_refused_naming_them() {
    let url = shared().server.url();
    let wrong = tiny_bundle_copy("more-queries");
    edit(&wrong, "num_queries = 20", "num_queries = 25");
    let toml = wrong.join("bundle.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replace("[\"batch\", 20", "[\"batch\", 25")).unwrap();
    let e = load_error(&wrong, &remote_options(&url));
    assert!(
        e.contains("model `tiny-sam3-segment` output `pred_logits`")
            && e.contains("expected FP32 [-1, 25], found FP32 [-1, 20]"),
        "{e}"
    );
}

#[test]
fn an_unreachable_server_is_an_error_naming_it_after_the_connect_timeout() {
    let port = triton::free_port();
    let mut options = remote_options(&format!("grpc://127.0.0.1:{port}"));
    options.remote.connect_timeout = Duration::from_millis(700);
    let e = load_error(&tiny_bundle(), &options);
    assert!(
        e.contains(&format!("grpc://127.0.0.1:{port}")) && e.contains("700 ms"),
        "{e}"
    );
    for bad in ["127.0.0.1:8001", "http://127.0.0.1:8001", ""] {
        let e = load_error(&tiny_bundle(), &remote_options(bad));
        assert!(e.contains("grpc://host:port"), "{bad:?}: {e}");
    }
}

#[test]
fn a_request_past_its_deadline_passes_the_frame_with_a_warning() {
    let url = shared().server.url();
    let mut options = remote_options(&url);
    options.remote.timeout = Duration::from_millis(1);
    let model = Arc::new(Sam3Model::load(tiny_bundle(), &options).unwrap());
    let mut stream = Stream::new(Segmenter::new(model), false).unwrap();
    let (rgb, w, h) = photo("astronaut.png");
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let request = Request::new("a person", "", PostprocessOptions::default(), 0.5);
    for n in 0..3 {
        let r = stream
            .frame(&frame, Some(n), &request, &FrameSettings::default())
            .expect("a deadline is not a stream error");
        assert_eq!(r.state, InferenceState::Pending);
        assert!(r.instances.is_empty());
    }
    let notices = stream.take_notices();
    assert_eq!(
        notices.len(),
        1,
        "one warning for the whole outage: {notices:?}"
    );
    let Notice::ServerLost { server, message } = &notices[0] else {
        panic!("{notices:?}");
    };
    assert_eq!(server, &url);
    assert!(message.contains("request timeout of 1 ms"), "{message}");
}

#[test]
fn four_streams_on_one_server_have_their_pictures_batched() {
    let url = shared().server.url();
    let model = Arc::new(Sam3Model::load(&shared().four_bundle, &remote_options(&url)).unwrap());
    let prefix = &model.manifest().bundle.name;
    let name = format!("{prefix}-image_encoder");
    let server = model.remote().unwrap();
    let (runs0, execs0) = server.statistics(&name).unwrap();
    let photos = [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "astronaut.png",
    ];
    let rounds = 6;
    std::thread::scope(|scope| {
        for (i, name) in photos.iter().enumerate() {
            let model = model.clone();
            scope.spawn(move || {
                let (mut rgb, w, h) = photo(name);
                if i == 3 {
                    rgb.reverse(); // a fourth picture
                }
                let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
                let opts = PostprocessOptions::default();
                for _ in 0..rounds {
                    model.segment(&frame, &["a person"], &opts).unwrap();
                }
            });
        }
    });
    let (runs, execs) = server.statistics(&name).unwrap();
    let (runs, execs) = (runs - runs0, execs - execs0);
    println!("image encoder: {runs} inferences in {execs} executions");
    assert!(runs >= (photos.len() * rounds) as u64, "{runs} inferences");
    assert!(
        execs < runs,
        "no request was batched: {runs} inferences in {execs} executions"
    );
}

#[test]
fn tls_with_a_self_signed_certificate() {
    let (ca, cert, key) = self_signed_tls("tls");
    let repo = triton::repository("tls", &[&tiny_bundle()]);
    let server = Triton::start_tls(&repo, &cert, &key);
    let mut options = remote_options(&server.url());
    assert!(server.url().starts_with("grpcs://localhost:"));
    // Without the test's authority the server's certificate is not trusted.
    options.remote.connect_timeout = Duration::from_secs(3);
    let e = load_error(&tiny_bundle(), &options);
    assert!(e.contains(&server.url()), "{e}");
    options.remote.ca_file = Some(ca);
    options.remote.authorization = Some("Bearer test-token".into());
    let model = Sam3Model::load(tiny_bundle(), &options).expect("TLS with the test's CA");
    let (rgb, w, h) = photo("chelsea.png");
    let frame = Frame::packed(&rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
    let opts = PostprocessOptions {
        threshold: 0.1,
        ..Default::default()
    };
    let want = local_model().segment(&frame, &["a cat"], &opts).unwrap();
    let got = model.segment(&frame, &["a cat"], &opts).unwrap();
    assert_same("tls", &got, &want);
}

/// A certificate authority and a server certificate for localhost and
/// 127.0.0.1 signed by it, as PEM files: (ca, server cert, server key).
fn self_signed_tls(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("samclipseg-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

// ---------------------------------------------------------------------------
// A server that restarts, drains or reloads its models while a stream runs
// (issue #26): an outage, never the end of the stream, unless a model comes
// back with another signature or keeps failing.

/// A stream on the server's models (`prefix`: None = the bundle's name),
/// pushing the same photo again and again.
struct Streaming {
    stream: Stream,
    rgb: Vec<u8>,
    size: (usize, usize),
    request: Request,
    settings: FrameSettings,
    n: u64,
    /// The longest a frame waited since it was last reset.
    longest: Duration,
}

/// The remote tests' `request-timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(2000);

impl Streaming {
    fn new(url: &str, prefix: Option<&str>, asynchronous: bool) -> Streaming {
        let mut options = remote_options(url);
        options.remote.timeout = REQUEST_TIMEOUT;
        options.remote.model_prefix = prefix.map(str::to_string);
        let model = Arc::new(Sam3Model::load(tiny_bundle(), &options).expect("remote model"));
        let (rgb, w, h) = photo("astronaut.png");
        let settings = FrameSettings {
            // Asynchronous frames wait for their own result while the server
            // answers, so that the test sees fresh results.
            max_latency: Duration::from_millis(1500),
            reuse_threshold: 0.0,
            ..FrameSettings::default()
        };
        Streaming {
            stream: Stream::new(Segmenter::new(model), asynchronous).unwrap(),
            rgb,
            size: (w, h),
            request: Request::new(
                "a person",
                "",
                PostprocessOptions {
                    threshold: 0.1,
                    ..Default::default()
                },
                0.5,
            ),
            settings,
            n: 0,
            longest: Duration::ZERO,
        }
    }

    fn push(&mut self) -> samclipseg::Result<samclipseg::stream::FrameResult> {
        let (w, h) = self.size;
        let frame = Frame::packed(&self.rgb, w, h, w * 3, PackedLayout::Rgb).unwrap();
        self.n += 1;
        let started = std::time::Instant::now();
        let r = self
            .stream
            .frame(&frame, Some(self.n), &self.request, &self.settings);
        self.longest = self.longest.max(started.elapsed());
        r
    }

    /// A frame never waits longer than `request-timeout` (synchronous: the
    /// metadata check after an outage and the request share it) or
    /// `max-latency` (asynchronous), with a margin for the work itself.
    fn waited_no_longer_than_its_limit(&self, what: &str) {
        let limit = if self.stream.is_asynchronous() {
            self.settings.max_latency
        } else {
            REQUEST_TIMEOUT
        } + Duration::from_millis(500);
        assert!(
            self.longest <= limit,
            "{what}: a frame waited {:?} (limit {limit:?})",
            self.longest
        );
    }

    /// Pushes frames until one is fresh (within `limit`); every frame before
    /// it passes without results. The fresh one carries instances.
    fn until_fresh(&mut self, what: &str, limit: Duration) {
        let started = std::time::Instant::now();
        loop {
            let r = self
                .push()
                .unwrap_or_else(|e| panic!("{what}: the stream ended: {e}"));
            if r.state == InferenceState::Fresh {
                assert!(!r.instances.is_empty(), "{what}: a fresh result");
                return;
            }
            assert!(
                matches!(
                    r.state,
                    InferenceState::Pending | InferenceState::ReusedResult
                ),
                "{what}: {:?}",
                r.state
            );
            assert!(
                started.elapsed() < limit,
                "{what}: no fresh result within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn mode(asynchronous: bool) -> &'static str {
    if asynchronous {
        "asynchronous"
    } else {
        "synchronous"
    }
}

/// The outage's notices: exactly one lost (its message returned) and one back.
fn one_each_way(what: &str, notices: &[Notice], url: &str) -> String {
    assert_eq!(
        notices.len(),
        2,
        "{what}: one warning each way: {notices:?}"
    );
    let Notice::ServerLost { server, message } = &notices[0] else {
        panic!("{what}: {notices:?}");
    };
    assert_eq!(server, url);
    assert_eq!(
        notices[1],
        Notice::ServerBack {
            server: url.to_string()
        },
        "{what}"
    );
    message.clone()
}

#[test]
fn a_server_stopped_with_sigterm_and_started_again_costs_no_frame() {
    let repo = triton::repository("sigterm", &[&tiny_bundle()]);
    let mut server = Triton::start(&repo);
    let url = server.url();
    for asynchronous in [false, true] {
        let what = mode(asynchronous);
        let mut s = Streaming::new(&url, None, asynchronous);
        s.until_fresh(what, Duration::from_secs(30));
        assert!(s.stream.take_notices().is_empty());
        // SIGTERM: Triton unloads its models and answers NotFound for them
        // while it drains, then exits; then it is started on the same port.
        s.longest = Duration::ZERO;
        server.terminate();
        let mut notices = Vec::new();
        let (mut draining, mut lost_while_draining) = (0, false);
        while server.running() {
            let r = s.push().unwrap_or_else(|e| {
                panic!("{what}: the stream ended while the server drained: {e}")
            });
            if !notices.is_empty() {
                assert_eq!(r.state, InferenceState::Pending, "{what}");
            }
            draining += 1;
            notices.extend(s.stream.take_notices());
            lost_while_draining |= !notices.is_empty() && server.running();
            std::thread::sleep(Duration::from_millis(20));
        }
        server.wait_exit(Duration::from_secs(30));
        for _ in 0..5 {
            let r = s.push().expect("a stopped server is an outage");
            assert_eq!(r.state, InferenceState::Pending, "{what}");
        }
        server.restart();
        s.until_fresh(what, Duration::from_secs(30));
        notices.extend(s.stream.take_notices());
        assert!(
            lost_while_draining,
            "{what}: the outage began while the server drained ({draining} frames)"
        );
        let message = one_each_way(what, &notices, &url);
        assert!(message.contains("model `tiny-sam3-"), "{what}: {message}");
        s.waited_no_longer_than_its_limit(what);
        println!(
            "{what}: {draining} frames while the server drained, {} in all",
            s.n
        );
    }
}

/// One server with explicit model control for the tests that unload and load
/// models while streaming, each on models of its own (the tiny bundle under
/// the prefixes `reload`, `swap` and `raise`), and the flag file that makes
/// `raise-image_encoder`'s `execute` raise.
struct Explicit {
    server: Triton,
    repo: PathBuf,
    raise_flag: PathBuf,
    /// One test at a time: while one has a model unloaded the whole server is
    /// not ready (`--strict-readiness`), and another test's start fails.
    turn: std::sync::Mutex<()>,
}

fn explicit() -> &'static Explicit {
    static SERVER: OnceLock<Explicit> = OnceLock::new();
    SERVER.get_or_init(|| {
        let tiny = tiny_bundle();
        let repo = triton::repository_with_prefixes(
            "explicit",
            &[
                (&tiny, Some("reload")),
                (&tiny, Some("swap")),
                (&tiny, Some("raise")),
            ],
        );
        let raise_flag = repo.parent().unwrap().join("raise-flag");
        // What Triton answers for a python-backend exception (and, in the
        // same words, for an ONNX Runtime failure such as an out-of-memory).
        let model_py = repo.join("raise-image_encoder/1/model.py");
        let text = std::fs::read_to_string(&model_py).unwrap();
        let hook = "    def execute(self, requests):\n";
        assert!(text.contains(hook));
        let raising = format!(
            "{hook}        import os\n        if os.path.exists({:?}):\n            raise RuntimeError(\"CUDA out of memory (a test's flag file)\")\n",
            raise_flag.display().to_string()
        );
        std::fs::write(&model_py, text.replacen(hook, &raising, 1)).unwrap();
        let server = Triton::start_explicit(&repo);
        server.stop_at_exit();
        Explicit {
            server,
            repo,
            raise_flag,
            turn: std::sync::Mutex::new(()),
        }
    })
}

/// A server shared with other models: one of them failed to load, which
/// makes the whole server not ready under `--strict-readiness`, must not
/// refuse the start of a bundle whose own models are ready.
#[test]
fn another_model_that_failed_to_load_does_not_refuse_the_start() {
    let e = explicit();
    let _turn = samclipseg::sync::lock(&e.turn);
    let (url, port) = (e.server.url(), e.server.port);
    let broken = e.repo.join("broken");
    std::fs::create_dir_all(broken.join("1")).unwrap();
    std::fs::write(
        broken.join("config.pbtxt"),
        "name: \"broken\"\nbackend: \"python\"\nmax_batch_size: 0\n",
    )
    .unwrap();
    std::fs::write(
        broken.join("1/model.py"),
        "raise RuntimeError(\"this model never loads (a test's)\")\n",
    )
    .unwrap();
    assert!(
        std::panic::catch_unwind(|| triton::model_control(port, "load", &["broken"])).is_err(),
        "the broken model loaded"
    );
    let started = std::panic::catch_unwind(|| {
        let mut s = Streaming::new(&url, Some("reload"), false);
        s.until_fresh("synchronous", Duration::from_secs(30));
    });
    let _ = std::panic::catch_unwind(|| triton::model_control(port, "unload", &["broken"]));
    std::fs::remove_dir_all(&broken).unwrap();
    if let Err(panic) = started {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_model_unloaded_and_loaded_again_while_streaming_costs_no_frame() {
    let _turn = samclipseg::sync::lock(&explicit().turn);
    let server = &explicit().server;
    let (url, port) = (server.url(), server.port);
    for asynchronous in [false, true] {
        let what = mode(asynchronous);
        let mut s = Streaming::new(&url, Some("reload"), asynchronous);
        s.until_fresh(what, Duration::from_secs(30));
        assert!(s.stream.take_notices().is_empty());
        s.longest = Duration::ZERO;
        let control = std::thread::spawn(move || {
            triton::model_control(port, "unload", &["reload-segment"]);
            std::thread::sleep(Duration::from_secs(1));
            triton::model_control(port, "load", &["reload-segment"]);
        });
        let mut notices = Vec::new();
        let mut pending = 0;
        while !control.is_finished() {
            let r = s.push().unwrap_or_else(|e| {
                panic!("{what}: the stream ended while the model was away: {e}")
            });
            notices.extend(s.stream.take_notices());
            // Between the lost and the back notice every frame is pending;
            // the model may be back before the control thread has ended.
            let back = notices
                .iter()
                .any(|n| matches!(n, Notice::ServerBack { .. }));
            if !notices.is_empty() && !back {
                assert_eq!(r.state, InferenceState::Pending, "{what}");
                pending += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        control.join().unwrap();
        s.until_fresh(what, Duration::from_secs(30));
        notices.extend(s.stream.take_notices());
        let message = one_each_way(what, &notices, &url);
        assert!(
            message.contains("model `reload-segment`")
                && message.contains("NotFound")
                && message.contains("no available versions"),
            "{what}: {message}"
        );
        assert!(pending > 0, "{what}");
        s.waited_no_longer_than_its_limit(what);
        println!("{what}: {pending} frames pending while the model was away: {message}");
    }
}

#[test]
fn a_model_that_comes_back_with_another_signature_ends_the_stream_naming_the_tensor() {
    let e = explicit();
    let _turn = samclipseg::sync::lock(&e.turn);
    let port = e.server.port;
    // The toy bundle's repository under the same names: its text features
    // are 64 wide where the tiny bundle's are 32.
    let other = triton::repository_with_prefixes(
        "swap-other",
        &[(
            &triton::root().join("tests/fixtures/toy-shapes-sam3"),
            Some("swap"),
        )],
    );
    let ours = e.repo.parent().unwrap().join("swap-text_encoder-tiny");
    let deployed = e.repo.join("swap-text_encoder");
    let theirs = other.join("swap-text_encoder");
    for asynchronous in [false, true] {
        let what = mode(asynchronous);
        let mut s = Streaming::new(&e.server.url(), Some("swap"), asynchronous);
        s.until_fresh(what, Duration::from_secs(30));
        triton::model_control(port, "unload", &["swap-segment", "swap-text_encoder"]);
        std::fs::rename(&deployed, &ours).unwrap();
        std::fs::rename(&theirs, &deployed).unwrap();
        let control = std::thread::spawn(move || {
            triton::model_control(port, "load", &["swap-text_encoder", "swap-segment"]);
        });
        let started = std::time::Instant::now();
        let error = loop {
            match s.push() {
                Ok(r) => assert!(
                    matches!(
                        r.state,
                        InferenceState::Pending | InferenceState::ReusedResult
                    ),
                    "{what}: {:?}",
                    r.state
                ),
                Err(e) => break e.to_string(),
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what}: the other signature was not refused"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        control.join().unwrap();
        assert!(
            error.contains("model `swap-text_encoder` output `text_features`")
                && error.contains("expected FP32 [-1, 32, 32], found FP32 [-1, 32, 64]"),
            "{what}: {error}"
        );
        println!("{what}: {error}");
        // The tiny bundle's model again, for the next mode.
        triton::model_control(port, "unload", &["swap-segment", "swap-text_encoder"]);
        std::fs::rename(&deployed, &theirs).unwrap();
        std::fs::rename(&ours, &deployed).unwrap();
        triton::model_control(port, "load", &["swap-text_encoder", "swap-segment"]);
    }
}

#[test]
fn internal_answers_are_an_outage_until_they_repeat_then_the_stream_ends() {
    let e = explicit();
    let _turn = samclipseg::sync::lock(&e.turn);
    let url = e.server.url();
    let flag = &e.raise_flag;
    for asynchronous in [false, true] {
        let what = mode(asynchronous);
        let _ = std::fs::remove_file(flag);
        let mut s = Streaming::new(&url, Some("raise"), asynchronous);
        s.until_fresh(what, Duration::from_secs(30));
        // A passing failure: an outage, and the stream goes on.
        std::fs::write(flag, "").unwrap();
        let mut notices = Vec::new();
        let started = std::time::Instant::now();
        while notices.is_empty() {
            let r = s.push().expect("one Internal answer is an outage");
            assert!(r.instances.is_empty() || r.state == InferenceState::ReusedResult);
            notices.extend(s.stream.take_notices());
            assert!(started.elapsed() < Duration::from_secs(30), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..3 {
            let r = s.push().expect("an Internal answer is an outage");
            assert_eq!(r.state, InferenceState::Pending, "{what}");
        }
        std::fs::remove_file(flag).unwrap();
        s.until_fresh(what, Duration::from_secs(30));
        notices.extend(s.stream.take_notices());
        let message = one_each_way(what, &notices, &url);
        assert!(
            message.contains("model `raise-segment`")
                && message.contains("the server answered Internal")
                && message.contains("RuntimeError: CUDA out of memory (a test's flag file)")
                && !message.contains("At:"),
            "{what}: {message}"
        );
        // A failure that stays: the stream ends with the server's message
        // after INTERNAL_LIMIT answers in a row.
        std::fs::write(flag, "").unwrap();
        let started = std::time::Instant::now();
        let error = loop {
            match s.push() {
                Ok(r) => assert!(
                    r.instances.is_empty() || r.state == InferenceState::ReusedResult,
                    "{what}"
                ),
                Err(e) => break e.to_string(),
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: the stream did not end"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = started.elapsed();
        std::fs::remove_file(flag).unwrap();
        let limit = samclipseg::remote::INTERNAL_LIMIT;
        assert!(
            error.contains("model `raise-segment`")
                && error.contains("the server answered Internal")
                && error.contains("CUDA out of memory (a test's flag file)")
                && error.contains(&format!("{limit} answers in a row")),
            "{what}: {error}"
        );
        // 250 ms doubling: the back-offs before the last answer.
        assert!(took >= Duration::from_millis(3750), "{what}: {took:?}");
        let lost = s.stream.take_notices();
        assert!(
            matches!(lost.as_slice(), [Notice::ServerLost { .. }]),
            "{what}: {lost:?}"
        );
        println!("{what}: ended after {took:?}: {error}");
    }
}
