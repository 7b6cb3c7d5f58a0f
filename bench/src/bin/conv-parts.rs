//! Times the pieces of the CNN forward at one thread (diagnostic for the fused conv path).
use std::time::Instant;

use candle_core::{Device, Tensor};
use retort::backend::{conv, fused, pool};

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
    let xs2 = Tensor::randn(0f32, 1.0, (128, 16, 14, 14), &d)?;
    let ws2 = Tensor::randn(0f32, 1.0, (32, 16, 5, 5), &d)?;
    time("student conv2 fused", || conv::conv2d(&xs2, &ws2, None, 2, 1, 1, 1))?;
    let y = conv::conv2d(&x2, &w2, None, 2, 1, 1, 1)?;
    time("bias add", || y.broadcast_add(&b2))?;
    time("relu fused", || fused::relu(&y))?;
    time("max pool fused", || pool::max_pool2d(&y, (2, 2), (2, 2)))?;
    time("max pool candle", || y.max_pool2d(2))?;
    // Backward pieces of the teacher's conv2 (32 → 64 at 14×14): forward + one gradient at a time.
    let xv = candle_core::Var::from_tensor(&x2)?;
    let wv = candle_core::Var::from_tensor(&w2)?;
    time("conv2 fwd + kernel grad", || {
        let g = conv::conv2d(&x2, wv.as_tensor(), None, 2, 1, 1, 1)?.sum_all()?.backward()?;
        Ok(g.get(wv.as_tensor()).cloned().unwrap_or(x2.clone()))
    })?;
    time("conv2 fwd + input grad", || {
        let g = conv::conv2d(xv.as_tensor(), &w2, None, 2, 1, 1, 1)?.sum_all()?.backward()?;
        Ok(g.get(xv.as_tensor()).cloned().unwrap_or(x2.clone()))
    })?;
    Ok(())
}
