//! The evaluations a stage logs: each trained slot on the evaluation split (by epochs, and by
//! steps with `eval.every_steps`), into metrics.jsonl and TensorBoard, and the teacher-hacking
//! monitor's reading when `[monitor]` watches the slot.
use serde_json::json;

use super::{monitor::Detector, TrainError, Trainer};
use crate::config::StageSection;

type Result<T> = std::result::Result<T, TrainError>;

impl Trainer {
    /// Evaluates the stage's trained slots; `mid_epoch` marks a by-steps evaluation (its record
    /// survives a resume from a checkpoint of the same step, which will not repeat it).
    pub(super) fn log_evaluations(&mut self, st: &StageSection, epoch: usize, mid_epoch: bool) -> Result<()> {
        for slot in st.train.all() {
            let (split, set) = self.eval_split.clone();
            let m = self.evaluate(slot, split, &set)?;
            let mut rec = serde_json::to_value(&m).map_err(|e| TrainError::Other(e.to_string()))?;
            if let Some(o) = rec.as_object_mut() {
                o.insert("type".into(), json!("eval"));
                o.insert("stage".into(), json!(st.name));
                o.insert("model".into(), json!(slot));
                o.insert("split".into(), json!(format!("{split:?}").to_lowercase()));
                o.insert("epoch".into(), json!(epoch + 1));
                o.insert("step".into(), json!(self.state.global_step));
                if mid_epoch {
                    o.insert("mid_epoch".into(), json!(true));
                }
                if let Some(p) = self.provenance().as_object() {
                    o.extend(p.clone());
                }
            }
            self.metrics.write(&rec).map_err(|error| TrainError::Io { context: "metrics.jsonl".into(), error })?;
            tracing::info!(stage = %st.name, slot, epoch = epoch + 1, errors = m.test_errors, "eval");
            let step = self.state.global_step;
            self.tensorboard(|tb| {
                let pairs = [
                    ("errors", Some(m.test_errors as f64)),
                    ("accuracy", Some(m.accuracy)),
                    ("nll", Some(m.nll)),
                    ("ece", Some(m.ece)),
                    ("fidelity", m.fidelity),
                    ("kl_to_teacher", m.kl_to_teacher),
                    ("bits_per_byte", m.bits_per_byte),
                ];
                for (k, v) in pairs.iter().filter_map(|(k, v)| v.map(|v| (k, v))) {
                    tb.scalar(&format!("eval/{slot}/{k}"), step, v)?;
                }
                tb.flush()
            });
            if self.cfg.monitor.as_ref().is_some_and(|mon| mon.student == slot) {
                self.monitor_reading(st, slot, mid_epoch)?;
            }
        }
        Ok(())
    }

    /// The monitor's reading of `slot` now: proxy and golden token KL on the evaluation split,
    /// the power-law residual and slope, and a `teacher_hacking` event when the detector alerts.
    fn monitor_reading(&mut self, st: &StageSection, slot: &str, mid_epoch: bool) -> Result<()> {
        let Some(mon) = self.cfg.monitor.clone() else { return Ok(()) };
        let (_, set) = self.eval_split.clone();
        let distance = |t: &mut Trainer, other: &str| -> Result<Option<f64>> {
            if !t.ready.iter().any(|r| r == other) {
                return Ok(None);
            }
            Ok(t.evaluate_text_against(slot, &set, Some(other.to_string()))?.kl_to_teacher)
        };
        let Some(proxy) = distance(self, &mon.proxy)? else {
            tracing::warn!("monitor: proxy `{}` has no weights yet; no reading", mon.proxy);
            return Ok(());
        };
        let golden = match &mon.golden {
            Some(g) => distance(self, g)?,
            None => None,
        };
        // The power law runs in the steps of distillation: the stage's own step count.
        let (step, t) = (self.state.global_step, self.state.stage_step);
        let detector = self.detector.get_or_insert_with(|| Detector::new(mon.fit_evals, mon.tolerance, mon.patience));
        let r = detector.push(t, proxy, golden);
        let mut rec = serde_json::to_value(&r).map_err(|e| TrainError::Other(e.to_string()))?;
        if let Some(o) = rec.as_object_mut() {
            o.insert("stage_step".into(), json!(t));
            o.insert("step".into(), json!(step));
            o.insert("type".into(), json!("monitor"));
            o.insert("stage".into(), json!(st.name));
            o.insert("model".into(), json!(slot));
            if mid_epoch {
                o.insert("mid_epoch".into(), json!(true));
            }
        }
        self.metrics.write(&rec).map_err(|error| TrainError::Io { context: "metrics.jsonl".into(), error })?;
        self.tensorboard(|tb| {
            tb.scalar(&format!("monitor/{slot}/proxy_kl"), step, proxy)?;
            if let Some(g) = golden {
                tb.scalar(&format!("monitor/{slot}/golden_kl"), step, g)?;
            }
            tb.flush()
        });
        if let Some(why) = r.alert {
            tracing::warn!("teacher hacking at step {step}: {why}");
            self.event("teacher_hacking", slot, None, None, Some(why));
        }
        Ok(())
    }

    /// Rebuilds the detector from the monitor records a resumed run kept.
    pub(super) fn replay_monitor(&mut self, records: &[serde_json::Value]) {
        let Some(mon) = self.cfg.monitor.clone() else { return };
        let mut d = Detector::new(mon.fit_evals, mon.tolerance, mon.patience);
        for r in records.iter().filter(|r| r["type"] == "monitor") {
            if let (Some(step), Some(p)) = (r["stage_step"].as_u64(), r["proxy"].as_f64()) {
                d.push(step, p, r["golden"].as_f64());
            }
        }
        self.detector = Some(d);
    }
}
