//! Teacher targets under a mixing augmenter (`teacher_target = "mix_outputs"`): the teachers run
//! on the batch before the augmenters, and each output is mixed as the augmenter mixed the inputs,
//! `log(λ_b·p_T(x_{a_b}) + (1−λ_b)·p_T(x_{b_b}))` (methods spec §3.3, the non-default choice).
use candle_core::{DType, Result, Tensor, D};

/// How an augmenter mixed the batch: sample `i` is `λ_i·x[a_i] + (1−λ_i)·x[b_i]`.
pub struct Mixing {
    pub a: Tensor,
    pub b: Tensor,
    pub lambda: Tensor,
}

impl Mixing {
    /// The mixing the augmenters reported (`mix_a`, `mix_b`, `mix_lambda`), if any.
    pub fn from_extras(extras: &[(String, Tensor)]) -> Result<Option<Mixing>> {
        let get = |n: &str| extras.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone());
        Ok(match (get("mix_a"), get("mix_b"), get("mix_lambda")) {
            (Some(a), Some(b), Some(l)) => {
                Some(Mixing { a: a.to_dtype(DType::U32)?, b: b.to_dtype(DType::U32)?, lambda: l.to_dtype(DType::F32)? })
            }
            _ => None,
        })
    }

    /// Mixed log-probabilities of outputs `z` whose batch dim is `dim` (`[B, C]` or `[T, B, C]`).
    pub fn apply(&self, z: &Tensor, dim: usize) -> Result<Tensor> {
        let p = softmax_last(&z.to_dtype(DType::F32)?)?;
        let mut shape = vec![1; z.rank()];
        shape[dim] = self.lambda.dim(0)?;
        let l = self.lambda.reshape(shape)?;
        let pa = p.index_select(&self.a, dim)?;
        let pb = p.index_select(&self.b, dim)?;
        let mixed = (pa.broadcast_mul(&l)? + pb.broadcast_mul(&l.affine(-1.0, 1.0)?)?)?;
        mixed.log()?.to_dtype(z.dtype())
    }
}

/// Softmax over the last dim (stable).
fn softmax_last(z: &Tensor) -> Result<Tensor> {
    let m = z.max_keepdim(D::Minus1)?;
    let e = z.broadcast_sub(&m)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mixed_outputs_are_the_mixture_of_the_partners_probabilities() {
        let d = Device::Cpu;
        let z = Tensor::new(&[[1.0f32, 0.0, -1.0], [0.5, 2.0, 0.0]], &d).unwrap();
        let m = Mixing {
            a: Tensor::new(&[1u32, 0], &d).unwrap(),
            b: Tensor::new(&[0u32, 0], &d).unwrap(),
            lambda: Tensor::new(&[0.25f32, 1.0], &d).unwrap(),
        };
        let out = m.apply(&z, 0).unwrap().exp().unwrap().to_vec2::<f32>().unwrap();
        let p = softmax_last(&z).unwrap().to_vec2::<f32>().unwrap();
        for c in 0..3 {
            assert!((out[0][c] - (0.25 * p[1][c] + 0.75 * p[0][c])).abs() < 1e-6);
            assert!((out[1][c] - p[0][c]).abs() < 1e-6);
        }
        // Stacked teachers [T, B, C]: the batch dim is 1.
        let stacked = Tensor::stack(&[&z, &z], 0).unwrap();
        let s = m.apply(&stacked, 1).unwrap().exp().unwrap().get(1).unwrap().to_vec2::<f32>().unwrap();
        assert!((s[0][2] - out[0][2]).abs() < 1e-6);
    }
}
