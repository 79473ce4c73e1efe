//! The stream layer's ordering rules, with slow fake models behind the same
//! `FrameModel` trait as the real one (results from the real model are in
//! tests/stream_model.rs). A fake's result says where it came from: `query`
//! encodes the phrase, `bbox[0]` the picture, so a frame that shows another
//! prompt's or another picture's result is caught.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use samclipseg::stream::run_control::RunControl;
use samclipseg::stream::{FrameModel, RunHints};
use samclipseg::{
    Error, Frame, FrameResult, FrameSettings, InferenceState, Instance, Mask, PackedLayout,
    PostprocessOptions, Request, Stream,
};

const W: usize = 32;
const H: usize = 16;

/// Picture `n`: every byte `n`.
fn picture(n: u8) -> Vec<u8> {
    vec![n; W * H * 3]
}

fn frame(data: &[u8]) -> Frame<'_> {
    Frame::packed(data, W, H, W * 3, PackedLayout::Rgb).unwrap()
}

fn request(prompt: &str) -> Request {
    Request::new(prompt, "", PostprocessOptions::default(), 0.5)
}

fn phrase_code(text: &str) -> usize {
    text.bytes().map(|b| b as usize).sum()
}

/// A mask covering columns `x0..x1`.
fn columns(x0: usize, x1: usize) -> Mask {
    let mut data = vec![0u8; W * H];
    for y in 0..H {
        for x in x0..x1 {
            data[y * W + x] = 255;
        }
    }
    Mask {
        width: W,
        height: H,
        data,
    }
}

fn instance(prompt: &str, index: usize, picture: u8, score: f32, mask: Mask) -> Instance {
    Instance {
        label: prompt.to_string(),
        id: 0,
        prompt_index: index,
        query: phrase_code(prompt),
        score,
        bbox: [picture as f32, 0.0, 1.0, 1.0],
        mask,
    }
}

#[derive(Debug, Default)]
struct Log {
    started: Vec<(u8, Vec<String>)>,
    cancelled: usize,
    finished: usize,
}

type Answer = dyn Fn(u8, &[&str]) -> Vec<Instance> + Send;

/// Takes `delay` per run; `cooperative` ones notice a cancel within 5 ms.
struct Fake {
    delay: Duration,
    cooperative: bool,
    /// Like the real Segmenter on a still picture: the same picture and
    /// prompts again return the last result at once, as `ReusedResult`.
    caching: bool,
    last: Option<(u8, Vec<String>, Vec<Instance>)>,
    log: Arc<Mutex<Log>>,
    answer: Box<Answer>,
}

/// One instance per phrase, over the whole picture.
fn one_per_phrase(picture: u8, prompts: &[&str]) -> Vec<Instance> {
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| instance(p, i, picture, 0.9, columns(0, W)))
        .collect()
}

impl Fake {
    fn new(delay_ms: u64, answer: impl Fn(u8, &[&str]) -> Vec<Instance> + Send + 'static) -> Fake {
        Fake {
            delay: Duration::from_millis(delay_ms),
            cooperative: true,
            caching: false,
            last: None,
            log: Arc::default(),
            answer: Box::new(answer),
        }
    }
}

impl FrameModel for Fake {
    fn process(
        &mut self,
        frame: &Frame,
        prompts: &[&str],
        _options: &PostprocessOptions,
        _hints: &RunHints,
        control: &RunControl,
    ) -> samclipseg::Result<(Vec<Instance>, InferenceState)> {
        let picture = frame.to_rgb()[0];
        let owned: Vec<String> = prompts.iter().map(|p| p.to_string()).collect();
        if self.caching
            && let Some((p, o, instances)) = &self.last
            && (*p, o) == (picture, &owned)
        {
            return Ok((instances.clone(), InferenceState::ReusedResult));
        }
        self.log
            .lock()
            .unwrap()
            .started
            .push((picture, owned.clone()));
        // Like the real engines: a cancelled control refuses to start a run.
        let end = Instant::now() + self.delay;
        loop {
            if self.cooperative && control.is_cancelled() {
                self.log.lock().unwrap().cancelled += 1;
                return Err(Error::Cancelled);
            }
            if Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.log.lock().unwrap().finished += 1;
        let instances = (self.answer)(picture, prompts);
        self.last = Some((picture, owned, instances.clone()));
        Ok((instances, InferenceState::Fresh))
    }

    fn reset(&mut self) {}
}

fn settings(max_latency_ms: u64) -> FrameSettings {
    FrameSettings {
        max_latency: Duration::from_millis(max_latency_ms),
        ..FrameSettings::default()
    }
}

/// Every instance is the current prompt's own: label, phrase and picture.
fn assert_answers(r: &FrameResult, req: &Request, max_picture: u8) {
    let texts = req.texts();
    for inst in &r.instances {
        assert_eq!(inst.label, texts[inst.prompt_index], "{r:?}");
        assert_eq!(
            inst.query,
            phrase_code(&inst.label),
            "another phrase's mask: {r:?}"
        );
        assert!(inst.bbox[0] as u8 <= max_picture, "a later picture? {r:?}");
    }
    if r.state == InferenceState::Pending {
        assert!(r.instances.is_empty() && r.negatives.is_empty(), "{r:?}");
    }
}

#[test]
fn asynchronous_prompt_change_shows_pending_never_the_old_prompts_masks() {
    let fake = Fake::new(60, one_per_phrase);
    let mut stream = Stream::new(fake, true).unwrap();
    let mut states = Vec::new();
    // Three phrases, then one: the old code relabelled the old result by
    // phrase index and took its higher-index positives for negatives.
    for (prompt, frames) in [("cat; dog; bird", 20), ("bird", 25), ("cat; dog; bird", 25)] {
        let req = request(prompt);
        for n in 0..frames {
            let data = picture(n);
            let r = stream
                .frame(&frame(&data), Some(n as u64), &req, &settings(0))
                .unwrap();
            assert_answers(&r, &req, n);
            states.push((prompt, r.state, r.instances.len()));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for prompt in ["cat; dog; bird", "bird"] {
        let own: Vec<_> = states.iter().filter(|s| s.0 == prompt).collect();
        assert!(
            own.iter()
                .any(|s| s.1 == InferenceState::ReusedResult && s.2 > 0),
            "{prompt}: no result arrived: {own:?}"
        );
    }
    // Right after each change, frames wait for the new prompt's result.
    assert_eq!(states[20].1, InferenceState::Pending, "{states:?}");
    assert_eq!(states[45].1, InferenceState::Pending, "{states:?}");
}

#[test]
fn reset_drops_the_running_job_and_results_of_the_earlier_generation() {
    let fake = Fake::new(300, one_per_phrase);
    let log = fake.log.clone();
    let mut stream = Stream::new(fake, true).unwrap();
    let req = request("cat");
    let old = picture(200);
    let first = stream
        .frame(&frame(&old), Some(0), &req, &settings(0))
        .unwrap();
    assert_eq!(first.state, InferenceState::Pending);
    while log.lock().unwrap().started.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A seek while picture 200 is being segmented.
    stream.reset();
    let start = Instant::now();
    let mut got = Vec::new();
    for n in 1..60u8 {
        let data = picture(n);
        let r = stream
            .frame(&frame(&data), Some(n as u64), &req, &settings(0))
            .unwrap();
        assert_answers(&r, &req, n);
        got.push(r.state);
        std::thread::sleep(Duration::from_millis(15));
    }
    let log = log.lock().unwrap();
    assert!(log.cancelled >= 1, "the old run was not abandoned: {log:?}");
    assert!(
        got.contains(&InferenceState::ReusedResult),
        "no result after the reset ({:?} elapsed): {got:?}",
        start.elapsed()
    );
}

#[test]
fn stopping_returns_at_once_while_a_run_is_in_progress() {
    for cooperative in [true, false] {
        let mut fake = Fake::new(20_000, one_per_phrase);
        fake.cooperative = cooperative;
        let log = fake.log.clone();
        let mut stream = Stream::new(fake, true).unwrap();
        let data = picture(1);
        stream
            .frame(&frame(&data), Some(0), &request("cat"), &settings(0))
            .unwrap();
        while log.lock().unwrap().started.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let start = Instant::now();
        drop(stream);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "cooperative={cooperative}: stop took {took:?}"
        );
        if cooperative {
            // The worker left the run instead of finishing it.
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(log.lock().unwrap().cancelled, 1);
        }
    }
}

#[test]
fn an_interrupt_abandons_the_run_and_lets_the_frame_go_in_both_modes() {
    for asynchronous in [false, true] {
        let fake = Fake::new(20_000, one_per_phrase);
        let mut stream = Stream::new(fake, asynchronous).unwrap();
        let handle = stream.handle();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            handle.interrupt();
        });
        let start = Instant::now();
        let data = picture(1);
        // Asynchronous: a frame willing to wait 10 s for its own result.
        let r = stream
            .frame(&frame(&data), Some(0), &request("cat"), &settings(10_000))
            .unwrap();
        assert_eq!(r.state, InferenceState::Pending);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "asynchronous={asynchronous}: {took:?}"
        );
        waker.join().unwrap();
    }
}

/// Two objects, left and right; their score order flips with the picture's
/// parity, and on picture 7 the right one is missing.
fn two_objects(picture: u8, prompts: &[&str]) -> Vec<Instance> {
    let p = prompts[0];
    let left = instance(p, 0, picture, 0.9, columns(0, 10));
    let right = instance(p, 0, picture, 0.8, columns(20, 30));
    let (mut left, mut right) = (left, right);
    if picture % 2 == 1 {
        left.score = 0.7;
        right.score = 0.95;
    }
    let mut out = vec![left, right];
    if picture == 7 {
        out.pop();
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

fn ids_by_side(r: &FrameResult) -> (Option<u64>, Option<u64>) {
    let side = |left: bool| {
        r.instances
            .iter()
            .find(|i| (i.mask.data[0] == 255) == left)
            .map(|i| i.id)
    };
    (side(true), side(false))
}

#[test]
fn asynchronous_ids_follow_objects_when_scores_reorder() {
    let fake = Fake::new(25, two_objects);
    let mut stream = Stream::new(fake, true).unwrap();
    let req = request("shape");
    let mut seen = Vec::new();
    for n in 0..60u8 {
        let data = picture(n % 6);
        let r = stream
            .frame(&frame(&data), Some(n as u64), &req, &settings(0))
            .unwrap();
        if !r.instances.is_empty() {
            seen.push(ids_by_side(&r));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = seen.first().copied().unwrap();
    assert!(seen.len() > 20, "{seen:?}");
    assert!(
        seen.iter().all(|s| *s == first),
        "ids swapped between objects: {seen:?}"
    );
}

#[test]
fn the_tracker_sees_each_result_once_not_each_frame() {
    // Every 4th frame runs (and waits for its result); the 3 between carry it
    // again. The right object is missing from one result: with patience 1 it
    // keeps its id. Tracking every frame would count 4 misses and retire it.
    let fake = Fake::new(5, two_objects);
    let mut stream = Stream::new(fake, true).unwrap();
    let req = request("shape");
    let settings = FrameSettings {
        inference_interval: 4,
        max_latency: Duration::from_secs(5),
        track_patience: 1,
        ..FrameSettings::default()
    };
    let mut rights = Vec::new();
    for (run, pic) in [6u8, 7, 6].into_iter().enumerate() {
        for k in 0..4 {
            let data = picture(pic);
            let n = (run * 4 + k) as u64;
            let r = stream
                .frame(&frame(&data), Some(n), &req, &settings)
                .unwrap();
            let expected = if k == 0 {
                InferenceState::Fresh
            } else {
                InferenceState::ReusedResult
            };
            assert_eq!(r.state, expected, "frame {n}");
            rights.push(ids_by_side(&r).1);
        }
    }
    assert_eq!(rights[4..8], [None; 4], "{rights:?}");
    assert_eq!(
        rights[8], rights[0],
        "the right object lost its id: {rights:?}"
    );
}

#[test]
fn inference_interval_runs_every_nth_frame_and_at_once_on_a_change() {
    let fake = Fake::new(0, one_per_phrase);
    let log = fake.log.clone();
    let mut stream = Stream::new(fake, false).unwrap();
    let settings = FrameSettings {
        inference_interval: 3,
        ..FrameSettings::default()
    };
    let mut states = Vec::new();
    for n in 0..9u8 {
        let req = request(if n < 4 { "cat" } else { "dog" });
        let data = picture(n);
        let r = stream
            .frame(&frame(&data), Some(n as u64 * 10), &req, &settings)
            .unwrap();
        assert_answers(&r, &req, n);
        states.push((r.state, r.source_pts));
    }
    use InferenceState::{Fresh, ReusedResult};
    assert_eq!(
        states,
        [
            (Fresh, Some(0)),
            (ReusedResult, Some(0)),
            (ReusedResult, Some(0)),
            (Fresh, Some(30)),
            (Fresh, Some(40)), // the prompt changed: runs at once
            (ReusedResult, Some(40)),
            (ReusedResult, Some(40)),
            (Fresh, Some(70)),
            (ReusedResult, Some(70)),
        ]
    );
    let pictures: Vec<u8> = log.lock().unwrap().started.iter().map(|s| s.0).collect();
    assert_eq!(pictures, [0, 3, 4, 7]);
}

#[test]
fn empty_prompts_and_gaps_say_what_happened() {
    let fake = Fake::new(0, one_per_phrase);
    let log = fake.log.clone();
    let mut stream = Stream::new(fake, false).unwrap();
    let data = picture(3);
    let r = stream
        .frame(&frame(&data), Some(1), &request(" ; -cat"), &settings(0))
        .unwrap();
    assert_eq!((r.state, r.instances.len()), (InferenceState::NoPrompt, 0));
    let r = stream.gap();
    assert_eq!((r.state, r.instances.len()), (InferenceState::Gap, 0));
    assert!(log.lock().unwrap().started.is_empty(), "nothing may run");
    let r = stream
        .frame(&frame(&data), Some(2), &request("cat"), &settings(0))
        .unwrap();
    assert_eq!((r.state, r.instances.len()), (InferenceState::Fresh, 1));
    assert_eq!(r.instances[0].id, 1);
    // The prompt goes and comes back: computed afresh, not the old result.
    let settings = FrameSettings {
        inference_interval: 100,
        ..FrameSettings::default()
    };
    let r = stream
        .frame(&frame(&data), Some(3), &request(""), &settings)
        .unwrap();
    assert_eq!(r.state, InferenceState::NoPrompt);
    let r = stream
        .frame(&frame(&data), Some(4), &request("cat"), &settings)
        .unwrap();
    assert_eq!((r.state, r.source_pts), (InferenceState::Fresh, Some(4)));
}

#[test]
fn after_an_interrupt_nothing_runs_until_the_next_generation() {
    // A buffer can slip in between a flush-start (or a stop) and the pad
    // refusing buffers: it must neither wait nor start a run.
    for asynchronous in [false, true] {
        let fake = Fake::new(0, one_per_phrase);
        let log = fake.log.clone();
        let mut stream = Stream::new(fake, asynchronous).unwrap();
        stream.handle().interrupt();
        let data = picture(1);
        let start = Instant::now();
        let r = stream
            .frame(&frame(&data), Some(0), &request("cat"), &settings(10_000))
            .unwrap();
        assert_eq!(
            r.state,
            InferenceState::Pending,
            "asynchronous={asynchronous}"
        );
        assert!(start.elapsed() < Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            log.lock().unwrap().finished,
            0,
            "asynchronous={asynchronous}"
        );
        // The flush is over: frames run again.
        stream.reset();
        let r = stream
            .frame(&frame(&data), Some(1), &request("cat"), &settings(10_000))
            .unwrap();
        assert_eq!(
            r.state,
            InferenceState::Fresh,
            "asynchronous={asynchronous}"
        );
    }
}

#[test]
fn a_reused_result_is_the_carried_one_only_if_it_comes_from_the_same_run() {
    // The worker finishes picture 2 (fresh) and at once the next job on the
    // same picture (reused, instantly), before any frame looks: the frames
    // must move on to picture 2's masks, not keep picture 1's.
    let mut fake = Fake::new(150, one_per_phrase);
    fake.caching = true;
    let mut stream = Stream::new(fake, true).unwrap();
    let req = request("cat");
    let (one, two) = (picture(1), picture(2));
    let r = stream
        .frame(&frame(&one), Some(1), &req, &settings(5_000))
        .unwrap();
    assert_eq!(
        (r.state, r.instances[0].bbox[0]),
        (InferenceState::Fresh, 1.0)
    );
    stream
        .frame(&frame(&two), Some(2), &req, &settings(0))
        .unwrap();
    stream
        .frame(&frame(&two), Some(3), &req, &settings(0))
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let r = stream
        .frame(&frame(&two), Some(4), &req, &settings(0))
        .unwrap();
    assert_eq!(r.instances.len(), 1, "{r:?}");
    assert_eq!(
        r.instances[0].bbox[0], 2.0,
        "picture 1's masks on picture 2: {r:?}"
    );
    // Frames 2 and 3 are both picture 2: a worker that saw job 3 replace a
    // waiting job 2 (a busy machine) encoded frame 3.
    assert!(matches!(r.source_pts, Some(2) | Some(3)), "{r:?}");
}
