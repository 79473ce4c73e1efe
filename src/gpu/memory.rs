//! Device memory: where the engines leave their outputs, and the tensors
//! that stay there between engines, with the copies between it and the host
//! counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::CudaContext;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::value::Tensor as OrtTensor;

use super::libraries::{driver_present, missing_driver};
use crate::error::{Error, Result};
use crate::model::backend::{BackendKind, BackendOptions};
use crate::model::runtime;
use crate::model::tensor::TensorF32;

/// Bytes moved between the host and the engines' memory since the model was
/// loaded; the difference over a frame is what the frame cost.
///
/// Counted the same way on every backend, so the CPU tests pin down what a GPU
/// backend does: on `cpu` an "upload" is ONNX Runtime reading host memory and a
/// "download" a plain copy, on `cuda` / `tensorrt` they cross the PCIe bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Host tensors given to an engine (pixels, token ids, attention masks).
    pub host_to_device: u64,
    /// Engine outputs read back to the host (scores, boxes, kept masks, and
    /// every explicit `to_host()`).
    pub device_to_host: u64,
    /// Copies inside device memory (assembling a decoder batch of text features).
    pub device_to_device: u64,
}

/// Where the engines of one model leave their outputs: CUDA device memory for
/// the `cuda` and `tensorrt` backends, host memory for `cpu`. Shared by the
/// engines and every [`DeviceTensor`] they make, and counts their copies.
pub struct DeviceMemory {
    backend: BackendKind,
    device_id: i32,
    info: MemoryInfo<'static>,
    host_to_device: AtomicU64,
    device_to_host: AtomicU64,
    device_to_device: AtomicU64,
    /// The device's primary context (the one ONNX Runtime's CUDA provider
    /// uses), retained on the first copy that needs it.
    cuda: Mutex<Option<Arc<CudaContext>>>,
}

impl std::fmt::Debug for DeviceMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceMemory")
            .field("backend", &self.backend)
            .field("device_id", &self.device_id)
            .field("transfers", &self.transfers())
            .finish()
    }
}

impl DeviceMemory {
    pub fn new(options: &BackendOptions) -> Result<DeviceMemory> {
        // ONNX Runtime must be loaded before any of its objects is made.
        runtime::environment()?;
        let (device, id) = match options.kind {
            // The remote backend's tensors are what the server sent: host memory.
            BackendKind::Cpu | BackendKind::Remote => (AllocationDevice::CPU, 0),
            BackendKind::Cuda | BackendKind::TensorRt => {
                (AllocationDevice::CUDA, options.device_id)
            }
        };
        let info = MemoryInfo::new(device, id, AllocatorType::Device, MemoryType::Default)
            .map_err(|e| Error::Backend {
                backend: options.kind.name().into(),
                message: format!("cannot describe device {id}'s memory to ONNX Runtime: {e}"),
            })?;
        Ok(DeviceMemory {
            backend: options.kind,
            device_id: id,
            info,
            host_to_device: AtomicU64::new(0),
            device_to_host: AtomicU64::new(0),
            device_to_device: AtomicU64::new(0),
            cuda: Mutex::new(None),
        })
    }

    /// The memory engines bind their outputs to.
    pub(crate) fn info(&self) -> &MemoryInfo<'static> {
        &self.info
    }

    /// Counts host tensors given to an engine.
    pub(crate) fn count_host_to_device(&self, bytes: u64) {
        self.host_to_device.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts engine outputs read on the host.
    pub(crate) fn count_device_to_host(&self, bytes: u64) {
        self.device_to_host.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn transfers(&self) -> Transfers {
        Transfers {
            host_to_device: self.host_to_device.load(Ordering::Relaxed),
            device_to_host: self.device_to_host.load(Ordering::Relaxed),
            device_to_device: self.device_to_device.load(Ordering::Relaxed),
        }
    }

    fn copy_error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Backend {
            backend: self.backend.name().into(),
            message: format!(
                "{what} on CUDA device {} failed: {e}; check `nvidia-smi` and the device-id property",
                self.device_id
            ),
        }
    }

    /// The CUDA context to copy with, made current on this thread.
    fn cuda(&self) -> Result<Arc<CudaContext>> {
        let mut slot = self.cuda.lock().map_err(|_| {
            self.copy_error("locking the CUDA context", "poisoned by an earlier panic")
        })?;
        let ctx = match slot.as_ref() {
            Some(ctx) => ctx.clone(),
            None => {
                // CudaContext::new panics without libcuda.so.1.
                if !driver_present() {
                    return Err(missing_driver());
                }
                let ordinal = usize::try_from(self.device_id)
                    .map_err(|_| self.copy_error("opening the device", "negative device id"))?;
                // cudarc panics on a driver that lacks a symbol it binds.
                let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
                    .map_err(|_| {
                        self.copy_error("opening the device", "the CUDA driver is too old")
                    })?
                    .map_err(|e| self.copy_error("opening the device", e))?;
                slot.insert(ctx).clone()
            }
        };
        ctx.bind_to_thread()
            .map_err(|e| self.copy_error("binding the CUDA context", e))?;
        Ok(ctx)
    }
}

/// A float tensor that an engine left where it ran (see [`DeviceMemory`]): it
/// can be bound to another engine's input without a copy, and is read on the
/// host only through the explicit, counted [`DeviceTensor::to_host`] and
/// [`DeviceTensor::read`]. Immutable; clones share the value.
#[derive(Clone)]
pub struct DeviceTensor {
    value: Arc<OrtTensor<f32>>,
    shape: Vec<usize>,
    memory: Arc<DeviceMemory>,
}

impl std::fmt::Debug for DeviceTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTensor")
            .field("shape", &self.shape)
            .field("on_host", &self.on_host())
            .finish()
    }
}

impl DeviceTensor {
    /// A host tensor (the remote backend's text features) in `memory`.
    pub fn from_host(t: TensorF32, memory: Arc<DeviceMemory>) -> Result<DeviceTensor> {
        let value = OrtTensor::from_array((t.shape, t.data)).map_err(|e| Error::Backend {
            backend: memory.backend.name().into(),
            message: format!("cannot make a host tensor: {e}"),
        })?;
        Ok(DeviceTensor::new(value, memory))
    }

    /// An engine's output, left in `memory`.
    pub(crate) fn new(value: OrtTensor<f32>, memory: Arc<DeviceMemory>) -> DeviceTensor {
        let shape = value.shape().iter().map(|d| *d as usize).collect();
        DeviceTensor {
            value: Arc::new(value),
            shape,
            memory,
        }
    }

    /// The value, to bind to an engine's input.
    pub(crate) fn value(&self) -> &OrtTensor<f32> {
        &self.value
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements in one item of the leading (batch) dimension.
    pub fn item_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Whether the data is in host memory (the `cpu` backend). Decided by the
    /// value itself: ONNX Runtime may leave an output of a GPU session on the host.
    pub fn on_host(&self) -> bool {
        self.value.memory_info().is_cpu_accessible()
    }

    /// Whether both are the very same value (no copy between them).
    pub fn same_value(&self, other: &DeviceTensor) -> bool {
        Arc::ptr_eq(&self.value, &other.value)
    }

    /// Device pointer of the first element, checked to be CUDA memory.
    fn cuda_ptr(&self) -> Result<cudarc::driver::sys::CUdeviceptr> {
        let info = self.value.memory_info();
        if info.allocation_device() != AllocationDevice::CUDA {
            return Err(Error::Backend {
                backend: self.memory.backend.name().into(),
                message: format!(
                    "an engine output is in `{}` memory, which samclipseg cannot copy; only host and CUDA memory are supported",
                    info.allocation_device().as_str()
                ),
            });
        }
        Ok(self.value.data_ptr() as usize as cudarc::driver::sys::CUdeviceptr)
    }

    /// Copies the whole tensor to the host.
    pub fn to_host(&self) -> Result<TensorF32> {
        let mut data = vec![0f32; self.len()];
        self.read(0, &mut data)?;
        Ok(TensorF32::new(self.shape.clone(), data))
    }

    /// Copies item `index` of the leading dimension to the host, as [1, ...].
    pub fn item_to_host(&self, index: usize) -> Result<TensorF32> {
        let n = self.item_len();
        let mut data = vec![0f32; n];
        self.read(index * n, &mut data)?;
        let mut shape = self.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = 1;
        }
        Ok(TensorF32::new(shape, data))
    }

    /// Copies elements `start..start + dst.len()` (row-major) to the host: on
    /// CUDA only those bytes cross the bus.
    pub fn read(&self, start: usize, dst: &mut [f32]) -> Result<()> {
        let end = start + dst.len();
        if end > self.len() {
            return Err(Error::InvalidInput(format!(
                "reading elements {start}..{end} of a tensor of shape {:?}",
                self.shape
            )));
        }
        if dst.is_empty() {
            return Ok(());
        }
        self.memory
            .device_to_host
            .fetch_add(std::mem::size_of_val(dst) as u64, Ordering::Relaxed);
        if self.on_host() {
            let (_, data) = self.value.extract_tensor();
            dst.copy_from_slice(&data[start..end]);
            return Ok(());
        }
        // ort rc.15 copies only whole tensors (`Tensor::to`); its copy of a view
        // made with `TensorRefMut::from_raw` deadlocks on the lock of its copy
        // sessions. So the kept rows are copied with the driver directly.
        let src = self.cuda_ptr()? + (start * 4) as u64;
        let _ctx = self.memory.cuda()?;
        // SAFETY: src..src + size_of_val(dst) lies inside this tensor's device
        // buffer (bounds checked above), which `self.value` keeps alive. The
        // engine run that wrote it has finished: `Engine::run_bound` calls
        // `run_binding` with default RunOptions (none, or a job's with only the
        // terminate flag, so `disable_synchronize_execution_providers` is unset), and ONNX Runtime
        // then synchronises the provider's stream before the run returns; this
        // ordering relies on that.
        unsafe { cudarc::driver::result::memcpy_dtoh_sync(dst, src) }.map_err(|e| {
            self.memory
                .copy_error("copying an engine output to the host", e)
        })
    }
}

/// The shape of item `row` of each tensor stacked into one [n, ...] tensor;
/// an error unless they have the same item shape and each row exists.
pub(crate) fn batch_shape(rows: &[(&DeviceTensor, usize)]) -> Result<Vec<usize>> {
    let Some((first, _)) = rows.first() else {
        return Err(Error::InvalidInput("gathering no rows".into()));
    };
    for (t, row) in rows {
        if t.shape[1..] != first.shape[1..] || *row >= t.shape[0] {
            return Err(Error::InvalidInput(format!(
                "text features of shapes {:?} and {:?} (row {row}) cannot be batched",
                first.shape, t.shape
            )));
        }
    }
    let mut shape = first.shape.clone();
    shape[0] = rows.len();
    Ok(shape)
}

/// [`crate::model::backend::Engine::gather_rows`] for tensors in host
/// memory, counted as a copy in `memory`.
pub fn gather_host_rows(
    rows: &[(&DeviceTensor, usize)],
    memory: &Arc<DeviceMemory>,
) -> Result<DeviceTensor> {
    let shape = batch_shape(rows)?;
    let n = rows[0].0.item_len();
    let mut data = Vec::with_capacity(rows.len() * n);
    for (t, row) in rows {
        data.extend_from_slice(&t.value.extract_tensor().1[row * n..(row + 1) * n]);
    }
    memory
        .device_to_device
        .fetch_add((data.len() * 4) as u64, Ordering::Relaxed);
    DeviceTensor::from_host(TensorF32::new(shape, data), memory.clone())
}

/// [`crate::model::backend::Engine::gather_rows`] for tensors in CUDA
/// memory: copies item `row` of each tensor into `dst`, a tensor of
/// [`batch_shape`]`(rows)` allocated in `memory`, without passing through the
/// host, and counts the copy.
pub(crate) fn gather_device_rows(
    rows: &[(&DeviceTensor, usize)],
    mut dst: OrtTensor<f32>,
    memory: &Arc<DeviceMemory>,
) -> Result<DeviceTensor> {
    let shape = batch_shape(rows)?;
    let n = rows[0].0.item_len();
    let dst_shape: Vec<usize> = dst.shape().iter().map(|d| *d as usize).collect();
    if dst_shape != shape {
        return Err(Error::InvalidInput(format!(
            "a batch of shape {shape:?} gathered into a tensor of shape {dst_shape:?}"
        )));
    }
    let bytes = (rows.len() * n * 4) as u64;
    let base = dst.data_ptr_mut() as usize as u64;
    let _ctx = memory.cuda()?;
    for (i, (t, row)) in rows.iter().enumerate() {
        let src = t.cuda_ptr()? + (row * n * 4) as u64;
        // SAFETY: both ranges are one item inside live tensors of the same
        // item size (shapes checked above). The sources were written by
        // finished engine runs: this relies on ONNX Runtime synchronising the
        // provider's stream at the end of `run_binding`, which it does with the
        // default RunOptions that `Engine::run_bound` uses (see
        // `DeviceTensor::read`).
        unsafe { cudarc::driver::result::memcpy_dtod_sync(base + (i * n * 4) as u64, src, n * 4) }
            .map_err(|e| memory.copy_error("assembling a batch of text features", e))?;
    }
    // Device-to-device copies do not block the host, and ONNX Runtime runs
    // the decoder on its own stream: wait for them here.
    // SAFETY: the null stream is the context's legacy default stream, the one
    // the copies above were queued on.
    unsafe { cudarc::driver::result::stream::synchronize(std::ptr::null_mut()) }
        .map_err(|e| memory.copy_error("assembling a batch of text features", e))?;
    memory.device_to_device.fetch_add(bytes, Ordering::Relaxed);
    Ok(DeviceTensor::new(dst, memory.clone()))
}
