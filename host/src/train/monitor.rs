//! The teacher-hacking detector (Tiapkin et al. 2025; methods spec §7.5): the proxy distance
//! P(t) between teacher and student should fall like a power law; a proxy that departs upward
//! from the law fitted on its first evaluations, or a golden distance G(t) that rises while P
//! falls, is what teacher hacking looks like. Thresholds are knobs (`[monitor]`); the paper gives
//! none.
use serde::{Deserialize, Serialize};

/// One evaluation as the monitor saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reading {
    /// Steps of distillation so far (the stage's step).
    pub step: u64,
    pub proxy: f64,
    pub golden: Option<f64>,
    /// log P minus the fitted power law (None until the fit exists).
    pub residual: Option<f64>,
    /// d log P / d log t between this evaluation and the previous one.
    pub slope: Option<f64>,
    /// Why this evaluation completes an alert, if it does.
    pub alert: Option<String>,
}

/// The detector's state: the readings so far and the fit.
#[derive(Debug, Clone)]
pub struct Detector {
    fit_evals: usize,
    tolerance: f64,
    patience: usize,
    readings: Vec<Reading>,
    fit: Option<(f64, f64)>,
    above: usize,
    diverging: usize,
}

/// Least squares of `y = a + c·x`; returns (a, c).
fn line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if points.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let c = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / sxx;
    Some((my - c * mx, c))
}

impl Detector {
    /// A detector with the `[monitor]` knobs.
    pub fn new(fit_evals: usize, tolerance: f64, patience: usize) -> Detector {
        Detector {
            fit_evals: fit_evals.max(2),
            tolerance,
            patience: patience.max(1),
            readings: Vec::new(),
            fit: None,
            above: 0,
            diverging: 0,
        }
    }

    /// Adds the evaluation at `step` (> 0) and says what it shows.
    pub fn push(&mut self, step: u64, proxy: f64, golden: Option<f64>) -> Reading {
        let (lt, lp) = ((step.max(1) as f64).ln(), proxy.max(1e-12).ln());
        let prev = self.readings.last().cloned();
        let slope = prev.as_ref().and_then(|p| {
            let dt = lt - (p.step.max(1) as f64).ln();
            (dt > 0.0).then(|| (lp - p.proxy.max(1e-12).ln()) / dt)
        });
        let residual = self.fit.map(|(a, c)| lp - (a + c * lt));
        let mut alert = None;
        if let Some(r) = residual {
            self.above = if r > self.tolerance { self.above + 1 } else { 0 };
            if self.above == self.patience {
                alert = Some(format!(
                    "the proxy KL {proxy:.4} sits {r:.3} above its power-law trend (log P) for {} evaluations",
                    self.patience
                ));
            }
        }
        if let (Some(g), Some(p)) = (golden, prev.as_ref()) {
            let worse = p.golden.is_some_and(|pg| g > pg) && proxy < p.proxy;
            self.diverging = if worse { self.diverging + 1 } else { 0 };
            if self.diverging == self.patience && alert.is_none() {
                alert = Some(format!(
                    "the golden KL rose to {g:.4} while the proxy KL fell to {proxy:.4} for {} evaluations",
                    self.patience
                ));
            }
        }
        let reading = Reading { step, proxy, golden, residual, slope, alert };
        self.readings.push(reading.clone());
        if self.fit.is_none() && self.readings.len() == self.fit_evals {
            let pts: Vec<(f64, f64)> =
                self.readings.iter().map(|r| ((r.step.max(1) as f64).ln(), r.proxy.max(1e-12).ln())).collect();
            self.fit = line(&pts);
        }
        reading
    }

    /// The fitted `(a, b)` of `log P = a − b·log t`, once `fit_evals` readings exist.
    pub fn power_law(&self) -> Option<(f64, f64)> {
        self.fit.map(|(a, c)| (a, -c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pure_power_law_never_alerts_and_its_exponent_is_recovered() {
        let mut d = Detector::new(4, 0.05, 2);
        for k in 1..40u64 {
            let t = 50 * k;
            let r = d.push(t, 3.0 * (t as f64).powf(-0.7), None);
            assert!(r.alert.is_none(), "step {t}");
            if let Some(res) = r.residual {
                assert!(res.abs() < 1e-9);
            }
            if let Some(s) = r.slope {
                assert!((s + 0.7).abs() < 1e-9);
            }
        }
        let (_, b) = d.power_law().unwrap();
        assert!((b - 0.7).abs() < 1e-9);
    }

    #[test]
    fn a_curve_that_leaves_the_law_alerts_within_patience_evaluations() {
        let mut d = Detector::new(4, 0.05, 3);
        let t_c = 500;
        let mut first = None;
        for k in 1..30u64 {
            let t = 50 * k;
            // After t_c the proxy flattens and rises: P = law(t_c)·(t/t_c)^0.2.
            let law = |t: u64| 2.0 * (t as f64).powf(-0.5);
            let p = if t <= t_c { law(t) } else { law(t_c) * (t as f64 / t_c as f64).powf(0.2) };
            if d.push(t, p, None).alert.is_some() && first.is_none() {
                first = Some(k);
            }
        }
        let k = first.expect("an alert");
        // The residual passes 0.05 at the first evaluation after t_c (k = 11) and must stay above
        // it for 3 evaluations.
        assert!((11..=13).contains(&k), "alert at evaluation {k}");
    }

    #[test]
    fn golden_rising_while_proxy_falls_alerts() {
        let mut d = Detector::new(3, 10.0, 2);
        let mut alerts = Vec::new();
        for k in 1..10u64 {
            let p = 1.0 / k as f64;
            let g = if k < 5 { 2.0 / k as f64 } else { 0.4 + 0.05 * k as f64 };
            if let Some(a) = d.push(k * 10, p, Some(g)).alert {
                alerts.push((k, a));
            }
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].0, 6, "G rises at evaluations 5 and 6");
        assert!(alerts[0].1.contains("golden KL rose"));
    }
}
