//! Times the pieces of the CNN forward at one thread (diagnostic for the fused conv path).
use std::time::Instant;

use candle_core::{Device, Tensor};
use retort::backend::{conv, fused};

fn time(name: &str, mut f: impl FnMut() -> candle_core::Result<Tensor>) -> candle_core::Result<()> {
    f()?;
    let t = Instant::now();
    for _ in 0..10 {
        f()?;
    }
    println!("{name:<28} {:8.2} ms", t.elapsed().as_secs_f64() * 100.0);
    Ok(())
}

fn main() -> candle_core::Result<()> {
    let d = Device::Cpu;
    let x1 = Tensor::randn(0f32, 1.0, (128, 1, 28, 28), &d)?;
    let w1 = Tensor::randn(0f32, 1.0, (32, 1, 5, 5), &d)?;
    let x2 = Tensor::randn(0f32, 1.0, (128, 32, 14, 14), &d)?;
    let w2 = Tensor::randn(0f32, 1.0, (64, 32, 5, 5), &d)?;
    let b2 = Tensor::randn(0f32, 1.0, (1, 64, 1, 1), &d)?;
    time("conv1 fused", || conv::conv2d(&x1, &w1, None, 2, 1, 1, 1))?;
    time("conv1 candle", || x1.conv2d(&w1, 2, 1, 1, 1))?;
    time("conv2 fused", || conv::conv2d(&x2, &w2, None, 2, 1, 1, 1))?;
    time("conv2 candle", || x2.conv2d(&w2, 2, 1, 1, 1))?;
    let y = conv::conv2d(&x2, &w2, None, 2, 1, 1, 1)?;
    time("bias add", || y.broadcast_add(&b2))?;
    time("relu fused", || fused::relu(&y))?;
    time("max pool fused", || conv::max_pool2d(&y, (2, 2), (2, 2)))?;
    time("max pool candle", || y.max_pool2d(2))?;
    // The student's backward pieces: conv2 (16 → 32 channels at 14×14) and conv1 (1 → 16 at 28×28).
    let xs = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (128, 16, 14, 14), &d)?)?;
    let ws = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (32, 16, 5, 5), &d)?)?;
    let bs = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, 32, &d)?)?;
    let ys = conv::conv2d(xs.as_tensor(), ws.as_tensor(), Some(bs.as_tensor()), 2, 1, 1, 1)?;
    let gs = Tensor::randn(0f32, 1.0, ys.dims(), &d)?;
    time("student conv2 forward", || conv::conv2d(xs.as_tensor(), ws.as_tensor(), Some(bs.as_tensor()), 2, 1, 1, 1))?;
    time("student conv2 backward", || {
        let y = conv::conv2d(xs.as_tensor(), ws.as_tensor(), Some(bs.as_tensor()), 2, 1, 1, 1)?;
        (y * &gs)?.sum_all()?.backward()?;
        Ok(gs.clone())
    })?;
    let x1s = Tensor::randn(0f32, 1.0, (128, 1, 28, 28), &d)?;
    let w1s = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (16, 1, 5, 5), &d)?)?;
    let g1 = Tensor::randn(0f32, 1.0, (128, 16, 28, 28), &d)?;
    time("student conv1 fwd+bwd", || {
        let y = conv::conv2d(&x1s, w1s.as_tensor(), None, 2, 1, 1, 1)?;
        (y * &g1)?.sum_all()?.backward()?;
        Ok(g1.clone())
    })?;
    let yp = Tensor::randn(0f32, 1.0, (128, 32, 28, 28), &d)?;
    let vp = candle_core::Var::from_tensor(&yp)?;
    let gp = Tensor::randn(0f32, 1.0, (128, 32, 14, 14), &d)?;
    time("pool fwd+bwd 32x28x28", || {
        let y = conv::max_pool2d(vp.as_tensor(), (2, 2), (2, 2))?;
        (y * &gp)?.sum_all()?.backward()?;
        Ok(gp.clone())
    })?;
    time("relu fwd+bwd 32x28x28", || {
        let y = fused::relu(vp.as_tensor())?;
        (y * &yp)?.sum_all()?.backward()?;
        Ok(gp.clone())
    })?;
    Ok(())
}
