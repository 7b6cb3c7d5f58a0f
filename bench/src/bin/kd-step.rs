//! One training job's step speed at one thread, on real MNIST batches (batch 128, Adam 1e-3):
//! `teacher` (the teacher trained with CE), `scratch` (the student with CE), `distill` (teacher
//! forward every step + the student on KD at τ = 20). Models: `mlp` (teacher 784-1200-1200-10,
//! student 784-800-800-10) or `cnn` (LeNet-style, teacher conv 32-64 + fc 256, student conv 16-32 +
//! fc 128). Implementations: `retort` (the plugins on the host) or `candle` (the same job as one
//! monolithic candle function, AdamW as candle-nn does it); PyTorch is `torch_kd_step.py`.
//!
//! `kd-step [steps] [mlp|cnn] [teacher|scratch|distill] [retort|candle]` prints
//! `<impl> <steps/s> steps/s <peak RSS KiB> KiB` on stdout and per-phase times on stderr;
//! `bench/run.sh` runs every combination in its own process (so peak RSS is per job).
use std::time::Instant;

use candle_core::{Device, Tensor, Var, D};
use retort::{
    config::OptimizerSection,
    data::{BatchPlan, Batches, Dataset, DatasetSpec, Split},
    train::optim::Optimizer,
    Host, Inputs, Library, LossInstance, ModelInstance,
};
use retort_bench::{exe_dir, peak_rss_kib};

const TAU: f64 = 20.0;

#[derive(Clone, Copy, PartialEq)]
enum Job {
    Teacher,
    Scratch,
    Distill,
}

fn lib(name: &str) -> anyhow::Result<std::sync::Arc<Library>> {
    let file = format!("{}{name}.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION);
    Ok(Library::load(&exe_dir().join(file))?)
}

/// Twenty real MNIST batches (flat for the MLP, `[B, 1, 28, 28]` for the CNN), labels as u32.
fn batches(cnn: bool) -> anyhow::Result<Vec<(Tensor, Tensor)>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let spec = DatasetSpec { name: "mnist".into(), dir, validation: 0, seed: 0 };
    let data = std::sync::Arc::new(Dataset::load(&spec, Split::Train)?.subset(128 * 20, 1));
    let plan =
        BatchPlan { batch_size: 128, shuffle: true, jitter: 0, mean: 0.1307, std: 0.3081, seed: 1, drop_last: true };
    Batches::start(data, plan, 0, 0, Device::Cpu)
        .map(|b| {
            let b = b?;
            let x = if cnn { b.images } else { b.images.flatten_from(1)? };
            Ok((x, b.labels))
        })
        .collect()
}

/// Runs `step` three times to warm up, then `steps` times; steps/s and mean phase times.
fn timed(
    steps: usize,
    names: &[&str],
    mut step: impl FnMut(usize, &mut [f64]) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut phases = vec![0f64; names.len()];
    for i in 0..3 {
        step(i, &mut vec![0f64; names.len()])?;
    }
    let t = Instant::now();
    for i in 0..steps {
        step(i, &mut phases)?;
    }
    let sps = steps as f64 / t.elapsed().as_secs_f64();
    let per: Vec<String> = names.iter().zip(&phases).map(|(n, p)| format!("{n} {:.2}", p / steps as f64)).collect();
    eprintln!("phases (ms/step): {}", per.join(", "));
    Ok(sps)
}

/// Milliseconds since `t`, and resets `t`.
fn lap(t: &mut Instant) -> f64 {
    let now = Instant::now();
    let ms = (now - *t).as_secs_f64() * 1e3;
    *t = now;
    ms
}

/// Retort: the mlp/cnn model plugins, the hinton-kd or cross-entropy loss plugin, the host's fused Adam.
fn retort_steps(data: &[(Tensor, Tensor)], steps: usize, cnn: bool, job: Job) -> anyhow::Result<f64> {
    let host = Host::cpu(0);
    let (lib_m, kind, big, small) = if cnn {
        (
            lib("retort_model_cnn")?,
            "cnn",
            r#"{"channels": [32, 64], "hidden": 256}"#,
            r#"{"channels": [16, 32], "hidden": 128}"#,
        )
    } else {
        (lib("retort_model_mlp")?, "mlp", r#"{"hidden": [1200, 1200]}"#, r#"{"hidden": [800, 800]}"#)
    };
    let mut teacher =
        if job == Job::Scratch { None } else { Some(ModelInstance::new(&host, &lib_m, kind, "teacher", big)?) };
    let mut student =
        if job == Job::Teacher { None } else { Some(ModelInstance::new(&host, &lib_m, kind, "student", small)?) };
    let mut loss = if job == Job::Distill {
        LossInstance::new(&host, &lib("retort_loss_hinton_kd")?, "hinton-kd", "kd", r#"{"temperature": 20.0}"#)?
    } else {
        LossInstance::new(&host, &lib("retort_loss_cross_entropy")?, "cross-entropy", "ce", "{}")?
    };
    let trained = if job == Job::Teacher { "teacher" } else { "student" };
    let params = host.params.params(Some(trained)).into_iter().map(|p| (p.name, p.var)).collect();
    let mut opt = Optimizer::new(OptimizerSection::default(), params);
    let names = ["teacher forward", "student forward", "loss", "backward", "optimizer"];
    timed(steps, &names, |i, ph| {
        let (x, y) = &data[i % data.len()];
        let mut t = Instant::now();
        let l = match job {
            Job::Distill => {
                let t_model = teacher.as_mut().ok_or_else(|| anyhow::anyhow!("no teacher"))?;
                let zt = t_model.forward(&Inputs::new().tensor("input", x).scalar("train", 0.0))?.detach();
                ph[0] += lap(&mut t);
                let s_model = student.as_mut().ok_or_else(|| anyhow::anyhow!("no student"))?;
                let zs = s_model.forward(&Inputs::new().tensor("input", x).scalar("train", 1.0))?;
                ph[1] += lap(&mut t);
                loss.loss(&Inputs::new().tensor("student", &zs).tensor("teacher", &zt))?
            }
            _ => {
                let model = teacher.as_mut().or(student.as_mut()).ok_or_else(|| anyhow::anyhow!("no model"))?;
                let z = model.forward(&Inputs::new().tensor("input", x).scalar("train", 1.0))?;
                ph[if job == Job::Teacher { 0 } else { 1 }] += lap(&mut t);
                loss.loss(&Inputs::new().tensor("student", &z).tensor("labels", y))?
            }
        };
        ph[2] += lap(&mut t);
        let grads = retort::backend::backward(&l)?;
        ph[3] += lap(&mut t);
        opt.step(&grads, 1e-3)?;
        drop(grads);
        ph[4] += lap(&mut t);
        Ok(())
    })
}

/// A plain candle network: the MLP or the LeNet-style CNN, `Var` parameters, PyTorch's init.
struct Net {
    convs: Vec<(Var, Var)>,
    fcs: Vec<(Var, Var)>,
}

fn uniform(shape: &[usize], fan_in: usize) -> candle_core::Result<Var> {
    let b = (1.0 / fan_in as f64).sqrt() as f32;
    Var::from_tensor(&Tensor::rand(-b, b, shape, &Device::Cpu)?)
}

impl Net {
    fn mlp(dims: &[usize]) -> candle_core::Result<Net> {
        let fcs = dims
            .windows(2)
            .map(|w| Ok((uniform(&[w[1], w[0]], w[0])?, uniform(&[w[1]], w[0])?)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Net { convs: vec![], fcs })
    }

    fn cnn(c1: usize, c2: usize, hidden: usize) -> candle_core::Result<Net> {
        let convs = vec![
            (uniform(&[c1, 1, 5, 5], 25)?, uniform(&[c1], 25)?),
            (uniform(&[c2, c1, 5, 5], c1 * 25)?, uniform(&[c2], c1 * 25)?),
        ];
        let fcs = vec![
            (uniform(&[hidden, c2 * 49], c2 * 49)?, uniform(&[hidden], c2 * 49)?),
            (uniform(&[10, hidden], hidden)?, uniform(&[10], hidden)?),
        ];
        Ok(Net { convs, fcs })
    }

    fn vars(&self) -> Vec<Var> {
        self.convs.iter().chain(&self.fcs).flat_map(|(w, b)| [w.clone(), b.clone()]).collect()
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (w, b) in &self.convs {
            let c = b.dim(0)?;
            h = h.conv2d(w, 2, 1, 1, 1)?.broadcast_add(&b.reshape((1, c, 1, 1))?)?.relu()?.max_pool2d(2)?;
        }
        if !self.convs.is_empty() {
            h = h.flatten_from(1)?;
        }
        for (i, (w, b)) in self.fcs.iter().enumerate() {
            h = h.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
            if i + 1 < self.fcs.len() {
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

/// Plain candle: the same job in one function, AdamW as a chain of tensor ops per parameter (what
/// candle-nn's `AdamW` does), `Var::set` to write back.
fn candle_steps(data: &[(Tensor, Tensor)], steps: usize, cnn: bool, job: Job) -> anyhow::Result<f64> {
    let (big, small) = if cnn {
        (Net::cnn(32, 64, 256)?, Net::cnn(16, 32, 128)?)
    } else {
        (Net::mlp(&[784, 1200, 1200, 10])?, Net::mlp(&[784, 800, 800, 10])?)
    };
    let trained = if job == Job::Teacher { &big } else { &small };
    let vars = trained.vars();
    let mut m: Vec<Tensor> = vars.iter().map(|v| v.zeros_like()).collect::<candle_core::Result<_>>()?;
    let mut v2: Vec<Tensor> = m.clone();
    let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8, 1e-3);
    let mut t = 0i32;
    let names = ["teacher forward", "student forward", "loss", "backward", "optimizer"];
    timed(steps, &names, |i, ph| {
        let (x, y) = &data[i % data.len()];
        let mut clock = Instant::now();
        let loss = if job == Job::Distill {
            let zt = big.forward(x)?.detach();
            ph[0] += lap(&mut clock);
            let zs = small.forward(x)?;
            ph[1] += lap(&mut clock);
            let lps = log_softmax(&zs.affine(1.0 / TAU, 0.0)?)?;
            let lpt = log_softmax(&zt.affine(1.0 / TAU, 0.0)?)?;
            (lpt.exp()? * (lpt - lps)?)?.sum(D::Minus1)?.mean_all()?.affine(TAU * TAU, 0.0)?
        } else {
            let z = trained.forward(x)?;
            ph[if job == Job::Teacher { 0 } else { 1 }] += lap(&mut clock);
            let lp = log_softmax(&z)?;
            lp.gather(&y.to_dtype(candle_core::DType::I64)?.unsqueeze(1)?, 1)?.mean_all()?.neg()?
        };
        ph[2] += lap(&mut clock);
        let grads = loss.backward()?;
        ph[3] += lap(&mut clock);
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
        ph[4] += lap(&mut clock);
        Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    let arg = |i: usize| std::env::args().nth(i);
    let steps: usize = arg(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let cnn = arg(2).as_deref() == Some("cnn");
    let job = match arg(3).as_deref() {
        Some("teacher") => Job::Teacher,
        Some("scratch") => Job::Scratch,
        None | Some("distill") => Job::Distill,
        Some(other) => anyhow::bail!("unknown job {other:?} (teacher, scratch or distill)"),
    };
    let which = arg(4).unwrap_or_else(|| "retort".into());
    let data = batches(cnn)?;
    let sps = match which.as_str() {
        "retort" => retort_steps(&data, steps, cnn, job)?,
        "candle" => candle_steps(&data, steps, cnn, job)?,
        other => anyhow::bail!("unknown implementation {other:?} (retort or candle)"),
    };
    println!("{which} {sps:.2} steps/s {} KiB", peak_rss_kib());
    Ok(())
}
