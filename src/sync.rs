//! The poison-tolerant lock every crate of the workspace uses.

use std::sync::{Mutex, MutexGuard};

/// Locks `m` even if a panic poisoned it. Only for data that stays
/// consistent when a holder panics (plain values replaced whole, caches,
/// queues), which is what every lock of this workspace guards.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
