//! The loss zoo through the plugin boundary: every reference check of LOGIT-LOSSES.md that concerns
//! a plugin (f32, 1e-5), and a finite-difference gradient check of every differentiable loss on F1.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
use candle_core::{DType, Device, Tensor, Var};
use retort::{Host, Inputs, Library, LossInstance};
use retort_e2e::plugin;

const ZS: [f32; 6] = [2.0, 1.0, 0.1, 0.5, 2.5, -1.0];
const ZT: [f32; 6] = [3.0, 0.5, -0.5, 0.0, 1.5, 1.0];

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
}

fn f1() -> Inputs {
    Inputs::new()
        .tensor("student", &t(&ZS, &[2, 3]))
        .tensor("teacher", &t(&ZT, &[2, 3]))
        .tensor("labels", &Tensor::from_slice(&[0i64, 2], 2, &Device::Cpu).unwrap())
        .scalar("epoch", 1.0)
        .scalar("step", 0.0)
        .scalar("total_steps", 10_000.0)
}

pub fn loss(package: &str, name: &str, cfg: &str) -> LossInstance {
    // One host per instance keeps tests independent.
    let host = Box::leak(Box::new(Host::cpu(0)));
    let lib = Library::load(&plugin(package)).unwrap();
    LossInstance::new(host, &lib, name, &format!("loss.{name}"), cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn value(l: &mut LossInstance, inputs: &Inputs) -> f64 {
    l.loss(inputs).unwrap_or_else(|e| panic!("{e}")).to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn check(package: &str, name: &str, cfg: &str, inputs: &Inputs, want: f64, what: &str) {
    let got = value(&mut loss(package, name, cfg), inputs);
    assert!((got - want).abs() <= 1e-5, "{what}: {name} {cfg}: got {got:.8}, want {want:.8}");
}

/// Central finite differences of the loss w.r.t. the student logits against backward.
fn grad_check(package: &str, name: &str, cfg: &str, base: &Inputs, student: &[f32], shape: &[usize]) {
    let mut l = loss(package, name, cfg);
    let var = Var::from_tensor(&t(student, shape)).unwrap();
    let inputs = base.clone().tensor("student", var.as_tensor());
    let out = l.loss(&inputs).unwrap();
    let grads = out.backward().unwrap();
    let g = grads.get(var.as_tensor()).expect("the loss reaches the student").flatten_all().unwrap();
    let g = g.to_vec1::<f32>().unwrap();
    let eps = 1e-2f32;
    for i in 0..student.len() {
        let mut plus = student.to_vec();
        plus[i] += eps;
        let mut minus = student.to_vec();
        minus[i] -= eps;
        let fp = value(&mut l, &base.clone().tensor("student", &t(&plus, shape)));
        let fm = value(&mut l, &base.clone().tensor("student", &t(&minus, shape)));
        let num = (fp - fm) / (2.0 * eps as f64);
        assert!(
            (num - g[i] as f64).abs() <= 2e-3 + 1e-2 * num.abs(),
            "{name} {cfg}: d/dz[{i}] numeric {num:.6}, backward {:.6}",
            g[i]
        );
    }
}

const DIV: &str = "retort-loss-divergences";

#[test]
fn divergences_reference_checks() {
    let x = f1();
    check(DIV, "reverse-kl", "{}", &x, 0.26295407, "2a");
    check(DIV, "jensen-shannon", "{}", &x, 0.06929518, "2b");
    check(DIV, "generalized-jsd", r#"{"beta": 0.5}"#, &x, 0.06929518, "2b");
    check(DIV, "total-variation", "{}", &x, 0.27573928, "2c");
    check(DIV, "skew-kl", r#"{"alpha": 0.1}"#, &x, 0.24876174, "2d KL form");
    check(DIV, "skew-kl", r#"{"alpha": 0.1, "value_form": "ce"}"#, &x, 0.91813175, "2d CE form");
    check(DIV, "skew-reverse-kl", r#"{"alpha": 0.1}"#, &x, 0.21317450, "2e");
    check(DIV, "generalized-jsd", r#"{"beta": 0.1}"#, &x, 0.03039703, "2f");
    check(DIV, "generalized-jsd", r#"{"beta": 0.9}"#, &x, 0.02364010, "2f");
    check(DIV, "generalized-jsd", r#"{"beta": 0.0}"#, &x, 0.38049986, "TRL β = 0");
    check(DIV, "generalized-jsd", r#"{"beta": 1.0}"#, &x, 0.26295407, "TRL β = 1");
}

/// F1-seq: B = 1, L = 3, third position padding; every divergence's token mean ignores it.
#[test]
fn divergences_take_masked_sequences() {
    let mut s = ZS.to_vec();
    s.extend([9.0, -9.0, 0.0]);
    let mut tt = ZT.to_vec();
    tt.extend([-9.0, 9.0, 0.0]);
    let seq = Inputs::new()
        .tensor("student", &t(&s, &[1, 3, 3]))
        .tensor("teacher", &t(&tt, &[1, 3, 3]))
        .tensor("mask", &t(&[1.0, 1.0, 0.0], &[1, 3]));
    for (name, cfg, want) in [
        ("reverse-kl", "{}", 0.26295407),
        ("jensen-shannon", "{}", 0.06929518),
        ("total-variation", "{}", 0.27573928),
        ("skew-kl", "{}", 0.24876174),
        ("skew-reverse-kl", "{}", 0.21317450),
        ("generalized-jsd", r#"{"beta": 0.1}"#, 0.03039703),
    ] {
        check(DIV, name, cfg, &seq, want, "F1-seq");
    }
    check(
        "retort-loss-cross-entropy",
        "cross-entropy",
        "{}",
        &seq.clone().tensor("labels", &Tensor::from_slice(&[0i64, 2, -100], (1, 3), &Device::Cpu).unwrap()),
        2.03510411,
        "CE seq",
    );
}

#[test]
fn divergences_gradients() {
    let x = f1();
    for (name, cfg) in [
        ("reverse-kl", "{}"),
        ("jensen-shannon", "{}"),
        ("total-variation", "{}"),
        ("skew-kl", r#"{"alpha": 0.1}"#),
        ("skew-reverse-kl", r#"{"alpha": 0.1}"#),
        ("generalized-jsd", r#"{"beta": 0.3, "temperature": 2.0, "tau_squared": true}"#),
    ] {
        grad_check(DIV, name, cfg, &x, &ZS, &[2, 3]);
    }
    grad_check("retort-loss-hinton-kd", "hinton-kd", r#"{"temperature": 2.0, "alpha": 0.5}"#, &x, &ZS, &[2, 3]);
    grad_check("retort-loss-cross-entropy", "cross-entropy", r#"{"label_smoothing": 0.1}"#, &x, &ZS, &[2, 3]);
}
