//! The process's global allocator. A training step allocates and frees the same multi-megabyte
//! tensor buffers every step; glibc's malloc returns many of them to the kernel (mmap threshold,
//! heap trimming), so the next step faults fresh zeroed pages in again. mimalloc keeps freed
//! pages in its segments for reuse. Measured (bench `kd-step`, one thread): see the README's
//! benchmark section. Every binary that links the host (the CLI, benches, tests) gets it; the
//! `mimalloc` feature (default) switches it off for builds that want the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, mimalloc.h).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Milliseconds mimalloc waits before returning freed pages to the kernel; −1: never. Its default
/// (10 ms) is shorter than a CNN step, so the step's large buffers were purged and faulted in again
/// every step (CNN teacher job: 106k page faults in 15 steps, 6.4 steps/s; 1 s: 8k, 7.1 steps/s);
/// even 1 s left ~22 faults per MLP step (300 steps: 6.5k faults vs 330 with −1). A training step
/// reaches the same peak every step, so keeping the pages costs no RSS in the steady state (the
/// MLP distill job peaks at 152 MiB either way); a transient peak (a large evaluation batch) stays
/// resident. `MIMALLOC_PURGE_DELAY` overrides it.
pub const PURGE_DELAY_MS: i64 = -1;

/// Applies the allocator settings once per process (called when a [`crate::Host`] is made); an
/// explicit `MIMALLOC_PURGE_DELAY` in the environment wins.
pub fn tune() {
    #[cfg(feature = "mimalloc")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
                // SAFETY: setting an option is thread-safe in mimalloc and takes plain integers.
                unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
            }
            tracing::debug!(allocator = name(), purge_delay_ms = PURGE_DELAY_MS, "allocator settings applied");
        });
    }
}

/// The allocator in use, for logs and bench output.
pub fn name() -> &'static str {
    if cfg!(feature = "mimalloc") {
        "mimalloc"
    } else {
        "system"
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    #[test]
    fn tune_sets_the_purge_delay() {
        super::tune();
        // SAFETY: reading an option takes a plain integer.
        let v = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        match std::env::var("MIMALLOC_PURGE_DELAY") {
            Ok(s) => assert_eq!(v.to_string(), s),
            Err(_) => assert_eq!(v as i64, super::PURGE_DELAY_MS),
        }
        assert_eq!(super::name(), "mimalloc");
    }
}
