//! Tensor handles: an `Arc` around a candle tensor, reference-counted across the boundary.
use std::{
    ptr::NonNull,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

use candle_core::Tensor;
use retort_plugin_api::{OpaqueTensor, RawTensor};

static LIVE: AtomicI64 = AtomicI64::new(0);

/// The host object behind a [`RawTensor`].
struct HostTensor {
    t: Tensor,
}

impl Drop for HostTensor {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many handle objects are alive: a leak detector for plugins and tests.
pub fn live_handles() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// A new owned (+1) handle to `t`.
pub fn into_raw(t: Tensor) -> RawTensor {
    LIVE.fetch_add(1, Ordering::Relaxed);
    let ptr = Arc::into_raw(Arc::new(HostTensor { t })) as *mut OpaqueTensor;
    // SAFETY: Arc::into_raw never returns null.
    RawTensor(unsafe { NonNull::new_unchecked(ptr) })
}

fn arc_ptr(raw: RawTensor) -> *const HostTensor {
    raw.0.as_ptr() as *const HostTensor
}

/// The tensor behind a borrowed handle.
///
/// # Safety
/// `raw` must be a live handle made by [`into_raw`], alive for the returned borrow.
pub unsafe fn tensor_of<'a>(raw: RawTensor) -> &'a Tensor {
    unsafe { &(*arc_ptr(raw)).t }
}

/// +1 on a handle.
///
/// # Safety
/// `raw` must be a live handle made by [`into_raw`].
pub unsafe fn retain(raw: RawTensor) -> RawTensor {
    unsafe { Arc::increment_strong_count(arc_ptr(raw)) };
    raw
}

/// −1 on a handle.
///
/// # Safety
/// `raw` must be a live handle whose reference the caller owns.
pub unsafe fn release(raw: RawTensor) {
    unsafe { Arc::decrement_strong_count(arc_ptr(raw)) }
}

/// Takes an owned handle back into a host tensor, releasing the handle.
///
/// # Safety
/// `raw` must be a live handle whose reference the caller owns.
pub unsafe fn take_owned(raw: RawTensor) -> Tensor {
    let t = unsafe { tensor_of(raw) }.clone();
    unsafe { release(raw) };
    t
}
