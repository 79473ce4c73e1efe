//! The CUDA libraries loaded at run time: the driver (`libcuda.so.1`) and
//! NVRTC. Where one is absent, the error is [`Error::MissingLibrary`], naming
//! it and saying how to install it.

use crate::error::{Error, Result};

const DRIVER_HINT: &str = "no CUDA driver on this machine's library path; install the NVIDIA \
     driver for this GPU (it ships libcuda.so.1; in a container, run with the NVIDIA container \
     toolkit, e.g. `docker run --gpus all`), or add the directory that holds libcuda.so.1 to \
     LD_LIBRARY_PATH";

const NVRTC_HINT: &str = "neither libnvrtc.so.12 nor libnvrtc.so could be loaded, and the \
     kernels are compiled at run time by NVRTC; install the CUDA 12 NVRTC runtime (the \
     `cuda-nvrtc-12-x` package, or `pip install nvidia-cuda-nvrtc-cu12` and add its \
     site-packages/nvidia/cuda_nvrtc/lib to LD_LIBRARY_PATH); a newer NVRTC works as libnvrtc.so \
     when the driver is at least as new";

/// Whether the NVIDIA driver library (libcuda.so.1) can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the library by name and closes it again.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether NVRTC (libnvrtc.so.12 or libnvrtc.so) can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: as in driver_present.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The error for an absent CUDA driver.
pub(crate) fn missing_driver() -> Error {
    Error::MissingLibrary {
        library: "the CUDA driver (libcuda.so.1)".into(),
        hint: DRIVER_HINT.into(),
    }
}

/// The error for an absent NVRTC.
pub(crate) fn missing_nvrtc() -> Error {
    Error::MissingLibrary {
        library: "NVRTC (libnvrtc.so.12)".into(),
        hint: NVRTC_HINT.into(),
    }
}

/// Checks that the CUDA driver and NVRTC libraries can be loaded, without
/// starting anything. The error names the missing library and how to get it.
pub fn check_libraries() -> Result<()> {
    if !driver_present() {
        return Err(missing_driver());
    }
    if !nvrtc_present() {
        return Err(missing_nvrtc());
    }
    Ok(())
}
