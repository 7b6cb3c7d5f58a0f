//! Forward + backward time of every loss plugin vs the same math written directly in candle, at
//! one thread, on 256×100 logits and on 8×128×1000 masked sequence logits (where the loss applies).
//! Needs `cargo build --release` first. `cargo run --release -p retort-bench --bin loss-zoo`
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor, Var, D};
use retort::{Host, Inputs, Library, LossInstance};
use retort_bench::exe_dir;

fn lsm(x: &Tensor, tau: f64) -> Result<Tensor> {
    let x = x.affine(1.0 / tau, 0.0)?;
    let m = x.max_keepdim(D::Minus1)?.detach();
    let s = x.broadcast_sub(&m)?;
    s.broadcast_sub(&s.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// Σ p (log p − log q) per row, zero where p = 0.
fn kl(lp: &Tensor, lq: &Tensor) -> Result<Tensor> {
    let p = lp.exp()?;
    let term = (&p * (lp - lq)?)?;
    let zero = p.detach().zeros_like()?;
    p.gt(&zero)?.where_cond(&term, &zero)?.sum(D::Minus1)
}

fn reduce(rows: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => rows.mean_all(),
        Some(m) => (rows * m)?.sum_all()?.broadcast_div(&m.sum_all()?.clamp(1f32, f32::MAX)?),
    }
}

fn mix(w: f64, la: &Tensor, lb: &Tensor) -> Result<Tensor> {
    let a = la.affine(1.0, w.ln())?;
    let b = lb.affine(1.0, (1.0 - w).ln())?;
    let m = a.maximum(&b)?.detach();
    (a.broadcast_sub(&m)?.exp()? + b.broadcast_sub(&m)?.exp()?)?.log()? + m
}

fn hard_ce(lq: &Tensor, y: &Tensor) -> Result<Tensor> {
    lq.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
}

struct Data {
    zs: Var,
    zt: Tensor,
    y: Tensor,
    mask: Option<Tensor>,
}

fn data(rows: usize, classes: usize, masked: bool) -> Result<Data> {
    let d = Device::Cpu;
    let y: Vec<i64> = (0..rows).map(|i| ((i * 7919) % classes) as i64).collect();
    let mask = masked.then(|| {
        Tensor::from_vec((0..rows).map(|i| if i % 10 == 9 { 0f32 } else { 1.0 }).collect::<Vec<_>>(), rows, &d)
    });
    Ok(Data {
        zs: Var::from_tensor(&Tensor::randn(0f32, 2.0, (rows, classes), &d)?)?,
        zt: Tensor::randn(0f32, 2.0, (rows, classes), &d)?,
        y: Tensor::from_vec(y, rows, &d)?,
        mask: mask.transpose()?,
    })
}

fn median_ms(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    for _ in 0..2 {
        f()?;
    }
    let mut v = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

type Direct = fn(&Data) -> Result<Tensor>;

fn main() -> anyhow::Result<()> {
    let host = Host::cpu(0);
    let lib = |n: &str| Library::load(&exe_dir().join(format!("libretort_loss_{n}.so")));
    let (kd, ce, div, m) = (lib("hinton_kd")?, lib("cross_entropy")?, lib("divergences")?, lib("methods")?);
    let cases: Vec<(&str, &std::sync::Arc<Library>, &str, bool, Direct)> = vec![
        ("hinton-kd", &kd, r#"{"temperature": 4.0}"#, true, |d| {
            reduce(&kl(&lsm(&d.zt, 4.0)?, &lsm(d.zs.as_tensor(), 4.0)?)?, d.mask.as_ref())?.affine(16.0, 0.0)
        }),
        ("cross-entropy", &ce, "{}", true, |d| reduce(&hard_ce(&lsm(d.zs.as_tensor(), 1.0)?, &d.y)?, d.mask.as_ref())),
        ("reverse-kl", &div, "{}", true, |d| {
            reduce(&kl(&lsm(d.zs.as_tensor(), 1.0)?, &lsm(&d.zt, 1.0)?)?, d.mask.as_ref())
        }),
        ("jensen-shannon", &div, "{}", true, |d| {
            let (s, t) = (lsm(d.zs.as_tensor(), 1.0)?, lsm(&d.zt, 1.0)?);
            let lm = mix(0.5, &t, &s)?;
            reduce(&((kl(&t, &lm)? * 0.5)? + (kl(&s, &lm)? * 0.5)?)?, d.mask.as_ref())
        }),
        ("total-variation", &div, "{}", true, |d| {
            let r = (lsm(&d.zt, 1.0)?.exp()? - lsm(d.zs.as_tensor(), 1.0)?.exp()?)?.abs()?.sum(D::Minus1)?;
            reduce(&(r * 0.5)?, d.mask.as_ref())
        }),
        ("skew-kl", &div, "{}", true, |d| {
            let (s, t) = (lsm(d.zs.as_tensor(), 1.0)?, lsm(&d.zt, 1.0)?);
            reduce(&kl(&t, &mix(0.1, &t, &s)?)?, d.mask.as_ref())
        }),
        ("skew-reverse-kl", &div, "{}", true, |d| {
            let (s, t) = (lsm(d.zs.as_tensor(), 1.0)?, lsm(&d.zt, 1.0)?);
            reduce(&kl(&s, &mix(0.9, &t, &s)?)?, d.mask.as_ref())
        }),
        ("generalized-jsd", &div, r#"{"beta": 0.1}"#, true, |d| {
            let (s, t) = (lsm(d.zs.as_tensor(), 1.0)?, lsm(&d.zt, 1.0)?);
            let lm = mix(0.1, &t, &s)?;
            reduce(&((kl(&t, &lm)? * 0.1)? + (kl(&s, &lm)? * 0.9)?)?, d.mask.as_ref())
        }),
        ("taid", &m, r#"{"alpha": 0.0}"#, true, |d| {
            let target = ((d.zs.as_tensor().detach() * 0.6)? + (&d.zt * 0.4)?)?;
            reduce(&kl(&lsm(&target, 1.0)?, &lsm(d.zs.as_tensor(), 1.0)?)?, d.mask.as_ref())
        }),
        ("mixstd", &m, "{}", false, |d| {
            let st = |z: &Tensor| -> Result<Tensor> {
                let mean = z.mean_keepdim(D::Minus1)?;
                let n = z.dim(D::Minus1)? as f64;
                let sd = (z.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (n - 1.0))?.sqrt()?;
                lsm(&z.broadcast_div(&sd)?, 1.0)
            };
            let (s, t) = (st(d.zs.as_tensor())?, st(&d.zt)?);
            (hard_ce(&s, &d.y)?.mean_all()? * 0.1)? + (kl(&t, &s)?.mean_all()? * 0.9)?
        }),
        ("bd-kd", &m, "{}", false, |d| {
            let (s, t) = (lsm(d.zs.as_tensor(), 1.0)?, lsm(&d.zt, 1.0)?);
            let ent = |l: &Tensor| -> Result<Tensor> { (l.exp()? * l)?.sum(D::Minus1)?.neg() };
            let wr = candle_nn_sigmoid(&(ent(&s.detach())? - ent(&t)?)?)?;
            let wf = wr.affine(-1.0, 1.0)?;
            let rows = ((kl(&t, &s)? * wf)? + (kl(&s, &t)? * wr)?)?;
            (rows + hard_ce(&lsm(d.zs.as_tensor(), 1.0)?, &d.y)?)?.mean_all()
        }),
        ("dkd", &m, r#"{"warmup_epochs": 0.0}"#, false, |d| {
            let classes = d.zs.dim(1)?;
            let gt = d.y.unsqueeze(1)?.broadcast_eq(&Tensor::arange(0i64, classes as i64, &Device::Cpu)?)?;
            let ninf = Tensor::new(&[f32::NEG_INFINITY], &Device::Cpu)?.broadcast_as(d.zt.shape())?;
            let parts = |z: &Tensor| -> Result<(Tensor, Tensor)> {
                let z = (z / 4.0)?;
                let lp = lsm(&z, 1.0)?;
                let tgt = (&lp * gt.to_dtype(DType::F32)?)?.sum(D::Minus1)?;
                let rest = gt.where_cond(&ninf, &lp)?.log_sum_exp(D::Minus1)?;
                Ok((Tensor::stack(&[&tgt, &rest], 1)?, lsm(&gt.where_cond(&ninf, &z)?, 1.0)?))
            };
            let (bs, hs) = parts(d.zs.as_tensor())?;
            let (bt, ht) = parts(&d.zt)?;
            let l = ((kl(&bt, &bs)?.mean_all()? + (kl(&ht, &hs)?.mean_all()? * 8.0)?)? * 16.0)?;
            l + hard_ce(&lsm(d.zs.as_tensor(), 1.0)?, &d.y)?.mean_all()?
        }),
        ("sinkd", &m, "{}", false, |d| {
            let (qs, qt) = (lsm(d.zs.as_tensor(), 2.0)?.exp()?, lsm(&d.zt, 2.0)?.exp()?);
            let w = qs.unsqueeze(1)?.broadcast_sub(&qt.unsqueeze(0)?)?.abs()?.sum(D::Minus1)?;
            let mut p = (w.clone() * -10.0)?.exp()?;
            for _ in 0..20 {
                p = p.broadcast_div(&p.sum_keepdim(1)?)?;
                p = p.broadcast_div(&p.sum_keepdim(0)?)?;
            }
            (p * w)?.sum_all()? * 0.001
        }),
        ("pld", &m, "{}", false, |d| {
            let (n, c) = (d.zs.dim(0)?, d.zs.dim(1)?);
            let (rows, ys) = (d.zt.to_vec2::<f32>()?, d.y.to_vec1::<i64>()?);
            let mut order = Vec::with_capacity(n * c);
            for (row, &y) in rows.iter().zip(&ys) {
                let mut rest: Vec<usize> = (0..c).filter(|&k| k != y as usize).collect();
                rest.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                order.push(y);
                order.extend(rest.into_iter().map(|k| k as i64));
            }
            let pi = Tensor::from_vec(order, (n, c), &Device::Cpu)?;
            let z = d.zs.as_tensor().gather(&pi, 1)?;
            let w = lsm(&d.zt, 1.0)?.exp()?.gather(&pi, 1)?;
            let tri = Tensor::tril2(c, DType::F32, &Device::Cpu)?;
            let m = z.max_keepdim(1)?.detach();
            let lse = (z.broadcast_sub(&m)?.exp()?.matmul(&tri)?.log()?.broadcast_add(&m))?;
            (w * (lse - z)?)?.sum(1)?.mean_all()
        }),
        ("swing", &m, r#"{"tau_min": 2.0}"#, true, |d| {
            reduce(&kl(&lsm(&d.zt, 2.0)?, &lsm(d.zs.as_tensor(), 2.0)?)?, d.mask.as_ref())
        }),
    ];
    println!("loss forward + backward, median ms of 11 (one thread); ratio = plugin / direct candle");
    println!(
        "{:<18} {:>10} {:>10} {:>7}   {:>12} {:>12} {:>7}",
        "loss", "256×100", "direct", "ratio", "8×128×1000", "direct", "ratio"
    );
    for (name, lib, cfg, seq, direct) in cases {
        let mut row = format!("{name:<18}");
        for (rows, classes, masked) in [(256, 100, false), (8 * 128, 1000, true)] {
            if masked && !seq {
                row.push_str(&format!("   {:>12} {:>12} {:>7}", "n/a", "", ""));
                continue;
            }
            let d = data(rows, classes, masked)?;
            let mut inst = LossInstance::new(&host, lib, name, "bench", cfg)?;
            let mut inputs =
                Inputs::new().tensor("student", d.zs.as_tensor()).tensor("teacher", &d.zt).tensor("labels", &d.y);
            if let Some(m) = &d.mask {
                inputs = inputs.tensor("mask", m);
            }
            let p = median_ms(|| {
                inst.loss(&inputs)?.backward()?;
                Ok(())
            })?;
            let q = median_ms(|| {
                direct(&d)?.backward()?;
                Ok(())
            })?;
            let w = if masked { 12 } else { 10 };
            row.push_str(&format!("{}{p:>w$.3} {q:>w$.3} {:>7.3}", if masked { "   " } else { " " }, p / q));
        }
        println!("{row}");
    }
    Ok(())
}

fn candle_nn_sigmoid(x: &Tensor) -> Result<Tensor> {
    x.neg()?.exp()?.affine(1.0, 1.0)?.recip()
}
