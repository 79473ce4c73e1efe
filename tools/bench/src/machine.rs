//! What the bench reports about the machine it ran on (CPU, load, memory of
//! this process), read from /proc, so that a table says how noisy it may be.

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Above this 1-minute load average a machine is busy: a run beside builds
/// or fuzzing once reported us 1.74x faster than PyTorch where an idle run
/// measured 1.04x (other work slows PyTorch's OpenMP threads more than ours).
pub const IDLE_LOAD: f64 = 0.5;

/// Prints a warning in the output when the machine is busy before the bench
/// runs anything: then its figures are not this project's figures.
pub fn warn_if_busy(when: &str) {
    let cpus = cpu_count().max(1);
    let load1: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    if load1 >= IDLE_LOAD {
        eprintln!(
            "[bench] WARNING: the machine is busy {when} (load average {load1:.2}, at or above \
             {IDLE_LOAD}): these figures are not the project's figures"
        );
        println!(
            "\n**WARNING: the machine was busy {when}** (load average {load1:.2} on {cpus} CPUs, at or above \
             {IDLE_LOAD}, before it ran anything): other work is running, and it slows the two sides \
             unequally. Do not publish these figures; run again on an idle machine.\n"
        );
    }
}

/// A `/proc/self/status` field in kB (VmRSS, VmHWM).
pub fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The instruction sets that decide the kernels, as CPUID reports them to
/// ONNX Runtime, OpenVINO and PyTorch, and whether CPUID hides some that
/// `/proc/cpuinfo` lists: under `tools/cpuid-mask` this machine runs the
/// kernels of a CPU it is not, and the report must say so.
pub fn cpuid_mask_note() -> Option<String> {
    let seen = cpuid_sets();
    let flags = samclipseg::model::precision::cpuinfo_flags();
    let hidden: Vec<&str> = CPUID_SETS
        .iter()
        .filter(|(name, ..)| flags.iter().any(|f| f == name) && !seen.contains(name))
        .map(|(name, ..)| *name)
        .collect();
    if hidden.is_empty() {
        return None;
    }
    Some(format!(
        "CPUID is masked (tools/cpuid-mask): the libraries see {} and not {} that \
         /proc/cpuinfo lists, so these are the AVX2 kernels on this machine's cores, memory \
         and clocks: a proxy for an AVX2-only CPU, not one.",
        if seen.is_empty() {
            "none of the wide sets".to_string()
        } else {
            seen.join(" ")
        },
        hidden.join(" ")
    ))
}

/// (`/proc/cpuinfo` name, CPUID leaf 7 sub-leaf, register, bit).
const CPUID_SETS: [(&str, u32, char, u32); 7] = [
    ("avx2", 0, 'b', 5),
    ("avx512f", 0, 'b', 16),
    ("avx512_vnni", 0, 'c', 11),
    ("amx_tile", 0, 'd', 24),
    ("amx_int8", 0, 'd', 25),
    ("avx_vnni", 1, 'a', 4),
    ("avx512_bf16", 1, 'a', 5),
];

/// The sets of [`CPUID_SETS`] that CPUID reports.
#[cfg(target_arch = "x86_64")]
pub fn cpuid_sets() -> Vec<&'static str> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    #[allow(unused_unsafe)]
    let max_leaf = unsafe { __cpuid(0) }.eax;
    if max_leaf < 7 {
        return Vec::new();
    }
    CPUID_SETS
        .iter()
        .filter(|&&(_, sub, reg, bit)| {
            #[allow(unused_unsafe)]
            let r = unsafe { __cpuid_count(7, sub) };
            let word = match reg {
                'a' => r.eax,
                'b' => r.ebx,
                'c' => r.ecx,
                _ => r.edx,
            };
            word >> bit & 1 == 1
        })
        .map(|(name, ..)| *name)
        .collect()
}

#[cfg(not(target_arch = "x86_64"))]
pub fn cpuid_sets() -> Vec<&'static str> {
    Vec::new()
}
