//! Live handles after loss + backward, alone in its test binary: the count is process-wide.
use candle_core::{Device, Tensor};
use retort::{live_handles, Host, Inputs, Library, LossInstance, ModelInstance};
use retort_e2e::plugin;

#[test]
fn handles_return_to_baseline_after_loss_and_backward() {
    let host = Host::cpu(0);
    let kd_lib = Library::load(&plugin("retort-loss-hinton-kd")).unwrap();
    let mlp_lib = Library::load(&plugin("retort-model-mlp")).unwrap();
    let cfg = r#"{"input_dim": 20, "hidden": [16, 16], "classes": 5, "dropout": 0.2}"#;
    let mut model = ModelInstance::new(&host, &mlp_lib, "mlp", "student", cfg).unwrap();
    let mut kd = LossInstance::new(&host, &kd_lib, "hinton-kd", "kd", r#"{"alpha": 0.5}"#).unwrap();
    let x = retort_e2e::seeded_normal(&[8, 20], 1.0, 3);
    let zt = retort_e2e::seeded_normal(&[8, 5], 1.0, 4);
    let y = Tensor::from_slice(&[0u32, 1, 2, 3, 4, 0, 1, 2], 8, &Device::Cpu).unwrap();
    // Warm-up call: parameters are created on first use and stay alive as host handles in the plugin.
    let run = |model: &mut ModelInstance, kd: &mut LossInstance| {
        let logits = model.forward(&Inputs::new().tensor("input", &x).scalar("train", 1.0)).unwrap();
        let l = kd.loss(&Inputs::new().tensor("student", &logits).tensor("teacher", &zt).tensor("labels", &y)).unwrap();
        l.backward().unwrap();
    };
    run(&mut model, &mut kd);
    let before = live_handles();
    for _ in 0..5 {
        run(&mut model, &mut kd);
    }
    assert_eq!(live_handles(), before, "every handle made during loss + backward is released");
    drop(model);
    drop(kd);
    assert!(live_handles() < before, "dropping the plugins releases their parameter handles");
}
