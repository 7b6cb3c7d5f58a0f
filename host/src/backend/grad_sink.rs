//! Parameter gradients written straight into their final buffers. Candle's backward accumulates
//! every gradient as `zeros_like(param) + g`: for a 800×800 weight that is a fresh zeroed buffer,
//! a second one for the sum and three passes over memory, per parameter, per step. During
//! [`backward`], the fused linear op instead computes the gradient of a leaf parameter with one
//! gemm into a buffer kept here (accumulating when the parameter is used twice), and the buffers
//! are handed to the [`GradStore`] at the end, so every consumer sees an ordinary store.
use std::{cell::RefCell, collections::HashMap};

use candle_core::{backprop::GradStore, Result, Tensor, TensorId};

/// Gradients sunk during the current [`backward`] on this thread: parameter → (parameter, data).
type Sink = HashMap<TensorId, (Tensor, Vec<f32>)>;

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// `loss.backward()`, with leaf-parameter gradients of the fused ops written directly (see the
/// module docs). Same gradients as candle's backward; tested against it.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    SINK.with(|s| *s.borrow_mut() = Some(HashMap::new()));
    let result = loss.backward();
    let sunk = SINK.with(|s| s.borrow_mut().take()).unwrap_or_default();
    let mut grads = result?;
    for (_, (param, data)) in sunk {
        let g = Tensor::from_vec(data, param.shape(), param.device())?;
        let g = match grads.remove(&param) {
            // The parameter was also used outside the fused ops: add the two parts.
            Some(other) => (other + g)?,
            None => g,
        };
        grads.insert(&param, g);
    }
    Ok(grads)
}

/// Whether a [`backward`] is running on this thread.
pub fn active() -> bool {
    SINK.with(|s| s.borrow().is_some())
}

/// When a [`backward`] is running on this thread and `param` is a leaf f32 parameter: `write` gets
/// its gradient buffer (`true`: the buffer already holds a gradient to add to) and the gradient
/// goes there; returns whether it did. Otherwise the caller returns the gradient to candle.
pub fn sink(param: &Tensor, write: impl FnOnce(&mut [f32], bool)) -> bool {
    if !param.is_variable() || param.dtype() != candle_core::DType::F32 || !param.device().is_cpu() {
        return false;
    }
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        let Some(map) = s.as_mut() else { return false };
        let n = param.elem_count();
        match map.get_mut(&param.id()) {
            Some((_, data)) => write(data, true),
            None => {
                let mut data = vec![0f32; n];
                write(&mut data, false);
                map.insert(param.id(), (param.clone(), data));
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use crate::backend::{fused::linear, kernel::max_diff};

    /// A weight used twice (and once more outside the fused op) gets the same gradient through
    /// the sink as through candle's own backward.
    #[test]
    fn sunk_gradients_equal_candles() {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (9, 5), &d).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 5), &d).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 5, &d).unwrap()).unwrap();
        let loss = || {
            let h = linear(&x, w.as_tensor(), Some(b.as_tensor())).unwrap().relu().unwrap();
            let y = linear(&h, w.as_tensor(), None).unwrap();
            (y.sqr().unwrap().sum_all().unwrap() + w.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap()
        };
        let plain = loss().backward().unwrap();
        let sunk = super::backward(&loss()).unwrap();
        for v in [&w, &b] {
            let (a, c) = (plain.get(v.as_tensor()).unwrap(), sunk.get(v.as_tensor()).unwrap());
            assert!(max_diff(a, c) < 1e-4);
        }
        // The fused op really did sink both parameters (rather than hand them back to candle).
        super::SINK.with(|s| *s.borrow_mut() = Some(Default::default()));
        let store = loss().backward().unwrap();
        let sunk = super::SINK.with(|s| s.borrow_mut().take()).unwrap();
        assert!(sunk.contains_key(&w.as_tensor().id()) && sunk.contains_key(&b.as_tensor().id()));
        assert!(store.get(b.as_tensor()).is_none(), "b is only used by the fused op");
        assert!(!super::active());
    }
}
