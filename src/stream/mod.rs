//! The stream layer: what each frame of one video stream carries.
//!
//! One [`Stream`] per video stream sits between the element and the shared
//! model, and [`Stream::frame`] decides, once per frame:
//!
//! - No positive phrase: nothing runs; the frame is [`InferenceState::NoPrompt`].
//!   A gap (no picture, [`Stream::gap`]) is [`InferenceState::Gap`]. Neither
//!   carries instances.
//! - The model runs on every `inference_interval`-th frame, and at once when
//!   the request changes; the frames between carry the last result
//!   (`reused-result`). A still picture lets the model reuse its image
//!   features or its whole result ([`Segmenter`]).
//! - Synchronous: the frame waits for its own run. Asynchronous: the run goes
//!   to a worker thread and the frame waits at most `max_latency` for it,
//!   then carries the newest result that is valid for it (`reused-result`,
//!   with the timestamp of the frame it was computed on).
//! - Valid means: computed for a request equal to the frame's own (phrases,
//!   thresholds, negatives, post-processing) and in the frame's stream
//!   generation ([`Stream::reset`] and [`Stream::new_caps`] start a new one).
//!   A frame with no valid result is [`InferenceState::Pending`], with no
//!   instances: it never shows another prompt's or another picture's masks.
//! - Runs that can no longer be shown (another request, an earlier
//!   generation, a stopped stream) are abandoned through ONNX Runtime's
//!   terminate flag ([`crate::stream::run_control`]).
//! - An inference server that does not answer ([`crate::Error::Unavailable`])
//!   is an outage, not a failure: its frames pass as `pending`, and the
//!   stream reports a [`Notice`] when it begins and another when a run
//!   succeeds again.
//! - Every new result is resolved (per-phrase thresholds, the negative rule)
//!   and tracked exactly once: ids and temporal smoothing follow results, and
//!   frames carrying the same result again carry the same ids.

mod model;
pub mod run_control;
mod runner;
mod segmenter;
mod tracker;
mod video;
mod video_segmenter;

use std::sync::Arc;
use std::time::Duration;

pub use model::{FrameModel, RunHints, StageTimes, SuggestSource};

pub use segmenter::Segmenter;
pub use tracker::{Tracker, mask_iou};
pub use video::{VideoLimits, VideoObject, VideoStep, VideoStepTimes, VideoTracker};
pub use video_segmenter::VideoSegmenter;

use crate::error::{Error, Result};
use crate::image::frame::Frame;
use crate::image::postprocess::Instance;
use crate::prompt::request::Request;
use runner::{AsyncRunner, Core, Finished, Shared, SyncRunner, Tag};

/// What a frame's result is, and how it was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InferenceState {
    /// Image encoder and decoder ran on this frame.
    Fresh,
    /// The picture was still: the previous image features were decoded again
    /// (the request changed).
    ReusedImageFeatures,
    /// No inference ran for this frame: it carries the result of an earlier
    /// one (a still picture, `inference-interval`, or asynchronous mode).
    ReusedResult,
    /// SAM 3's video tracker carried its objects onto this frame without a
    /// detector run (`tracker=sam3` between `inference-interval` frames).
    Tracked,
    /// No result for this frame's request has finished yet (asynchronous mode
    /// after a start, a seek or a prompt change): no instances.
    Pending,
    /// The prompt has no positive phrase: nothing to segment.
    NoPrompt,
    /// A gap buffer: no picture, nothing segmented.
    Gap,
}

impl InferenceState {
    /// The short name used in metadata, messages and logs.
    pub fn nick(self) -> &'static str {
        match self {
            InferenceState::Fresh => "fresh",
            InferenceState::ReusedImageFeatures => "reused-image-features",
            InferenceState::ReusedResult => "reused-result",
            InferenceState::Tracked => "tracked",
            InferenceState::Pending => "pending",
            InferenceState::NoPrompt => "no-prompt",
            InferenceState::Gap => "gap",
        }
    }
}

impl std::fmt::Display for InferenceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.nick())
    }
}

/// The settings that may change from frame to frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameSettings {
    /// See [`Segmenter::reuse_threshold`]; 0 = never reuse.
    pub reuse_threshold: f32,
    /// Run the model on every N-th frame (1 = every frame).
    pub inference_interval: u32,
    /// Asynchronous mode: how long a frame waits for its own result.
    pub max_latency: Duration,
    /// Results an object may be missing from and keep its id.
    pub track_patience: u32,
    /// See [`Tracker::smoothing`].
    pub temporal_smoothing: f32,
}

impl FrameSettings {
    /// The defaults, as constants: the element's property defaults read them.
    pub const DEFAULT: FrameSettings = FrameSettings {
        // Largest block change of mean luma (levels) that still counts as a
        // still picture: above sensor noise (~0.1 on block means), below
        // anything moving.
        reuse_threshold: 3.0,
        inference_interval: 1,
        max_latency: Duration::ZERO,
        track_patience: 5,
        temporal_smoothing: 0.0,
    };
}

impl Default for FrameSettings {
    fn default() -> Self {
        FrameSettings::DEFAULT
    }
}

/// Something the element should tell the application (a bus warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The inference server stopped answering: frames pass without results.
    ServerLost { server: String, message: String },
    /// A run on the server succeeded again after [`Notice::ServerLost`].
    ServerBack { server: String },
}

/// What one frame carries.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameResult {
    pub state: InferenceState,
    /// The positive instances kept (thresholds and the negative rule
    /// applied), best first within a phrase, each with its tracking id.
    pub instances: Vec<Instance>,
    /// The negative phrases' instances: never reported, cleared from alpha.
    pub negatives: Vec<Instance>,
    /// Timestamp of the frame whose picture the result was computed on.
    pub source_pts: Option<u64>,
    /// The generation of the request the frame was segmented for (it
    /// increases with every change of request; 0 = no request).
    pub request_generation: u64,
    /// What the model run behind this result cost (this frame's own run when
    /// `state` is fresh or reused-image-features, an earlier one otherwise).
    pub times: Option<StageTimes>,
}

impl FrameResult {
    fn nothing(state: InferenceState, request_generation: u64) -> FrameResult {
        FrameResult {
            state,
            instances: Vec::new(),
            negatives: Vec::new(),
            source_pts: None,
            request_generation,
            times: None,
        }
    }
}

/// Stops a stream's runs from another thread and gives prompt suggestions
/// their features, without the lock the streaming thread holds per frame.
#[derive(Clone)]
pub struct StreamHandle {
    shared: Arc<Shared>,
}

impl StreamHandle {
    /// Abandons the run in progress and lets waiting frames go at once (a
    /// flush is starting, the element is stopping); until the next
    /// [`Stream::reset`] or [`Stream::new_caps`] no frame waits or runs.
    pub fn interrupt(&self) {
        self.shared.interrupt();
    }

    /// The model and the features of the last picture it encoded.
    pub fn suggest_source(&self) -> Option<SuggestSource> {
        self.shared.suggest_source()
    }
}

enum Runner {
    Sync(SyncRunner),
    Async(AsyncRunner),
}

/// The result the frames carry now, resolved and tracked.
struct Carried {
    job: u64,
    /// See `Finished::origin`: equal origins are the same objects.
    origin: u64,
    generation: u64,
    request: Arc<Request>,
    size: (usize, usize),
    state: InferenceState,
    source_pts: Option<u64>,
    instances: Vec<Instance>,
    negatives: Vec<Instance>,
    times: Option<StageTimes>,
    /// A tracking model's objects (see `FrameModel::held_ids`).
    held: Option<Vec<u64>>,
}

impl Carried {
    /// Whether this result may stand for a frame of `size` segmented for
    /// `request` in stream generation `generation`.
    fn answers(&self, generation: u64, request: &Request, size: (usize, usize)) -> bool {
        self.generation == generation && *self.request == *request && self.size == size
    }
}

pub struct Stream {
    runner: Runner,
    shared: Arc<Shared>,
    /// Stream generation: results of earlier ones are never shown.
    generation: u64,
    /// The current request (None while the prompt is empty).
    request: Option<Arc<Request>>,
    /// Counts the changes of request.
    request_generation: u64,
    next_job: u64,
    /// Frames since the model last ran; None before the first run.
    since_run: Option<u32>,
    /// The model tracks objects itself (`FrameModel::tracks_objects`): it
    /// runs on every frame and its ids stand.
    tracks: bool,
    tracker: Tracker,
    carried: Option<Carried>,
    /// During an outage: the server, and the last job submitted when it began.
    outage: Option<(String, u64)>,
    notices: Vec<Notice>,
}

impl Stream {
    /// A stream on `model`, run on the streaming thread or, when
    /// `asynchronous`, on a worker thread of its own.
    pub fn new(model: impl FrameModel, asynchronous: bool) -> Result<Stream> {
        let shared = Arc::new(Shared::default());
        let tracks = model.tracks_objects();
        let core = Core::new(Box::new(model));
        let runner = if asynchronous {
            Runner::Async(AsyncRunner::new(core, shared.clone())?)
        } else {
            Runner::Sync(SyncRunner::new(core, shared.clone()))
        };
        let settings = FrameSettings::default();
        Ok(Stream {
            runner,
            shared,
            generation: 0,
            request: None,
            request_generation: 0,
            next_job: 0,
            since_run: None,
            tracks,
            tracker: Tracker::new(settings.track_patience, settings.temporal_smoothing),
            carried: None,
            outage: None,
            notices: Vec::new(),
        })
    }

    pub fn handle(&self) -> StreamHandle {
        StreamHandle {
            shared: self.shared.clone(),
        }
    }

    pub fn is_asynchronous(&self) -> bool {
        matches!(self.runner, Runner::Async(_))
    }

    /// Starts a new stream generation after a flush (a seek): the last
    /// picture, result and tracked objects are forgotten, and runs still going
    /// are abandoned.
    pub fn reset(&mut self) {
        self.new_generation();
        self.tracker.reset();
    }

    /// Starts a new stream generation for new caps: as [`Stream::reset`],
    /// but the tracked objects stay, so that a format change keeps their ids
    /// (after a size change their masks no longer match and they expire).
    pub fn new_caps(&mut self) {
        self.new_generation();
    }

    fn new_generation(&mut self) {
        self.shared.resume();
        self.generation += 1;
        self.since_run = None;
        self.carried = None;
        match &mut self.runner {
            Runner::Sync(r) => r.reset(),
            Runner::Async(r) => r.reset(),
        }
    }

    /// A gap buffer: nothing to look at.
    pub fn gap(&self) -> FrameResult {
        FrameResult::nothing(InferenceState::Gap, self.request_generation)
    }

    /// The request as the stream holds it, and whether it just changed.
    fn adopt(&mut self, request: &Request) -> (Arc<Request>, bool) {
        if let Some(current) = &self.request
            && **current == *request
        {
            return (current.clone(), false);
        }
        self.request_generation += 1;
        let request = Arc::new(request.clone());
        self.request = Some(request.clone());
        (request, true)
    }

    /// What `frame` (timestamp `pts`, in nanoseconds) carries for `request`.
    pub fn frame(
        &mut self,
        frame: &Frame,
        pts: Option<u64>,
        request: &Request,
        settings: &FrameSettings,
    ) -> Result<FrameResult> {
        if request.is_empty() {
            // Nothing to segment any more: runs for the last prompt stop, and
            // when it comes back its result is computed afresh.
            if self.request.take().is_some() {
                self.request_generation += 1;
                self.carried = None;
                self.shared.abandon();
            }
            return Ok(FrameResult::nothing(
                InferenceState::NoPrompt,
                self.request_generation,
            ));
        }
        let (request, changed) = self.adopt(request);
        self.tracker.patience = settings.track_patience;
        self.tracker.smoothing = settings.temporal_smoothing;
        let size = (frame.width, frame.height);
        let generation = self.generation;
        let valid = |c: &Carried| c.answers(generation, &request, size);
        let have = self.carried.as_ref().is_some_and(valid);
        let detect = changed
            || self
                .since_run
                .is_none_or(|n| n + 1 >= settings.inference_interval.max(1))
            || (!have && !self.is_asynchronous());
        self.since_run = Some(if detect {
            0
        } else {
            self.since_run.map_or(0, |n| n + 1)
        });
        // A tracker follows its objects on every frame; only its detector
        // keeps the interval.
        let due = detect || self.tracks;
        let hints = RunHints {
            reuse_threshold: settings.reuse_threshold,
            detect,
            patience: settings.track_patience,
        };
        let tag = due.then(|| {
            self.next_job += 1;
            Tag {
                id: self.next_job,
                generation: self.generation,
                request: request.clone(),
                pts,
            }
        });
        let own = tag.as_ref().map(|t| t.id);
        let outcome: Result<Option<Arc<Finished>>> = match (&mut self.runner, tag) {
            (Runner::Sync(r), Some(tag)) => r.run(frame, tag, &hints).map(|f| f.map(Arc::new)),
            (Runner::Sync(_), None) => Ok(None),
            (Runner::Async(r), tag) => {
                let wait = if tag.is_some() {
                    settings.max_latency
                } else {
                    Duration::ZERO
                };
                if let Some(tag) = tag {
                    r.submit(frame, tag, hints);
                }
                r.wait(own, self.generation, wait)
            }
        };
        let finished = self.watch_server(outcome)?;
        if let Some(f) = finished
            && f.answers(generation, &request, size)
        {
            self.take(&f);
        }
        let request_generation = self.request_generation;
        Ok(match &self.carried {
            Some(c) if valid(c) => FrameResult {
                state: if Some(c.job) == own {
                    c.state
                } else {
                    InferenceState::ReusedResult
                },
                instances: c.instances.clone(),
                negatives: c.negatives.clone(),
                source_pts: c.source_pts,
                request_generation,
                times: c.times,
            },
            _ => FrameResult::nothing(InferenceState::Pending, request_generation),
        })
    }

    /// The tracking ids still held (seen, or absent for up to
    /// `track-patience` results); an id reported earlier and missing here
    /// will not come back.
    pub fn live_ids(&self) -> Vec<u64> {
        if self.tracks {
            return (self.carried.as_ref())
                .and_then(|c| c.held.clone())
                .unwrap_or_default();
        }
        self.tracker.live_ids()
    }

    /// Notices since the last call, oldest first.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Turns a server outage into frames without results (and one notice),
    /// and notices the first run that succeeds after it.
    fn watch_server(
        &mut self,
        outcome: Result<Option<Arc<Finished>>>,
    ) -> Result<Option<Arc<Finished>>> {
        match outcome {
            Err(Error::Unavailable { server, message }) => {
                // An old result would stand for pictures the server never saw.
                self.carried = None;
                if self.outage.is_none() {
                    self.notices.push(Notice::ServerLost {
                        server: server.clone(),
                        message,
                    });
                }
                self.outage = Some((server, self.next_job));
                Ok(None)
            }
            Err(e) => Err(e),
            Ok(f) => match (&f, &self.outage) {
                // A result from before the outage (asynchronous mode keeps it).
                (Some(done), Some((_, since))) if done.tag.id <= *since => Ok(None),
                (Some(_), Some((server, _))) => {
                    let server = server.clone();
                    self.outage = None;
                    self.notices.push(Notice::ServerBack { server });
                    Ok(f)
                }
                _ => Ok(f),
            },
        }
    }

    /// Makes a finished run the carried result: resolved and tracked once.
    fn take(&mut self, f: &Finished) {
        // A reused result is the carried one only if it comes from the same
        // decoder run: the worker may have finished (and the frames skipped)
        // a newer picture's run since.
        let same_as_carried = self.carried.as_ref().is_some_and(|c| {
            c.answers(f.tag.generation, &f.tag.request, f.size) && c.origin == f.origin
        });
        if let Some(c) = &mut self.carried
            && c.job == f.tag.id
        {
            return;
        }
        if same_as_carried && let Some(c) = &mut self.carried {
            // The same objects again: their ids and masks stand.
            c.job = f.tag.id;
            c.state = f.state;
            c.source_pts = f.source_pts;
            c.times = f.times;
            return;
        }
        let (mut instances, negatives) = f.tag.request.resolve(f.instances.clone());
        if !self.tracks {
            self.tracker.update(&mut instances);
        }
        self.carried = Some(Carried {
            job: f.tag.id,
            origin: f.origin,
            generation: f.tag.generation,
            request: f.tag.request.clone(),
            size: f.size,
            state: f.state,
            source_pts: f.source_pts,
            instances,
            negatives,
            times: f.times,
            held: f.held.clone(),
        });
    }
}
