//! Augmenter slots: a stage's `augmenters` rewrite the batch before the forwards (`input`) or set
//! per-sample weights the host applies to every term (`sample_weight`).
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use retort::{AugmenterInstance, Host, Inputs, Library};
use retort_e2e::{
    plugin,
    run::{fresh_dir, mnist_run, report, retort, train_records, without_timing},
};

fn augmenter(name: &str, cfg: &str, seed: u64) -> AugmenterInstance {
    let host = Box::leak(Box::new(Host::cpu(seed)));
    let lib = Library::load(&plugin("retort-augmenter-basic")).unwrap();
    AugmenterInstance::new(host, &lib, name, "aug", cfg).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn class_weights_and_gaussian_noise() {
    let x = Tensor::zeros((64, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::new(&[2u32, 0, 1, 2], &Device::Cpu).unwrap();
    let out = augmenter("class-weights", r#"{"weights": [0.5, 1.0, 3.0]}"#, 0)
        .augment(&Inputs::new().tensor("input", &x).tensor("labels", &y))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "sample_weight");
    assert_eq!(out[0].1.to_vec1::<f32>().unwrap(), vec![3.0, 0.5, 1.0, 3.0]);
    let inputs = Inputs::new().tensor("input", &x).tensor("labels", &y);
    assert!(augmenter("gaussian-noise", r#"{"sigma": 0.0}"#, 0).augment(&inputs).unwrap().is_empty());
    let noisy = |seed| {
        let out = augmenter("gaussian-noise", r#"{"sigma": 0.5}"#, seed).augment(&inputs).unwrap();
        assert_eq!(out[0].0, "input");
        out[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let (a, b, c) = (noisy(1), noisy(1), noisy(2));
    assert_eq!(a, b, "seeded");
    assert_ne!(a, c);
    let var = a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / a.len() as f64;
    assert!((var.sqrt() - 0.5).abs() < 0.05, "σ ≈ 0.5, got {}", var.sqrt());
}

fn config(out: &Path, name: &str, augment: &str) -> String {
    format!(
        r#"
{head}

[models.s]
plugin = "mlp"
params = {{ hidden = [32] }}

[augmenters.noise]
plugin = "gaussian-noise"
params = {{ sigma = 0.3 }}

[augmenters.zero]
plugin = "gaussian-noise"
params = {{ sigma = 0.0 }}

[augmenters.ones]
plugin = "class-weights"
params = {{ weights = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0] }}

[[stages]]
name = "s"
train = "s"
epochs = 2
subset = 500
augmenters = [{augment}]
losses = [{{ plugin = "cross-entropy" }}]

[checkpoint]
every_steps = 4

[logging]
every_steps = 2
"#,
        head = mnist_run(out, name, 9)
    )
}

fn train(dir: &Path, name: &str, augment: &str, extra: &[&str]) -> std::path::PathBuf {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, config(dir, name, augment)).unwrap();
    let mut args = vec!["train", cfg.to_str().unwrap()];
    args.extend(extra);
    let (ok, out, err) = retort(&args, &[]);
    assert!(ok, "{out}\n{err}");
    dir.join(name)
}

#[test]
fn augmenters_rewrite_the_batch_and_weight_the_terms() {
    let tmp = fresh_dir("augment");
    let plain = without_timing(report(&train(&tmp, "plain", "", &[])));
    // σ = 0 replaces nothing: the same run bit for bit.
    let mut zero = without_timing(report(&train(&tmp, "zero", "\"zero\"", &[])));
    zero["run"] = plain["run"].clone();
    assert_eq!(zero, plain);
    // Unit class weights go through the per-sample path: the same losses to float precision.
    let ones = train_records(&train(&tmp, "ones", "\"ones\"", &[]));
    let base = train_records(&tmp.join("plain"));
    for (a, b) in ones.iter().zip(&base) {
        let (x, y) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "step {}: {x} vs {y}", a["step"]);
    }
    // Noise changes the run, and a resumed noisy run equals the uninterrupted one (seeded RNG).
    let noisy = without_timing(report(&train(&tmp, "noisy", "\"noise\"", &[])));
    assert_ne!(noisy["models"]["s"]["test_errors"], plain["models"]["s"]["test_errors"]);
    let cut = train(&tmp, "cut", "\"noise\"", &["--stop-after", "7"]);
    let (ok, out, err) = retort(&["train", "--resume", cut.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let mut resumed = without_timing(report(&cut));
    resumed["run"] = noisy["run"].clone();
    assert_eq!(resumed, noisy);
}

#[test]
fn an_unknown_augmenter_is_caught_before_training() {
    let tmp = fresh_dir("augment-bad");
    let cfg = tmp.join("run.toml");
    std::fs::write(&cfg, config(&tmp, "x", "\"nosie\"")).unwrap();
    let (ok, _, err) = retort(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("stages[0].augmenters[0]") && err.contains("nosie"), "{err}");
}

#[test]
fn shift_moves_each_image_by_at_most_j_pixels_and_fills_with_its_minimum() {
    let (n, h, w, j) = (6usize, 7usize, 9usize, 2i64);
    let v: Vec<f32> = (0..n * h * w).map(|i| ((i * 31 % 97) as f32) / 10.0 + 1.0).collect();
    let x = Tensor::from_vec(v.clone(), (n, 1, h, w), &Device::Cpu).unwrap();
    let mut a = augmenter("shift", r#"{"pixels": 2}"#, 5);
    let out = a.augment(&Inputs::new().tensor("input", &x)).unwrap();
    let y = out[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut moved = 0;
    for b in 0..n {
        let img = &v[b * h * w..][..h * w];
        let min = img.iter().copied().fold(f32::MAX, f32::min);
        let got = &y[b * h * w..][..h * w];
        // Exactly one shift (dy, dx) in [−j, j]² explains the output.
        let fits = |dy: i64, dx: i64| {
            (0..h as i64).all(|r| {
                (0..w as i64).all(|c| {
                    let (sr, sc) = (r - dy, c - dx);
                    let want = if sr >= 0 && sr < h as i64 && sc >= 0 && sc < w as i64 {
                        img[(sr * w as i64 + sc) as usize]
                    } else {
                        min
                    };
                    got[(r * w as i64 + c) as usize] == want
                })
            })
        };
        let found: Vec<(i64, i64)> =
            (-j..=j).flat_map(|dy| (-j..=j).map(move |dx| (dy, dx))).filter(|&(dy, dx)| fits(dy, dx)).collect();
        assert_eq!(found.len(), 1, "image {b}: {found:?}");
        moved += usize::from(found[0] != (0, 0));
    }
    assert!(moved > 0, "some image moved");
    let mut none = augmenter("shift", r#"{"pixels": 0}"#, 5);
    assert!(none.augment(&Inputs::new().tensor("input", &x)).unwrap().is_empty());
}
