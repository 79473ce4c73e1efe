//! Where a stream's model runs: inline on the streaming thread, or on a
//! worker thread of its own (asynchronous mode). Both run a job the same way
//! ([`Core::run`]). The worker keeps at most one job waiting (a newer one
//! replaces it) and the newest finished result; every job and result carries
//! its [`Tag`], so the stream can tell whose result it is.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::InferenceState;
use super::model::{FrameModel, RunHints, StageTimes, SuggestSource};
use crate::error::{Error, Result};
use crate::image::frame::{Frame, PackedLayout};
use crate::image::postprocess::Instance;
use crate::prompt::request::Request;
use crate::stream::run_control::RunControl;

/// How long dropping an asynchronous runner waits for its worker to leave
/// the abandoned run before it lets the thread finish on its own.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);
/// The same for a model whose runs cannot be abandoned (OpenVINO runs an
/// engine to its end): a thread left inside one when the process exits
/// crashes in OpenVINO's teardown, so the drop waits for the run.
const SHUTDOWN_WAIT_UNINTERRUPTIBLE: Duration = Duration::from_secs(120);

/// Who asked for a run: the frame, the stream generation and the request.
#[derive(Debug, Clone)]
pub(crate) struct Tag {
    /// Increasing per submitted frame of the stream.
    pub id: u64,
    /// The stream generation (see `Stream::reset`) the frame belongs to.
    pub generation: u64,
    pub request: Arc<Request>,
    pub pts: Option<u64>,
}

/// One run's answer, before the request's thresholds, negatives and tracking.
#[derive(Debug)]
pub(crate) struct Finished {
    pub tag: Tag,
    pub instances: Vec<Instance>,
    pub state: InferenceState,
    /// The frame whose picture was encoded (an earlier one when its features
    /// were reused).
    pub source_pts: Option<u64>,
    /// The job whose decoder run produced these instances: this one's, or an
    /// earlier one's when the model reused its whole result.
    pub origin: u64,
    pub size: (usize, usize),
    /// What this run cost (the model's own measure).
    pub times: Option<StageTimes>,
    /// A tracking model's objects after this run (`FrameModel::held_ids`).
    pub held: Option<Vec<u64>>,
}

impl Finished {
    /// See `Carried::answers`: the same three things decide.
    pub(crate) fn answers(&self, generation: u64, request: &Request, size: (usize, usize)) -> bool {
        self.tag.generation == generation && *self.tag.request == *request && self.size == size
    }
}

/// A frame handed to the worker: its own copy of the pixels, as RGB.
struct Job {
    tag: Tag,
    rgb: Vec<u8>,
    width: usize,
    height: usize,
    hints: RunHints,
}

#[derive(Default)]
struct Slots {
    pending: Option<Job>,
    /// The job being run, with its cancel switch.
    running: Option<(Tag, RunControl)>,
    finished: Option<Arc<Finished>>,
    error: Option<Error>,
    /// The worker must forget its cached picture before the next job.
    reset: bool,
    shutdown: bool,
    exited: bool,
    /// Set by `interrupt` until the next stream generation: no frame waits
    /// and no run starts, because a flush or a stop is on its way and a
    /// buffer may still slip in before the pad refuses it.
    interrupted: bool,
    suggest: Option<SuggestSource>,
}

impl Slots {
    /// Abandons the run in progress, if any.
    fn cancel_running(&self) {
        if let Some((_, control)) = &self.running {
            control.cancel();
        }
    }

    /// Marks `tag`'s run as the one in progress; cancelled from the start
    /// while interrupted.
    fn begin(&mut self, tag: &Tag) -> RunControl {
        let control = RunControl::new();
        if self.interrupted {
            control.cancel();
        }
        self.running = Some((tag.clone(), control.clone()));
        control
    }
}

/// What the stream, its worker and its [`super::StreamHandle`] share.
#[derive(Default)]
pub(crate) struct Shared {
    slots: Mutex<Slots>,
    /// Signalled when a job is submitted, and on reset and shutdown.
    work: Condvar,
    /// Signalled when a job ends, on interrupts and when the worker exits.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // Panics inside inference are caught; the slots stay consistent.
        crate::sync::lock(&self.slots)
    }

    /// Abandons the run in progress and wakes every waiting frame.
    pub(crate) fn interrupt(&self) {
        let mut s = self.lock();
        s.interrupted = true;
        s.cancel_running();
        self.done.notify_all();
    }

    /// Waits at most `timeout` for a job to end (or an interrupt, an exit).
    fn wait_done<'a>(&self, s: MutexGuard<'a, Slots>, timeout: Duration) -> MutexGuard<'a, Slots> {
        self.done
            .wait_timeout(s, timeout)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0)
    }

    pub(crate) fn suggest_source(&self) -> Option<SuggestSource> {
        self.lock().suggest.clone()
    }

    /// Drops the waiting job and abandons the one in progress (their request
    /// is gone).
    pub(crate) fn abandon(&self) {
        let mut s = self.lock();
        s.pending = None;
        s.cancel_running();
    }

    /// Ends an interrupt: a new stream generation begins.
    pub(crate) fn resume(&self) {
        self.lock().interrupted = false;
    }

    /// Ends the run in progress: the slots, locked, with the model's
    /// latest features published for suggestions.
    fn end_run(&self, core: &Core) -> MutexGuard<'_, Slots> {
        let suggest = core.model.suggest_source();
        let mut s = self.lock();
        s.running = None;
        if suggest.is_some() {
            s.suggest = suggest;
        }
        s
    }
}

/// The model and what it remembers across jobs.
pub(crate) struct Core {
    model: Box<dyn FrameModel>,
    /// Timestamp of the frame whose picture the model holds features of.
    encoded_pts: Option<u64>,
    /// The job of the model's last decoder run (see `Finished::origin`).
    origin: u64,
}

impl Core {
    pub(crate) fn new(model: Box<dyn FrameModel>) -> Core {
        Core {
            model,
            encoded_pts: None,
            origin: 0,
        }
    }

    fn run(
        &mut self,
        frame: &Frame,
        tag: Tag,
        hints: &RunHints,
        control: &RunControl,
    ) -> Result<Finished> {
        let texts = tag.request.texts();
        let options = tag.request.model_options();
        let (instances, state) = self
            .model
            .process(frame, &texts, &options, hints, control)?;
        if state == InferenceState::Fresh {
            self.encoded_pts = tag.pts;
        }
        if state != InferenceState::ReusedResult {
            self.origin = tag.id;
        }
        Ok(Finished {
            tag,
            instances,
            state,
            source_pts: self.encoded_pts,
            origin: self.origin,
            size: (frame.width, frame.height),
            times: self.model.last_times(),
            held: self.model.held_ids(),
        })
    }

    fn reset(&mut self) {
        self.model.reset();
        self.encoded_pts = None;
        self.origin = 0;
    }
}

/// Runs each job on the calling (streaming) thread.
pub(crate) struct SyncRunner {
    core: Core,
    shared: Arc<Shared>,
}

impl SyncRunner {
    pub(crate) fn new(core: Core, shared: Arc<Shared>) -> SyncRunner {
        SyncRunner { core, shared }
    }

    /// The job's result; None when it was abandoned (an interrupt).
    pub(crate) fn run(
        &mut self,
        frame: &Frame,
        tag: Tag,
        hints: &RunHints,
    ) -> Result<Option<Finished>> {
        let control = self.shared.lock().begin(&tag);
        let out = self.core.run(frame, tag, hints, &control);
        drop(self.shared.end_run(&self.core));
        match out {
            Ok(f) => Ok(Some(f)),
            Err(Error::Cancelled) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn reset(&mut self) {
        self.core.reset();
        self.shared.lock().suggest = None;
    }
}

/// Runs jobs on a worker thread; frames never wait longer than they allow.
pub(crate) struct AsyncRunner {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    shutdown_wait: Duration,
}

impl AsyncRunner {
    pub(crate) fn new(core: Core, shared: Arc<Shared>) -> Result<AsyncRunner> {
        let shutdown_wait = if core.model.runs_can_be_abandoned() {
            SHUTDOWN_WAIT
        } else {
            SHUTDOWN_WAIT_UNINTERRUPTIBLE
        };
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("samclipseg-infer".into())
            .spawn(move || work(worker, core))
            .map_err(|e| Error::InvalidInput(format!("cannot start the inference thread: {e}")))?;
        Ok(AsyncRunner {
            shared,
            thread: Some(thread),
            shutdown_wait,
        })
    }

    /// Queues a copy of `frame`; a job still waiting is dropped for it, and
    /// the run in progress is abandoned when it answers another request or
    /// stream generation (its result could never be shown).
    pub(crate) fn submit(&self, frame: &Frame, tag: Tag, hints: RunHints) {
        let mut job = Job {
            rgb: frame.to_rgb(),
            width: frame.width,
            height: frame.height,
            tag,
            hints,
        };
        let mut s = self.shared.lock();
        if let Some((running, control)) = &s.running
            && (running.generation != job.tag.generation || *running.request != *job.tag.request)
        {
            control.cancel();
        }
        // A detection the worker never got to is owed to the next frame.
        if let Some(dropped) = &s.pending {
            job.hints.detect |= dropped.hints.detect;
        }
        s.pending = Some(job);
        self.shared.work.notify_one();
    }

    /// The newest finished result of stream generation `generation`, after
    /// waiting up to `max_wait` for the result of job `own` (or a later one).
    /// Worker errors come out here.
    pub(crate) fn wait(
        &self,
        own: Option<u64>,
        generation: u64,
        max_wait: Duration,
    ) -> Result<Option<Arc<Finished>>> {
        let deadline = Instant::now() + max_wait;
        let mut s = self.shared.lock();
        loop {
            if let Some(e) = s.error.take() {
                return Err(e);
            }
            let newest = s
                .finished
                .clone()
                .filter(|f| f.tag.generation == generation);
            let ready = match own {
                None => true,
                Some(id) => newest.as_ref().is_some_and(|f| f.tag.id >= id),
            };
            // Nothing queued or running can produce it (it was abandoned).
            let hopeless = own.is_some_and(|id| {
                s.pending.as_ref().is_none_or(|p| p.tag.id < id)
                    && s.running.as_ref().is_none_or(|(t, _)| t.id < id)
            });
            let now = Instant::now();
            if ready || hopeless || now >= deadline || s.interrupted || s.exited {
                return Ok(newest);
            }
            s = self.shared.wait_done(s, deadline - now);
        }
    }

    /// Drops the waiting job and the last result, abandons the run in
    /// progress, and makes the worker forget its cached picture.
    pub(crate) fn reset(&self) {
        let mut s = self.shared.lock();
        s.pending = None;
        s.finished = None;
        // An abandoned run's failure and the old picture's features are of
        // the earlier generation too.
        s.error = None;
        s.suggest = None;
        s.reset = true;
        s.cancel_running();
        self.shared.work.notify_one();
    }
}

impl Drop for AsyncRunner {
    fn drop(&mut self) {
        let deadline = Instant::now() + self.shutdown_wait;
        let mut s = self.shared.lock();
        s.shutdown = true;
        s.pending = None;
        s.cancel_running();
        self.shared.work.notify_one();
        while !s.exited {
            let now = Instant::now();
            if now >= deadline {
                // The run ignored the terminate flag so far; the thread ends
                // (and releases its model) when it returns.
                log::warn!("the inference thread is still busy; leaving it to finish on its own");
                return;
            }
            s = self.shared.wait_done(s, deadline - now);
        }
        drop(s);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn work(shared: Arc<Shared>, mut core: Core) {
    // Asynchronous runs are background work: the pipeline's threads go first.
    crate::priority::lower_this_thread();
    loop {
        let (job, control) = {
            let mut s = shared.lock();
            loop {
                if s.shutdown {
                    s.exited = true;
                    shared.done.notify_all();
                    return;
                }
                if std::mem::take(&mut s.reset) {
                    core.reset();
                }
                if let Some(job) = s.pending.take() {
                    let control = s.begin(&job.tag);
                    break (job, control);
                }
                s = shared.work.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let frame = Frame::packed(
                &job.rgb,
                job.width,
                job.height,
                job.width * 3,
                PackedLayout::Rgb,
            )?;
            core.run(&frame, job.tag, &job.hints, &control)
        }));
        let mut s = shared.end_run(&core);
        match outcome {
            Ok(Ok(finished)) => s.finished = Some(Arc::new(finished)),
            Ok(Err(Error::Cancelled)) => {}
            Ok(Err(e)) => s.error = Some(e),
            Err(_) => {
                // What the model remembers of the last picture may be half-updated.
                core.reset();
                s.error = Some(Error::InvalidInput(
                    "inference panicked; the frame was skipped".into(),
                ))
            }
        }
        shared.done.notify_all();
    }
}
