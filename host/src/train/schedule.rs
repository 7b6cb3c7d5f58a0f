//! Learning-rate and loss-weight schedules.
use crate::config::{ScheduleKind, ScheduleSection, WeightSchedule};

/// The learning rate at `step` (0-based) of a stage of `total` steps with `steps_per_epoch`.
pub fn lr_at(s: &ScheduleSection, base: f64, step: usize, total: usize, steps_per_epoch: usize) -> f64 {
    if s.warmup_steps > 0 && step < s.warmup_steps {
        return base * (step + 1) as f64 / s.warmup_steps as f64;
    }
    match s.kind {
        ScheduleKind::Constant => base,
        ScheduleKind::Step => {
            let epoch = step as f64 / steps_per_epoch.max(1) as f64;
            base * s.gamma.powi((epoch / s.step_epochs.max(1e-9)).floor() as i32)
        }
        ScheduleKind::Cosine => {
            let span = total.saturating_sub(s.warmup_steps + 1).max(1) as f64;
            let t = (step.saturating_sub(s.warmup_steps) as f64 / span).min(1.0);
            let lo = base * s.min_factor;
            lo + (base - lo) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

/// The factor on a loss weight at `step` of `total`, in `epoch` (counted from 1).
pub fn weight_factor(w: Option<&WeightSchedule>, step: usize, total: usize, epoch: usize) -> f64 {
    match w {
        None | Some(WeightSchedule::Constant) => 1.0,
        Some(WeightSchedule::Warmup { epochs }) => (epoch as f64 / epochs.max(1e-9)).min(1.0),
        Some(WeightSchedule::Linear { from, to }) => {
            let t = if total <= 1 { 1.0 } else { step as f64 / (total - 1) as f64 };
            from + (to - from) * t
        }
        Some(WeightSchedule::DecayAfter { every, factor }) => {
            let e0 = epoch.saturating_sub(1);
            factor.powi(e0.div_ceil((*every).max(1)) as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind, warmup: usize) -> ScheduleSection {
        ScheduleSection { kind, warmup_steps: warmup, ..Default::default() }
    }

    #[test]
    fn lr_schedules() {
        assert_eq!(lr_at(&sched(ScheduleKind::Constant, 0), 0.1, 50, 100, 10), 0.1);
        assert!((lr_at(&sched(ScheduleKind::Constant, 4), 0.1, 1, 100, 10) - 0.05).abs() < 1e-12);
        let step = ScheduleSection { step_epochs: 2.0, gamma: 0.5, ..sched(ScheduleKind::Step, 0) };
        assert!((lr_at(&step, 0.1, 45, 100, 10) - 0.025).abs() < 1e-12);
        let cos = sched(ScheduleKind::Cosine, 0);
        assert!((lr_at(&cos, 0.1, 0, 101, 10) - 0.1).abs() < 1e-12);
        assert!((lr_at(&cos, 0.1, 50, 101, 10) - 0.05).abs() < 1e-12);
        assert!(lr_at(&cos, 0.1, 100, 101, 10).abs() < 1e-12);
    }

    #[test]
    fn weight_schedules() {
        assert_eq!(weight_factor(None, 3, 10, 1), 1.0);
        assert_eq!(weight_factor(Some(&WeightSchedule::Warmup { epochs: 20.0 }), 0, 10, 5), 0.25);
        assert_eq!(weight_factor(Some(&WeightSchedule::Warmup { epochs: 20.0 }), 0, 10, 40), 1.0);
        let lin = WeightSchedule::Linear { from: 0.0, to: 1.0 };
        assert_eq!(weight_factor(Some(&lin), 0, 11, 1), 0.0);
        assert!((weight_factor(Some(&lin), 5, 11, 1) - 0.5).abs() < 1e-12);
    }

    /// MST-Distill §1.6 item 5: the (w_kl, w_lb) in use during 0-based epochs 1, 11, 21 and 31.
    #[test]
    fn mst_distill_weight_schedule() {
        let kl = WeightSchedule::DecayAfter { every: 30, factor: 0.5 };
        let lb = WeightSchedule::DecayAfter { every: 10, factor: 0.9 };
        // `epoch` is counted from 1 here: 0-based epoch e is e + 1.
        let at = |e: usize| (weight_factor(Some(&kl), 0, 1, e + 1), weight_factor(Some(&lb), 0, 1, e + 1));
        assert_eq!(at(0), (1.0, 1.0));
        for (e, (wkl, wlb)) in [(1, (0.5, 0.9)), (11, (0.5, 0.81)), (21, (0.5, 0.729)), (31, (0.25, 0.6561))] {
            let (a, b) = at(e);
            assert!((a - wkl).abs() < 1e-12 && (b - wlb).abs() < 1e-12, "epoch {e}: ({a}, {b})");
        }
        assert!((at(30).0 - 0.5).abs() < 1e-12 && (at(99).0 - 0.0625).abs() < 1e-12);
    }
}
