//! Failure containment and resource hygiene: panics, handle counts, load/unload cycles.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
use candle_core::{DType, Device, Tensor};
use retort::{Host, Inputs, Library, LossInstance};
use retort_e2e::{fixture, plugin};

#[test]
fn panic_inside_loss_becomes_an_error_naming_the_plugin() {
    let lib = Library::load(&fixture("fixture-panicky")).unwrap();
    let host = Host::cpu(0);
    let mut loss = LossInstance::new(&host, &lib, "fixture-panicky", "loss", "{}").unwrap();
    let z = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    let inputs = Inputs::new().tensor("student", &z).tensor("teacher", &z);
    for _ in 0..3 {
        let e = loss.loss(&inputs).expect_err("must fail");
        let msg = e.to_string();
        assert!(msg.contains("fixture-panicky") && msg.contains("deliberate panic"), "{msg}");
    }
    // The process is fine and other plugins still work.
    let kd_lib = Library::load(&plugin("retort-loss-hinton-kd")).unwrap();
    let mut kd = LossInstance::new(&host, &kd_lib, "hinton-kd", "kd", "{}").unwrap();
    let zs = Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(kd.loss(&Inputs::new().tensor("student", &zs).tensor("teacher", &zs)).is_ok());
}
