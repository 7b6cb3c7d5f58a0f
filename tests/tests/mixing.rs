//! Batch mixing for KD (methods spec §3.7): MIXSTD's scale invariance, PMU's unmixed fraction in
//! both sampling modes, conserved label mass and CutMix's recomputed λ, and a teacher that sees the
//! mixed input (`forward_mixed`) or the clean one with its outputs mixed (`mix_outputs`).
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use retort::{AugmenterInstance, Host, Inputs, Library, LossInstance};
use retort_e2e::{
    plugin,
    run::{fresh_dir, mnist_run, retort, train_records},
};

fn augmenter(host: &Host, name: &str, cfg: &str) -> AugmenterInstance {
    let lib = Library::load(&plugin("retort-augmenter-mix")).unwrap();
    AugmenterInstance::new(host, &lib, name, "aug", cfg).unwrap()
}

/// A batch of `n` distinct pseudo-random 1×8×8 images with labels 0..9, and its pixels.
fn batch(n: usize, seed: u64) -> (Inputs, Vec<f32>) {
    let v: Vec<f32> = (0..n * 64).map(|i| (((i as u64 * 2654435761 + seed) % 1009) as f32) / 1009.0).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let ids: Vec<u32> = (0..n as u32).map(|i| 1000 + i).collect();
    let inputs = Inputs::new()
        .tensor("input", &Tensor::from_vec(v.clone(), (n, 1, 8, 8), &Device::Cpu).unwrap())
        .tensor("labels", &Tensor::from_vec(labels, n, &Device::Cpu).unwrap())
        .tensor("ids", &Tensor::from_vec(ids, n, &Device::Cpu).unwrap());
    (inputs, v)
}

fn outputs(a: &mut AugmenterInstance, inputs: &Inputs) -> HashMap<String, Tensor> {
    a.augment(inputs).unwrap().into_iter().collect()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn mixstd_is_invariant_to_the_scale_of_either_networks_logits() {
    let host = Host::cpu(0);
    let lib = Library::load(&plugin("retort-loss-methods")).unwrap();
    let mut l = LossInstance::new(&host, &lib, "mixstd", "m", "{}").unwrap();
    let z = |s: u64| {
        let v: Vec<f32> = (0..40).map(|i| (((i * 7 + s * 11) % 13) as f32 - 6.0) / 2.0).collect();
        Tensor::from_vec(v, (4, 10), &Device::Cpu).unwrap()
    };
    let labels = Tensor::new(&[1u32, 4, 7, 9], &Device::Cpu).unwrap();
    let mut value = |cs: f64, ct: f64| {
        let i = Inputs::new()
            .tensor("student", &z(1).affine(cs, 0.0).unwrap())
            .tensor("teacher", &z(2).affine(ct, 0.0).unwrap())
            .tensor("labels", &labels);
        l.loss(&i).unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    };
    let base = value(1.0, 1.0);
    for (cs, ct) in [(3.0, 1.0), (1.0, 0.2), (7.5, 40.0)] {
        assert!((value(cs, ct) - base).abs() < 1e-5, "scales ({cs}, {ct})");
    }
}

#[test]
fn pmu_leaves_the_codes_fraction_unmixed_or_exactly_p_of_the_batch() {
    let host = Host::cpu(7);
    let b = 64;
    for (sampling, want, tol) in
        [("with_replacement", 1.0 - (63.0f64 / 64.0).powi(57), 0.015f64), ("exact_fraction", 57.0 / 64.0, 0.0)]
    {
        let mut a = augmenter(&host, "pmu", &format!(r#"{{"partmixup": 0.9, "sampling": "{sampling}"}}"#));
        let draws = 300;
        let mut total = 0.0;
        for k in 0..draws {
            let out = outputs(&mut a, &batch(b, k).0);
            let unmixed = f32s(&out["mix_lambda"]).iter().filter(|&&l| l == 1.0).count() as f64 / b as f64;
            if tol == 0.0 {
                assert_eq!(unmixed, want, "{sampling}: every batch");
            }
            total += unmixed;
        }
        let mean = total / draws as f64;
        assert!((mean - want).abs() <= tol.max(1e-12), "{sampling}: unmixed {mean} vs {want}");
    }
}

#[test]
fn label_mass_is_conserved_and_cutmix_lambda_is_the_pasted_area() {
    let host = Host::cpu(3);
    for name in ["mixup", "cutmix", "pmu", "fmu"] {
        let mut a = augmenter(&host, name, "{}");
        for k in 0..20 {
            let (inputs, x) = batch(16, k);
            let out = outputs(&mut a, &inputs);
            let t = out["targets"].to_vec2::<f32>().unwrap();
            assert!(t.iter().all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-6), "{name}: targets sum to 1");
            // The mixed input is λ·x[a] + (1−λ)·x[b] where it is a blend.
            let (ia, ib, lam) = (
                out["mix_a"].to_vec1::<u32>().unwrap(),
                out["mix_b"].to_vec1::<u32>().unwrap(),
                f32s(&out["mix_lambda"]),
            );
            let mixed = f32s(&out["input"]);
            for i in 0..16 {
                let (xa, xb) = (&x[ia[i] as usize * 64..][..64], &x[ib[i] as usize * 64..][..64]);
                let got = &mixed[i * 64..][..64];
                if name == "cutmix" {
                    // Pixels from the partner: exactly 1 − λ of the image.
                    let pasted = got.iter().zip(xa).filter(|(g, a)| g != a).count();
                    let differ = xa.iter().zip(xb).all(|(p, q)| p != q);
                    if differ {
                        assert!(
                            (pasted as f32 / 64.0 - (1.0 - lam[i])).abs() < 1e-6,
                            "cutmix sample {i}: {pasted} vs λ {}",
                            lam[i]
                        );
                    }
                } else {
                    for p in 0..64 {
                        let want = lam[i] * xa[p] + (1.0 - lam[i]) * xb[p];
                        assert!((got[p] - want).abs() < 1e-5, "{name}: sample {i} pixel {p}");
                    }
                }
            }
        }
    }
}

/// §3.7 item 4, with a spy: teacher and student are the same network (one checkpoint, lr 0), so
/// `logit-mse` between them is exactly 0 at every step iff the teacher saw the student's (mixed)
/// input; with `mix_outputs` it saw the clean batch and the term is positive.
#[test]
fn the_teacher_sees_the_mixed_input_unless_told_to_mix_its_outputs() {
    let tmp = fresh_dir("mix-spy");
    let first = format!(
        "{}\n[models.t]\nplugin = \"mlp\"\nparams = {{ hidden = [16] }}\n\n[[stages]]\nname = \"t\"\ntrain = \"t\"\n\
         epochs = 1\nsubset = 200\nlosses = [{{ plugin = \"cross-entropy\" }}]\n",
        mnist_run(&tmp, "net", 4)
    );
    let cfg = tmp.join("net.toml");
    std::fs::write(&cfg, first).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let weights = tmp.join("net/models/t.safetensors");
    for (mixer, target, zero) in [
        ("mixup", "forward_mixed", true),
        ("pmu", "forward_mixed", true),
        ("cutmix", "forward_mixed", true),
        ("mixup", "mix_outputs", false),
    ] {
        let name = format!("{mixer}-{target}");
        let text = format!(
            r#"{head}
[models.t]
plugin = "mlp"
params = {{ hidden = [16] }}
checkpoint = "{w}"

[models.s]
plugin = "mlp"
params = {{ hidden = [16] }}
checkpoint = "{w}"

[augmenters.mix]
plugin = "{mixer}"

[optimizer]
kind = "adamw"
lr = 0.0

[[stages]]
name = "spy"
train = "s"
teacher = "t"
augmenters = ["mix"]
teacher_target = "{target}"
epochs = 1
subset = 200
losses = [{{ plugin = "logit-mse" }}]

[logging]
every_steps = 1
"#,
            head = mnist_run(&tmp, &name, 4),
            w = weights.display(),
        );
        let cfg = tmp.join(format!("{name}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
        assert!(ok, "{name}: {out}\n{err}");
        let values: Vec<f64> =
            train_records(&tmp.join(&name)).iter().map(|r| r["terms"]["logit-mse"].as_f64().unwrap()).collect();
        assert_eq!(values.len(), 4, "{name}");
        if zero {
            assert!(values.iter().all(|&v| v == 0.0), "{name}: the teacher saw what the student saw: {values:?}");
        } else {
            assert!(values.iter().all(|&v| v > 1e-6), "{name}: the teacher saw the clean batch: {values:?}");
        }
    }
}
