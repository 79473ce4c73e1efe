//! tools/cpuid-mask/avx2_only.c for tests: builds it with the system's C
//! compiler and runs a command under it, so that ONNX Runtime picks the
//! kernels of an AVX2-only CPU on a machine that has more. Shared by
//! tests/precision_avx2.rs and tools/bench/tests/cpuid_mask.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this kernel offers CPUID faulting, which the shim needs.
pub fn cpuid_faulting() -> bool {
    samclipseg::model::precision::cpuinfo_flags()
        .iter()
        .any(|f| f == "cpuid_fault")
}

/// Compiles the shim into `dir` (panics, saying why, where that fails).
pub fn build(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("tools/cpuid-mask/avx2_only.c").is_file())
        .expect("the repository holds tools/cpuid-mask/avx2_only.c");
    let source = repo.join("tools/cpuid-mask/avx2_only.c");
    let shim = dir.join("avx2_only.so");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(&source)
        .status()
        .expect("run the C compiler (cc)");
    assert!(cc.success(), "compiling {} failed", source.display());
    shim
}

/// `cmd` with the shim preloaded.
pub fn under<'a>(cmd: &'a mut Command, shim: &Path) -> &'a mut Command {
    cmd.env("LD_PRELOAD", shim)
}
