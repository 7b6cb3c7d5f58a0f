//! Handle reference counting, alone in its test binary: the live-handle count is process-wide.
mod common;
use common::{host, vec};

#[test]
fn handles_are_reference_counted() {
    let h = host(0);
    let base = retort::live_handles();
    let x = h.ctx.ones(&[3]).unwrap();
    let y = x.clone();
    assert_eq!(retort::live_handles(), base + 1, "clone retains the same host object");
    drop(x);
    assert_eq!(vec(&y), vec![1.0; 3]);
    drop(y);
    assert_eq!(retort::live_handles(), base);
}
