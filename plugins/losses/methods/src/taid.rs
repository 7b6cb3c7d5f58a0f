//! TAID (Shing et al., ICLR 2025): KL to a target interpolated in logit space between the
//! (stop-gradient) student and the teacher, with an adaptive interpolation parameter t.
use retort_sdk::{
    functional as f, functional::ValueForm, params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor,
};

use crate::state::{decode, encode};

/// Parameters of `taid`.
#[params]
pub struct Config {
    /// initial interpolation t (0.4; 0.2 for some model pairs)
    #[param(default = 0.4)]
    pub t_start: f64,
    /// final t (1.0 = the teacher)
    #[param(default = 1.0)]
    pub t_end: f64,
    /// step size of the adaptive update (5e-4)
    #[param(default = 5e-4)]
    pub alpha: f64,
    /// momentum of the relative improvement (0.99)
    #[param(default = 0.99)]
    pub beta: f64,
    /// "kl" (paper) or "ce" (official code; its value also drives the update)
    #[param(default = ValueForm::Kl)]
    pub value_form: ValueForm,
}

/// The adaptive schedule: t, the previous loss and the momentum of relative improvement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaidState {
    pub t: f64,
    pub prev: f64,
    pub m: f64,
    pub started: bool,
}

impl TaidState {
    /// Before the first update.
    pub fn new(t_start: f64) -> Self {
        TaidState { t: t_start, prev: f64::INFINITY, m: 0.0, started: false }
    }

    /// The paper's update after a loss `j` at `step` of `total` (first call: prev = j, t = t_start).
    pub fn update(&mut self, cfg: &Config, j: f64, step: f64, total: f64) {
        if !self.started {
            self.prev = j;
            self.t = cfg.t_start;
            self.started = true;
            return;
        }
        let delta = (self.prev - j) / (self.prev + 1e-15);
        self.m = cfg.beta * self.m + (1.0 - cfg.beta) * delta;
        let dt = cfg.alpha * (1.0 / (1.0 + (-self.m).exp())) * (1.0 - self.t);
        let t_lin = cfg.t_start + (cfg.t_end - cfg.t_start) * (step / total.max(1.0));
        self.t = cfg.t_end.min(t_lin.max(self.t + dt));
        self.prev = j;
    }
}

/// The plugin instance.
pub struct Taid {
    ctx: Ctx,
    cfg: Config,
    st: TaidState,
}

impl Plugin for Taid {
    const NAME: &'static str = "taid";
    const SUMMARY: &'static str = "TAID (Shing et al., ICLR 2025): KL(p_t ‖ pˢ) with p_t = softmax((1−t)·sg(zˢ) + \
        t·zᵗ) and t adapted from the loss's relative improvement, floored by a linear ramp. State t, prev, m is \
        checkpointed and carried across hot reload. Inputs: student, teacher, optional mask; numbers step, \
        total_steps.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if !(0.0..=1.0).contains(&cfg.t_start) || !(cfg.t_start..=1.0).contains(&cfg.t_end) {
            return Err(Error::config("taid: need 0 ≤ t_start ≤ t_end ≤ 1"));
        }
        Ok(Taid { ctx, st: TaidState::new(cfg.t_start), cfg })
    }
    fn state(&self) -> Result<Vec<u8>> {
        Ok(encode(&[self.st.t, self.st.prev, self.st.m, f64::from(u8::from(self.st.started))]))
    }
    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        if let Some(w) = decode(state, 4, Self::NAME)? {
            self.st = TaidState { t: w[0], prev: w[1], m: w[2], started: w[3] != 0.0 };
        }
        Ok(())
    }
}

impl LossPlugin for Taid {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let t = if self.st.started { self.st.t } else { self.cfg.t_start };
        let target = (zs.detach()?.affine(1.0 - t, 0.0)? + zt.affine(t, 0.0)?)?;
        let log_p = f::log_probs(&target, 1.0)?;
        let log_ps = f::log_probs(&zs, 1.0)?;
        let rows = f::teacher_target_rows(&log_p, &log_ps, self.cfg.value_form)?;
        let j = f::reduce_rows(&rows, batch.get("mask").as_ref())?;
        let jv = j.to_scalar::<f64>()?;
        let total = batch.scalar("total_steps").unwrap_or(1.0);
        self.st.update(&self.cfg, jv, batch.scalar("step").unwrap_or(0.0), total);
        self.ctx.metric("t", t);
        Ok(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_trace_matches_the_reference() {
        let cfg = Config::default();
        let mut st = TaidState::new(cfg.t_start);
        let mut ts = Vec::new();
        let mut ms = Vec::new();
        for (step, j) in [2.0, 1.8, 1.7, 1.75].into_iter().enumerate() {
            st.update(&cfg, j, step as f64, 10_000.0);
            ts.push(st.t);
            ms.push(st.m);
        }
        for (got, want) in ts.iter().zip([0.4, 0.4001500750, 0.4003001534, 0.4004501710]) {
            assert!((got - want).abs() < 1e-10, "{ts:?}");
        }
        for (got, want) in ms.iter().zip([0.0, 0.0010000000, 0.0015455556, 0.0012359824]) {
            assert!((got - want).abs() < 1e-10, "{ms:?}");
        }
        let mut st = TaidState::new(cfg.t_start);
        let mut ts = Vec::new();
        for (step, j) in [2.0, 1.8, 1.7, 1.75].into_iter().enumerate() {
            st.update(&cfg, j, step as f64, 100.0);
            ts.push(st.t);
        }
        for (got, want) in ts[1..].iter().zip([0.406, 0.412, 0.418]) {
            assert!((got - want).abs() < 1e-12, "{ts:?}");
        }
    }
}
