//! `hinton-kd` through the plugin boundary: reference checks 1a–1e of LOGIT-LOSSES.md and gradient
//! parity with the same math written directly in candle.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
use candle_core::{DType, Device, Tensor, Var, D};
use retort::{Host, Inputs, Library, LossInstance};
use retort_e2e::plugin;

const ZS: [f32; 6] = [2.0, 1.0, 0.1, 0.5, 2.5, -1.0];
const ZT: [f32; 6] = [3.0, 0.5, -0.5, 0.0, 1.5, 1.0];

fn f1() -> (Tensor, Tensor, Tensor) {
    let d = Device::Cpu;
    (
        Tensor::from_slice(&ZS, (2, 3), &d).unwrap(),
        Tensor::from_slice(&ZT, (2, 3), &d).unwrap(),
        Tensor::from_slice(&[0i64, 2], 2, &d).unwrap(),
    )
}

fn kd(host: &Host, config: &str) -> LossInstance {
    let lib = Library::load(&plugin("retort-loss-hinton-kd")).expect("load hinton-kd");
    LossInstance::new(host, &lib, "hinton-kd", "loss.kd", config).expect("construct")
}

fn value(loss: &mut LossInstance, inputs: &Inputs) -> f64 {
    loss.loss(inputs).expect("loss").to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-5, "{what}: got {got:.8}, want {want:.8}");
}

#[test]
fn reference_checks_1a_to_1e() {
    let host = Host::cpu(0);
    let (zs, zt, y) = f1();
    let inputs = Inputs::new().tensor("student", &zs).tensor("teacher", &zt).tensor("labels", &y);
    let cases = [
        ("1a FKL τ=1 KL form", r#"{"temperature": 1.0}"#, 0.38049986),
        ("1b FKL τ=1 CE form", r#"{"temperature": 1.0, "value_form": "ce"}"#, 1.04986987),
        ("1c τ²·FKL τ=4", r#"{"temperature": 4.0}"#, 0.56432243),
        ("1d 0.1·CE + 0.9·KD τ=4", r#"{"temperature": 4.0, "alpha": 0.9}"#, 0.71140059),
        ("α=0.5 τ=2", r#"{"temperature": 2.0, "alpha": 0.5}"#, 1.27914844),
        ("τ=2 τ²·FKL", r#"{"temperature": 2.0}"#, 0.52319276),
    ];
    for (what, cfg, want) in cases {
        assert_close(value(&mut kd(&host, cfg), &inputs), want, what);
    }

    // 1e: F1-seq, B = 1, L = 3, third row padding, token mean over the mask.
    let d = Device::Cpu;
    let mut s = ZS.to_vec();
    s.extend([9.0, -9.0, 0.0]);
    let mut t = ZT.to_vec();
    t.extend([-9.0, 9.0, 0.0]);
    let zs = Tensor::from_slice(&s, (1, 3, 3), &d).unwrap();
    let zt = Tensor::from_slice(&t, (1, 3, 3), &d).unwrap();
    let mask = Tensor::from_slice(&[1f32, 1.0, 0.0], (1, 3), &d).unwrap();
    let mut loss = kd(&host, r#"{"temperature": 1.0}"#);
    let seq = Inputs::new().tensor("student", &zs).tensor("teacher", &zt);
    assert_close(value(&mut loss, &seq.clone().tensor("mask", &mask)), 0.38049986, "1e masked token mean");
    // Without the mask every token counts: (0.15647941 + 0.60452031 + KL(row 3)) / 3.
    let unmasked = value(&mut loss, &seq);
    assert!((unmasked - 0.38049986).abs() > 1.0, "mask must matter, got {unmasked}");
}

/// The loss written directly in candle: τ²·batchmean KL(softmax(zt/τ) ‖ softmax(zs/τ)).
fn direct_kd(zs: &Tensor, zt: &Tensor, tau: f64) -> Tensor {
    let log_ps = candle_log_softmax(&zs.affine(1.0 / tau, 0.0).unwrap());
    let log_pt = candle_log_softmax(&zt.affine(1.0 / tau, 0.0).unwrap());
    let pt = log_pt.exp().unwrap();
    let rows = (pt * (log_pt - log_ps).unwrap()).unwrap().sum(D::Minus1).unwrap();
    rows.mean_all().unwrap().affine(tau * tau, 0.0).unwrap()
}

fn candle_log_softmax(x: &Tensor) -> Tensor {
    let m = x.max_keepdim(D::Minus1).unwrap().detach();
    let s = x.broadcast_sub(&m).unwrap();
    let lse = s.exp().unwrap().sum_keepdim(D::Minus1).unwrap().log().unwrap();
    s.broadcast_sub(&lse).unwrap()
}

#[test]
fn gradient_parity_256x100() {
    let host = Host::cpu(0);
    let zs = Var::from_tensor(&retort_e2e::seeded_normal(&[256, 100], 2.0, 5)).unwrap();
    let zt = retort_e2e::seeded_normal(&[256, 100], 2.0, 6);
    let mut loss = kd(&host, r#"{"temperature": 4.0}"#);
    let via_plugin = loss.loss(&Inputs::new().tensor("student", zs.as_tensor()).tensor("teacher", &zt)).unwrap();
    let direct = direct_kd(zs.as_tensor(), &zt, 4.0);
    let (lp, ld) = (via_plugin.to_scalar::<f32>().unwrap(), direct.to_scalar::<f32>().unwrap());
    // Two summation orders of 25,600 f32 terms: equal to a few ulps of the value.
    assert!((lp - ld).abs() <= 1e-6 * (1.0 + ld.abs()), "loss: plugin {lp}, direct {ld}");
    let gp = via_plugin.backward().unwrap().get(zs.as_tensor()).unwrap().clone();
    let gd = direct.backward().unwrap().get(zs.as_tensor()).unwrap().clone();
    let diff = (gp - gd).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(diff <= 1e-6, "student gradient max abs diff {diff}");
    // The teacher is detached: no gradient reaches it even if it were a variable.
    let zt_var = Var::from_tensor(&zt).unwrap();
    let l2 = loss.loss(&Inputs::new().tensor("student", zs.as_tensor()).tensor("teacher", zt_var.as_tensor())).unwrap();
    assert!(l2.backward().unwrap().get(zt_var.as_tensor()).is_none(), "teacher must be stop-gradient");
}

#[test]
fn bad_config_is_rejected_with_plugin_and_key() {
    let host = Host::cpu(0);
    let lib = Library::load(&plugin("retort-loss-hinton-kd")).unwrap();
    let e = LossInstance::new(&host, &lib, "hinton-kd", "loss.kd", r#"{"temprature": 2.0}"#).expect_err("must fail");
    let msg = e.to_string();
    assert!(msg.contains("hinton-kd") && msg.contains("temprature"), "{msg}");
    let e = LossInstance::new(&host, &lib, "hinton-kd", "loss.kd", r#"{"temperature": -1.0}"#).expect_err("must fail");
    assert!(e.to_string().contains("temperature must be > 0"), "{e}");
}

#[test]
fn missing_input_names_the_input() {
    let host = Host::cpu(0);
    let (zs, _, _) = f1();
    let e = kd(&host, "{}").loss(&Inputs::new().tensor("student", &zs)).expect_err("must fail");
    assert!(e.to_string().contains("hinton-kd") && e.to_string().contains("`teacher`"), "{e}");
}
