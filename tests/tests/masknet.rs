//! MST-Distill's MaskNet as a tap rewrite (methods spec §1.6 items 1 and 6): its mask's shape and
//! range in the 1-D and 2-D variants, an identity mask leaving a teacher's logits unchanged, a
//! constant mask scaling the tapped activation by exactly c, cumulative against independent
//! composition, and a KD gradient that reaches the mask through a frozen teacher.
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use retort::{
    backend::backward,
    rewrite::{with_rewrites, Rewriter},
    Host, Inputs, Library, LossInstance, ModelInstance,
};
use retort_e2e::plugin;

fn lib(name: &str) -> Arc<Library> {
    Library::load(&plugin(name)).unwrap()
}

fn model(host: &Host, package: &str, name: &str, slot: &str, cfg: &str) -> ModelInstance {
    ModelInstance::new(host, &lib(package), name, slot, cfg).unwrap()
}

/// A toy teacher `t`: 12 inputs → 16 → 8 → 4 classes, taps `layer1` and `layer2`.
fn teacher(host: &Host) -> ModelInstance {
    model(host, "retort-model-mlp", "mlp", "t", r#"{"input_dim": 12, "hidden": [16, 8], "classes": 4}"#)
}

fn masknet(host: &Host, slot: &str, cfg: &str) -> ModelInstance {
    model(host, "retort-model-masknet", "masknet", slot, cfg)
}

fn input(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (((i + seed) * 37 % 29) as f32 - 14.0) / 7.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn vec2(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap()
}

/// The teacher's logits on `x` with `masks` (tap, slot, instance) installed; the instances back.
fn forward(
    host: &Host,
    t: &mut ModelInstance,
    x: &Tensor,
    masks: Vec<(&str, &str, ModelInstance)>,
) -> (Tensor, Vec<(String, ModelInstance)>) {
    let rewriters = masks
        .into_iter()
        .map(|(tap, with, model)| Rewriter { tap: tap.into(), with: with.into(), model, train: false })
        .collect();
    let out = with_rewrites(&host.taps, "t", rewriters, || {
        t.forward(&Inputs::new().tensor("input", x).scalar("train", 0.0)).unwrap()
    });
    assert!(out.unused.is_empty() && out.failed.is_none(), "{:?} {:?}", out.unused, out.failed);
    (out.result, out.models)
}

#[test]
fn the_mask_is_in_the_open_unit_interval_with_one_entry_per_feature_or_channel() {
    let host = Host::cpu(3);
    let inputs = |x: &Tensor| Inputs::new().tensor("input", x).scalar("train", 1.0);
    // 1-D: [B, D] → m [B, D]; a [B, D, 1, 1] map is squeezed and comes back in its shape.
    let mut m1 = masknet(&host, "m1", r#"{"hidden_dim_factor": 2, "heads": 2}"#);
    for shape in [vec![5, 16], vec![5, 16, 1, 1]] {
        let f = input(&shape, 1);
        let y = m1.forward(&inputs(&f)).unwrap();
        assert_eq!(y.dims(), shape.as_slice());
        let m = host.taps.get("m1", "mask").unwrap();
        assert_eq!(m.dims(), [5, 16]);
        assert!(vec2(&m).iter().flatten().all(|&v| v > 0.0 && v < 1.0));
    }
    // 2-D: [B, C, h, w] → m [B, C], applied per channel.
    let mut m2 = masknet(&host, "m2", r#"{"hidden_dim_factor": 1, "heads": 3}"#);
    let f = input(&[4, 6, 5, 5], 2);
    let y = m2.forward(&inputs(&f)).unwrap();
    assert_eq!(y.dims(), [4, 6, 5, 5]);
    let m = host.taps.get("m2", "mask").unwrap();
    assert_eq!(m.dims(), [4, 6]);
    let mv = vec2(&m);
    assert!(mv.iter().flatten().all(|&v| v > 0.0 && v < 1.0));
    let (fv, yv) =
        (f.flatten_all().unwrap().to_vec1::<f32>().unwrap(), y.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    for (i, (a, b)) in fv.iter().zip(&yv).enumerate() {
        let (n, c) = (i / 150, i / 25 % 6);
        assert_eq!(*b, a * mv[n][c], "element {i}");
    }
}

#[test]
fn an_identity_mask_keeps_the_teachers_logits_and_a_constant_one_scales_the_tap_exactly() {
    let host = Host::cpu(4);
    let mut t = teacher(&host);
    let x = input(&[6, 12], 0);
    let plain = t.forward(&Inputs::new().tensor("input", &x).scalar("train", 0.0)).unwrap();
    let tap = vec2(&host.taps.get("t", "layer1").unwrap());
    // A large bias in the final Linear: m = sigmoid(≈30) ≈ 1.
    let (masked, _) =
        forward(&host, &mut t, &x, vec![("layer1", "id", masknet(&host, "id", r#"{"gate_bias": 30.0}"#))]);
    for (a, b) in vec2(&plain).iter().flatten().zip(vec2(&masked).iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // m ≡ c: the rewritten tap (what the teacher continues from) is exactly c times the original.
    let c = 0.37f32;
    let cfg = format!(r#"{{"constant": {c}}}"#);
    let (scaled, _) = forward(&host, &mut t, &x, vec![("layer1", "c", masknet(&host, "c", &cfg))]);
    let rewritten = vec2(&host.taps.get("t", "layer1").unwrap());
    for (a, b) in tap.iter().flatten().zip(rewritten.iter().flatten()) {
        assert_eq!(*b, a * c);
    }
    assert!(vec2(&scaled) != vec2(&plain), "the teacher continued from the scaled activation");
}

#[test]
fn expert_two_differs_between_compositions_exactly_when_mask_one_is_not_the_identity() {
    for (mask_one, differs) in [(r#"{"constant": 1.0}"#, false), (r#"{"heads": 2}"#, true)] {
        let host = Host::cpu(5);
        let mut t = teacher(&host);
        let x = input(&[6, 12], 3);
        let (mut m1, mut m2) = (masknet(&host, "m1", mask_one), masknet(&host, "m2", r#"{"heads": 2}"#));
        let mut run = |t: &mut ModelInstance, with_one: bool| {
            let mut masks = Vec::new();
            if with_one {
                masks.push(("layer1", "m1", std::mem::replace(&mut m1, masknet(&host, "spare1", "{}"))));
            }
            masks.push(("layer2", "m2", std::mem::replace(&mut m2, masknet(&host, "spare2", "{}"))));
            let (z, back) = forward(&host, t, &x, masks);
            for (slot, m) in back {
                if slot == "m1" {
                    m1 = m;
                } else {
                    m2 = m;
                }
            }
            vec2(&z)
        };
        let cumulative = run(&mut t, true);
        let independent = run(&mut t, false);
        assert_eq!(cumulative != independent, differs, "mask one {mask_one}");
    }
}

#[test]
fn the_kd_gradient_reaches_the_mask_through_the_frozen_teacher() {
    let host = Host::cpu(6);
    let mut t = teacher(&host);
    let x = input(&[6, 12], 4);
    let (z_e, _) = forward(&host, &mut t, &x, vec![("layer1", "m", masknet(&host, "m", r#"{"heads": 2}"#))]);
    let z_s = input(&[6, 4], 5);
    let tau = 4.0f64;
    let mut kd =
        LossInstance::new(&host, &lib("retort-loss-hinton-kd"), "hinton-kd", "kd", r#"{"temperature": 4.0}"#).unwrap();
    // Stage 2: the masked teacher is the KD `student`, the student's prediction its target.
    let loss = kd.loss(&Inputs::new().tensor("student", &z_e).tensor("teacher", &z_s)).unwrap();
    let (pe, ps) = (vec2(&z_e), vec2(&z_s));
    let log_softmax = |r: &[f32]| {
        let m = r.iter().map(|&v| v as f64 / tau).fold(f64::MIN, f64::max);
        let lse = m + r.iter().map(|&v| (v as f64 / tau - m).exp()).sum::<f64>().ln();
        r.iter().map(|&v| v as f64 / tau - lse).collect::<Vec<f64>>()
    };
    let want: f64 = ps
        .iter()
        .zip(&pe)
        .map(|(s, e)| {
            let (ls, le) = (log_softmax(s), log_softmax(e));
            ls.iter().zip(&le).map(|(a, b)| a.exp() * (a - b)).sum::<f64>()
        })
        .sum::<f64>()
        / 6.0
        * tau
        * tau;
    let got = loss.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    assert!((got - want).abs() < 1e-5, "τ²·KL(p_S ‖ p_E): {got} vs {want}");
    let grads = backward(&loss).unwrap();
    let total = |group: &str| -> f64 {
        host.params
            .params(Some(group))
            .iter()
            .filter_map(|p| grads.get(p.var.as_tensor()))
            .map(|g| g.abs().unwrap().sum_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap())
            .sum()
    };
    assert!(total("m") > 0.0, "the mask learns through the teacher");
}
