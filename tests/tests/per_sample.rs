//! Per-sample losses (plugin-api 1.2 `loss_rows`): every ported plugin's rows average to its
//! scalar loss, and the host's weighted reduction removes a zero-weight sample's gradient exactly.
use candle_core::{DType, Device, Tensor, Var};
use retort::{Host, Inputs, Library, LossInstance};
use retort_e2e::plugin;

const B: usize = 4;
const C: usize = 5;

fn loss(package: &str, name: &str, cfg: &str) -> LossInstance {
    let host = Box::leak(Box::new(Host::cpu(0)));
    let lib = Library::load(&plugin(package)).unwrap();
    LossInstance::new(host, &lib, name, &format!("loss.{name}"), cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn logits(seed: u64) -> Tensor {
    let v: Vec<f32> = (0..B * C).map(|i| (((i as u64 * 7 + seed * 13) % 17) as f32 - 8.0) / 3.0).collect();
    Tensor::from_vec(v, (B, C), &Device::Cpu).unwrap()
}

fn inputs(student: &Tensor) -> Inputs {
    Inputs::new()
        .tensor("student", student)
        .tensor("teacher", &logits(5))
        .tensor("labels", &Tensor::new(&[0i64, 3, 4, 1], &Device::Cpu).unwrap())
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Every plugin with a per-sample form, in the configurations that change its rows.
fn cases() -> Vec<(&'static str, &'static str, &'static str)> {
    let div = "retort-loss-divergences";
    vec![
        ("retort-loss-hinton-kd", "hinton-kd", "{}"),
        ("retort-loss-hinton-kd", "hinton-kd", r#"{"alpha": 0.3, "temperature": 2.0, "tau_squared": false}"#),
        ("retort-loss-cross-entropy", "cross-entropy", "{}"),
        ("retort-loss-cross-entropy", "cross-entropy", r#"{"label_smoothing": 0.1}"#),
        ("retort-loss-cross-entropy", "cross-entropy", r#"{"target": "soft", "temperature": 3.0}"#),
        ("retort-loss-cross-entropy", "cross-entropy", r#"{"target": "mixed", "label_smoothing": 0.2}"#),
        (div, "reverse-kl", "{}"),
        (div, "jensen-shannon", "{}"),
        (div, "total-variation", "{}"),
        (div, "skew-kl", r#"{"alpha": 0.2}"#),
        (div, "skew-reverse-kl", r#"{"alpha": 0.3}"#),
        (div, "generalized-jsd", r#"{"beta": 0.1}"#),
        (div, "generalized-jsd", r#"{"beta": 0.0}"#),
        ("retort-loss-methods", "dkd", "{}"),
        ("retort-loss-methods", "dkd", r#"{"ce_weight": 1.0, "alpha": 0.5, "beta": 4.0}"#),
        ("retort-loss-methods", "bd-kd", "{}"),
        ("retort-loss-methods", "mixstd", "{}"),
    ]
}

#[test]
fn rows_average_to_the_scalar_loss() {
    let z = logits(1);
    for (package, name, cfg) in cases() {
        let mut l = loss(package, name, cfg);
        let want = scalar(&l.loss(&inputs(&z)).unwrap());
        let rows = l.loss_rows(&inputs(&z)).unwrap().unwrap_or_else(|| panic!("{name} {cfg}: no rows"));
        assert_eq!(rows.dims(), &[B], "{name} {cfg}");
        let got = scalar(&rows.mean_all().unwrap());
        assert!((got - want).abs() <= 1e-6 * (1.0 + want.abs()), "{name} {cfg}: mean of rows {got}, loss {want}");
        let ones = Tensor::ones(B, DType::F32, &Device::Cpu).unwrap();
        let weighted = scalar(&l.weighted_loss(&inputs(&z), &ones).unwrap());
        assert!((weighted - want).abs() <= 1e-6 * (1.0 + want.abs()), "{name} {cfg}: unit weights");
    }
}

#[test]
fn a_zero_weight_removes_that_samples_gradient_exactly() {
    let w = Tensor::new(&[1f32, 0.0, 2.0, 0.5], &Device::Cpu).unwrap();
    for (package, name, cfg) in cases() {
        let mut l = loss(package, name, cfg);
        let var = Var::from_tensor(&logits(2)).unwrap();
        let out = l.weighted_loss(&inputs(var.as_tensor()), &w).unwrap();
        let g = out.backward().unwrap().get(var.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        assert!(g[1].iter().all(|&v| v == 0.0), "{name} {cfg}: sample 1 has weight 0, gradient {:?}", g[1]);
        assert!(g[0].iter().any(|&v| v != 0.0) && g[2].iter().any(|&v| v != 0.0), "{name} {cfg}");
        // Weight 2 doubles a sample's gradient relative to the unit-weight loss.
        let var1 = Var::from_tensor(&logits(2)).unwrap();
        let unit = l.weighted_loss(&inputs(var1.as_tensor()), &Tensor::ones(B, DType::F32, &Device::Cpu).unwrap());
        let g1 = unit.unwrap().backward().unwrap().get(var1.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        for (a, b) in g[2].iter().zip(&g1[2]) {
            assert!((a - 2.0 * b).abs() <= 1e-6, "{name} {cfg}: {a} vs 2·{b}");
        }
    }
}

#[test]
fn sequences_and_masks_decline_and_the_host_says_so() {
    let mut l = loss("retort-loss-hinton-kd", "hinton-kd", "{}");
    let z3 = Tensor::ones((2, 3, C), DType::F32, &Device::Cpu).unwrap();
    let seq = Inputs::new().tensor("student", &z3).tensor("teacher", &z3);
    assert!(l.loss_rows(&seq).unwrap().is_none(), "[B, L, V] reduces as a token mean: no per-sample form");
    let err = l.weighted_loss(&seq, &Tensor::ones(2, DType::F32, &Device::Cpu).unwrap()).unwrap_err().to_string();
    assert!(err.contains("hinton-kd") && err.contains("per-sample"), "{err}");
    let z = logits(1);
    let w3 = Tensor::ones(3, DType::F32, &Device::Cpu).unwrap();
    let err = l.weighted_loss(&inputs(&z), &w3).unwrap_err().to_string();
    assert!(err.contains("[4]") && err.contains("[3]"), "rows and weights must match: {err}");
}
