//! How a CPU engine's threads share the machine with a live pipeline
//! ([`BackendOptions::background`]): how many, whether they spin while
//! waiting for work, and at which priority.

use super::options::{BackendKind, BackendOptions};

/// What an engine's sessions are made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPlan {
    /// Threads inside one operator; 0 lets ONNX Runtime choose (every core).
    pub intra_threads: usize,
    /// Whether idle pool threads busy-wait for the next operator (ONNX
    /// Runtime's default: faster hand-over, a core burnt while waiting).
    pub spinning: bool,
    /// Whether the session is made on a background-priority thread, so that
    /// its pool threads inherit that priority (`crate::priority`).
    pub lower_priority: bool,
}

/// The plan for `options`. In the background (asynchronous mode) the pool
/// keeps every core (`threads=0`), but does not spin and runs at background
/// priority: measured on 2 AVX2 cores, a live 1080p60 source with the toy
/// bundle (a run about as long as a frame) took 5.34-5.65 s of wall time for
/// 5 s of video in meta and alpha modes, against 7.2-10.7 s with ONNX
/// Runtime's defaults, 5.4-8.1 s with spinning off alone, 5.4-6.9 s with one
/// thread fewer, and 5.1 s without the element (docs/live.md).
pub fn background_threads(options: &BackendOptions) -> ThreadPlan {
    let background = options.background && options.kind == BackendKind::Cpu;
    ThreadPlan {
        intra_threads: options.intra_threads,
        spinning: !background,
        lower_priority: background,
    }
}

/// ONNX Runtime session entries for `plan`.
pub fn spinning_entries(plan: &ThreadPlan) -> Vec<(&'static str, &'static str)> {
    if plan.spinning {
        Vec::new()
    } else {
        vec![
            ("session.intra_op.allow_spinning", "0"),
            ("session.inter_op.allow_spinning", "0"),
        ]
    }
}
