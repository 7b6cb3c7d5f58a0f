//! The SDK's layers on host parameters, against the same math in candle.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
mod common;
use common::{candle, close, host, vec};
use retort_sdk::{
    nn::{BatchNorm, Conv2d, Embedding, LayerNorm, Linear},
    DType,
};

#[test]
fn linear_matches_candle_and_registers_parameters() {
    let h = host(1);
    let lin = Linear::new(&h.ctx, "fc", 4, 3, true).unwrap();
    let x = h.ctx.randn(0.0, 1.0, &[5, 4]).unwrap();
    let y = lin.forward(&x).unwrap();
    let params = h.host.params.params(Some("test"));
    let w = params.iter().find(|p| p.name == "fc.weight").unwrap().var.as_tensor().clone();
    let b = params.iter().find(|p| p.name == "fc.bias").unwrap().var.as_tensor().clone();
    let want = candle(&x).matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
    close(&vec(&y.flatten_all().unwrap()), &want.flatten_all().unwrap().to_vec1::<f32>().unwrap(), 1e-6);
    let bound = 0.5; // 1/sqrt(4)
    assert!(w.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.abs() <= bound));
    assert_eq!(h.host.params.count("test"), 15);
}

#[test]
fn batchnorm_train_and_eval() {
    let h = host(2);
    let bn = BatchNorm::new(&h.ctx, "bn", 2, 1e-5, 0.1).unwrap();
    let x = h.ctx.tensor(&[1f32, 10.0, 3.0, 20.0, 5.0, 30.0], &[3, 2]).unwrap();
    let y = bn.forward(&x, true).unwrap();
    // Each column normalised to mean 0, biased var 1.
    let cols = y.to_vec2::<f32>().unwrap();
    let c0: Vec<f32> = cols.iter().map(|r| r[0]).collect();
    close(&c0, &[-1.2247427, 0.0, 1.2247427], 1e-4);
    let params = h.host.params.params(Some("test"));
    let rm = params.iter().find(|p| p.name == "bn.running_mean").unwrap();
    assert!(!rm.trainable);
    close(&rm.var.as_tensor().to_vec1::<f32>().unwrap(), &[0.3, 2.0], 1e-5);
    let rv = params.iter().find(|p| p.name == "bn.running_var").unwrap();
    close(&rv.var.as_tensor().to_vec1::<f32>().unwrap(), &[0.9 + 0.1 * 4.0, 0.9 + 0.1 * 100.0], 1e-4);
    // Eval uses the running statistics.
    let e = bn.forward(&x, false).unwrap().to_vec2::<f32>().unwrap();
    assert!(((e[0][0]) - (1.0 - 0.3) / (1.3f32 + 1e-5).sqrt()).abs() < 1e-4);
    assert!(bn.forward(&h.ctx.ones(&[2, 3]).unwrap(), true).is_err(), "wrong channel count");
}

#[test]
fn layernorm_conv_embedding() {
    let h = host(3);
    let ln = LayerNorm::new(&h.ctx, "ln", 4, 1e-5).unwrap();
    let x = h.ctx.tensor(&[1f32, 2.0, 3.0, 4.0], &[1, 4]).unwrap();
    close(&vec(&ln.forward(&x).unwrap().flatten_all().unwrap()), &[-1.3416, -0.4472, 0.4472, 1.3416], 1e-3);

    let conv = Conv2d::new(&h.ctx, "conv", 1, 2, 3, 1, 1).unwrap();
    let img = h.ctx.randn(0.0, 1.0, &[2, 1, 5, 5]).unwrap();
    assert_eq!(conv.forward(&img).unwrap().dims(), vec![2, 2, 5, 5]);

    let emb = Embedding::new(&h.ctx, "emb", 10, 3).unwrap();
    let ids = h.ctx.tensor(&[1u32, 4, 4, 9], &[2, 2]).unwrap();
    let e = emb.forward(&ids).unwrap();
    assert_eq!(e.dims(), vec![2, 2, 3]);
    let rows = e.reshape(&[4, 3]).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(rows[1], rows[2], "same id, same vector");
    assert_eq!(e.dtype().unwrap(), DType::F32);
}

#[test]
fn gradients_reach_host_parameters() {
    let h = host(4);
    let lin = Linear::new(&h.ctx, "fc", 3, 2, true).unwrap();
    let x = h.ctx.randn(0.0, 1.0, &[4, 3]).unwrap();
    let loss = lin.forward(&x).unwrap().sqr().unwrap().mean_all().unwrap();
    let grads = candle(&loss).backward().unwrap();
    for p in h.host.params.params(Some("test")) {
        assert!(grads.get(p.var.as_tensor()).is_some(), "{} has a gradient", p.name);
    }
}
