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
