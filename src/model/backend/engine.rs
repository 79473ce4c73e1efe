//! An engine: one ONNX Runtime session of the bundle, run on host inputs or
//! on values an engine left in device memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ort::memory::Allocator;
use ort::session::Session;
use ort::value::{Tensor as OrtTensor, TensorValueType};

use super::options::{BackendKind, BackendOptions};
use super::providers::{CpuRuntime, session_config_entries, with_gpu_providers, with_openvino};
use super::signature::{check_signature, check_sized_dims, tensor_shape};
use super::threads::{background_threads, spinning_entries};
use crate::error::{Error, Result};
use crate::gpu::memory::{
    DeviceMemory, DeviceTensor, batch_shape, gather_device_rows, gather_host_rows,
};
use crate::model::bundle::{EngineRole, EngineSpec};
use crate::model::runtime;
use crate::model::tensor::{TensorF32, TensorI64};

/// An input value for [`Engine::run`].
pub enum Input<'a> {
    F32(&'a TensorF32),
    I64(&'a TensorI64),
}

impl Input<'_> {
    fn bytes(&self) -> u64 {
        match self {
            Input::F32(t) => (t.data.len() * 4) as u64,
            Input::I64(t) => (t.data.len() * 8) as u64,
        }
    }

    fn to_ort(&self) -> ort::Result<ort::value::DynValue> {
        Ok(match self {
            Input::F32(t) => OrtTensor::from_array((t.shape.clone(), t.data.clone()))?.into_dyn(),
            Input::I64(t) => OrtTensor::from_array((t.shape.clone(), t.data.clone()))?.into_dyn(),
        })
    }
}

/// An input for [`Engine::run_bound`]: a host tensor (ONNX Runtime uploads it
/// on a GPU backend) or a value an engine left in device memory (bound as is).
pub enum Bound<'a> {
    Host(Input<'a>),
    Device(&'a DeviceTensor),
}

/// A failed run under a cancelled control was terminated on purpose.
fn run_error(control: &Option<crate::stream::run_control::RunControl>, error: Error) -> Error {
    if control.as_ref().is_some_and(|c| c.is_cancelled()) {
        Error::Cancelled
    } else {
        error
    }
}

pub struct Engine {
    /// The engine's `[engines.*]` key in bundle.toml, for errors and logs.
    key: &'static str,
    path: PathBuf,
    /// Fair: a thread that runs the engine many times in a row (suggest)
    /// hands it over to a waiting one (the streaming thread) between runs.
    session: parking_lot::FairMutex<Session>,
    runs: AtomicU64,
    memory: Arc<DeviceMemory>,
}

impl Engine {
    /// Opens an engine whose outputs [`Engine::run_bound`] leaves in `memory`
    /// (made from the same `options`).
    pub fn load(
        role: EngineRole,
        path: &Path,
        spec: &EngineSpec,
        options: &BackendOptions,
        memory: Arc<DeviceMemory>,
    ) -> Result<Engine> {
        Engine::load_on(role, path, spec, options, memory, CpuRuntime::Ort)
    }

    /// [`Engine::load`] with `runtime` deciding where a `cpu` engine runs.
    pub fn load_on(
        role: EngineRole,
        path: &Path,
        spec: &EngineSpec,
        options: &BackendOptions,
        memory: Arc<DeviceMemory>,
        runtime: CpuRuntime,
    ) -> Result<Engine> {
        Engine::load_keyed(role.key(), path, spec, options, memory, runtime)
    }

    /// [`Engine::load_on`] for an engine named by its `[engines.*]` key
    /// rather than a detector role: the video tracker's engines
    /// ([`crate::model::bundle::TRACKER_ENGINES`]).
    pub fn load_keyed(
        key: &'static str,
        path: &Path,
        spec: &EngineSpec,
        options: &BackendOptions,
        memory: Arc<DeviceMemory>,
        runtime: CpuRuntime,
    ) -> Result<Engine> {
        let engine_err = |message: String| Error::Engine {
            engine: key.to_string(),
            path: path.to_path_buf(),
            message,
        };
        let env = runtime::environment()?;
        let plan = background_threads(options);
        // Built where it is committed: a session builder stays on its thread.
        let make = || -> Result<ort::Result<Session>> {
            let mut builder =
                Session::builder(env).map_err(|e| engine_err(format!("session builder: {e}")))?;
            builder = with_gpu_providers(builder, options, spec)?;
            if let (BackendKind::Cpu, CpuRuntime::OpenVino { hint }) = (options.kind, runtime) {
                builder = with_openvino(builder, hint, plan.intra_threads)?;
            }
            for (key, value) in session_config_entries(options)
                .into_iter()
                .chain(spinning_entries(&plan))
            {
                builder = builder.with_config_entry(key, value).map_err(|e| {
                    engine_err(format!("cannot set session option {key}={value}: {e}"))
                })?;
            }
            if plan.intra_threads > 0 {
                builder = builder
                    .with_intra_threads(plan.intra_threads)
                    .map_err(|e| {
                        engine_err(format!("cannot set {} threads: {e}", plan.intra_threads))
                    })?;
            }
            Ok(builder.commit_from_file(path))
        };
        let session = crate::priority::in_background_if(
            plan.lower_priority,
            "samclipseg-ort",
            make,
        )?
        .map_err(|e| {
            let e = e.to_string();
            engine_err(if options.strict && e.contains("fallback to CPU") {
                format!(
                    "in strict GPU mode every node must run on the {} backend, and this engine has \
                     nodes that only the CPU takes ({e}); turn strict mode off to let ONNX Runtime \
                     run them on the CPU",
                    options.kind.name()
                )
            } else {
                format!(
                    "ONNX Runtime cannot load it ({e}); the file is damaged or not an ONNX model: \
                     re-export the bundle"
                )
            })
        })?;
        check_sized_dims(&spec.sized, |input, name| {
            tensor_shape(&session, input, name)
        })
        .map_err(engine_err)?;
        check_signature(&session, spec).map_err(engine_err)?;
        log::info!(
            "engine {} ({}) runs on the {} backend{}",
            key,
            path.display(),
            options.kind.name(),
            match (options.kind, runtime) {
                (BackendKind::Cpu, r) => format!(" ({})", r.describe()),
                _ => String::new(),
            }
        );
        Ok(Engine {
            key,
            path: path.to_path_buf(),
            session: parking_lot::FairMutex::new(session),
            runs: AtomicU64::new(0),
            memory,
        })
    }

    fn error(&self, message: String) -> Error {
        Error::Engine {
            engine: self.key.to_string(),
            path: self.path.clone(),
            message,
        }
    }

    /// The session, once free. A job's run waiting here behind another
    /// stream's (the model is shared) still obeys its cancel switch.
    fn lock(&self) -> Result<parking_lot::FairMutexGuard<'_, Session>> {
        let Some(control) = crate::stream::run_control::current() else {
            return Ok(self.session.lock());
        };
        loop {
            control.check()?;
            if let Some(guard) = self
                .session
                .try_lock_for(std::time::Duration::from_millis(20))
            {
                return Ok(guard);
            }
        }
    }

    /// The engine's `[engines.*]` key (`decoder`, `tracker_memory_encoder`).
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The engine's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times the engine has run since it was loaded.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Runs the engine and returns the named float outputs on the host, in the
    /// order asked (every output is copied back; see [`Engine::run_bound`]).
    pub fn run(&self, inputs: &[(&str, Input)], outputs: &[&str]) -> Result<Vec<TensorF32>> {
        let err = |message: String| self.error(message);
        let mut values: Vec<(String, ort::session::SessionInputValue)> =
            Vec::with_capacity(inputs.len());
        for (name, input) in inputs {
            let v = input
                .to_ort()
                .map_err(|e| err(format!("input `{name}`: {e}")))?;
            self.memory.count_host_to_device(input.bytes());
            values.push((name.to_string(), v.into()));
        }
        let control = crate::stream::run_control::current();
        let options = control.as_ref().map(|c| c.options()).transpose()?;
        let mut session = self.lock()?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        let out = match &options {
            Some(o) => session.run_with_options(values, o),
            None => session.run(values),
        }
        .map_err(|e| run_error(&control, err(format!("inference failed: {e}"))))?;
        outputs
            .iter()
            .map(|name| {
                let v = out
                    .get(*name)
                    .ok_or_else(|| err(format!("output `{name}` missing")))?;
                let (shape, data) = v
                    .try_extract_tensor::<f32>()
                    .map_err(|e| err(format!("output `{name}` is not float32: {e}")))?;
                self.memory.count_device_to_host((data.len() * 4) as u64);
                Ok(TensorF32::new(
                    shape.iter().map(|d| *d as usize).collect(),
                    data.to_vec(),
                ))
            })
            .collect()
    }

    /// Runs the engine with IoBinding: device inputs are bound as they are (no
    /// copy), host inputs are uploaded by ONNX Runtime, and the named float
    /// outputs stay in the engine's memory, in the order asked.
    pub fn run_bound(
        &self,
        inputs: &[(&str, Bound)],
        outputs: &[&str],
    ) -> Result<Vec<DeviceTensor>> {
        let err = |message: String| self.error(message);
        let mut session = self.lock()?;
        let mut binding = session
            .create_binding()
            .map_err(|e| err(format!("cannot create an IoBinding: {e}")))?;
        for (name, input) in inputs {
            let bound = match input {
                Bound::Device(t) => binding.bind_input(*name, t.value()),
                Bound::Host(h) => {
                    let v = h
                        .to_ort()
                        .map_err(|e| err(format!("input `{name}`: {e}")))?;
                    self.memory.count_host_to_device(h.bytes());
                    // The binding keeps its own reference to the value.
                    binding.bind_input(*name, &v)
                }
            };
            bound.map_err(|e| err(format!("cannot bind input `{name}`: {e}")))?;
        }
        for name in outputs {
            binding
                .bind_output_to_device(*name, self.memory.info())
                .map_err(|e| err(format!("cannot bind output `{name}`: {e}")))?;
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        // A fresh binding per run: its output buffers are never reused by a
        // later run while a DeviceTensor still holds them. Default RunOptions
        // (none, or a job's from run_control, which sets only the terminate
        // flag) make ONNX Runtime synchronise the provider's stream before
        // returning, which `DeviceTensor::read` and `gather_rows` rely on
        // (`binding.synchronize_outputs()` would add a device-wide sync).
        let control = crate::stream::run_control::current();
        let options = control.as_ref().map(|c| c.options()).transpose()?;
        let mut out = match &options {
            Some(o) => session.run_binding_with_options(&binding, o),
            None => session.run_binding(&binding),
        }
        .map_err(|e| run_error(&control, err(format!("inference failed: {e}"))))?;
        outputs
            .iter()
            .map(|name| {
                let v = out
                    .remove(*name)
                    .ok_or_else(|| err(format!("output `{name}` missing")))?;
                let t = v
                    .downcast::<TensorValueType<f32>>()
                    .map_err(|e| err(format!("output `{name}` is not float32: {e}")))?;
                Ok(DeviceTensor::new(t, self.memory.clone()))
            })
            .collect()
    }

    /// Stacks item `row` of each tensor into one new [n, ...] tensor in the
    /// same memory, without passing through the host: how a decoder batch is
    /// made of text features encoded in different batches.
    pub fn gather_rows(&self, rows: &[(&DeviceTensor, usize)]) -> Result<DeviceTensor> {
        let err = |message: String| self.error(message);
        if rows.is_empty() {
            return Err(err("gathering no rows".into()));
        }
        if rows.iter().all(|(t, _)| t.on_host()) {
            return gather_host_rows(rows, &self.memory);
        }
        let shape = batch_shape(rows)?;
        let session = self.lock()?;
        let allocator = Allocator::new(&session, self.memory.info().clone())
            .map_err(|e| err(format!("no allocator for the device memory: {e}")))?;
        let dst = OrtTensor::<f32>::new(&allocator, shape)
            .map_err(|e| err(format!("cannot allocate a batch tensor on the device: {e}")))?;
        gather_device_rows(rows, dst, &self.memory)
    }
}
