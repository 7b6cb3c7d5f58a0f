//! HARD (methods spec §2.5 items 1–3): an augmenter step increases teacher–student disagreement
//! with both networks untouched; a large teacher-consistency weight keeps θ at the identity; the
//! augmenter's gradient reaches its parameters through both networks.
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use retort::{backend::backward, AugmenterInstance, Host, Inputs, Library, LossInstance, ModelInstance};
use retort_e2e::plugin;

fn lib(name: &str) -> Arc<Library> {
    Library::load(&plugin(name)).unwrap()
}

/// Eight 8×8 images: a bright blob at a different place in each, on a dark background.
fn images() -> Tensor {
    let mut v = Vec::new();
    for b in 0..8 {
        let (cy, cx) = (2.0 + (b % 4) as f32, 2.0 + (b / 2) as f32 * 0.8);
        for r in 0..8 {
            for c in 0..8 {
                let d2 = (r as f32 - cy).powi(2) + (c as f32 - cx).powi(2);
                v.push(2.5 * (-d2 / 3.0).exp() - 0.4);
            }
        }
    }
    Tensor::from_vec(v, (8, 1, 8, 8), &Device::Cpu).unwrap()
}

struct Setup {
    host: Host,
    teacher: ModelInstance,
    student: ModelInstance,
    aug: AugmenterInstance,
    objective: LossInstance,
}

fn setup(objective: &str) -> Setup {
    let host = Host::cpu(11);
    let mlp = lib("retort-model-mlp");
    let teacher = ModelInstance::new(&host, &mlp, "mlp", "teacher", r#"{"input_dim": 64, "hidden": [32]}"#).unwrap();
    let student = ModelInstance::new(&host, &mlp, "mlp", "student", r#"{"input_dim": 64, "hidden": [12]}"#).unwrap();
    let hard = lib("retort-augmenter-hard");
    let cfg = r#"{"aug_fraction": 0.5, "sigma_init": 0.0, "learn_sigma": false}"#;
    let aug = AugmenterInstance::new(&host, &hard, "hard-affine", "aug", cfg).unwrap();
    let objective = LossInstance::new(&host, &hard, "hard-adversarial", "adv", objective).unwrap();
    Setup { host, teacher, student, aug, objective }
}

impl Setup {
    /// The objective on the augmented batch; `detach` cuts the teacher (0) or student (1) path.
    fn objective(&mut self, detach: Option<usize>) -> Tensor {
        self.host.taps.clear();
        let out: std::collections::HashMap<String, Tensor> = self
            .aug
            .augment(
                &Inputs::new()
                    .tensor("input", &images())
                    .tensor("labels", &Tensor::new(&[0u32, 1, 2, 3, 4, 5, 6, 7], &Device::Cpu).unwrap()),
            )
            .unwrap()
            .into_iter()
            .collect();
        let x = &out["input"];
        let run = |m: &mut ModelInstance| m.forward(&Inputs::new().tensor("input", x).scalar("train", 0.0)).unwrap();
        let (mut zt, mut zs) = (run(&mut self.teacher), run(&mut self.student));
        match detach {
            Some(0) => zt = zt.detach(),
            Some(_) => zs = zs.detach(),
            None => {}
        }
        let inputs = Inputs::new()
            .tensor("teacher", &zt)
            .tensor("student", &zs)
            .tensor("labels", &out["labels"])
            .tensor("source", &self.host.taps.get("aug", "source").unwrap())
            .tensor("augmented", &self.host.taps.get("aug", "augmented").unwrap())
            .tensor("theta", &self.host.taps.get("aug", "theta").unwrap());
        self.objective.loss(&inputs).unwrap()
    }

    /// The augmenter's gradient (μ), from the objective with `detach`.
    fn grad(&mut self, detach: Option<usize>) -> Vec<f32> {
        let g = backward(&self.objective(detach)).unwrap();
        let p = self.host.params.params(Some("aug"));
        let mu = p.iter().find(|p| p.name == "mu.bias").unwrap();
        g.get(mu.var.as_tensor()).map(|t| t.to_vec1::<f32>().unwrap()).unwrap_or_else(|| vec![0.0; 6])
    }

    /// One SGD step of the augmenter on its objective.
    fn step(&mut self, lr: f64) {
        let g = backward(&self.objective(None)).unwrap();
        for p in self.host.params.params(Some("aug")) {
            if let Some(gp) = g.get(p.var.as_tensor()) {
                p.var.set(&(p.var.as_tensor() - gp.affine(lr, 0.0).unwrap()).unwrap()).unwrap();
            }
        }
    }

    fn theta_offset(&self) -> f64 {
        let p = self.host.params.params(Some("aug"));
        let mu = p.iter().find(|p| p.name == "mu.bias").unwrap();
        mu.var
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
            .sqrt()
    }

    fn weights(&self, group: &str) -> Vec<Vec<u32>> {
        self.host
            .params
            .params(Some(group))
            .iter()
            .map(|p| {
                p.var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
            })
            .collect()
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn an_augmenter_step_increases_disagreement_and_leaves_both_networks_alone() {
    let mut s = setup(r#"{"lambda_t": 0.0}"#);
    // With λ_T = 0 the objective is −τ²·D: disagreement D = −objective/τ².
    let before = -scalar(&s.objective(None));
    let (t0, s0) = (s.weights("teacher"), s.weights("student"));
    s.step(0.05);
    let after = -scalar(&s.objective(None));
    assert!(after > before, "disagreement {before} → {after}");
    assert!(s.theta_offset() > 0.0, "θ moved");
    assert_eq!(s.weights("teacher"), t0);
    assert_eq!(s.weights("student"), s0);
}

#[test]
fn a_large_teacher_consistency_weight_keeps_theta_at_the_identity() {
    // From a displaced θ: a large λ_T pulls x̂ back towards x (θ → θ₀); λ_T = 0 does not.
    let offset = |objective: &str| {
        let mut s = setup(objective);
        let start = Tensor::new(&[0.15f32, 0.0, 0.35, 0.0, 0.15, -0.3], &Device::Cpu).unwrap();
        s.objective(None); // the augmenter makes its parameters at its first call
        s.host.params.params(Some("aug")).iter().for_each(|p| {
            if p.name == "mu.bias" {
                p.var.set(&start).unwrap()
            }
        });
        let before = s.theta_offset();
        for _ in 0..30 {
            s.step(0.02);
        }
        (before, s.theta_offset())
    };
    let (start, free) = offset(r#"{"lambda_t": 0.0}"#);
    let (_, held) = offset(r#"{"lambda_t": 300.0}"#);
    assert!(free > 0.9 * start, "λ_T = 0 keeps θ away: {start} → {free}");
    assert!(held < 0.5 * start, "λ_T = 300 pulls θ back: {start} → {held}");
}

#[test]
fn the_augmenters_gradient_comes_through_both_networks() {
    let mut s = setup(r#"{"lambda_t": 0.0}"#);
    let norm = |g: &[f32]| g.iter().map(|v| v.abs() as f64).sum::<f64>();
    let (both, student_only, teacher_only) = (s.grad(None), s.grad(Some(0)), s.grad(Some(1)));
    assert!(norm(&student_only) > 0.0, "through the student");
    assert!(norm(&teacher_only) > 0.0, "through the teacher");
    for k in 0..6 {
        assert!(
            (both[k] - (student_only[k] + teacher_only[k])).abs() < 1e-4 * (1.0 + both[k].abs()),
            "θ[{k}]: the two paths add up"
        );
    }
}

/// A run `name` in `tmp`: an MLP teacher (stage 1), then an MLP student distilled under a
/// translation-only HARD augmenter trained by its own objective; `stage_extra` goes into the
/// student's stage.
fn hard_config(tmp: &std::path::Path, name: &str, stage_extra: &str) -> String {
    use retort_e2e::run::mnist_run;
    format!(
        r#"{head}
[eval]
shift = 3

[models.teacher]
plugin = "mlp"
params = {{ hidden = [32] }}

[models.student]
plugin = "mlp"
params = {{ hidden = [16] }}

[augmenters.aug]
plugin = "hard-affine"
params = {{ translate_only = true }}

[[stages]]
name = "teacher"
train = "teacher"
epochs = 1
subset = 300
losses = [{{ plugin = "cross-entropy" }}]

[[stages]]
name = "student"
train = "student"
teacher = "teacher"
frozen = ["teacher"]
augmenters = ["aug"]
optimize = ["aug"]
{stage_extra}
epochs = 2
subset = 300
losses = [
  {{ plugin = "hinton-kd" }},
  {{ plugin = "hard-adversarial", on = "aug", inputs = {{ student = "peer.student", source = "aug.source", augmented = "aug.augmented", theta = "aug.theta" }} }},
]
"#,
        head = mnist_run(tmp, name, 2),
    )
}

/// HARD through the trainer: the augmenter's own objective moves its θ (saved with the run), the
/// frozen teacher stays bit-identical, and `[eval] shift` reports errors on a shifted test set.
#[test]
fn a_hard_stage_trains_the_augmenter_and_leaves_the_teacher() {
    use retort_e2e::run::{fresh_dir, report, retort};
    let tmp = fresh_dir("hard-e2e");
    let text = hard_config(&tmp, "hard", "");
    let cfg = tmp.join("hard.toml");
    std::fs::write(&cfg, text).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let run = tmp.join("hard");
    let load = |f: &str| candle_core::safetensors::load(run.join("models").join(f), &Device::Cpu).unwrap();
    let mu = load("aug.safetensors")["mu.bias"].to_vec1::<f32>().unwrap();
    assert!(mu[2] != 0.0 && mu[5] != 0.0 && mu[0] == 0.0, "θ's translation learned, the rest held: {mu:?}");
    // The teacher's weights at the end are those its own stage saved.
    let ck = retort_e2e::run::checkpoint_weights(&run);
    for (name, t) in load("teacher.safetensors") {
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(bits(&t), bits(&ck[&format!("teacher.{name}")]), "teacher.{name}");
    }
    let r = report(&run);
    for slot in ["teacher", "student"] {
        let shifted = r["models"][slot]["shifted_errors"].as_u64().unwrap();
        assert!(shifted >= r["models"][slot]["test_errors"].as_u64().unwrap() / 2, "{slot}: shifted errors {shifted}");
    }
}

/// `optimizers = { aug = … }`: the augmenter's objective at its own learning rate (here 0: θ stays
/// at the identity while the student still trains); an unknown slot there is a config error.
#[test]
fn an_objective_can_have_its_own_learning_rate() {
    use retort_e2e::run::{fresh_dir, mnist_run, retort};
    let tmp = fresh_dir("hard-own-lr");
    let config = |name: &str, key: &str| {
        format!(
            "{head}\n[models.teacher]\nplugin = \"mlp\"\nparams = {{ hidden = [32] }}\n\n[models.student]\nplugin = \"mlp\"\n\
             params = {{ hidden = [16] }}\n\n[augmenters.aug]\nplugin = \"hard-affine\"\n\n[[stages]]\nname = \"teacher\"\n\
             train = \"teacher\"\nepochs = 1\nsubset = 200\nlosses = [{{ plugin = \"cross-entropy\" }}]\n\n[[stages]]\n\
             name = \"student\"\ntrain = \"student\"\nteacher = \"teacher\"\nfrozen = [\"teacher\"]\naugmenters = [\"aug\"]\n\
             optimize = [\"aug\"]\noptimizers = {{ {key} = {{ kind = \"adamw\", lr = 0.0 }} }}\nepochs = 1\nsubset = 200\n\
             losses = [{{ plugin = \"hinton-kd\" }}, {{ plugin = \"hard-adversarial\", on = \"aug\", inputs = {{ student = \"peer.student\", \
             source = \"aug.source\", augmented = \"aug.augmented\" }} }}]\n",
            head = mnist_run(&tmp, name, 3)
        )
    };
    let cfg = tmp.join("frozen.toml");
    std::fs::write(&cfg, config("frozen", "aug")).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let models = tmp.join("frozen/models");
    let mu = candle_core::safetensors::load(models.join("aug.safetensors"), &Device::Cpu).unwrap()["mu.bias"]
        .to_vec1::<f32>()
        .unwrap();
    assert!(mu.iter().all(|&v| v == 0.0), "lr 0 keeps θ at the identity: {mu:?}");
    assert!(models.join("student.safetensors").exists());
    std::fs::write(&cfg, config("frozen", "nobody")).unwrap();
    let (ok, _, err) = retort(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("stages[1].optimizers.nobody"), "{err}");
}

/// HARD's alternation (`update_every`): the augmenter's objective is computed and stepped on every
/// third student step only, and a run stopped between its steps resumes to the same weights, bit
/// for bit (each optimizer's step count follows from the stage's).
#[test]
fn an_alternating_augmenter_steps_every_nth_step_and_resumes_exactly() {
    use retort_e2e::run::{fresh_dir, retort, train_records};
    let tmp = fresh_dir("hard-alternate");
    let run = |name: &str, args: &[&str]| {
        let cfg = tmp.join(format!("{name}.toml"));
        let text = hard_config(&tmp, name, "update_every = { aug = 3 }") + "\n[logging]\nevery_steps = 1\n";
        std::fs::write(&cfg, text).unwrap();
        let mut a = vec!["train", cfg.to_str().unwrap()];
        a.extend(args);
        let (ok, out, err) = retort(&a, &[]);
        assert!(ok, "{out}\n{err}");
        tmp.join(name)
    };
    let whole = run("whole", &[]);
    let steps: Vec<(u64, bool)> = train_records(&whole)
        .iter()
        .filter(|r| r["stage"] == "student")
        .map(|r| (r["stage_step"].as_u64().unwrap(), r["terms"].get("hard-adversarial").is_some()))
        .collect();
    assert_eq!(steps.len(), 12);
    for (k, adversarial) in steps {
        assert_eq!(adversarial, (k - 1) % 3 == 0, "student step {k}");
    }
    // 6 teacher steps, then 5 student steps: stopped after the augmenter's second update.
    let cut = run("cut", &["--stop-after", "11"]);
    let (ok, out, err) = retort(&["train", "--resume", cut.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    for f in ["aug.safetensors", "student.safetensors"] {
        let load =
            |r: &std::path::Path| candle_core::safetensors::load(r.join("models").join(f), &Device::Cpu).unwrap();
        let (a, b) = (load(&whole), load(&cut));
        for (name, t) in &a {
            let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(bits(t), bits(&b[name]), "{f}: {name}");
        }
    }
}
