//! Optimizers that update parameter storage in place, one fused pass per parameter, no per-step
//! allocation: SGD (momentum, Nesterov, weight decay) and AdamW (decoupled weight decay).
use std::cell::RefCell;

use candle_core::{backend::BackendStorage, CpuStorage, InplaceOp2, Layout, Var};
use serde::{Deserialize, Serialize};

use super::optim_tensor::{self, Moments};
use crate::config::OptimizerSection;

/// Optimizer state of one parameter (moments), serialisable for checkpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ParamState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// An optimizer over a fixed list of parameters.
pub struct Optimizer {
    kind: OptimizerSection,
    params: Vec<(String, Var)>,
    state: Vec<ParamState>,
    /// Moments from a checkpoint for parameters not created yet (a plugin makes them later).
    pending: Vec<(String, ParamState)>,
    /// Moments as tensors on the parameter's device, for parameters updated by tensor ops.
    moments: Vec<Moments>,
    /// Update every parameter with tensor ops, also on the CPU (what any other device runs).
    tensor_path: bool,
    /// Steps taken (Adam's bias correction uses it).
    pub steps: u64,
}

struct Update<'a> {
    kind: &'a OptimizerSection,
    lr: f32,
    step: u64,
    state: RefCell<&'a mut ParamState>,
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        (CpuStorage::F32(_), None) => candle_core::bail!("optimizer: non-contiguous tensor"),
        _ => candle_core::bail!("optimizer: only f32 parameters are supported, got {:?}", s.dtype()),
    }
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "retort-optimizer-step"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let g = slice(s2, l2)?;
        let (a, b) =
            l1.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("non-contiguous parameter".into()))?;
        let CpuStorage::F32(pv) = s1 else { candle_core::bail!("optimizer: only f32 parameters are supported") };
        let p = &mut pv[a..b];
        if p.len() != g.len() {
            candle_core::bail!("optimizer: parameter has {} elements, gradient {}", p.len(), g.len());
        }
        let mut st = self.state.borrow_mut();
        let lr = self.lr;
        match *self.kind {
            OptimizerSection::Sgd { momentum, nesterov, weight_decay, .. } => {
                let (mu, wd) = (momentum as f32, weight_decay as f32);
                if mu == 0.0 {
                    for (w, &gi) in p.iter_mut().zip(g) {
                        *w -= lr * (gi + wd * *w);
                    }
                } else {
                    if st.m.len() != p.len() {
                        st.m = vec![0.0; p.len()];
                    }
                    let first = self.step == 1;
                    for ((w, &gi), buf) in p.iter_mut().zip(g).zip(st.m.iter_mut()) {
                        let d = gi + wd * *w;
                        // PyTorch: the buffer starts as the first gradient.
                        *buf = if first { d } else { mu * *buf + d };
                        let upd = if nesterov { d + mu * *buf } else { *buf };
                        *w -= lr * upd;
                    }
                }
            }
            OptimizerSection::Adamw { beta1, beta2, eps, weight_decay, .. } => {
                let (b1, b2, e, wd) = (beta1 as f32, beta2 as f32, eps as f32, weight_decay as f32);
                if st.m.len() != p.len() {
                    st.m = vec![0.0; p.len()];
                    st.v = vec![0.0; p.len()];
                }
                let t = self.step as i32;
                let c1 = 1.0 - b1.powi(t);
                let c2 = 1.0 - b2.powi(t);
                let step = lr / c1;
                let c2s = c2.sqrt();
                let decay = 1.0 - lr * wd;
                let ParamState { m, v } = &mut **st;
                for (((w, &gi), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *mi = b1 * *mi + (1.0 - b1) * gi;
                    *vi = b2 * *vi + (1.0 - b2) * gi * gi;
                    *w = *w * decay - step * *mi / ((*vi).sqrt() / c2s + e);
                }
            }
        }
        Ok(())
    }
}

impl Optimizer {
    /// An optimizer for `params` (name, variable).
    pub fn new(kind: OptimizerSection, params: Vec<(String, Var)>) -> Self {
        let state = vec![ParamState::default(); params.len()];
        let moments = vec![Moments::default(); params.len()];
        Optimizer { kind, params, state, pending: Vec::new(), moments, tensor_path: false, steps: 0 }
    }

    /// Updates CPU parameters with tensor ops too, not the fused pass: the path parameters on
    /// other devices take, so that it can be checked on any machine.
    pub fn with_tensor_path(mut self) -> Self {
        self.tensor_path = true;
        self
    }

    /// Whether parameter `name` is updated by this optimizer.
    pub fn has(&self, name: &str) -> bool {
        self.params.iter().any(|(n, _)| n == name)
    }

    /// Adds parameters created after the optimizer (a plugin's lazily made module, a loss term
    /// added by a live config edit); moments saved for them by a checkpoint are restored.
    pub fn add_params(&mut self, params: Vec<(String, Var)>) {
        for (name, var) in params {
            if self.has(&name) {
                continue;
            }
            let st = match self.pending.iter().position(|(n, _)| *n == name) {
                Some(i) => self.pending.swap_remove(i).1,
                None => ParamState::default(),
            };
            self.params.push((name, var));
            self.state.push(st);
            self.moments.push(Moments::default());
        }
    }

    /// The configured base learning rate.
    pub fn base_lr(&self) -> f64 {
        match self.kind {
            OptimizerSection::Sgd { lr, .. } | OptimizerSection::Adamw { lr, .. } => lr,
        }
    }

    /// One step at learning rate `lr` with the gradients in `grads` (parameters without a
    /// gradient are left alone).
    pub fn step(&mut self, grads: &candle_core::backprop::GradStore, lr: f64) -> candle_core::Result<()> {
        self.steps += 1;
        let params = self.params.iter().zip(self.state.iter_mut()).zip(self.moments.iter_mut());
        for (((_, var), st), mo) in params {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            #[cfg(feature = "cuda")]
            if !self.tensor_path && var.device().is_cuda() && var.dtype() == candle_core::DType::F32 {
                optim_tensor::update_cuda(&self.kind, var, g, st, mo, lr, self.steps)?;
                continue;
            }
            if self.tensor_path || !var.device().is_cpu() {
                optim_tensor::update(&self.kind, var, g, st, mo, lr, self.steps)?;
                continue;
            }
            let g = g.contiguous()?;
            let upd = Update { kind: &self.kind, lr: lr as f32, step: self.steps, state: RefCell::new(st) };
            var.as_tensor().inplace_op2(&g, &upd)?;
        }
        Ok(())
    }

    /// The squared global L2 norm of the gradients as an f64 scalar on `device` (summed in f64
    /// there, parameter by parameter): no read, the caller reads it with the loss.
    pub fn grad_norm_sq(
        &self,
        grads: &candle_core::backprop::GradStore,
        device: &candle_core::Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        let mut total: Option<candle_core::Tensor> = None;
        for (_, var) in &self.params {
            if let Some(g) = grads.get(var.as_tensor()) {
                let s = g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?;
                total = Some(match total {
                    Some(t) => (t + s)?,
                    None => s,
                });
            }
        }
        match total {
            Some(t) => Ok(t),
            None => candle_core::Tensor::zeros((), candle_core::DType::F64, device),
        }
    }

    /// Scales every gradient by `max_norm / norm` when the global norm `norm` exceeds `max_norm`.
    pub fn clip_grads(
        &self,
        grads: &mut candle_core::backprop::GradStore,
        norm: f64,
        max_norm: f64,
    ) -> candle_core::Result<()> {
        if max_norm > 0.0 && norm > max_norm {
            let s = max_norm / (norm + 1e-6);
            for (_, var) in &self.params {
                if let Some(g) = grads.remove(var.as_tensor()) {
                    grads.insert(var.as_tensor(), g.affine(s, 0.0)?);
                }
            }
        }
        Ok(())
    }

    /// Scales every gradient so that their global L2 norm is at most `max_norm`; returns the norm.
    pub fn clip_grad_norm(
        &self,
        grads: &mut candle_core::backprop::GradStore,
        max_norm: f64,
    ) -> candle_core::Result<f64> {
        let device = self.params.first().map_or(candle_core::Device::Cpu, |(_, v)| v.device().clone());
        let norm = self.grad_norm_sq(grads, &device)?.to_scalar::<f64>()?.sqrt();
        self.clip_grads(grads, norm, max_norm)?;
        Ok(norm)
    }

    /// Moments by parameter name, for checkpoints (with those still waiting for their parameter);
    /// moments held on a device are copied to the host.
    pub fn state(&self) -> candle_core::Result<Vec<(String, ParamState)>> {
        let mut out = Vec::with_capacity(self.params.len() + self.pending.len());
        for (((name, _), st), mo) in self.params.iter().zip(&self.state).zip(&self.moments) {
            out.push((name.clone(), mo.to_state()?.unwrap_or_else(|| st.clone())));
        }
        out.extend(self.pending.iter().cloned());
        Ok(out)
    }

    /// Restores moments saved by [`Optimizer::state`].
    pub fn load_state(&mut self, saved: &[(String, ParamState)], steps: u64) {
        self.pending.clear();
        for (name, s) in saved {
            match self.params.iter().position(|(n, _)| n == name) {
                Some(i) => {
                    self.state[i] = s.clone();
                    self.moments[i] = Moments::default();
                }
                None => self.pending.push((name.clone(), s.clone())),
            }
        }
        self.steps = steps;
    }

    /// The parameters this optimizer updates.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use candle_core::Tensor;

    /// Direct reference implementation for tests: the same update written with tensor ops.
    fn adamw_reference(
        w: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
        t: i32,
        lr: f64,
        wd: f64,
    ) -> (Tensor, Tensor, Tensor) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let m = (m.affine(b1, 0.0).unwrap() + g.affine(1.0 - b1, 0.0).unwrap()).unwrap();
        let v = (v.affine(b2, 0.0).unwrap() + g.sqr().unwrap().affine(1.0 - b2, 0.0).unwrap()).unwrap();
        let mh = m.affine(1.0 / (1.0 - b1.powi(t)), 0.0).unwrap();
        let vh = v.affine(1.0 / (1.0 - b2.powi(t)), 0.0).unwrap();
        let upd = (mh / vh.sqrt().unwrap().affine(1.0, eps).unwrap()).unwrap();
        let w = (w.affine(1.0 - lr * wd, 0.0).unwrap() - upd.affine(lr, 0.0).unwrap()).unwrap();
        (w, m, v)
    }

    fn grads_for(var: &Var, target: &Tensor) -> candle_core::backprop::GradStore {
        (var.as_tensor() - target).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap()
    }

    #[test]
    fn adamw_matches_the_tensor_formula() {
        let w0 = Tensor::new(&[1f32, -2.0, 0.5, 3.0], &Device::Cpu).unwrap();
        let target = Tensor::new(&[0f32, 0.0, 1.0, 1.0], &Device::Cpu).unwrap();
        let var = Var::from_tensor(&w0).unwrap();
        let kind = OptimizerSection::Adamw { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let mut opt = Optimizer::new(kind, vec![("w".into(), var.clone())]);
        let (mut w, mut m, mut v) = (w0.clone(), w0.zeros_like().unwrap(), w0.zeros_like().unwrap());
        for t in 1..=3 {
            let g = ((&w - &target).unwrap() * 2.0).unwrap();
            (w, m, v) = adamw_reference(&w, &g, &m, &v, t, 0.1, 0.01);
            opt.step(&grads_for(&var, &target), 0.1).unwrap();
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        let want = w.to_vec1::<f32>().unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn sgd_momentum_and_nesterov() {
        let var = Var::from_tensor(&Tensor::new(&[1f32], &Device::Cpu).unwrap()).unwrap();
        let target = Tensor::new(&[0f32], &Device::Cpu).unwrap();
        let kind = OptimizerSection::Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0 };
        let mut opt = Optimizer::new(kind, vec![("w".into(), var.clone())]);
        opt.step(&grads_for(&var, &target), 0.1).unwrap(); // g = 2, buf = 2, w = 0.8
        opt.step(&grads_for(&var, &target), 0.1).unwrap(); // g = 1.6, buf = 3.4, w = 0.46
        assert!((var.as_tensor().to_vec1::<f32>().unwrap()[0] - 0.46).abs() < 1e-6);
        let var = Var::from_tensor(&Tensor::new(&[1f32], &Device::Cpu).unwrap()).unwrap();
        let kind = OptimizerSection::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0 };
        let mut opt = Optimizer::new(kind, vec![("w".into(), var.clone())]);
        opt.step(&grads_for(&var, &target), 0.1).unwrap(); // buf = 2, upd = 2 + 1.8 = 3.8, w = 0.62
        assert!((var.as_tensor().to_vec1::<f32>().unwrap()[0] - 0.62).abs() < 1e-6);
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let var = Var::from_tensor(&Tensor::new(&[3f32, 4.0], &Device::Cpu).unwrap()).unwrap();
        let zero = Tensor::new(&[0f32, 0.0], &Device::Cpu).unwrap();
        let opt = Optimizer::new(OptimizerSection::default(), vec![("w".into(), var.clone())]);
        let mut g = grads_for(&var, &zero); // grad = 2w = (6, 8), norm 10
        let n = opt.clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((n - 10.0).abs() < 1e-6);
        let clipped = g.get(var.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!((clipped[0] - 0.6).abs() < 1e-5 && (clipped[1] - 0.8).abs() < 1e-5);
    }

    /// Runs `steps` updates of a [3, 4] parameter towards a target. The optimizer is rebuilt from
    /// its checkpointed state after `cut` steps; it uses tensor ops from step `tensor_from` on
    /// (`Some(0)`: throughout; `None`: the fused pass throughout).
    fn trajectory(kind: &OptimizerSection, tensor_from: Option<usize>, cut: Option<usize>) -> Vec<f32> {
        trajectory_on(&Device::Cpu, kind, tensor_from, cut)
    }

    /// [`trajectory`] with the parameter on device `d`.
    fn trajectory_on(d: &Device, kind: &OptimizerSection, tensor_from: Option<usize>, cut: Option<usize>) -> Vec<f32> {
        let d = d.clone();
        let init: Vec<f32> = (0..12).map(|i| ((i * 7) % 12) as f32 / 6.0 - 1.0).collect();
        let var = Var::from_tensor(&Tensor::from_vec(init, (3, 4), &d).unwrap()).unwrap();
        let target = Tensor::from_vec((0..12).map(|i| (i as f32).sin()).collect::<Vec<_>>(), (3, 4), &d).unwrap();
        let make = |tensor: bool| {
            let o = Optimizer::new(kind.clone(), vec![("w".into(), var.clone())]);
            if tensor {
                o.with_tensor_path()
            } else {
                o
            }
        };
        let mut opt = make(tensor_from == Some(0));
        for s in 0..8 {
            if cut == Some(s) {
                let (saved, n) = (opt.state().unwrap(), opt.steps);
                opt = make(tensor_from.is_some_and(|t| s >= t));
                opt.load_state(&saved, n);
            }
            opt.step(&grads_for(&var, &target), 0.05 * (1.0 + s as f64 / 10.0)).unwrap();
        }
        var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// AdamW with decay, SGD with momentum, with Nesterov and decay, and plain SGD.
    fn kinds() -> [OptimizerSection; 4] {
        [
            OptimizerSection::Adamw { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 },
            OptimizerSection::Sgd { lr: 0.05, momentum: 0.9, nesterov: false, weight_decay: 0.0 },
            OptimizerSection::Sgd { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-3 },
            OptimizerSection::Sgd { lr: 0.05, momentum: 0.0, nesterov: false, weight_decay: 1e-3 },
        ]
    }

    /// Asserts two trajectories agree to 1e-5 relative.
    fn close(a: &[f32], b: &[f32], what: &str) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{what}: {a:?} vs {b:?}");
        }
    }

    /// The tensor-op path (what a CUDA or other non-CPU parameter runs) against the fused pass.
    #[test]
    fn tensor_path_matches_the_fused_pass_and_checkpoints_its_moments() {
        let kinds = kinds();
        for kind in &kinds {
            let fused = trajectory(kind, None, None);
            let tensor = trajectory(kind, Some(0), None);
            close(&fused, &tensor, &format!("{kind:?} tensor path"));
            // Device moments leave for a checkpoint and come back exactly.
            assert_eq!(trajectory(kind, Some(0), Some(3)), tensor, "{kind:?}: resumed tensor path");
            // A fused run's checkpoint continues on the tensor path (a run moved to another device).
            close(&fused, &trajectory(kind, Some(3), Some(3)), &format!("{kind:?} fused then tensor"));
        }
    }

    /// The CUDA kernels against the CPU's fused pass, their moments through a checkpoint (a
    /// resumed CUDA run continues exactly), and against the tensor-op path on the same GPU.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_kernels_match_the_fused_pass_and_resume_exactly() {
        let Some(gpu) = crate::backend::cuda::test_device() else { return };
        let kinds = kinds();
        for kind in &kinds {
            let cpu = trajectory(kind, None, None);
            let cuda = trajectory_on(&gpu, kind, None, None);
            close(&cpu, &cuda, &format!("{kind:?}: CUDA kernel vs CPU"));
            assert_eq!(trajectory_on(&gpu, kind, None, Some(3)), cuda, "{kind:?}: CUDA resumed");
            close(&cuda, &trajectory_on(&gpu, kind, Some(0), None), &format!("{kind:?}: kernel vs tensor ops"));
            close(
                &cpu,
                &trajectory_on(&gpu, kind, Some(3), Some(3)),
                &format!("{kind:?}: CUDA kernel, then tensor ops"),
            );
        }
    }
}
