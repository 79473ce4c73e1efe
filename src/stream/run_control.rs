//! Abandoning a model run from another thread: a stopped, flushed or
//! re-prompted stream must not wait 20-60 s for a CPU run it will throw away.
//!
//! A [`RunControl`] is made per job. The thread that runs the job enters it
//! with [`scoped`]; every engine run inside then goes through ONNX Runtime's
//! `RunOptions`, whose terminate flag [`RunControl::cancel`] sets, and engine
//! runs not yet started return [`Error::Cancelled`]. A thread-local keeps
//! `Sam3Model`'s methods free of an extra parameter for the many callers that
//! never cancel (tests, the still-image programs, suggestions).

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use ort::session::RunOptions;

use crate::error::{Error, Result};

#[derive(Default)]
struct Inner {
    cancelled: bool,
    /// Made on the first engine run: creating RunOptions needs the ONNX
    /// Runtime library, which a control that never reaches an engine does not.
    options: Option<Arc<RunOptions>>,
}

/// The cancel switch of one job; clones share it.
#[derive(Clone, Default)]
pub struct RunControl {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for RunControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunControl")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl RunControl {
    pub fn new() -> RunControl {
        RunControl::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    /// Ends the run in progress at ONNX Runtime's next check and refuses later ones.
    pub fn cancel(&self) {
        let mut inner = self.lock();
        inner.cancelled = true;
        if let Some(options) = &inner.options {
            // Failing here only means the run is not stopped early.
            let _ = options.terminate();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Fails with [`Error::Cancelled`] once cancelled: for work between engine runs.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The run options an engine run must use, or `Error::Cancelled`. Holding
    /// the lock while they are made means a cancel cannot slip in between.
    pub(crate) fn options(&self) -> Result<Arc<RunOptions>> {
        let mut inner = self.lock();
        if inner.cancelled {
            return Err(Error::Cancelled);
        }
        if inner.options.is_none() {
            let options = RunOptions::new()
                .map_err(|e| Error::InvalidInput(format!("cannot create run options: {e}")))?;
            inner.options = Some(Arc::new(options));
        }
        inner.options.clone().ok_or(Error::Cancelled)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<RunControl>> = const { RefCell::new(None) };
}

/// Runs `f` with `control` governing every engine run it makes on this thread.
pub fn scoped<R>(control: &RunControl, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<RunControl>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.borrow_mut().replace(control.clone()));
    let _restore = Restore(previous);
    f()
}

/// The control of the job this thread is running, if any.
pub(crate) fn current() -> Option<RunControl> {
    CURRENT.with(|c| c.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_controls_nest_and_restore() {
        assert!(current().is_none());
        let outer = RunControl::new();
        let inner = RunControl::new();
        scoped(&outer, || {
            scoped(&inner, || {
                inner.cancel();
                assert!(current().is_some_and(|c| c.is_cancelled()));
            });
            assert!(current().is_some_and(|c| !c.is_cancelled()));
        });
        assert!(current().is_none());
        assert!(matches!(inner.check(), Err(Error::Cancelled)));
        assert!(outer.check().is_ok());
    }
}
