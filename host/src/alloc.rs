//! The process's global allocator. A training step allocates and frees the same multi-megabyte
//! tensor buffers every step; glibc's malloc returns many of them to the kernel (mmap threshold,
//! heap trimming), so the next step faults fresh zeroed pages in again. mimalloc keeps freed
//! pages in its segments for reuse. Measured (bench `kd-step`, one thread): see the README's
//! benchmark section. Every binary that links the host (the CLI, benches, tests) gets it; the
//! `mimalloc` feature (default) switches it off for builds that want the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator in use, for logs and bench output.
pub fn name() -> &'static str {
    if cfg!(feature = "mimalloc") {
        "mimalloc"
    } else {
        "system"
    }
}
