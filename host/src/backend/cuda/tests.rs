//! The CUDA kernels against the CPU path (values and gradients); skipped without a GPU.
use std::sync::Arc;

use candle_core::{Device, Tensor, Var};

use super::test_device;
use crate::backend::kernel::max_diff;
use crate::backend::softmax_loss::{ce_rows, kl_rows};
use crate::data::{BatchPlan, Batches, Dataset, DeviceSet};

/// Value and both gradients of `f(p, q)·w` on the CPU and on `gpu`, compared.
fn compare_rows(gpu: &Device, p: &Tensor, q: &Tensor, w: &Tensor, f: impl Fn(&Tensor, &Tensor) -> Tensor, what: &str) {
    let run = |d: &Device| {
        let pv = Var::from_tensor(&p.to_device(d).unwrap()).unwrap();
        let qv = Var::from_tensor(&q.to_device(d).unwrap()).unwrap();
        let out = f(pv.as_tensor(), qv.as_tensor());
        let g = (&out * w.to_device(d).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        let cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
        (cpu(&out), cpu(g.get(pv.as_tensor()).unwrap()), cpu(g.get(qv.as_tensor()).unwrap()))
    };
    let (a, b) = (run(&Device::Cpu), run(gpu));
    assert!(max_diff(&a.0, &b.0) < 1e-4, "{what}: value");
    assert!(max_diff(&a.1, &b.1) < 1e-5, "{what}: gradient wrt p");
    assert!(max_diff(&a.2, &b.2) < 1e-5, "{what}: gradient wrt q");
}

#[test]
fn kl_rows_on_cuda_match_the_cpu() {
    let Some(gpu) = test_device() else { return };
    let d = Device::Cpu;
    // Rows not a multiple of the four per block; widths below, at and far above a warp.
    for (shape, tau) in [(vec![1usize, 1usize], 1.0), (vec![7, 10], 4.0), (vec![2, 3, 33], 2.0), (vec![65, 1000], 20.0)]
    {
        let p = Tensor::randn(0f32, 3.0, shape.as_slice(), &d).unwrap();
        let q = Tensor::randn(0f32, 3.0, shape.as_slice(), &d).unwrap();
        let w = Tensor::randn(0f32, 1.0, &shape[..shape.len() - 1], &d).unwrap();
        compare_rows(&gpu, &p, &q, &w, |p, q| kl_rows(p, q, tau).unwrap(), &format!("kl {shape:?} τ {tau}"));
    }
    // −inf teacher logits (a masked vocabulary entry) give 0·log 0 = 0, as on the CPU.
    let p = Tensor::new(&[[1f32, f32::NEG_INFINITY, 0.5], [0.0, 2.0, f32::NEG_INFINITY]], &d).unwrap();
    let q = Tensor::new(&[[0.3f32, 0.1, -0.2], [1.0, 0.0, 0.5]], &d).unwrap();
    let w = Tensor::new(&[1f32, -2.0], &d).unwrap();
    compare_rows(&gpu, &p, &q, &w, |p, q| kl_rows(p, q, 2.0).unwrap(), "kl with −inf");
}

#[test]
fn ce_rows_on_cuda_match_the_cpu() {
    let Some(gpu) = test_device() else { return };
    let d = Device::Cpu;
    let z = Tensor::randn(0f32, 2.0, (6, 37), &d).unwrap();
    let y = Tensor::new(&[3i64, -100, 0, 36, 5, 7], &d).unwrap();
    let w = Tensor::randn(0f32, 1.0, 6, &d).unwrap();
    let run = |dev: &Device| {
        let zv = Var::from_tensor(&z.to_device(dev).unwrap()).unwrap();
        let out = ce_rows(zv.as_tensor(), &y.to_device(dev).unwrap()).unwrap();
        let g = (&out * w.to_device(dev).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        (out.to_device(&d).unwrap(), g.get(zv.as_tensor()).unwrap().to_device(&d).unwrap())
    };
    let (a, b) = (run(&d), run(&gpu));
    assert!(max_diff(&a.0, &b.0) < 1e-5 && max_diff(&a.1, &b.1) < 1e-5);
    assert_eq!(b.0.to_vec1::<f32>().unwrap()[1], 0.0, "an ignored label gives 0");
    // Out of range: an error on the CPU, a NaN row on CUDA (caught by the trainer's loss check).
    let bad = Tensor::new(&[37i64], &gpu).unwrap();
    let v = ce_rows(&z.narrow(0, 0, 1).unwrap().to_device(&gpu).unwrap(), &bad).unwrap();
    assert!(v.to_vec1::<f32>().unwrap()[0].is_nan());
}

#[test]
fn dropout_masks_are_seeded_and_unbiased() {
    let Some(gpu) = test_device() else { return };
    let x = Tensor::ones((256, 1024), candle_core::DType::F32, &gpu).unwrap();
    let a = super::dropout_mask(&x, 0.25, 7).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = super::dropout_mask(&x, 0.25, 7).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let c = super::dropout_mask(&x, 0.25, 8).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b, "one seed, one mask");
    assert_ne!(a, c, "another seed, another mask");
    let scale = 1.0 / 0.75f32;
    assert!(a.iter().all(|&v| v == 0.0 || v == scale));
    let kept = a.iter().filter(|&&v| v > 0.0).count() as f64 / a.len() as f64;
    assert!((kept - 0.75).abs() < 0.005, "kept {kept}");
}

#[test]
fn device_batches_on_cuda_equal_the_host_batches() {
    let Some(gpu) = test_device() else { return };
    let data = Arc::new(Dataset {
        images: (0..50 * 36).map(|v| (v * 7 % 256) as u8).collect(),
        labels: (0..50).map(|v| v as u8 % 10).collect(),
        height: 6,
        width: 6,
        classes: 10,
        ids: Vec::new(),
        lengths: Vec::new(),
    });
    let plan = BatchPlan { batch_size: 8, shuffle: true, jitter: 2, mean: 0.13, std: 0.31, seed: 5, drop_last: true };
    let set = Arc::new(DeviceSet::upload(&data, &plan, &gpu).unwrap());
    let host = Batches::start(data.clone(), plan.clone(), 1, 0, Device::Cpu);
    for (a, b) in host.zip(Batches::on_device(set, data.len(), plan, 1, 0)) {
        let (a, b) = (a.unwrap(), b.unwrap());
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&a.images), flat(&b.images.to_device(&Device::Cpu).unwrap()));
        assert_eq!(a.labels.to_vec1::<u32>().unwrap(), b.labels.to_vec1::<u32>().unwrap());
    }
}
