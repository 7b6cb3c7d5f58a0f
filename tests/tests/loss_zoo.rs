//! The loss zoo through the plugin boundary: every reference check of LOGIT-LOSSES.md that concerns
//! a plugin (f32, 1e-5), and a finite-difference gradient check of every differentiable loss on F1.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
use candle_core::{DType, Tensor, Var};
use retort::{Host, Inputs, Library, LossInstance};
use retort_e2e::{plugin, test_device};

const ZS: [f32; 6] = [2.0, 1.0, 0.1, 0.5, 2.5, -1.0];
const ZT: [f32; 6] = [3.0, 0.5, -0.5, 0.0, 1.5, 1.0];

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &test_device()).unwrap()
}

fn f1() -> Inputs {
    Inputs::new()
        .tensor("student", &t(&ZS, &[2, 3]))
        .tensor("teacher", &t(&ZT, &[2, 3]))
        .tensor("labels", &Tensor::from_slice(&[0i64, 2], 2, &test_device()).unwrap())
        .scalar("epoch", 1.0)
        .scalar("step", 0.0)
        .scalar("total_steps", 10_000.0)
}

pub fn loss(package: &str, name: &str, cfg: &str) -> LossInstance {
    // One host per instance keeps tests independent.
    let host = Box::leak(Box::new(Host::new(test_device(), 0)));
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
    grad_check_key(package, name, cfg, base, "student", student, shape)
}

/// As [`grad_check`], differentiating w.r.t. the batch input `key`.
fn grad_check_key(package: &str, name: &str, cfg: &str, base: &Inputs, key: &str, student: &[f32], shape: &[usize]) {
    let mut l = loss(package, name, cfg);
    let var = Var::from_tensor(&t(student, shape)).unwrap();
    let inputs = base.clone().tensor(key, var.as_tensor());
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
        let fp = value(&mut l, &base.clone().tensor(key, &t(&plus, shape)));
        let fm = value(&mut l, &base.clone().tensor(key, &t(&minus, shape)));
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
        &seq.clone().tensor("labels", &Tensor::from_slice(&[0i64, 2, -100], (1, 3), &test_device()).unwrap()),
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

const M: &str = "retort-loss-methods";

fn dho_inputs() -> Inputs {
    f1().tensor("student_kd", &t(&[1.5, 0.5, 0.0, 0.2, 1.0, 0.8], &[2, 3]))
        .tensor("student_kd_unlabeled", &t(&[0.0, 1.0, 2.0], &[1, 3]))
        .tensor("teacher_unlabeled", &t(&[0.5, 0.5, 2.5], &[1, 3]))
}

fn nd_inputs() -> Inputs {
    f1().tensor("student_features", &t(&[1.0, 2.0, 0.5, 0.0, 1.0, -1.0], &[2, 3]))
        .tensor("teacher_features", &t(&[2.0, 2.0, 1.0, 0.5, 0.5, -2.0], &[2, 3]))
}

const ND_CFG: &str = r#"{"classes": 3, "centres": {"0": [1, 1, 0], "2": [0, 0, -3]}}"#;

#[test]
fn methods_reference_checks() {
    let x = f1();
    let bd = x.clone().tensor("w_forward", &t(&[0.25, 0.75], &[2])).tensor("w_reverse", &t(&[0.75, 0.25], &[2]));
    check(M, "bd-kd", r#"{"weight_rule": "given"}"#, &bd, 2.39978241, "3");
    check(M, "taid", r#"{"t_start": 0.4}"#, &x, 0.03721751, "4a KL form");
    check(M, "taid", r#"{"t_start": 0.4, "value_form": "ce"}"#, &x, 0.69167210, "4a CE form");
    check(M, "taid", r#"{"t_start": 1.0}"#, &x, 0.38049986, "TAID t = 1 is FKL");
    check(M, "taid", r#"{"t_start": 0.0, "t_end": 0.0}"#, &x, 0.0, "TAID t = 0");
    check(M, "sinkd", "{}", &x, 0.00085574, "5");
    let three = x
        .clone()
        .tensor("student", &t(&[2.0, 1.0, 0.1, 0.5, 2.5, -1.0, 0.0, 0.0, 3.0], &[3, 3]))
        .tensor("teacher", &t(&[3.0, 0.5, -0.5, 0.0, 1.5, 1.0, 1.0, -1.0, 2.0], &[3, 3]));
    check(M, "sinkd", "{}", &three, 0.00122725, "5, three rows");
    check(M, "sinkd", r#"{"log_domain": "always"}"#, &x, 0.00085574, "5, log domain");
    check(M, "pld", "{}", &x, 0.84025285, "6");
    let dkd = r#"{"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "ce_weight": 0.0, "warmup_epochs": 0.0}"#;
    check(M, "dkd", dkd, &x, 0.67883032, "7a");
    let warm = r#"{"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "ce_weight": 0.0, "warmup_epochs": 20.0}"#;
    check(M, "dkd", warm, &x.clone().scalar("epoch", 5.0), 0.16970758, "7a warm-up");
    let b05 = r#"{"alpha": 1.0, "beta": 0.5, "temperature": 1.0, "ce_weight": 0.0, "warmup_epochs": 0.0}"#;
    check(M, "dkd", b05, &x, 0.37928970, "7b");
    let b1 = r#"{"alpha": 1.0, "beta": 1.0, "temperature": 1.0, "ce_weight": 0.0, "warmup_epochs": 0.0}"#;
    check(M, "dkd", b1, &x, 0.38372108, "7b β = 1");
    let mm = Inputs::new()
        .tensor("student_pos", &t(&[5.0, 2.0], &[2]))
        .tensor("student_neg", &t(&[3.0, 2.5], &[2]))
        .tensor("teacher_pos", &t(&[10.0, 4.0], &[2]))
        .tensor("teacher_neg", &t(&[7.0, 3.0], &[2]));
    check(M, "margin-mse", "{}", &mm, 1.625, "8");
    let pairs = Inputs::new()
        .tensor("student", &t(&[5.0, 3.0, 2.0, 2.5], &[2, 2]))
        .tensor("teacher", &t(&[10.0, 7.0, 4.0, 3.0], &[2, 2]));
    check(M, "margin-mse", "{}", &pairs, 1.625, "8, [B, 2] form");
    check(M, "nd", ND_CFG, &nd_inputs(), 0.41074435, "9");
    check(
        M,
        "nd",
        &ND_CFG.replace("\"classes\"", "\"lambda\": 2.0, \"classes\""),
        &nd_inputs(),
        0.82148870,
        "9, λ = 2",
    );
    let tg = x.clone().tensor("alpha", &t(&[0.3, 0.8], &[2]));
    check(M, "tgeo-kd", r#"{"alpha_source": "given", "temperature": 4.0, "classes": 3}"#, &tg, 0.88834958, "11");
    check(M, "dho", r#"{"lambda": 0.5}"#, &dho_inputs(), 1.15944860, "12a");
    let sw = x.clone().tensor("temperatures", &t(&[1.0, 3.0], &[2]));
    check(M, "swing", r#"{"temperature_rule": "given"}"#, &sw, 0.12346626, "13");
    check(M, "swing", r#"{"temperature_rule": "given", "tau_squared": true}"#, &sw, 0.48527866, "13, τ²");
}

#[test]
fn mixstd_is_scale_invariant_and_matches_its_formula() {
    let x = f1();
    let base = value(&mut loss(M, "mixstd", "{}"), &x);
    let scaled = x
        .clone()
        .tensor("student", &t(&ZS.map(|v| 3.0 * v), &[2, 3]))
        .tensor("teacher", &t(&ZT.map(|v| 0.25 * v), &[2, 3]));
    let v = value(&mut loss(M, "mixstd", "{}"), &scaled);
    assert!((v - base).abs() < 1e-5, "{v} vs {base}");
    // The formula in f64: γ·CE(y, softmax(zs/σs)) + α·KL(softmax(zt/σt) ‖ softmax(zs/σs)).
    let ls = |z: &[f32]| {
        let m = z.iter().map(|&v| v as f64).sum::<f64>() / 3.0;
        let sd = (z.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / 2.0).sqrt();
        let s: Vec<f64> = z.iter().map(|&v| v as f64 / sd).collect();
        let lse = s.iter().map(|v| v.exp()).sum::<f64>().ln();
        s.iter().map(|v| v - lse).collect::<Vec<f64>>()
    };
    let mut want = 0.0;
    for (r, y) in [(0usize, 0usize), (1, 2)] {
        let (a, b) = (ls(&ZS[3 * r..3 * r + 3]), ls(&ZT[3 * r..3 * r + 3]));
        want += 0.1 * -a[y] / 2.0;
        want += 0.9 * b.iter().zip(&a).map(|(p, q)| p.exp() * (p - q)).sum::<f64>() / 2.0;
    }
    assert!((base - want).abs() < 1e-5, "{base} vs {want}");
}

#[test]
fn methods_gradients() {
    let x = f1();
    let dkd = r#"{"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "ce_weight": 1.0, "warmup_epochs": 0.0}"#;
    for (name, cfg) in [
        ("taid", r#"{"t_start": 1.0}"#),
        ("dkd", dkd),
        ("sinkd", r#"{"scale": 1.0}"#),
        ("pld", "{}"),
        ("swing", r#"{"tau_min": 2.0}"#),
        ("mixstd", "{}"),
    ] {
        grad_check(M, name, cfg, &x, &ZS, &[2, 3]);
    }
    // BD-KD's weights are computed under stop-gradient, so check with given weights.
    let bd = x.clone().tensor("w_forward", &t(&[0.25, 0.75], &[2])).tensor("w_reverse", &t(&[0.75, 0.25], &[2]));
    grad_check(M, "bd-kd", r#"{"weight_rule": "given", "temperature": 2.0}"#, &bd, &ZS, &[2, 3]);
    let tg = x.clone().tensor("alpha", &t(&[0.3, 0.8], &[2]));
    grad_check(M, "tgeo-kd", r#"{"alpha_source": "given", "classes": 3}"#, &tg, &ZS, &[2, 3]);
    grad_check(M, "dho", "{}", &dho_inputs(), &ZS, &[2, 3]);
    grad_check_key(M, "dho", "{}", &dho_inputs(), "student_kd", &[1.5, 0.5, 0.0, 0.2, 1.0, 0.8], &[2, 3]);
    grad_check_key(M, "nd", ND_CFG, &nd_inputs(), "student_features", &[1.0, 2.0, 0.5, 0.0, 1.0, -1.0], &[2, 3]);
    let pairs = Inputs::new().tensor("teacher", &t(&[10.0, 7.0, 4.0, 3.0], &[2, 2]));
    grad_check(M, "margin-mse", "{}", &pairs, &[5.0, 3.0, 2.0, 2.5], &[2, 2]);
}

/// TAID's target uses sg(zˢ), so its gradient is not the derivative of its value: at t = 0.4 it
/// is (pˢ − p_t)/N with p_t held fixed (the reference p_t rows of LOGIT-LOSSES.md §4).
#[test]
fn taid_gradient_treats_the_target_as_constant() {
    let mut l = loss(M, "taid", r#"{"t_start": 0.4}"#);
    let var = Var::from_tensor(&t(&ZS, &[2, 3])).unwrap();
    let out = l.loss(&f1().tensor("student", var.as_tensor())).unwrap();
    let g = out.backward().unwrap().get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ps = [0.65900114, 0.24243297, 0.09856589, 0.11611453, 0.85797681, 0.02590865];
    let pt = [0.78078463, 0.15763770, 0.06157767, 0.13061347, 0.79016545, 0.07922107];
    for i in 0..6 {
        let want = (ps[i] - pt[i]) / 2.0;
        assert!((g[i] as f64 - want).abs() < 1e-6, "d/dz[{i}] {} vs {want}", g[i]);
    }
}

#[test]
fn stateful_losses_hand_over_state() {
    // TAID: three steps, hand the state to a new instance; both continue identically.
    let x = f1();
    let mut a = loss(M, "taid", "{}");
    for step in 0..3 {
        value(&mut a, &x.clone().scalar("step", step as f64).scalar("total_steps", 100.0));
    }
    let mut b = loss(M, "taid", "{}");
    b.load_state(&a.state().unwrap()).unwrap();
    let next = x.clone().scalar("step", 3.0).scalar("total_steps", 100.0);
    assert_eq!(value(&mut a, &next), value(&mut b, &next));
    assert_eq!(a.state().unwrap(), b.state().unwrap());
    let words: Vec<f64> = a.state().unwrap().chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
    assert!((words[0] - 0.418).abs() < 1e-12, "t after four steps of 100 follows the linear floor: {words:?}");
    assert!(b.load_state(&[1, 2, 3]).is_err(), "malformed state is refused");

    // ND: centres accumulated from the teacher in epoch 1 survive a hand-over.
    let cfg = r#"{"classes": 3, "centre_epochs": 1}"#;
    let mut a = loss(M, "nd", cfg);
    assert_eq!(value(&mut a, &nd_inputs().scalar("epoch", 1.0)), 0.0, "collecting centres");
    let mut b = loss(M, "nd", cfg);
    b.load_state(&a.state().unwrap()).unwrap();
    let e2 = nd_inputs().scalar("epoch", 2.0);
    let (va, vb) = (value(&mut a, &e2), value(&mut b, &e2));
    assert_eq!(va, vb);
    assert!(va > 0.0);

    // TGeo-KD: the teacher's class means are state too.
    let mut a = loss(M, "tgeo-kd", r#"{"classes": 3}"#);
    value(&mut a, &x);
    let mut b = loss(M, "tgeo-kd", r#"{"classes": 3}"#);
    b.load_state(&a.state().unwrap()).unwrap();
    assert_eq!(a.state().unwrap(), b.state().unwrap());
}
