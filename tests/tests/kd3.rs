//! KD³'s pieces (methods spec §4.4 items 1 and 4): MixDistribution gives each (sample, channel)
//! the mixed spatial moments and is the identity at λ ≡ 1 or in evaluation; InfoNCE is at its
//! formula's minimum when the perturbed embeddings equal the clean ones and are orthogonal.
use candle_core::{DType, Device, Tensor};
use retort::{Host, Inputs, Library, LossInstance, ModelInstance};
use retort_e2e::plugin;

fn feature_map() -> Tensor {
    let v: Vec<f32> = (0..4 * 3 * 5 * 5).map(|i| ((i * 37 % 41) as f32) / 7.0 + (i / 75) as f32).collect();
    Tensor::from_vec(v, (4, 3, 5, 5), &Device::Cpu).unwrap()
}

fn mixdistribution(host: &Host, cfg: &str) -> ModelInstance {
    let lib = Library::load(&plugin("retort-model-mixdistribution")).unwrap();
    ModelInstance::new(host, &lib, "mixdistribution", "mix", cfg).unwrap()
}

/// Per (sample, channel): spatial mean and biased std (+ε in the variance).
fn moments(t: &Tensor) -> Vec<(f64, f64)> {
    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v.chunks(25)
        .map(|c| {
            let m = c.iter().map(|&x| x as f64).sum::<f64>() / 25.0;
            let var = c.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / 25.0;
            (m, (var + 1e-6).sqrt())
        })
        .collect()
}

#[test]
fn mixdistribution_gives_each_channel_the_mixed_moments() {
    let host = Host::cpu(9);
    let f = feature_map();
    let train = |m: &mut ModelInstance| m.forward(&Inputs::new().tensor("input", &f).scalar("train", 1.0)).unwrap();
    let mut m = mixdistribution(&host, "{}");
    let out = train(&mut m);
    let lambda = host.taps.get("mix", "lambda").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let perm = host.taps.get("mix", "perm").unwrap().to_vec1::<u32>().unwrap();
    let (src, got) = (moments(&f), moments(&out));
    for b in 0..4 {
        let (l, p) = (lambda[b] as f64, perm[b] as usize);
        for c in 0..3 {
            let (mu, sd) = (src[b * 3 + c], src[p * 3 + c]);
            let want_mean = l * mu.0 + (1.0 - l) * sd.0;
            let want_std = l * mu.1 + (1.0 - l) * sd.1;
            let (gm, gs) = got[b * 3 + c];
            assert!((gm - want_mean).abs() < 1e-4, "mean ({b}, {c}): {gm} vs {want_mean}");
            assert!((gs - want_std).abs() < 1e-3 * (1.0 + want_std), "std ({b}, {c}): {gs} vs {want_std}");
        }
    }
    // λ ≡ 1, or evaluation mode: the identity.
    let mut one = mixdistribution(&host, r#"{"lambda": 1.0}"#);
    let same = train(&mut one);
    let d = (same - &f).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-4, "λ = 1: {d}");
    let eval = m.forward(&Inputs::new().tensor("input", &f).scalar("train", 0.0)).unwrap();
    let d = (eval - &f).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(d, 0.0, "evaluation");
}

#[test]
fn info_nce_is_minimal_for_equal_orthogonal_embeddings() {
    let host = Host::cpu(1);
    let lib = Library::load(&plugin("retort-loss-kd3")).unwrap();
    let tau = 0.2f64;
    let mut l = LossInstance::new(&host, &lib, "info-nce", "nce", &format!(r#"{{"temperature": {tau}}}"#)).unwrap();
    let b = 4;
    let eye: Vec<f32> = (0..b * 6).map(|i| if i % 6 == i / 6 { 2.0 } else { 0.0 }).collect();
    let v = Tensor::from_vec(eye, (b, 6), &Device::Cpu).unwrap();
    let value = |l: &mut LossInstance, p: &Tensor| {
        l.loss(&Inputs::new().tensor("anchor", &v).tensor("positive", p))
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let best = value(&mut l, &v);
    let e = (1.0 / tau).exp();
    let want = -(e / (e + (b as f64 - 1.0))).ln();
    assert!((best - want).abs() < 1e-5, "{best} vs {want}");
    let noisy = (&v + retort_e2e::seeded_normal(&[b, 6], 0.7, 7)).unwrap();
    assert!(value(&mut l, &noisy) > best, "any other positive scores worse");
}

/// A stage `variants` pass: the CNN student runs a second time with MixDistribution rewriting its
/// first block, its taps filed as `s_mix.<tap>`, and InfoNCE aligns the two passes' features.
#[test]
fn a_variant_pass_feeds_instance_alignment() {
    use retort_e2e::run::{fresh_dir, mnist_run, report, retort, train_records};
    let tmp = fresh_dir("kd3-variant");
    let text = format!(
        r#"{head}
[models.s]
plugin = "cnn"
params = {{ channels = [4, 8], hidden = 16 }}

[models.mixd]
plugin = "mixdistribution"

[logging]
every_steps = 1

[[stages]]
name = "s"
train = "s"
epochs = 1
subset = 300
variants = [{{ name = "s_mix", model = "s", masks = [{{ tap = "conv1", with = "mixd" }}] }}]
losses = [
  {{ plugin = "cross-entropy" }},
  {{ plugin = "info-nce", params = {{ projection = 8 }}, inputs = {{ anchor = "s.fc", positive = "s_mix.fc" }} }},
]
"#,
        head = mnist_run(&tmp, "variant", 5)
    );
    let cfg = tmp.join("variant.toml");
    std::fs::write(&cfg, text).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let run = tmp.join("variant");
    let nce: Vec<f64> = train_records(&run).iter().map(|r| r["terms"]["info-nce"].as_f64().unwrap()).collect();
    assert_eq!(nce.len(), 6);
    // Batches of 50: the minimum −log(e^{1/τ}/(e^{1/τ} + 49)) is far below chance level log 50.
    assert!(nce.iter().all(|v| v.is_finite() && *v > 0.0), "{nce:?}");
    assert!(nce.last().unwrap() < nce.first().unwrap(), "alignment improves: {nce:?}");
    assert!(report(&run)["models"]["s"]["accuracy"].as_f64().is_some());
}

fn selector(host: &Host, cfg: &str) -> retort::RouterInstance {
    let lib = Library::load(&plugin("retort-router-basic")).unwrap();
    retort::RouterInstance::new(host, &lib, "selector", "sel", cfg).unwrap()
}

/// §4.4 item 2: the kept set, pseudo-labels and weights follow `p_c = (1−η)p_T + ηp_S`,
/// `keep ⇔ max p_c ≥ τ_sel`, exactly, at every η of the ramp; here the student is sure where the
/// teacher is not, so the kept set grows as η rises.
#[test]
fn the_selector_keeps_pseudo_labels_and_weighs_by_the_combined_prediction() {
    let host = Host::cpu(2);
    // Teacher: sure of class 0 on samples 0–1, unsure on 2–5. Student: agrees on 0–1, sure of class 2 on 2–5.
    let t: Vec<f32> = (0..6).flat_map(|b| if b < 2 { [6.0f32, 0.0, 0.0] } else { [0.4, 0.0, 0.3] }).collect();
    let s: Vec<f32> =
        (0..6).flat_map(|b| if b < 2 { [6.0f32, 0.0, 0.0] } else { [0.0, 0.0, 5.0 + b as f32] }).collect();
    let teachers = Tensor::from_vec(t.clone(), (1, 6, 3), &Device::Cpu).unwrap();
    let student = Tensor::from_vec(s.clone(), (6, 3), &Device::Cpu).unwrap();
    let cfg = r#"{"tau_sel": 0.6, "eta_start": 0.0, "eta_end": 0.8, "ramp_epochs": 4}"#;
    let mut sel = selector(&host, cfg);
    let softmax = |r: &[f32]| {
        let m = r.iter().copied().fold(f32::MIN, f32::max);
        let e: Vec<f64> = r.iter().map(|&v| ((v - m) as f64).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|v| v / z).collect::<Vec<f64>>()
    };
    let mut kept_before = 0;
    for epoch in 1..=6 {
        let eta = (0.8 * (epoch as f64 - 1.0) / 4.0).min(0.8);
        let route = sel
            .route(
                &Inputs::new().tensor("teachers", &teachers).tensor("student", &student).scalar("epoch", epoch as f64),
            )
            .unwrap();
        assert_eq!(route.dims(), [6, 1]);
        let tap = |n: &str| host.taps.get("sel", n).unwrap();
        let (keep, labels, weight) = (
            tap("keep").to_vec1::<f32>().unwrap(),
            tap("pseudo_labels").to_vec1::<u32>().unwrap(),
            tap("weight").to_vec1::<f32>().unwrap(),
        );
        for b in 0..6 {
            let (pt, ps) = (softmax(&t[b * 3..b * 3 + 3]), softmax(&s[b * 3..b * 3 + 3]));
            let pc: Vec<f64> = (0..3).map(|c| (1.0 - eta) * pt[c] + eta * ps[c]).collect();
            let (arg, max) = pc.iter().enumerate().fold((0, 0.0), |a, (c, &v)| if v > a.1 { (c, v) } else { a });
            let k = max >= 0.6;
            assert_eq!(keep[b] == 1.0, k, "epoch {epoch}, sample {b}: max p_c {max}");
            assert_eq!(labels[b] as usize, arg, "epoch {epoch}, sample {b}");
            assert!((weight[b] as f64 - if k { max } else { 0.0 }).abs() < 1e-5);
        }
        let kept = keep.iter().filter(|&&k| k == 1.0).count();
        assert!(kept >= kept_before, "the kept set grows as η ramps: {kept_before} → {kept}");
        kept_before = kept;
    }
    assert_eq!(kept_before, 6, "at η = 0.8 the student's sure samples are kept too");
}

/// Through the trainer: a selector that keeps nothing zeroes every weighted term exactly.
#[test]
fn a_selector_that_keeps_nothing_zeroes_the_terms() {
    use retort_e2e::run::{fresh_dir, retort, train_records, two_teachers_config};
    let tmp = fresh_dir("kd3-selector");
    for (name, tau) in [("none", 2.0), ("all", 0.0)] {
        let rest = format!(
            "[routers.sel]\nplugin = \"selector\"\nparams = {{ tau_sel = {tau} }}\n\n[logging]\nevery_steps = 1\n\n\
             [[stages]]\nname = \"student\"\ntrain = \"student\"\nteacher = \"t1\"\nteachers = [\"t1\"]\nrouter = \"sel\"\n\
             epochs = 1\nsubset = 200\nlosses = [{{ plugin = \"cross-entropy\" }}, {{ plugin = \"hinton-kd\" }}]\n"
        );
        let cfg = tmp.join(format!("{name}.toml"));
        std::fs::write(&cfg, two_teachers_config(&tmp, name, 3, &rest)).unwrap();
        let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
        assert!(ok, "{out}\n{err}");
        let student: Vec<f64> = train_records(&tmp.join(name))
            .iter()
            .filter(|r| r["stage"] == "student")
            .map(|r| r["loss"].as_f64().unwrap())
            .collect();
        assert!(!student.is_empty());
        if name == "none" {
            assert!(student.iter().all(|&l| l == 0.0), "{student:?}");
        } else {
            assert!(student.iter().all(|&l| l > 0.0), "{student:?}");
        }
    }
}
