//! `cross-entropy` and `mlp` through the plugin boundary.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
use candle_core::{DType, Device, Tensor};
use retort::{Host, Inputs, Library, LossInstance, ModelInstance};
use retort_e2e::plugin;

fn ce(host: &Host, cfg: &str) -> LossInstance {
    let lib = Library::load(&plugin("retort-loss-cross-entropy")).unwrap();
    LossInstance::new(host, &lib, "cross-entropy", "loss.ce", cfg).unwrap()
}

fn scalar(t: Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn cross_entropy_matches_f1_and_ignores_padding() {
    let host = Host::cpu(0);
    let d = Device::Cpu;
    let zs = Tensor::from_slice(&[2f32, 1.0, 0.1, 0.5, 2.5, -1.0], (2, 3), &d).unwrap();
    let y = Tensor::from_slice(&[0i64, 2], 2, &d).unwrap();
    let v = scalar(ce(&host, "{}").loss(&Inputs::new().tensor("student", &zs).tensor("labels", &y)).unwrap());
    assert!((v - 2.03510411).abs() < 1e-5, "{v}");
    // Label smoothing ε: (1−ε)·CE + ε·mean_c(−log p_c).
    let lsm = zs.log_softmax_last();
    let uniform = scalar(lsm.mean(1).unwrap().neg().unwrap().mean_all().unwrap());
    let v = scalar(
        ce(&host, r#"{"label_smoothing": 0.1}"#)
            .loss(&Inputs::new().tensor("student", &zs).tensor("labels", &y))
            .unwrap(),
    );
    assert!((v - (0.9 * 2.03510411 + 0.1 * uniform)).abs() < 1e-5, "{v}");
    // A −100 label is ignored, and so is a masked row.
    let y3 = Tensor::from_slice(&[0i64, 2, -100], 3, &d).unwrap();
    let zs3 = Tensor::cat(&[&zs, &Tensor::from_slice(&[9f32, -9.0, 0.0], (1, 3), &d).unwrap()], 0).unwrap();
    let v = scalar(ce(&host, "{}").loss(&Inputs::new().tensor("student", &zs3).tensor("labels", &y3)).unwrap());
    assert!((v - 2.03510411).abs() < 1e-5, "{v}");
    let y3b = Tensor::from_slice(&[0i64, 2, 1], 3, &d).unwrap();
    let mask = Tensor::from_slice(&[1f32, 1.0, 0.0], 3, &d).unwrap();
    let v = scalar(
        ce(&host, "{}")
            .loss(&Inputs::new().tensor("student", &zs3).tensor("labels", &y3b).tensor("mask", &mask))
            .unwrap(),
    );
    assert!((v - 2.03510411).abs() < 1e-5, "{v}");
}

trait LogSoftmaxLast {
    fn log_softmax_last(&self) -> Tensor;
}
impl LogSoftmaxLast for Tensor {
    fn log_softmax_last(&self) -> Tensor {
        let m = self.max_keepdim(1).unwrap();
        let s = self.broadcast_sub(&m).unwrap();
        s.broadcast_sub(&s.exp().unwrap().sum_keepdim(1).unwrap().log().unwrap()).unwrap()
    }
}

fn mlp(host: &Host, role: &str, cfg: &str) -> ModelInstance {
    let lib = Library::load(&plugin("retort-model-mlp")).unwrap();
    ModelInstance::new(host, &lib, "mlp", role, cfg).unwrap()
}

#[test]
fn mlp_shapes_taps_parameters_and_modes() {
    let host = Host::cpu(5);
    let cfg = r#"{"input_dim": 12, "hidden": [8, 6], "classes": 4, "dropout": 0.5, "activation": "gelu"}"#;
    let mut m = mlp(&host, "student", cfg);
    let x = retort_e2e::seeded_normal(&[3, 1, 3, 4], 1.0, 1);
    let y = m.forward(&Inputs::new().tensor("input", &x).scalar("train", 0.0)).unwrap();
    assert_eq!(y.dims(), &[3, 4]);
    assert_eq!(host.taps.names("student"), vec!["classifier", "layer1", "layer2", "logits"]);
    assert_eq!(host.taps.get("student", "layer1").unwrap().dims(), &[3, 8]);
    assert_eq!(host.params.count("student"), 12 * 8 + 8 + 8 * 6 + 6 + 6 * 4 + 4);
    // Eval is deterministic; training applies dropout.
    let y2 = m.forward(&Inputs::new().tensor("input", &x).scalar("train", 0.0)).unwrap();
    assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), y2.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    let t1 = m.forward(&Inputs::new().tensor("input", &x).scalar("train", 1.0)).unwrap();
    assert_ne!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), t1.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    // Same seed and role: same initial weights; another role: different ones.
    let host2 = Host::cpu(5);
    let mut same = mlp(&host2, "student", cfg);
    let ys = same.forward(&Inputs::new().tensor("input", &x).scalar("train", 0.0)).unwrap();
    assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), ys.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    let mut other = mlp(&host2, "teacher", cfg);
    let yo = other.forward(&Inputs::new().tensor("input", &x).scalar("train", 0.0)).unwrap();
    assert_ne!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), yo.flatten_all().unwrap().to_vec1::<f32>().unwrap());
}

#[test]
fn mlp_rejects_bad_config_and_missing_input() {
    let host = Host::cpu(0);
    let lib = Library::load(&plugin("retort-model-mlp")).unwrap();
    let e = ModelInstance::new(&host, &lib, "mlp", "s", r#"{"dropout": 1.5}"#).unwrap_err();
    assert!(e.to_string().contains("mlp") && e.to_string().contains("dropout"), "{e}");
    let e = ModelInstance::new(&host, &lib, "mlp", "s", r#"{"activation": "swish"}"#).unwrap_err();
    assert!(e.to_string().contains("swish"), "{e}");
    let mut m = ModelInstance::new(&host, &lib, "mlp", "s", "{}").unwrap();
    let e = m.forward(&Inputs::new()).unwrap_err();
    assert!(e.to_string().contains("`input`"), "{e}");
    // A library asked for a plugin it does not have says what it has.
    let e = ModelInstance::new(&host, &lib, "cnn", "s", "{}").unwrap_err();
    assert!(e.to_string().contains("cnn") && e.to_string().contains("mlp"), "{e}");
}

#[test]
fn template_plugin_from_the_readme_works() {
    let host = Host::cpu(0);
    let lib = Library::load(&plugin("retort-loss-logit-mse")).unwrap();
    let mut l = LossInstance::new(&host, &lib, "logit-mse", "loss.mse", r#"{"scale": 2.0}"#).unwrap();
    let d = Device::Cpu;
    let zs = Tensor::from_slice(&[1f32, 2.0, 3.0, 4.0], (2, 2), &d).unwrap();
    let zt = Tensor::from_slice(&[1f32, 0.0, 3.0, 3.0], (2, 2), &d).unwrap();
    // rows: mean((0, 2)²) = 2, mean((0, 1)²) = 0.5; batch mean 1.25; × 2.
    let v = scalar(l.loss(&Inputs::new().tensor("student", &zs).tensor("teacher", &zt)).unwrap());
    assert!((v - 2.5).abs() < 1e-6, "{v}");
}

#[test]
fn cnn_shapes_taps_and_gradients() {
    let host = Host::cpu(3);
    let lib = Library::load(&plugin("retort-model-cnn")).unwrap();
    let cfg = r#"{"channels": [4, 8], "hidden": 16, "dropout": 0.25, "batch_norm": true}"#;
    let mut m = ModelInstance::new(&host, &lib, "cnn", "student", cfg).unwrap();
    let x = retort_e2e::seeded_normal(&[2, 1, 28, 28], 1.0, 2);
    let y = m.forward(&Inputs::new().tensor("input", &x).scalar("train", 1.0)).unwrap();
    assert_eq!(y.dims(), &[2, 10]);
    assert_eq!(host.taps.get("student", "conv2").unwrap().dims(), &[2, 8, 7, 7]);
    let flat = x.reshape((2, 784)).unwrap();
    let y2 = m.forward(&Inputs::new().tensor("input", &flat).scalar("train", 0.0)).unwrap();
    assert_eq!(y2.dims(), &[2, 10]);
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for p in host.params.params(Some("student")).iter().filter(|p| p.trainable) {
        assert!(grads.get(p.var.as_tensor()).is_some(), "{} gets a gradient", p.name);
    }
    let e = ModelInstance::new(&host, &lib, "cnn", "t", r#"{"kernel": 4}"#).unwrap_err();
    assert!(e.to_string().contains("kernel must be odd"), "{e}");
}
