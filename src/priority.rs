//! Scheduling priority for work that runs beside a live pipeline: the
//! asynchronous inference thread, ONNX Runtime's and OpenVINO's worker threads
//! of a model loaded for it, the remote client's network thread, and prompt
//! suggestions. At a lower priority they still take every idle cycle, but the
//! kernel hands a core to the source, streaming and sink threads the moment
//! one of those wakes up, so the pipeline keeps real time
//! (docs/live.md, "What asynchronous mode costs a live source").
//!
//! On Linux the nice value belongs to a thread, and threads inherit their
//! creator's. A nice value once raised cannot be lowered again without
//! privileges, so work that must not lower its caller runs on a thread of its
//! own ([`in_background`]).

/// How much nicer than the pipeline's threads background work runs. At 10 a
/// busy thread gets about a tenth of the share of a normal one that wants the
/// same core.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread (and the threads it creates from now on) to
/// [`BACKGROUND_NICE`] above the process's priority. Best effort: where the
/// system refuses, the thread keeps its priority and a debug line says so.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let target = process_nice().saturating_add(BACKGROUND_NICE).min(19);
        if this_thread_nice() >= target {
            return;
        }
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
        // SAFETY: plain system call on this thread's own id.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) } != 0 {
            log::debug!(
                "cannot lower this thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Runs `f` on a new thread at background priority and waits for its result:
/// for work whose own worker threads must inherit that priority (ONNX Runtime
/// makes a session's thread pool when the session is made) or that is called
/// from a thread that must keep its priority (a `suggest` action on the
/// application's thread).
pub fn in_background<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    // Shared so that the work can still run here if no thread can be had.
    let work = std::sync::Mutex::new(Some(f));
    let spawned = std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn_scoped(scope, || {
                lower_this_thread();
                crate::sync::lock(&work).take().map(|f| f())
            })
            .ok()?;
        Some(
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        )
    });
    match spawned.flatten() {
        Some(out) => out,
        None => {
            log::debug!("cannot start a thread for background work; running it in place");
            let f = crate::sync::lock(&work).take();
            f.expect("the background work did not run")()
        }
    }
}

/// [`in_background`] when `background`, else `f` right here.
pub fn in_background_if<T: Send>(background: bool, name: &str, f: impl FnOnce() -> T + Send) -> T {
    if background {
        in_background(name, f)
    } else {
        f()
    }
}

/// The calling thread's nice value (0 where the system has none).
pub fn this_thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
        thread_nice(tid)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(target_os = "linux")]
fn thread_nice(tid: libc::id_t) -> i32 {
    // getpriority can return -1 as a value: errno tells an error apart.
    // SAFETY: errno is thread-local; getpriority only reads.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if nice == -1 && *libc::__errno_location() != 0 {
            0
        } else {
            nice
        }
    }
}

/// The main thread's nice value: the process's own priority, which the
/// background one is relative to.
#[cfg(target_os = "linux")]
fn process_nice() -> i32 {
    thread_nice(std::process::id() as libc::id_t)
}

/// The nice values of this process's threads by thread id (Linux; empty
/// elsewhere): what tests and the bench read to see who runs at which
/// priority.
pub fn thread_nice_values() -> Vec<(u32, i32)> {
    #[cfg(target_os = "linux")]
    {
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .map(|tid| (tid, thread_nice(tid as libc::id_t)))
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_work_runs_nicer_and_leaves_the_caller_as_it_was() {
        let before = this_thread_nice();
        let (inside, child) = in_background("test-background", || {
            let inside = this_thread_nice();
            // A thread made by background work inherits its priority.
            let child = std::thread::spawn(this_thread_nice).join().unwrap();
            (inside, child)
        });
        assert_eq!(this_thread_nice(), before);
        if cfg!(target_os = "linux") {
            let expected = (before + BACKGROUND_NICE).min(19);
            assert_eq!(inside, expected);
            assert_eq!(child, expected);
        }
    }

    #[test]
    fn a_panic_in_background_work_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| in_background("test-panic", || panic!("boom")));
        assert!(r.is_err());
    }
}
