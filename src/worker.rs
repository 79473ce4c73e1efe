//! Asynchronous inference for live sources: a [`Segmenter`] on its own thread.
//! Frames are submitted as they come (a newer one replaces one still waiting),
//! and each frame takes the newest finished result, waiting for its own at
//! most as long as the caller allows.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::frame::{Frame, PackedLayout};
use crate::postprocess::{Instance, PostprocessOptions};
use crate::segmenter::{InferenceState, Segmenter};

/// A frame handed to the worker: its own copy of the pixels, as RGB.
pub struct Job {
    /// Increasing per submitted frame; results carry the id of their frame.
    pub id: u64,
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub prompts: Vec<String>,
    pub options: PostprocessOptions,
    /// See [`Segmenter::reuse_threshold`].
    pub reuse_threshold: f32,
}

impl Job {
    /// Copies `frame` (any layout) into a job.
    pub fn from_frame(
        id: u64,
        frame: &Frame,
        prompts: Vec<String>,
        options: PostprocessOptions,
        reuse_threshold: f32,
    ) -> Job {
        Job {
            id,
            rgb: frame.to_rgb(),
            width: frame.width,
            height: frame.height,
            prompts,
            options,
            reuse_threshold,
        }
    }
}

/// The result of one job.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: u64,
    pub instances: Arc<Vec<Instance>>,
    pub state: InferenceState,
    pub width: usize,
    pub height: usize,
}

#[derive(Default)]
struct Slots {
    pending: Option<Job>,
    finished: Option<Finished>,
    error: Option<Error>,
    reset: bool,
    shutdown: bool,
    busy: bool,
}

struct Shared {
    slots: Mutex<Slots>,
    /// Signalled when a job is submitted (or on reset and shutdown).
    work: Condvar,
    /// Signalled when a job finishes.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        // A panic inside inference is caught below; the slots stay consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct AsyncSegmenter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl AsyncSegmenter {
    pub fn new(segmenter: Segmenter) -> Result<AsyncSegmenter> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(Slots::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("samclipseg-infer".into())
            .spawn(move || run(worker, segmenter))
            .map_err(|e| Error::InvalidInput(format!("cannot start the inference thread: {e}")))?;
        Ok(AsyncSegmenter {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues a frame; one still waiting for the worker is dropped for it.
    pub fn submit(&self, job: Job) {
        let mut s = self.shared.lock();
        s.pending = Some(job);
        self.shared.work.notify_one();
    }

    /// The newest finished result, after waiting up to `max_wait` for the
    /// result of job `id` (or a later one). Errors from the worker come out here.
    pub fn result_for(&self, id: u64, max_wait: Duration) -> Result<Option<Finished>> {
        let deadline = Instant::now() + max_wait;
        let mut s = self.shared.lock();
        loop {
            if let Some(e) = s.error.take() {
                return Err(e);
            }
            let ready = s.finished.as_ref().is_some_and(|f| f.id >= id);
            // Nothing left that could produce this id: the job was replaced.
            let hopeless = !s.busy && s.pending.as_ref().is_none_or(|p| p.id < id);
            let now = Instant::now();
            if ready || hopeless || now >= deadline {
                return Ok(s.finished.clone());
            }
            s = self
                .shared
                .done
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Drops the waiting job and the last result, and makes the worker forget
    /// its cached picture (after a seek).
    pub fn reset(&self) {
        let mut s = self.shared.lock();
        s.pending = None;
        s.finished = None;
        s.reset = true;
        self.shared.work.notify_one();
    }
}

impl Drop for AsyncSegmenter {
    fn drop(&mut self) {
        {
            let mut s = self.shared.lock();
            s.shutdown = true;
            s.pending = None;
            self.shared.work.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: Arc<Shared>, mut segmenter: Segmenter) {
    loop {
        let job = {
            let mut s = shared.lock();
            loop {
                if s.shutdown {
                    return;
                }
                if std::mem::take(&mut s.reset) {
                    segmenter.reset();
                }
                if let Some(job) = s.pending.take() {
                    s.busy = true;
                    break job;
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
            let prompts: Vec<&str> = job.prompts.iter().map(String::as_str).collect();
            segmenter.reuse_threshold = job.reuse_threshold;
            segmenter.process(&frame, &prompts, &job.options)
        }));
        let mut s = shared.lock();
        s.busy = false;
        match outcome {
            Ok(Ok((instances, state))) => {
                s.finished = Some(Finished {
                    id: job.id,
                    instances: Arc::new(instances),
                    state,
                    width: job.width,
                    height: job.height,
                });
            }
            Ok(Err(e)) => s.error = Some(e),
            Err(_) => {
                s.error = Some(Error::InvalidInput(
                    "inference panicked; the frame was skipped".into(),
                ))
            }
        }
        shared.done.notify_all();
    }
}
