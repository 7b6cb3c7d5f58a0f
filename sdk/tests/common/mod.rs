//! An in-process host for SDK tests: the real table and contexts, no library loading.
#![allow(dead_code)]
use std::sync::Arc;

use retort::{backend::host_api, Host, PluginCtx};
use retort_sdk::{api::PluginHost, Ctx, Tensor};

pub struct TestHost {
    pub host: Host,
    pub pctx: Arc<PluginCtx>,
    pub ctx: Ctx,
}

pub fn host(seed: u64) -> TestHost {
    let host = Host::cpu(seed);
    let pctx = host.ctx("test", "sdk-test");
    let ctx = Ctx::new(PluginHost { api: host_api(), ctx: pctx.raw() });
    TestHost { host, pctx, ctx }
}

/// The host tensor behind an SDK tensor.
pub fn candle(t: &Tensor) -> candle_core::Tensor {
    // SAFETY: `t` owns a live handle.
    unsafe { retort::backend::tensor_of(t.raw()) }.clone()
}

pub fn vec(t: &Tensor) -> Vec<f32> {
    t.to_vec1::<f32>().unwrap()
}

pub fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "lengths {a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}
