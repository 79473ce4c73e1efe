//! The allocator tuned for full-size pictures: their buffers are handed back
//! to the system when freed, so resident memory returns to its idle size.

/// Hands freed heap memory back to the system (glibc's `malloc_trim`): a
/// full-size picture's buffers would otherwise stay resident.
pub fn give_memory_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Large buffers (a picture, its results: 1 MB and up) are mapped on their
/// own and unmapped when freed, instead of glibc's default that raises the
/// threshold after the first large free and then keeps such buffers in its
/// heaps.
pub fn map_large_buffers() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's settings.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
