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

/// Prints a warning when other work keeps the CPUs busy (the 1-minute load
/// average is above half the CPU count): then every timing is inflated.
pub fn warn_if_busy(when: &str) {
    let cpus = cpu_count().max(1);
    let load1: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    if load1 > 0.5 * cpus as f64 {
        println!(
            "\n**The machine was busy {when}** (load average {load1:.2} on {cpus} CPUs before it ran anything): \
             absolute times are inflated and noisy; compare ratios measured in this run only.\n"
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
