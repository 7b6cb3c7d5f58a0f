//! Per-thread reusable f32 work buffers for the fused kernels (im2col columns, gathered gradients):
//! a multi-megabyte buffer allocated per call costs fresh pages (faults and kernel zeroing) every
//! step; taken from here it is already mapped.
use std::cell::RefCell;

/// Buffers kept per thread; more than a step's worth of simultaneous use is never needed.
const KEEP: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A work buffer of `len` floats whose contents are unspecified (callers overwrite it); returned
/// to the pool when dropped.
pub struct Scratch(Vec<f32>);

impl Scratch {
    /// Takes the largest pooled buffer (or a new one) and sizes it to `len`.
    pub fn take(len: usize) -> Scratch {
        let mut v = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        v.resize(len, 0.0);
        Scratch(v)
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        // A panicking thread may already have torn the pool down; then the buffer is just freed.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(v);
                // Largest last, so that `take` reuses the biggest mapping first.
                p.sort_by_key(Vec::capacity);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    #[test]
    fn buffers_are_reused_and_sized() {
        let ptr = {
            let mut a = Scratch::take(1000);
            a[999] = 1.0;
            a.as_ptr()
        };
        let b = Scratch::take(10);
        assert_eq!(b.len(), 10);
        assert_eq!(b.as_ptr(), ptr, "the dropped buffer comes back");
        let c = Scratch::take(5);
        assert_ne!(c.as_ptr(), ptr);
    }
}
