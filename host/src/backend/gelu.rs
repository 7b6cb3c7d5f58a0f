//! GELU (tanh approximation, as candle's and PyTorch's `approximate="tanh"`) as one host op with
//! its own backward: candle's backward composes `powf`, `tanh` and several passes, which made up a
//! third of a small GPT's training step on one CPU thread. Here tanh is one `exp`, and the
//! backward recomputes it from the input in one pass.
use super::kernel::f32_slice;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape, Tensor};

const C: f32 = 0.797_884_6; // √(2/π)
const A: f32 = 0.044_715;

/// tanh(c·(x + a·x³)), as 1 − 2/(e^{2u} + 1): saturates to ±1 without overflow trouble.
#[inline]
fn inner_tanh(x: f32) -> f32 {
    let u = C * (x + A * x * x * x);
    1.0 - 2.0 / ((2.0 * u).exp() + 1.0)
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "retort-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "input")?;
        let y = x.iter().map(|&v| 0.5 * v * (1.0 + inner_tanh(v))).collect();
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(&arg.contiguous()?, &GeluGrad)?))
    }
}

/// `grad · gelu'(x)`, with gelu'(x) = ½(1 + t) + ½·x·(1 − t²)·c·(1 + 3a·x²).
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "retort-gelu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, l1, "gradient")?;
        let x = f32_slice(s2, l2, "input")?;
        let out = g
            .iter()
            .zip(x)
            .map(|(&g, &x)| {
                let t = inner_tanh(x);
                g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * A * x * x))
            })
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// GELU (tanh approximation): the fused op on CPU f32, candle's elsewhere.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Gelu)
    } else {
        x.gelu()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Tensor, Var};

    use super::*;
    use crate::backend::kernel::max_diff;

    #[test]
    fn gelu_and_its_gradient_match_candle() {
        let d = Device::Cpu;
        let v: Vec<f32> = (-400..400).map(|i| i as f32 * 0.03).chain([-60.0, -9.0, 9.0, 60.0]).collect();
        let x = Var::from_tensor(&Tensor::from_vec(v.clone(), v.len(), &d).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, v.len(), &d).unwrap();
        let (a, b) = (gelu(x.as_tensor()).unwrap(), x.as_tensor().gelu().unwrap());
        assert!(max_diff(&a, &b) < 2e-6, "values differ by {}", max_diff(&a, &b));
        let ga = (a * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let (ga, gb) = (ga.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap());
        assert!(max_diff(ga, gb) < 1e-5, "gradients differ by {}", max_diff(ga, gb));
    }
}
