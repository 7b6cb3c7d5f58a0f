//! The MNIST MLP distillation step at one thread, three ways: Retort with its plugins, a
//! monolithic candle loop (tensor-op AdamW, as candle-nn does it), and PyTorch (`torch_kd_step.py`,
//! run by `bench/run.sh`). Teacher 784-1200-1200-10, student 784-800-800-10, batch 128, Adam,
//! τ = 20, teacher forward every step, real MNIST batches.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p retort-bench --bin kd-step -- [steps] [mlp|cnn]`
//! (the CNN job: LeNet-style teacher conv 32-64 + fc 256, student conv 16-32 + fc 128).
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var, D};
use retort::{
    config::OptimizerSection,
    data::{BatchPlan, Batches, Dataset, DatasetSpec, Split},
    train::optim::Optimizer,
    Host, Inputs, Library, LossInstance, ModelInstance,
};
use retort_bench::exe_dir;

const TAU: f64 = 20.0;

fn lib(name: &str) -> anyhow::Result<std::sync::Arc<Library>> {
    let file = format!("{}{name}.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION);
    Ok(Library::load(&exe_dir().join(file))?)
}

fn batches(n: usize) -> anyhow::Result<Vec<(Tensor, Tensor)>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let spec = DatasetSpec { name: "mnist".into(), dir, validation: 0, seed: 0 };
    let data = std::sync::Arc::new(Dataset::load(&spec, Split::Train)?.subset(128 * n, 1));
    let plan =
        BatchPlan { batch_size: 128, shuffle: true, jitter: 0, mean: 0.1307, std: 0.3081, seed: 1, drop_last: true };
    Batches::start(data, plan, 0, 0, Device::Cpu)
        .map(|b| b.map(|b| (b.images.flatten_from(1).unwrap_or(b.images), b.labels)).map_err(Into::into))
        .collect()
}

/// Retort: mlp plugins for both models, hinton-kd plugin, the host's fused AdamW.
fn retort_steps(data: &[(Tensor, Tensor)], steps: usize, cnn: bool) -> anyhow::Result<f64> {
    let host = Host::cpu(0);
    let (mut teacher, mut student) = if cnn {
        let l = lib("retort_model_cnn")?;
        (
            ModelInstance::new(&host, &l, "cnn", "teacher", r#"{"channels": [32, 64], "hidden": 256}"#)?,
            ModelInstance::new(&host, &l, "cnn", "student", r#"{"channels": [16, 32], "hidden": 128}"#)?,
        )
    } else {
        let l = lib("retort_model_mlp")?;
        (
            ModelInstance::new(&host, &l, "mlp", "teacher", r#"{"hidden": [1200, 1200]}"#)?,
            ModelInstance::new(&host, &l, "mlp", "student", r#"{"hidden": [800, 800]}"#)?,
        )
    };
    let mut kd =
        LossInstance::new(&host, &lib("retort_loss_hinton_kd")?, "hinton-kd", "kd", r#"{"temperature": 20.0}"#)?;
    let params = host.params.params(Some("student")).into_iter().map(|p| (p.name, p.var)).collect();
    let mut opt = Optimizer::new(OptimizerSection::default(), params);
    let mut phases = [0f64; 5];
    let mut step = |i: usize, phases: &mut [f64; 5]| -> anyhow::Result<()> {
        let (x, _) = &data[i % data.len()];
        let t0 = Instant::now();
        let zt = teacher.forward(&Inputs::new().tensor("input", x).scalar("train", 0.0))?.detach();
        let t1 = Instant::now();
        let zs = student.forward(&Inputs::new().tensor("input", x).scalar("train", 1.0))?;
        let t2 = Instant::now();
        let l = kd.loss(&Inputs::new().tensor("student", &zs).tensor("teacher", &zt))?;
        let t3 = Instant::now();
        let grads = l.backward()?;
        let t4 = Instant::now();
        opt.step(&grads, 1e-3)?;
        drop(grads);
        let t5 = Instant::now();
        for (p, (a, b)) in phases.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]) {
            *p += (b - a).as_secs_f64() * 1e3;
        }
        Ok(())
    };
    let mut warm = [0f64; 5];
    for i in 0..3 {
        step(i, &mut warm)?;
    }
    let t = Instant::now();
    for i in 0..steps {
        step(i, &mut phases)?;
    }
    let sps = steps as f64 / t.elapsed().as_secs_f64();
    let names = ["teacher forward", "student forward", "loss", "backward", "optimizer"];
    let per: Vec<String> = names.iter().zip(phases).map(|(n, p)| format!("{n} {:.2}", p / steps as f64)).collect();
    eprintln!("retort phases (ms/step): {}", per.join(", "));
    Ok(sps)
}

struct Mlp {
    layers: Vec<(Var, Var)>,
}

impl Mlp {
    fn new(dims: &[usize]) -> candle_core::Result<Mlp> {
        let layers = dims
            .windows(2)
            .map(|w| {
                let b = 1.0 / (w[0] as f64).sqrt();
                Ok((
                    Var::from_tensor(&Tensor::rand(-b as f32, b as f32, (w[1], w[0]), &Device::Cpu)?)?,
                    Var::from_tensor(&Tensor::rand(-b as f32, b as f32, w[1], &Device::Cpu)?)?,
                ))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Mlp { layers })
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}

fn log_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let s = x.broadcast_sub(&m)?;
    s.broadcast_sub(&s.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// Plain candle: the same step in one function, AdamW as a chain of tensor ops per parameter
/// (what candle-nn's `AdamW` does), `Var::set` to write back.
fn candle_steps(data: &[(Tensor, Tensor)], steps: usize) -> anyhow::Result<f64> {
    let teacher = Mlp::new(&[784, 1200, 1200, 10])?;
    let student = Mlp::new(&[784, 800, 800, 10])?;
    let vars: Vec<Var> = student.layers.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect();
    let mut m: Vec<Tensor> = vars.iter().map(|v| v.zeros_like()).collect::<candle_core::Result<_>>()?;
    let mut v2: Vec<Tensor> = m.clone();
    let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8, 1e-3);
    let mut t = 0i32;
    let mut step = |i: usize| -> anyhow::Result<()> {
        let (x, _) = &data[i % data.len()];
        let zt = teacher.forward(x)?.detach();
        let zs = student.forward(x)?;
        let lps = log_softmax(&zs.affine(1.0 / TAU, 0.0)?)?;
        let lpt = log_softmax(&zt.affine(1.0 / TAU, 0.0)?)?;
        let kl = (lpt.exp()? * (lpt - lps)?)?.sum(D::Minus1)?.mean_all()?.affine(TAU * TAU, 0.0)?;
        let grads = kl.backward()?;
        t += 1;
        for (k, var) in vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            m[k] = ((&m[k] * b1)? + (g * (1.0 - b1))?)?;
            v2[k] = ((&v2[k] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let mh = (&m[k] / (1.0 - b1.powi(t)))?;
            let vh = (&v2[k] / (1.0 - b2.powi(t)))?;
            let upd = (mh / (vh.sqrt()? + eps)?)?;
            var.set(&(var.as_tensor() - (upd * lr)?)?)?;
        }
        Ok(())
    };
    for i in 0..3 {
        step(i)?;
    }
    let start = Instant::now();
    for i in 0..steps {
        step(i)?;
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let cnn = std::env::args().nth(2).as_deref() == Some("cnn");
    let mut data = batches(20)?;
    assert_eq!(data[0].0.dtype(), DType::F32);
    if cnn {
        for (x, _) in data.iter_mut() {
            *x = x.reshape((x.dim(0)?, 1, 28, 28))?;
        }
        println!("retort {:.2} steps/s", retort_steps(&data, steps, true)?);
        return Ok(());
    }
    let plain = candle_steps(&data, steps)?;
    let retort = retort_steps(&data, steps, false)?;
    println!("retort {retort:.2} steps/s");
    println!("candle {plain:.2} steps/s");
    Ok(())
}
