//! An engine on OpenVINO that falls back, for good, to its fp32 file on ONNX
//! Runtime when a run fails there: OpenVINO's execution provider can refuse
//! an input shape at run time (it refused the video tracker's mask prompt's
//! second input), and under `precision=auto` a stream must not end for that.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::memory::DeviceTensor;
use crate::model::backend::{Bound, Engine};
use crate::sync::lock;

/// Opens the fp32 copy on ONNX Runtime (the first time it is needed).
pub type OpenFp32 = Box<dyn Fn() -> Result<Engine> + Send + Sync>;

pub struct FallbackEngine {
    engine: Engine,
    /// OpenVINO's precision hint it loaded with; None: ONNX Runtime.
    openvino: Option<&'static str>,
    /// None: no fallback (fp32 already, or a precision asked for explicitly).
    open_fp32: Option<OpenFp32>,
    fp32: Mutex<Option<Arc<Engine>>>,
}

impl FallbackEngine {
    /// An engine on ONNX Runtime: nothing to fall back to.
    pub fn on_ort(engine: Engine) -> FallbackEngine {
        FallbackEngine {
            engine,
            openvino: None,
            open_fp32: None,
            fp32: Mutex::new(None),
        }
    }

    /// An engine loaded on OpenVINO with `hint`, and how to open its fp32
    /// copy when a run fails there (None: a failure is an error).
    pub fn on_openvino(
        engine: Engine,
        hint: &'static str,
        open_fp32: Option<OpenFp32>,
    ) -> FallbackEngine {
        FallbackEngine {
            openvino: Some(hint),
            open_fp32,
            ..FallbackEngine::on_ort(engine)
        }
    }

    /// OpenVINO's precision hint it loaded with, or None on ONNX Runtime
    /// (whatever a fallback did since).
    pub fn openvino_hint(&self) -> Option<&'static str> {
        self.openvino
    }

    /// Whether a failed run has moved it to its fp32 copy.
    pub fn fell_back(&self) -> bool {
        lock(&self.fp32).is_some()
    }

    /// [`Engine::run_bound`] on the engine, or on its fp32 copy once a run
    /// failed on it (a cancelled run is no failure).
    pub fn run_bound(
        &self,
        inputs: &[(&str, Bound)],
        outputs: &[&str],
    ) -> Result<Vec<DeviceTensor>> {
        let Some(open) = &self.open_fp32 else {
            return self.engine.run_bound(inputs, outputs);
        };
        if let Some(fp32) = lock(&self.fp32).clone() {
            return fp32.run_bound(inputs, outputs);
        }
        match self.engine.run_bound(inputs, outputs) {
            Err(e) if !matches!(e, Error::Cancelled) => {
                log::warn!(
                    "precision=auto: {e}; engine {} runs in fp32 on ONNX Runtime from now on",
                    self.engine.key()
                );
                let fp32 = Arc::new(open()?);
                *lock(&self.fp32) = Some(fp32.clone());
                fp32.run_bound(inputs, outputs)
            }
            other => other,
        }
    }
}

/// Its key, path and errors are the engine's (the fp32 copy shares them).
impl Deref for FallbackEngine {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}
