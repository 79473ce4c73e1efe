//! Our own CUDA kernels: frame conversion to the engine's normalised input, and
//! mask up-sampling, thresholding and alpha writing.
//!
//! They are compiled by NVRTC when a [`GpuKernels`] is made, so the crate
//! builds without a CUDA toolkit; at run time they need the NVIDIA driver
//! (`libcuda.so.1`) and NVRTC (`libnvrtc.so.12`). Each kernel has a CPU twin in
//! the core library that it matches bit for bit (the mask sigmoid may differ by
//! one ulp from the host's `expf`, which moves a pixel only when its
//! probability sits on the threshold):
//!
//! | kernel method | CPU twin |
//! |---|---|
//! | [`GpuKernels::preprocess`] | [`crate::image::preprocess::preprocess`] |
//! | [`GpuKernels::masks_from_logits`] | [`crate::image::postprocess::mask_from_logits`], per mask |
//! | [`GpuKernels::alpha_from_logits`] | [`crate::image::render::alpha_from_logits`] |
//!
//! [`memory`] holds what the engines leave on the device between runs.

pub mod kernels;
pub mod layout;
mod libraries;
pub mod memory;

pub use libraries::{check_libraries, driver_present, nvrtc_present};

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DeviceRepr, DriverError,
    LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx, compile_ptx_with_opts};

use crate::error::{Error, Result};
use crate::image::frame::Frame;
use crate::image::postprocess::Mask;
use crate::image::preprocess::fused_mean_std;
use crate::image::render::Canvas;
use crate::image::resize::{antialias_table, linear_table};
use crate::model::bundle::PreprocessSpec;
use crate::model::tensor::TensorF32;

use layout::{SourceDesc, alpha_target, check_side, mask_count};

/// Compiles the kernels to PTX with NVRTC (no GPU or driver needed). Exact
/// float semantics: no FMA contraction, no flush-to-zero, IEEE division.
pub fn compile() -> Result<Ptx> {
    if !nvrtc_present() {
        return Err(libraries::missing_nvrtc());
    }
    let opts = CompileOptions {
        fmad: Some(false),
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        use_fast_math: Some(false),
        name: Some("samclipseg_kernels.cu".into()),
        ..Default::default()
    };
    compile_ptx_with_opts(kernels::SOURCE, opts).map_err(|e| {
        Error::Gpu(format!(
            "NVRTC could not compile the kernels: {}",
            compile_message(&e)
        ))
    })
}

fn cuda(what: &'static str) -> impl Fn(DriverError) -> Error {
    move |e| Error::Gpu(format!("{what}: {e}"))
}

fn compile_message(e: &CompileError) -> String {
    match e {
        CompileError::CompileError { nvrtc, log, .. } => {
            format!("{nvrtc:?}\n{}", log.to_string_lossy())
        }
        other => format!("{other:?}"),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// A device buffer of at least `len` elements, reusing the previous one when it is big enough.
fn ensure<'a, T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    slot: &'a mut Option<CudaSlice<T>>,
    len: usize,
) -> Result<&'a mut CudaSlice<T>> {
    let buf = match slot.take() {
        Some(b) if b.len() >= len => b,
        old => {
            drop(old);
            // SAFETY: every kernel writes each element it later reads back.
            unsafe { stream.alloc::<T>(len.max(1)) }.map_err(cuda("allocating device memory"))?
        }
    };
    Ok(slot.insert(buf))
}

/// A timing event recorded on `stream` now.
fn event(stream: &CudaStream) -> Result<CudaEvent> {
    stream
        .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(cuda("recording a CUDA event"))
}

/// Launch shape for one thread per (x, y[, z]) element, 32 x 8 threads a block.
fn grid(w: usize, h: usize, z: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (w.div_ceil(32) as u32, h.div_ceil(8) as u32, z.max(1) as u32),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    }
}

struct Functions {
    resize_h: CudaFunction,
    resize_v: CudaFunction,
    sigmoid: CudaFunction,
    upsample: CudaFunction,
    alpha: CudaFunction,
}

/// One axis of the antialias filter on the device.
struct FilterAxis {
    starts: CudaSlice<i32>,
    counts: CudaSlice<i32>,
    weights: CudaSlice<i32>,
    max_taps: i32,
    precision: i32,
}

/// One axis of bilinear taps on the device.
struct LinearAxis {
    first: CudaSlice<i32>,
    second: CudaSlice<i32>,
    frac: CudaSlice<f32>,
}

/// (in_w, in_h, out_w, out_h) the cached tables were made for.
type SizeKey = (usize, usize, usize, usize);

/// A CUDA context, a stream and the compiled kernels, with device buffers and
/// filter tables kept between calls (they are only reallocated when a frame
/// or mask grows or changes size).
pub struct GpuKernels {
    stream: Arc<CudaStream>,
    f: Functions,
    device_name: String,
    frame: Option<CudaSlice<u8>>,
    mid: Option<CudaSlice<u8>>,
    tensor: Option<CudaSlice<f32>>,
    logits: Option<CudaSlice<f32>>,
    probs: Option<CudaSlice<f32>>,
    masks: Option<CudaSlice<u8>>,
    filter: Option<(SizeKey, FilterAxis, FilterAxis)>,
    linear: Option<(SizeKey, LinearAxis, LinearAxis)>,
    last_kernel_ms: f32,
}

impl GpuKernels {
    /// Starts CUDA on device `device` and compiles the kernels. A missing
    /// driver or NVRTC, a missing device, or a failed compilation is an error
    /// that says what to do, never a panic.
    pub fn new(device: usize) -> Result<GpuKernels> {
        check_libraries()?;
        // cudarc panics where the driver lacks a symbol it expects; turn that into an error too.
        match catch_unwind(AssertUnwindSafe(|| Self::start(device))) {
            Ok(r) => r,
            Err(p) => Err(Error::Gpu(format!(
                "the CUDA driver failed while starting ({}); update the NVIDIA driver",
                panic_message(p.as_ref())
            ))),
        }
    }

    fn start(device: usize) -> Result<GpuKernels> {
        let count = CudaContext::device_count().map_err(cuda(
            "the CUDA driver did not start (is an NVIDIA GPU visible to this process?)",
        ))?;
        if device >= count.max(0) as usize {
            return Err(Error::Gpu(format!(
                "CUDA device {device} does not exist; this machine has {count}"
            )));
        }
        let ctx = CudaContext::new(device).map_err(cuda("creating a CUDA context"))?;
        let device_name = ctx
            .name()
            .unwrap_or_else(|_| format!("CUDA device {device}"));
        let stream = ctx.new_stream().map_err(cuda("creating a CUDA stream"))?;
        let ptx = compile()?;
        let module = ctx.load_module(ptx).map_err(|e| {
            Error::Gpu(format!(
                "the driver could not load the compiled kernels ({e}); a driver older than \
                 NVRTC cannot read its PTX: update the NVIDIA driver, or use the NVRTC of the \
                 driver's CUDA version"
            ))
        })?;
        let load = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| Error::Gpu(format!("kernel `{name}` is missing: {e}")))
        };
        let [rh, rv, sg, up, al] = kernels::NAMES;
        let f = Functions {
            resize_h: load(rh)?,
            resize_v: load(rv)?,
            sigmoid: load(sg)?,
            upsample: load(up)?,
            alpha: load(al)?,
        };
        Ok(GpuKernels {
            stream,
            f,
            device_name,
            frame: None,
            mid: None,
            tensor: None,
            logits: None,
            probs: None,
            masks: None,
            filter: None,
            linear: None,
            last_kernel_ms: 0.0,
        })
    }

    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Device time of the kernels of the last call, in milliseconds (from CUDA
    /// events; copies to and from the host are not included).
    pub fn last_kernel_ms(&self) -> f32 {
        self.last_kernel_ms
    }

    fn filter_tables(&mut self, key: SizeKey) -> Result<()> {
        if self.filter.as_ref().is_some_and(|(k, ..)| *k == key) {
            return Ok(());
        }
        let (in_w, in_h, out_w, out_h) = key;
        let up = |in_size, out_size| -> Result<FilterAxis> {
            let t = antialias_table(in_size, out_size);
            let s = &self.stream;
            let e = cuda("uploading filter tables");
            Ok(FilterAxis {
                starts: s.clone_htod(&t.starts).map_err(&e)?,
                counts: s.clone_htod(&t.counts).map_err(&e)?,
                weights: s.clone_htod(&t.weights).map_err(&e)?,
                max_taps: t.max_taps as i32,
                precision: t.precision as i32,
            })
        };
        let (h, v) = (up(in_w, out_w)?, up(in_h, out_h)?);
        self.filter = Some((key, h, v));
        Ok(())
    }

    fn linear_tables(&mut self, key: SizeKey) -> Result<()> {
        if self.linear.as_ref().is_some_and(|(k, ..)| *k == key) {
            return Ok(());
        }
        let (mw, mh, w, h) = key;
        let up = |in_size, out_size| -> Result<LinearAxis> {
            let t = linear_table(in_size, out_size);
            let s = &self.stream;
            let e = cuda("uploading bilinear tables");
            Ok(LinearAxis {
                first: s.clone_htod(&t.first).map_err(&e)?,
                second: s.clone_htod(&t.second).map_err(&e)?,
                frac: s.clone_htod(&t.frac).map_err(&e)?,
            })
        };
        let (x, y) = (up(mw, w)?, up(mh, h)?);
        self.linear = Some((key, x, y));
        Ok(())
    }

    /// Frame (any packed layout, I420 or NV12, any strides) to the engine's
    /// input: antialiased resize to the square `spec.image_size`, then
    /// `(v - mean) / std`, as a [1, 3, s, s] tensor. Same result as
    /// [`crate::image::preprocess::preprocess`].
    pub fn preprocess(&mut self, frame: &Frame, spec: &PreprocessSpec) -> Result<TensorF32> {
        let desc = SourceDesc::of(frame)?;
        let s = spec.image_size as usize;
        check_side("the engine input", s, s)?;
        let (w, h) = (frame.width, frame.height);
        self.filter_tables((w, h, s, s))?;

        let src = ensure(&self.stream, &mut self.frame, desc.buffer_len)?;
        for i in 0..desc.plane_count {
            let p = desc.planes[i];
            let mut dst = src.slice_mut(p.offset..p.offset + p.len);
            self.stream
                .memcpy_htod(desc.host_plane(frame, i), &mut dst)
                .map_err(cuda("copying the frame to the GPU"))?;
        }
        let mid = ensure(&self.stream, &mut self.mid, h * s * 3)?;
        let out = ensure(&self.stream, &mut self.tensor, 3 * s * s)?;
        let Some((_, fh, fv)) = &self.filter else {
            return Err(Error::Gpu("filter tables were not uploaded".into()));
        };

        let [ky, rv, gu, gv, bu] = frame.matrix.fixed_point();
        let (mean, std) = fused_mean_std(spec);
        let [p0, p1, p2] = desc.planes.map(|p| (p.offset as i64, p.stride as i64));
        let [c0, c1, c2] = desc.channels;
        let (in_h, out_w, out_h) = (h as i32, s as i32, s as i32);

        let start = event(&self.stream)?;
        let mut b = self.stream.launch_builder(&self.f.resize_h);
        b.arg(&*src).arg(&desc.fmt);
        b.arg(&p0.0)
            .arg(&p0.1)
            .arg(&p1.0)
            .arg(&p1.1)
            .arg(&p2.0)
            .arg(&p2.1);
        b.arg(&desc.bpp).arg(&c0).arg(&c1).arg(&c2);
        b.arg(&ky).arg(&rv).arg(&gu).arg(&gv).arg(&bu);
        b.arg(&in_h).arg(&out_w);
        b.arg(&fh.starts).arg(&fh.counts).arg(&fh.weights);
        b.arg(&fh.max_taps).arg(&fh.precision).arg(&mut *mid);
        // SAFETY: argument types and order match `resize_h`; every index the
        // kernel forms is inside the buffers (SourceDesc checked the planes,
        // `mid` holds in_h x out_w x 3 bytes, the tables hold out_w entries).
        unsafe { b.launch(grid(s, h, 1)) }.map_err(cuda("launching resize_h"))?;

        let mut b = self.stream.launch_builder(&self.f.resize_v);
        b.arg(&*mid).arg(&out_w).arg(&out_h);
        b.arg(&fv.starts).arg(&fv.counts).arg(&fv.weights);
        b.arg(&fv.max_taps).arg(&fv.precision);
        b.arg(&mean[0]).arg(&mean[1]).arg(&mean[2]);
        b.arg(&std[0]).arg(&std[1]).arg(&std[2]);
        b.arg(&mut *out);
        // SAFETY: as above; the vertical taps index rows 0..in_h of `mid`,
        // `out` holds 3 x out_w x out_h floats.
        unsafe { b.launch(grid(s, s, 1)) }.map_err(cuda("launching resize_v_normalise"))?;
        let end = event(&self.stream)?;

        let mut data = vec![0f32; 3 * s * s];
        self.stream
            .memcpy_dtoh(&out.slice(..3 * s * s), &mut data)
            .map_err(cuda("copying the engine input from the GPU"))?;
        self.stream
            .synchronize()
            .map_err(cuda("running the preprocessing kernels"))?;
        self.last_kernel_ms = start.elapsed_ms(&end).map_err(cuda("timing"))?;
        Ok(TensorF32::new(vec![1, 3, s, s], data))
    }

    /// Uploads logits, applies the sigmoid and makes the bilinear tables;
    /// returns the number of masks and the start event.
    fn probabilities(
        &mut self,
        logits: &[f32],
        mask_size: (usize, usize),
        image_size: (usize, usize),
    ) -> Result<(usize, CudaEvent)> {
        let n = mask_count(logits.len(), mask_size, image_size)?;
        self.linear_tables((mask_size.0, mask_size.1, image_size.0, image_size.1))?;
        let len = logits.len();
        let input = ensure(&self.stream, &mut self.logits, len)?;
        if len > 0 {
            let mut dst = input.slice_mut(..len);
            self.stream
                .memcpy_htod(logits, &mut dst)
                .map_err(cuda("copying mask logits to the GPU"))?;
        }
        let probs = ensure(&self.stream, &mut self.probs, len)?;
        let start = event(&self.stream)?;
        if len > 0 {
            // mask_count rejected lengths above i32::MAX.
            let count = i32::try_from(len)
                .map_err(|_| Error::InvalidInput(format!("{len} mask logits in one call")))?;
            let mut b = self.stream.launch_builder(&self.f.sigmoid);
            b.arg(&*input).arg(&mut *probs).arg(&count);
            // SAFETY: both buffers hold at least `count` floats.
            unsafe { b.launch(LaunchConfig::for_num_elems(count as u32)) }
                .map_err(cuda("launching sigmoid_f32"))?;
        }
        Ok((n, start))
    }

    /// Mask logits (`n` masks of `mask_size` = (width, height), one after the
    /// other) to `n` binary masks at `image_size`: sigmoid, bilinear
    /// up-sampling, `> mask_threshold`. Same result as
    /// [`crate::image::postprocess::mask_from_logits`] on each mask.
    pub fn masks_from_logits(
        &mut self,
        logits: &[f32],
        mask_size: (usize, usize),
        image_size: (usize, usize),
        mask_threshold: f32,
    ) -> Result<Vec<Mask>> {
        let (n, start) = self.probabilities(logits, mask_size, image_size)?;
        let ((mw, mh), (w, h)) = (mask_size, image_size);
        if n == 0 {
            self.last_kernel_ms = 0.0;
            return Ok(Vec::new());
        }
        let total = n * w * h;
        let out = ensure(&self.stream, &mut self.masks, total)?;
        let (Some(probs), Some((_, lx, ly))) = (&self.probs, &self.linear) else {
            return Err(Error::Gpu("mask buffers were not prepared".into()));
        };
        let (mw32, mh32, w32, h32, n32) = (mw as i32, mh as i32, w as i32, h as i32, n as i32);
        let mut b = self.stream.launch_builder(&self.f.upsample);
        b.arg(probs)
            .arg(&mw32)
            .arg(&mh32)
            .arg(&w32)
            .arg(&h32)
            .arg(&n32);
        b.arg(&lx.first).arg(&lx.second).arg(&lx.frac);
        b.arg(&ly.first).arg(&ly.second).arg(&ly.frac);
        b.arg(&mask_threshold).arg(&mut *out);
        // SAFETY: `probs` holds n x mw x mh floats, `out` n x w x h bytes, the
        // tables w and h entries whose indices are below mw and mh.
        unsafe { b.launch(grid(w, h, n)) }.map_err(cuda("launching masks_upsample"))?;
        let end = event(&self.stream)?;
        let mut data = vec![0u8; total];
        self.stream
            .memcpy_dtoh(&out.slice(..total), &mut data)
            .map_err(cuda("copying masks from the GPU"))?;
        self.stream
            .synchronize()
            .map_err(cuda("running the mask kernels"))?;
        self.last_kernel_ms = start.elapsed_ms(&end).map_err(cuda("timing"))?;
        Ok(data
            .chunks_exact(w * h)
            .map(|m| Mask {
                width: w,
                height: h,
                data: m.to_vec(),
            })
            .collect())
    }

    /// The union of the masks of `logits` (as [`Self::masks_from_logits`]) at
    /// the canvas size, written into the canvas's alpha channel; colour bytes
    /// and row padding are left alone. Same result as
    /// [`crate::image::render::alpha_from_logits`]; a layout without alpha is an error.
    pub fn alpha_from_logits(
        &mut self,
        canvas: &mut Canvas,
        logits: &[f32],
        mask_size: (usize, usize),
        mask_threshold: f32,
    ) -> Result<()> {
        let (w, h) = (canvas.width, canvas.height);
        let (used, alpha) = alpha_target(canvas.data.len(), w, h, canvas.stride, canvas.layout)?;
        mask_count(logits.len(), mask_size, (w, h))?;
        // The frame goes up before `probabilities` records the start event,
        // so that `last_kernel_ms` leaves the copy out.
        {
            let frame = ensure(&self.stream, &mut self.frame, used)?;
            let mut dst = frame.slice_mut(..used);
            self.stream
                .memcpy_htod(&canvas.data[..used], &mut dst)
                .map_err(cuda("copying the frame to the GPU"))?;
        }
        let (n, start) = self.probabilities(logits, mask_size, (w, h))?;
        let (Some(frame), Some(probs), Some((_, lx, ly))) =
            (&mut self.frame, &self.probs, &self.linear)
        else {
            return Err(Error::Gpu("mask buffers were not prepared".into()));
        };
        let (mw, mh) = (mask_size.0 as i32, mask_size.1 as i32);
        let (w32, h32, n32) = (w as i32, h as i32, n as i32);
        let stride = canvas.stride as i64;
        let bpp = canvas.layout.bytes_per_pixel() as i32;
        let alpha = alpha as i32;
        let mut b = self.stream.launch_builder(&self.f.alpha);
        b.arg(probs).arg(&mw).arg(&mh).arg(&w32).arg(&h32).arg(&n32);
        b.arg(&lx.first).arg(&lx.second).arg(&lx.frac);
        b.arg(&ly.first).arg(&ly.second).arg(&ly.frac);
        b.arg(&mask_threshold).arg(&mut *frame);
        b.arg(&stride).arg(&bpp).arg(&alpha);
        // SAFETY: `frame` holds stride x (h - 1) + w x bpp bytes (alpha_target),
        // `probs` n x mw x mh floats (n = 0 reads none).
        unsafe { b.launch(grid(w, h, 1)) }.map_err(cuda("launching alpha_from_masks"))?;
        let end = event(&self.stream)?;
        self.stream
            .memcpy_dtoh(&frame.slice(..used), &mut canvas.data[..used])
            .map_err(cuda("copying the frame from the GPU"))?;
        self.stream
            .synchronize()
            .map_err(cuda("running the alpha kernels"))?;
        self.last_kernel_ms = start.elapsed_ms(&end).map_err(cuda("timing"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_the_extern_c_functions_of_the_source() {
        for name in kernels::NAMES {
            assert!(
                kernels::SOURCE.contains(&format!("extern \"C\" __global__ void {name}(")),
                "{name}"
            );
        }
        // The format codes in the source agree with the Rust constants.
        for (name, v) in [
            ("FMT_PACKED_RGB", kernels::FMT_PACKED_RGB),
            ("FMT_PACKED_YUV", kernels::FMT_PACKED_YUV),
            ("FMT_I420", kernels::FMT_I420),
            ("FMT_NV12", kernels::FMT_NV12),
        ] {
            assert!(
                kernels::SOURCE.contains(&format!("#define {name} {v}\n")),
                "{name}"
            );
        }
    }

    #[test]
    fn launch_grid_covers_every_element() {
        let g = grid(1921, 1081, 3);
        assert_eq!(g.grid_dim, (61, 136, 3));
        assert!(g.grid_dim.0 * 32 >= 1921 && g.grid_dim.1 * 8 >= 1081);
        assert_eq!(grid(1, 1, 0).grid_dim, (1, 1, 1));
    }
}
