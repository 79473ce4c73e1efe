//! tools/cpuid-mask/avx2_only.c, the shim that runs the AVX2 kernels on a CPU
//! that has more: built with the system's C compiler, preloaded into the
//! bench's `--cpuid`, which must then see AVX2 and none of AVX-512, VNNI,
//! BF16 or AMX; and where the kernel offers no CPUID faulting, the shim must
//! refuse to run rather than let the real CPU through.

use std::path::Path;
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_samclipseg-bench");

fn cpuid(preload: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(BENCH);
    cmd.arg("--cpuid");
    if let Some(shim) = preload {
        cmd.env("LD_PRELOAD", shim);
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

fn cpuinfo_flags() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

#[test]
#[cfg(target_arch = "x86_64")]
fn the_shim_shows_avx2_only_or_refuses_without_cpuid_faulting() {
    let dir = std::env::temp_dir().join(format!("cpuid-mask-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shim = dir.join("avx2_only.so");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cpuid-mask/avx2_only.c");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(&source)
        .status()
        .expect("run the C compiler (cc)");
    assert!(cc.success(), "compiling {} failed", source.display());

    let (code, real, _) = cpuid(None);
    assert_eq!(code, 0);
    let real = sets(&real);
    let flags = cpuinfo_flags();
    for set in &real {
        assert!(
            flags.contains(set),
            "CPUID reports {set} but /proc/cpuinfo does not list it"
        );
    }

    let (code, out, err) = cpuid(Some(&shim));
    if !flags.iter().any(|f| f == "cpuid_fault") {
        assert_eq!(
            code, 3,
            "without CPUID faulting the shim must refuse: {out} {err}"
        );
        assert!(err.contains("no CPUID faulting"), "{err}");
        return;
    }
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
    std::fs::remove_dir_all(&dir).ok();
}
