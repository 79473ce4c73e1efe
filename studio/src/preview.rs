//! The studio's live preview: source ! scale to the studio's size !
//! samclipseg ! appsink. Each frame that comes out becomes a JPEG for the
//! preview and a description (instances, state, frames/s) for the page; the
//! element's own bus messages give the stage times.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gst::prelude::*;
use gst_video::prelude::*;
use samclipseg::Threshold;
use samclipseg::sync::lock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::bundle_facts::BundleFacts;
use crate::bus::{describe_error, first_error};
use crate::frames::{self, InstanceJson};
use crate::rules;
use crate::source::Source;

/// Preview JPEG quality: a 640x360 frame is about 40 KB.
const PREVIEW_QUALITY: u8 = 80;

/// Why a change was not made: the request's fault, or the pipeline's.
#[derive(Debug)]
pub enum UpdateError {
    Invalid(String),
    Pipeline(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    Overlay,
    Alpha,
}

/// What the page controls; every field maps to an element property.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub prompt: String,
    pub negative_prompt: String,
    /// Set on the element as [`Threshold::value`]; the page sees it resolved
    /// ([`BundleFacts::threshold`]).
    pub threshold: Threshold,
    /// 1-5, see [`rules::smoothness_kernel`].
    pub smoothness: u32,
    pub max_instances: u32,
    pub reuse: bool,
    pub asynchronous: bool,
    pub view: View,
}

/// A change of some settings, as the page posts it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    pub threshold: Option<f32>,
    pub smoothness: Option<u32>,
    pub max_instances: Option<u32>,
    pub reuse: Option<bool>,
    pub asynchronous: Option<bool>,
    pub view: Option<View>,
}

/// The settings as the page gets them: the threshold resolved.
#[derive(Serialize)]
struct SettingsAnswer<'a> {
    prompt: &'a str,
    negative_prompt: &'a str,
    /// The phrases as the text encoder gets them (Chinese in English), as
    /// the element's `prompt-in-use` shows them.
    prompt_in_use: String,
    threshold: f32,
    smoothness: u32,
    max_instances: u32,
    reuse: bool,
    asynchronous: bool,
    view: View,
}

impl Settings {
    /// `self` with `u` applied; `max_instances_limit` is the element's.
    fn merged(&self, u: &Update, max_instances_limit: u32) -> Result<Settings, String> {
        let mut s = self.clone();
        if let Some(p) = &u.prompt {
            rules::check_prompt(p, "prompt")?;
            s.prompt = p.clone();
        }
        if let Some(p) = &u.negative_prompt {
            rules::check_prompt(p, "negative_prompt")?;
            s.negative_prompt = p.clone();
        }
        if let Some(t) = u.threshold {
            s.threshold = rules::check_threshold(t)?;
        }
        if let Some(l) = u.smoothness {
            rules::check_smoothness(l)?;
            s.smoothness = l;
        }
        if let Some(m) = u.max_instances {
            rules::check_max_instances(m, max_instances_limit)?;
            s.max_instances = m;
        }
        s.reuse = u.reuse.unwrap_or(s.reuse);
        s.asynchronous = u.asynchronous.unwrap_or(s.asynchronous);
        s.view = u.view.unwrap_or(s.view);
        Ok(s)
    }

    fn answer(&self, bundle: &BundleFacts) -> SettingsAnswer<'_> {
        SettingsAnswer {
            prompt: &self.prompt,
            negative_prompt: &self.negative_prompt,
            prompt_in_use: samclipseg::prompt::syntax::PromptSet::parse(
                &self.prompt,
                &self.negative_prompt,
            )
            .in_use(),
            threshold: bundle.threshold(self.threshold),
            smoothness: self.smoothness,
            max_instances: self.max_instances,
            reuse: self.reuse,
            asynchronous: self.asynchronous,
            view: self.view,
        }
    }

    /// Whether going from `self` to `new` needs the element stopped (these
    /// properties are fixed while it runs).
    fn needs_restart(&self, new: &Settings) -> bool {
        self.asynchronous != new.asynchronous || self.view != new.view
    }
}

/// Milliseconds per stage of the last model run that encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stages {
    pub text_ms: f64,
    pub image_ms: f64,
    pub decode_ms: f64,
    pub post_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameInfo {
    pub number: u64,
    pub pts_ms: Option<f64>,
    pub state: String,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub instances: Vec<InstanceJson>,
    pub times: Option<Stages>,
}

/// Frames/s over the last two seconds of arrivals.
#[derive(Default)]
struct Rate {
    arrivals: VecDeque<Instant>,
}

impl Rate {
    fn tick(&mut self, now: Instant) -> f64 {
        self.arrivals.push_back(now);
        while self
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(2))
        {
            self.arrivals.pop_front();
        }
        let span = now.duration_since(self.arrivals[0]).as_secs_f64();
        if self.arrivals.len() < 2 || span <= 0.0 {
            0.0
        } else {
            (self.arrivals.len() - 1) as f64 / span
        }
    }
}

/// What the streaming thread, the bus thread and the handlers share.
struct Shared {
    jpeg: watch::Sender<Option<Bytes>>,
    frame: Mutex<Option<FrameInfo>>,
    stages: Mutex<Option<Stages>>,
    error: Mutex<Option<String>>,
    alpha_view: AtomicBool,
    rate: Mutex<Rate>,
    count: AtomicU64,
    /// The element's `precision-in-use`, read when a pipeline starts (not
    /// from the element, whose lock a restart holds).
    precision: Mutex<String>,
    /// Set when the pipeline was restarted after a failure: the next frame
    /// clears the error it reported.
    recovering: AtomicBool,
    /// Restarts after a failure, since the start.
    restarts: AtomicU64,
}

/// The first wait before the pipeline restarts after a failure; each failed
/// try doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A pipeline that failed sooner than this after a restart keeps the
/// doubled wait; one that ran longer starts again from [`FIRST_BACKOFF`].
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// One pipeline and the thread that watches its bus.
struct Running {
    /// Which launch this is: a failure reported by an older one is stale.
    generation: u64,
    pipeline: gst::Pipeline,
    seg: gst::Element,
    stop: Arc<AtomicBool>,
    bus_thread: Option<JoinHandle<()>>,
}

impl Running {
    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(t) = self.bus_thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Preview {
    /// The pipeline's description; a restart builds it anew (decodebin's
    /// delayed links are made once, so a pipeline cannot go back to READY).
    desc: String,
    bundle_path: String,
    loops: bool,
    shared: Arc<Shared>,
    /// What the page sees; locked only to read or replace it, never across
    /// a pipeline restart, so that status requests do not wait for one.
    settings: Mutex<Settings>,
    /// One change at a time, restarts included.
    updating: Mutex<()>,
    running: Mutex<Option<Running>>,
    /// The element's own reuse threshold, restored when reuse is switched on.
    reuse_threshold: f32,
    /// The element's largest `max-instances`.
    max_instances_limit: u32,
    source: String,
    bundle: BundleFacts,
    /// Launches so far; see [`Running::generation`].
    generation: AtomicU64,
    /// Where bus watches report a failed or ended source (its generation).
    failures: std::sync::mpsc::Sender<u64>,
    /// Set by [`Preview::stop`]: no more restarts.
    stopping: AtomicBool,
}

impl Preview {
    pub fn start(
        bundle: &Path,
        source: &Source,
        (width, height): (u32, u32),
        facts: &BundleFacts,
    ) -> Result<Arc<Preview>, String> {
        let desc = format!(
            "{} ! videoconvert ! videoscale ! video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1 \
             ! videoconvert ! video/x-raw,format=RGBA ! samclipseg name=seg post-messages=true \
             ! appsink name=sink sync=true max-buffers=1 drop=true",
            source.launch()
        );
        debug!("live pipeline: {desc}");
        let settings = Settings {
            prompt: "red circle".into(),
            negative_prompt: String::new(),
            threshold: Threshold::Bundle,
            smoothness: 2,
            max_instances: 0,
            reuse: true,
            asynchronous: false,
            view: View::Overlay,
        };
        let (jpeg, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            jpeg,
            frame: Mutex::new(None),
            stages: Mutex::new(None),
            error: Mutex::new(None),
            alpha_view: AtomicBool::new(false),
            rate: Mutex::new(Rate::default()),
            count: AtomicU64::new(0),
            precision: Mutex::new(String::new()),
            recovering: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
        });
        let (failures, failed) = std::sync::mpsc::channel();
        let probe = gst::ElementFactory::make("samclipseg")
            .build()
            .map_err(|e| format!("no samclipseg element: {e}"))?;
        let mut preview = Preview {
            desc,
            bundle_path: bundle.display().to_string(),
            loops: source.loops_by_seeking(),
            shared,
            settings: Mutex::new(settings.clone()),
            updating: Mutex::new(()),
            running: Mutex::new(None),
            reuse_threshold: probe.property::<f32>("reuse-threshold"),
            max_instances_limit: rules::element_max_instances(&probe)?,
            source: source.to_string(),
            bundle: facts.clone(),
            generation: AtomicU64::new(0),
            failures,
            stopping: AtomicBool::new(false),
        };
        let running = preview.launch(&settings)?;
        *preview.running.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(running);
        info!("live pipeline playing: {source}");
        let preview = Arc::new(preview);
        let weak = Arc::downgrade(&preview);
        std::thread::Builder::new()
            .name("live-restarts".into())
            .spawn(move || restart_on_failure(weak, failed))
            .map_err(|e| format!("cannot start the live pipeline's watcher: {e}"))?;
        Ok(preview)
    }

    /// Rebuilds the pipeline with the current settings after generation
    /// `failed` failed; Ok(false) when that pipeline is gone already.
    fn relaunch(&self, failed: u64) -> Result<bool, String> {
        let _one = lock(&self.updating);
        if self.stopping.load(Ordering::Acquire) {
            return Ok(false);
        }
        let mut running = lock(&self.running);
        if running.as_ref().is_some_and(|r| r.generation != failed) {
            return Ok(false);
        }
        if let Some(old) = running.take() {
            old.stop();
        }
        let settings = self.settings();
        let r = self.launch(&settings)?;
        *running = Some(r);
        self.shared.recovering.store(true, Ordering::Release);
        self.shared.restarts.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Builds the pipeline with `settings` and plays it.
    fn launch(&self, settings: &Settings) -> Result<Running, String> {
        let pipeline = gst::parse::launch(&self.desc)
            .map_err(|e| format!("cannot build the live pipeline for {}: {e}", self.source))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the live pipeline is not a pipeline".to_string())?;
        let seg = pipeline
            .by_name("seg")
            .ok_or("the live pipeline has no samclipseg element")?;
        seg.set_property("bundle", self.bundle_path.as_str());
        self.set_properties(&seg, settings, true);
        let sink = pipeline
            .by_name("sink")
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .ok_or("the live pipeline has no appsink")?;
        let shared = self.shared.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Err(e) = shared.take(&sample) {
                        warn!("preview frame dropped: {e}");
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let started = pipeline.set_state(gst::State::Playing);
        let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(30));
        if started.is_err() || result.is_err() {
            // Read before NULL: the bus drops its messages when it stops.
            let error = first_error(&pipeline)
                .unwrap_or_else(|| "the live pipeline does not start".to_string());
            let _ = pipeline.set_state(gst::State::Null);
            return Err(error);
        }
        *lock(&self.shared.precision) = seg.property::<String>("precision-in-use");
        let bus = pipeline.bus().ok_or("the live pipeline has no bus")?;
        let stop = Arc::new(AtomicBool::new(false));
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let watch = BusWatch {
            bus,
            pipeline: pipeline.clone(),
            shared: self.shared.clone(),
            stop: stop.clone(),
            loops: self.loops,
            generation,
            failures: self.failures.clone(),
        };
        Ok(Running {
            generation,
            pipeline,
            seg,
            stop,
            bus_thread: Some(std::thread::spawn(move || watch.run())),
        })
    }

    /// Writes `s` into the element; `all` also sets the properties that only
    /// change while it is stopped.
    fn set_properties(&self, e: &gst::Element, s: &Settings, all: bool) {
        if all {
            e.set_property("asynchronous", s.asynchronous);
            e.set_property_from_str(
                "output-mode",
                match s.view {
                    View::Overlay => "overlay",
                    View::Alpha => "alpha",
                },
            );
            self.shared
                .alpha_view
                .store(s.view == View::Alpha, Ordering::Relaxed);
        }
        e.set_property("prompt", s.prompt.as_str());
        e.set_property("negative-prompt", s.negative_prompt.as_str());
        e.set_property("threshold", s.threshold.value());
        e.set_property("smoothness", rules::smoothness_kernel(s.smoothness));
        e.set_property("max-instances", s.max_instances);
        e.set_property(
            "reuse-threshold",
            if s.reuse { self.reuse_threshold } else { 0.0 },
        );
    }

    /// Applies a change; blocking (it may rebuild the pipeline).
    pub fn update(&self, u: &Update) -> Result<(), UpdateError> {
        let _one = lock(&self.updating);
        let current = self.settings();
        let new = current
            .merged(u, self.max_instances_limit)
            .map_err(UpdateError::Invalid)?;
        let mut running = lock(&self.running);
        if current.needs_restart(&new) || running.is_none() {
            info!(
                "restarting the live pipeline (asynchronous {}, view {:?})",
                new.asynchronous, new.view
            );
            if let Some(old) = running.take() {
                old.stop();
            }
            self.shared.forget_frames();
            match self.launch(&new) {
                Ok(r) => *running = Some(r),
                Err(e) => {
                    // Back to what ran before, so that the page keeps a picture.
                    error!("the live pipeline does not restart: {e}");
                    *lock(&self.shared.error) = Some(e.clone());
                    *running = self.launch(&current).ok();
                    return Err(UpdateError::Pipeline(e));
                }
            }
        } else if let Some(r) = running.as_ref() {
            self.set_properties(&r.seg, &new, false);
        }
        debug!("live settings: {new:?}");
        *lock(&self.settings) = new;
        Ok(())
    }

    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// The element's largest `max-instances` (its ParamSpec's maximum).
    pub fn max_instances_limit(&self) -> u32 {
        self.max_instances_limit
    }

    pub fn status(&self) -> serde_json::Value {
        // What the running element chose (precision=auto), e.g. "int8 (auto: ...)".
        let in_use = lock(&self.shared.precision).clone();
        let (precision, reason) = match in_use.split_once(' ') {
            Some((p, r)) => (
                p.to_string(),
                r.trim_matches(|c| c == '(' || c == ')').to_string(),
            ),
            None => (self.bundle.precision.clone(), String::new()),
        };
        let mut frame = lock(&self.shared.frame).clone();
        if let Some(f) = &mut frame {
            f.times = *lock(&self.shared.stages);
        }
        serde_json::json!({
            "settings": self.settings().answer(&self.bundle),
            "frame": frame,
            "bundle": {"name": self.bundle.name, "precision": precision, "precision_reason": reason},
            "source": self.source,
            "error": *lock(&self.shared.error),
            "restarts": self.shared.restarts.load(Ordering::Relaxed),
        })
    }

    /// The preview's frames as they come (None before the first).
    pub fn frames(&self) -> watch::Receiver<Option<Bytes>> {
        self.shared.jpeg.subscribe()
    }

    /// Runs the element's `suggest` action (blocking: a few decoder runs).
    pub fn suggest(&self, k: u32) -> Result<Vec<(String, f64)>, String> {
        let seg = lock(&self.running)
            .as_ref()
            .map(|r| r.seg.clone())
            .ok_or("the live pipeline is not running")?;
        let s = seg.emit_by_name::<gst::Structure>("suggest", &[&k]);
        if let Ok(e) = s.get::<String>("error") {
            return Err(e);
        }
        let phrases = s.get::<gst::List>("phrases").map_err(|e| e.to_string())?;
        let scores = s.get::<gst::List>("scores").map_err(|e| e.to_string())?;
        Ok(phrases
            .iter()
            .zip(scores.iter())
            .filter_map(|(p, s)| Some((p.get::<String>().ok()?, s.get::<f64>().ok()?)))
            .collect())
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(r) = lock(&self.running).take() {
            r.stop();
        }
    }
}

impl Shared {
    /// A restart: nothing of the old pipeline stands for the new one.
    fn forget_frames(&self) {
        *lock(&self.error) = None;
        *lock(&self.frame) = None;
        *lock(&self.stages) = None;
        self.jpeg.send_replace(None);
    }

    /// Turns one output frame into the preview JPEG and its description.
    fn take(&self, sample: &gst::Sample) -> Result<(), String> {
        let buffer = sample.buffer().ok_or("a sample without a buffer")?;
        let caps = sample.caps().ok_or("a sample without caps")?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|e| e.to_string())?;
        let stride = frame.plane_stride()[0] as usize;
        let plane = frame.plane_data(0).map_err(|e| e.to_string())?;
        let rgba = frames::packed_rgba(plane, stride, w, h);
        let rgb = frames::rgb_view(&rgba, w, self.alpha_view.load(Ordering::Relaxed));
        let jpeg = frames::jpeg(&rgb, w as u32, h as u32, PREVIEW_QUALITY)?;

        let meta = gstsamclipseg::SamClipSegMeta::from_buffer(buffer);
        let fps = lock(&self.rate).tick(Instant::now());
        let number = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.recovering.swap(false, Ordering::AcqRel) {
            info!("the live pipeline runs again");
            *lock(&self.error) = None;
        }
        let description = FrameInfo {
            number,
            pts_ms: buffer.pts().map(|t| t.nseconds() as f64 / 1e6),
            state: meta
                .as_ref()
                .map_or("none", |m| m.state().nick())
                .to_string(),
            fps,
            width: w as u32,
            height: h as u32,
            instances: meta
                .as_ref()
                .map(|m| m.instances().iter().map(InstanceJson::of).collect())
                .unwrap_or_default(),
            times: None,
        };
        // The picture first: a client that read the description finds it.
        self.jpeg.send_replace(Some(Bytes::from(jpeg)));
        *lock(&self.frame) = Some(description);
        Ok(())
    }
}

fn stages_of(s: &gst::StructureRef) -> Option<Stages> {
    Some(Stages {
        text_ms: s.get("text-ms").ok()?,
        image_ms: s.get("image-ms").ok()?,
        decode_ms: s.get("decode-ms").ok()?,
        post_ms: s.get("post-ms").ok()?,
    })
}

/// Stage times, errors and the end of the stream, until its pipeline stops.
struct BusWatch {
    bus: gst::Bus,
    pipeline: gst::Pipeline,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    loops: bool,
    generation: u64,
    failures: std::sync::mpsc::Sender<u64>,
}

/// The restarts: each failure reported waits a back-off, then rebuilds the
/// pipeline with the settings of the moment; a try that fails doubles the
/// wait. Ends with the preview.
fn restart_on_failure(preview: std::sync::Weak<Preview>, failed: std::sync::mpsc::Receiver<u64>) {
    let mut backoff = FIRST_BACKOFF;
    let mut last_restart: Option<Instant> = None;
    while let Ok(generation) = failed.recv() {
        if last_restart.is_none_or(|t| t.elapsed() > STABLE_AFTER) {
            backoff = FIRST_BACKOFF;
        }
        loop {
            info!("restarting the live pipeline in {backoff:?}");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let Some(p) = preview.upgrade() else { return };
            match p.relaunch(generation) {
                Ok(restarted) => {
                    if restarted {
                        info!("live pipeline restarted");
                        last_restart = Some(Instant::now());
                    }
                    break;
                }
                Err(e) => {
                    error!("the live pipeline does not restart: {e}");
                    *lock(&p.shared.error) =
                        Some(format!("the live pipeline does not restart: {e}"));
                }
            }
        }
    }
}

impl BusWatch {
    fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            if let Some(msg) = self.bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
                self.handle(&msg);
            }
        }
    }

    fn handle(&self, msg: &gst::Message) {
        match msg.view() {
            gst::MessageView::Element(m) => {
                // The last run that computed something: a reused result
                // costs nothing, and the page shows what a run costs.
                if let Some(s) = m.structure()
                    && s.name() == gstsamclipseg::MESSAGE_NAME
                    && matches!(
                        s.get::<&str>("state"),
                        Ok("fresh" | "reused-image-features" | "tracked")
                    )
                    && let Some(stages) = stages_of(s)
                {
                    *lock(&self.shared.stages) = Some(stages);
                }
            }
            gst::MessageView::Error(e) => {
                let text = describe_error(e);
                error!("live pipeline: {text}");
                *lock(&self.shared.error) = Some(text);
                self.failed();
            }
            gst::MessageView::Warning(w) => {
                let src = w
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                warn!("live pipeline: {src}: {}", w.error());
            }
            gst::MessageView::Eos(_) if self.loops => {
                info!("end of the source: back to its start");
                if let Err(e) = self.pipeline.seek_simple(
                    gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                    gst::ClockTime::ZERO,
                ) {
                    warn!("cannot loop the source: {e}");
                    *lock(&self.shared.error) = Some(format!("the source cannot loop: {e}"));
                    self.failed();
                }
            }
            gst::MessageView::Eos(_) => {
                // A camera, a looped sequence or a still does not end: one
                // that does lost its device or its files.
                error!("the live source ended");
                *lock(&self.shared.error) = Some("the live source ended".into());
                self.failed();
            }
            _ => {}
        }
    }

    /// Asks for a restart (once per pipeline).
    fn failed(&self) {
        if !self.stop.swap(true, Ordering::AcqRel) {
            let _ = self.failures.send(self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            prompt: "red circle".into(),
            negative_prompt: String::new(),
            threshold: Threshold::Fixed(0.15),
            smoothness: 2,
            max_instances: 0,
            reuse: true,
            asynchronous: false,
            view: View::Overlay,
        }
    }

    #[test]
    fn updates_are_checked_and_merged() {
        let s = settings();
        let u = Update {
            threshold: Some(0.5),
            ..Update::default()
        };
        let n = s.merged(&u, 1024).unwrap();
        assert_eq!(n.threshold, Threshold::Fixed(0.5));
        assert!(!s.needs_restart(&n));
        for bad in [-0.1, 1.5, f32::NAN] {
            let u = Update {
                threshold: Some(bad),
                ..Update::default()
            };
            assert!(s.merged(&u, 1024).unwrap_err().contains("threshold"));
        }
        let u = Update {
            smoothness: Some(6),
            ..Update::default()
        };
        assert!(s.merged(&u, 1024).unwrap_err().contains("smoothness 6"));
        let u = Update {
            view: Some(View::Alpha),
            ..Update::default()
        };
        assert!(s.needs_restart(&s.merged(&u, 1024).unwrap()));
        let u = Update {
            max_instances: Some(1025),
            ..Update::default()
        };
        assert!(
            s.merged(&u, 1024)
                .unwrap_err()
                .contains("max_instances 1025")
        );
    }
}
