//! One training job's step speed at one thread, on real MNIST batches (batch 128, Adam 1e-3):
//! `teacher` (the teacher trained with CE), `scratch` (the student with CE), `distill` (teacher
//! forward every step + the student on KD at τ = 20). Models: `mlp` (teacher 784-1200-1200-10,
//! student 784-800-800-10) or `cnn` (LeNet-style, teacher conv 32-64 + fc 256, student conv 16-32 +
//! fc 128). Implementations: `retort` (the plugins on the host) or `candle` (the same job as one
//! monolithic candle function, AdamW as candle-nn does it); PyTorch is `torch_kd_step.py`.
//!
//! `kd-step [steps] [mlp|cnn] [teacher|scratch|distill] [retort|candle] [cpu|cuda] [width×] [batch]`
//! prints `<impl> <steps/s> steps/s <peak RSS KiB> KiB <peak device MiB> MiB` on stdout and
//! per-phase times on stderr (on a GPU the phases are launch times: the work is asynchronous);
//! `bench/run.sh` runs every combination in its own process (so peak RSS is per job). `width×`
//! multiplies the MLP widths (the compute-bound probe: 4 at batch 1024).
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

/// The job's shape: device, MLP width multiplier, batch size.
#[derive(Clone)]
struct Shape {
    device: Device,
    width: usize,
    batch: usize,
}

fn lib(name: &str) -> anyhow::Result<std::sync::Arc<Library>> {
    let file = format!("{}{name}.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION);
    // RETORT_PLUGIN_PATH first (a packed GPU build keeps the plugins beside, not with, the binary).
    let dirs = std::env::var_os("RETORT_PLUGIN_PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let dir = dirs.into_iter().flatten().find(|d| d.join(&file).exists()).unwrap_or_else(exe_dir);
    Ok(Library::load(&dir.join(file))?)
}

/// The MNIST directory: `data/mnist` under the working directory, else the checkout's.
fn mnist_dir() -> std::path::PathBuf {
    let here = std::path::PathBuf::from("data/mnist");
    if here.is_dir() {
        return here;
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

/// Twenty real MNIST batches (flat for the MLP, `[B, 1, 28, 28]` for the CNN), labels as u32,
/// on the job's device.
fn batches(cnn: bool, shape: &Shape) -> anyhow::Result<Vec<(Tensor, Tensor)>> {
    let spec = DatasetSpec { name: "mnist".into(), dir: mnist_dir(), validation: 0, seed: 0 };
    let data = std::sync::Arc::new(Dataset::load(&spec, Split::Train)?.subset(shape.batch * 20, 1));
    let plan = BatchPlan {
        batch_size: shape.batch,
        shuffle: true,
        jitter: 0,
        mean: 0.1307,
        std: 0.3081,
        seed: 1,
        drop_last: true,
    };
    Batches::start(data, plan, 0, 0, Device::Cpu)
        .map(|b| {
            let b = b?;
            let x = if cnn { b.images } else { b.images.flatten_from(1)? };
            Ok((x.to_device(&shape.device)?, b.labels.to_device(&shape.device)?))
        })
        .collect()
}

/// Runs `step` three times to warm up, then `steps` times; steps/s and mean phase times.
fn timed(
    steps: usize,
    device: &Device,
    names: &[&str],
    mut step: impl FnMut(usize, &mut [f64]) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut phases = vec![0f64; names.len()];
    for i in 0..3 {
        step(i, &mut vec![0f64; names.len()])?;
    }
    device.synchronize()?;
    let t = Instant::now();
    for i in 0..steps {
        step(i, &mut phases)?;
    }
    device.synchronize()?;
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

/// `[a, b]` hidden widths times the probe's multiplier, as a model config.
fn hidden(a: usize, b: usize, width: usize) -> String {
    format!(r#"{{"hidden": [{}, {}]}}"#, a * width, b * width)
}

/// Retort: the mlp/cnn model plugins, the hinton-kd or cross-entropy loss plugin, the host's
/// optimizer; one read from the device per step, after the backward, as the trainer does.
fn retort_steps(data: &[(Tensor, Tensor)], steps: usize, cnn: bool, job: Job, shape: &Shape) -> anyhow::Result<f64> {
    let host = Host::new(shape.device.clone(), 0);
    let (big_mlp, small_mlp) = (hidden(1200, 1200, shape.width), hidden(800, 800, shape.width));
    let (lib_m, kind, big, small) = if cnn {
        (
            lib("retort_model_cnn")?,
            "cnn",
            r#"{"channels": [32, 64], "hidden": 256}"#,
            r#"{"channels": [16, 32], "hidden": 128}"#,
        )
    } else {
        (lib("retort_model_mlp")?, "mlp", big_mlp.as_str(), small_mlp.as_str())
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
    timed(steps, &shape.device, &names, |i, ph| {
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
                loss.loss_unread(&Inputs::new().tensor("student", &zs).tensor("teacher", &zt))?
            }
            _ => {
                let model = teacher.as_mut().or(student.as_mut()).ok_or_else(|| anyhow::anyhow!("no model"))?;
                let z = model.forward(&Inputs::new().tensor("input", x).scalar("train", 1.0))?;
                ph[if job == Job::Teacher { 0 } else { 1 }] += lap(&mut t);
                loss.loss_unread(&Inputs::new().tensor("student", &z).tensor("labels", y))?
            }
        };
        ph[2] += lap(&mut t);
        let grads = retort::backend::backward(&l)?;
        loss.value(&l)?;
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
    /// The network with its parameters moved to `d`.
    fn to(self, d: &Device) -> candle_core::Result<Net> {
        let mv = |(w, b): (Var, Var)| -> candle_core::Result<(Var, Var)> {
            Ok((Var::from_tensor(&w.to_device(d)?)?, Var::from_tensor(&b.to_device(d)?)?))
        };
        Ok(Net {
            convs: self.convs.into_iter().map(mv).collect::<candle_core::Result<_>>()?,
            fcs: self.fcs.into_iter().map(mv).collect::<candle_core::Result<_>>()?,
        })
    }
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
fn candle_steps(data: &[(Tensor, Tensor)], steps: usize, cnn: bool, job: Job, shape: &Shape) -> anyhow::Result<f64> {
    let k = shape.width;
    let (big, small) = if cnn {
        (Net::cnn(32, 64, 256)?, Net::cnn(16, 32, 128)?)
    } else {
        (Net::mlp(&[784, 1200 * k, 1200 * k, 10])?, Net::mlp(&[784, 800 * k, 800 * k, 10])?)
    };
    let (big, small) = (big.to(&shape.device)?, small.to(&shape.device)?);
    let trained = if job == Job::Teacher { &big } else { &small };
    let vars = trained.vars();
    let mut m: Vec<Tensor> = vars.iter().map(|v| v.zeros_like()).collect::<candle_core::Result<_>>()?;
    let mut v2: Vec<Tensor> = m.clone();
    let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8, 1e-3);
    let mut t = 0i32;
    let names = ["teacher forward", "student forward", "loss", "backward", "optimizer"];
    timed(steps, &shape.device, &names, |i, ph| {
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
    let device = retort_bench::device(arg(5).as_deref().unwrap_or("cpu"))?;
    let width = arg(6).and_then(|s| s.parse().ok()).unwrap_or(1);
    let batch = arg(7).and_then(|s| s.parse().ok()).unwrap_or(128);
    let shape = Shape { device, width, batch };
    let data = batches(cnn, &shape)?;
    let sps = match which.as_str() {
        "retort" => retort_steps(&data, steps, cnn, job, &shape)?,
        "candle" => candle_steps(&data, steps, cnn, job, &shape)?,
        other => anyhow::bail!("unknown implementation {other:?} (retort or candle)"),
    };
    let mib = retort_bench::device_peak_bytes(&shape.device).map_or(0.0, |b| b as f64 / (1 << 20) as f64);
    println!("{which} {sps:.2} steps/s {} KiB {mib:.0} MiB", peak_rss_kib());
    Ok(())
}
