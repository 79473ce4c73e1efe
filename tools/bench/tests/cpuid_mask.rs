//! tools/cpuid-mask/avx2_only.c, the shim that runs the AVX2 kernels on a CPU
//! that has more: built with the system's C compiler, preloaded into the
//! bench's `--cpuid`, which must then see AVX2 as the CPU has it and none of
//! AVX-512, VNNI, BF16 or AMX; where the kernel offers no CPUID faulting (or
//! refuses it to this process), the shim must refuse to run rather than let
//! the real CPU through.
#![cfg(target_arch = "x86_64")]

#[path = "../../../tests/common/avx2_shim.rs"]
mod avx2_shim;

use std::path::Path;
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_samclipseg-bench");

/// (exit code, stdout, stderr) of `samclipseg-bench --cpuid`.
fn cpuid(preload: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(BENCH);
    cmd.arg("--cpuid");
    if let Some(shim) = preload {
        avx2_shim::under(&mut cmd, shim);
    }
    let out = cmd.output().expect("run samclipseg-bench --cpuid");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sets(stdout: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cpuid:"))
        .unwrap_or_else(|| panic!("no `cpuid:` line in {stdout:?}"));
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_shim_shows_avx2_only_or_refuses_without_cpuid_faulting() {
    let shim = avx2_shim::build(Path::new(env!("CARGO_TARGET_TMPDIR")));

    let (code, real, _) = cpuid(None);
    assert_eq!(code, 0);
    let real = sets(&real);

    let (code, out, err) = cpuid(Some(&shim));
    let faulting = avx2_shim::cpuid_faulting();
    if code == 3 {
        // No CPUID faulting here (or arch_prctl refused, e.g. by seccomp):
        // refused, saying why, before the program ran.
        assert!(err.contains("no CPUID faulting"), "{err}");
        assert!(out.is_empty(), "the program ran: {out}");
        return;
    }
    assert!(
        faulting,
        "the shim ran without cpuid_fault in /proc/cpuinfo: {out} {err}"
    );
    assert_eq!(code, 0, "{out} {err}");
    let masked = sets(&out);
    assert_eq!(
        masked.contains(&"avx2".to_string()),
        real.contains(&"avx2".to_string()),
        "AVX2 must pass through: {masked:?} from {real:?}"
    );
    for hidden in [
        "avx512f",
        "avx512_vnni",
        "amx_tile",
        "amx_int8",
        "avx_vnni",
        "avx512_bf16",
    ] {
        assert!(
            !masked.iter().any(|s| s == hidden),
            "{hidden} still seen: {masked:?}"
        );
    }
    if real.iter().any(|s| s != "avx2") {
        assert!(
            out.contains("CPUID is masked"),
            "the bench must say so: {out}"
        );
    }
}
