//! The offline teacher (issue #12 item 4): `retort teacher cache` writes a model's top-k logits,
//! the `cached` teacher hands them back by dataset sample id, and `topk-kd` gives the same loss
//! from the cache as from the live teacher; against its formula, and equal to Hinton KD when k
//! covers every class.
use std::{path::Path, sync::Arc};

use candle_core::{DType, Device, Tensor};
use retort::{train::cache::top_k, Host, Inputs, Library, LossInstance, TeacherInstance};
use retort_e2e::{
    plugin,
    run::{fresh_dir, mnist_run, report, retort, train_records, two_teachers_config},
};

fn lib(name: &str) -> Arc<Library> {
    Library::load(&plugin(name)).unwrap()
}

fn logits(n: usize, c: usize, seed: usize) -> Tensor {
    let v: Vec<f32> = (0..n * c).map(|i| (((i + seed) * 41 % 31) as f32 - 15.0) / 4.0).collect();
    Tensor::from_vec(v, (n, c), &Device::Cpu).unwrap()
}

/// A cache file of `z` (rows are samples `ids`), as `retort teacher cache` writes it.
fn write_cache(path: &Path, z: &Tensor, ids: &[u32], k: usize) {
    let (n, c) = z.dims2().unwrap();
    let t = top_k(&z.flatten_all().unwrap().to_vec1::<f32>().unwrap(), c, k);
    let (values, indices, lse) = (t.values, t.indices, t.lse);
    let cpu = Device::Cpu;
    let tensors = std::collections::HashMap::from([
        ("values".to_string(), Tensor::from_vec(values, (n, k), &cpu).unwrap()),
        (
            "indices".to_string(),
            Tensor::from_vec(indices.iter().map(|&i| i as u8).collect::<Vec<u8>>(), (n, k), &cpu).unwrap(),
        ),
        ("lse".to_string(), Tensor::from_vec(lse, n, &cpu).unwrap()),
        ("log_tail".to_string(), Tensor::from_vec(t.log_tail, n, &cpu).unwrap()),
        ("ids".to_string(), Tensor::from_vec(ids.to_vec(), n, &cpu).unwrap()),
        ("classes".to_string(), Tensor::from_vec(vec![c as u32], 1, &cpu).unwrap()),
    ]);
    candle_core::safetensors::save(&tensors, path).unwrap();
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn topk_kd(host: &Host, k: usize, tau: f64) -> LossInstance {
    let cfg = format!(r#"{{"k": {k}, "temperature": {tau}}}"#);
    LossInstance::new(host, &lib("retort-teacher-cached"), "topk-kd", "topk", &cfg).unwrap()
}

#[test]
fn kd_from_the_cache_equals_kd_from_the_live_teacher_and_the_formula() {
    let host = Host::cpu(1);
    let (n, c, k) = (6, 10, 3);
    let zt = logits(n, c, 0);
    let zs = logits(n, c, 7);
    let ids: Vec<u32> = vec![40, 3, 17, 8, 1000, 5];
    let dir = fresh_dir("cached-unit");
    let file = dir.join("cache.safetensors");
    write_cache(&file, &zt, &ids, k);
    let cfg = format!(r#"{{"file": "{}"}}"#, file.display());
    let mut t = TeacherInstance::new(&host, &lib("retort-teacher-cached"), "cached", "cache", &cfg).unwrap();
    // Samples asked in another order come back in that order.
    let order: Vec<u32> = vec![1000, 40, 5, 3, 8, 17];
    let pos = |id: u32| ids.iter().position(|&x| x == id).unwrap();
    let asked = Tensor::from_vec(order.clone(), n, &Device::Cpu).unwrap();
    let cached = t.logits(&Inputs::new().tensor("ids", &asked)).unwrap();
    let live = zt
        .index_select(
            &Tensor::from_vec(order.iter().map(|&i| pos(i) as u32).collect::<Vec<_>>(), n, &Device::Cpu).unwrap(),
            0,
        )
        .unwrap();
    for tau in [1.0, 4.0] {
        let mut kd = topk_kd(&host, k, tau);
        let mut with = |teacher: &Tensor| {
            scalar(&kd.loss(&Inputs::new().tensor("student", &zs).tensor("teacher", teacher)).unwrap())
        };
        let (a, b) = (with(&live), with(&cached));
        assert!((a - b).abs() < 1e-5 * (1.0 + a), "τ = {tau}: live {a} vs cached {b}");
    }
    // τ = 1 against the bucket formula, in f64.
    let (zt2, zs2) = (live.to_vec2::<f32>().unwrap(), zs.to_vec2::<f32>().unwrap());
    let probs = |r: &[f32]| {
        let m = r.iter().copied().fold(f32::MIN, f32::max) as f64;
        let e: Vec<f64> = r.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect::<Vec<f64>>()
    };
    let mut want = 0.0;
    for (t, s) in zt2.iter().zip(&zs2) {
        let (p, q) = (probs(t), probs(s));
        let mut top: Vec<usize> = (0..c).collect();
        top.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let top = &top[..k];
        let (pt, qt) = (1.0 - top.iter().map(|&i| p[i]).sum::<f64>(), 1.0 - top.iter().map(|&i| q[i]).sum::<f64>());
        want += top.iter().map(|&i| p[i] * (p[i] / q[i]).ln()).sum::<f64>() + pt * (pt / qt).ln();
    }
    want /= n as f64;
    let got =
        scalar(&topk_kd(&host, k, 1.0).loss(&Inputs::new().tensor("student", &zs).tensor("teacher", &live)).unwrap());
    assert!((got - want).abs() < 1e-5, "top-k + tail KL {got} vs {want}");
    // A sample the cache does not hold is an error naming it.
    let missing = Tensor::from_vec(vec![2u32], 1, &Device::Cpu).unwrap();
    let e = t.logits(&Inputs::new().tensor("ids", &missing)).unwrap_err().to_string();
    assert!(e.contains("sample 2") && e.contains("cache.safetensors"), "{e}");
}

#[test]
fn with_every_class_kept_topk_kd_is_hinton_kd() {
    let host = Host::cpu(2);
    let (zt, zs) = (logits(5, 4, 1), logits(5, 4, 9));
    let inputs = Inputs::new().tensor("student", &zs).tensor("teacher", &zt);
    let mut hinton =
        LossInstance::new(&host, &lib("retort-loss-hinton-kd"), "hinton-kd", "h", r#"{"temperature": 3.0}"#).unwrap();
    let (a, b) = (scalar(&topk_kd(&host, 4, 3.0).loss(&inputs).unwrap()), scalar(&hinton.loss(&inputs).unwrap()));
    assert!((a - b).abs() < 1e-6 * (1.0 + b), "{a} vs {b}");
}

#[test]
fn a_student_distils_from_a_cache_written_by_retort_teacher_cache() {
    let tmp = fresh_dir("cached-e2e");
    // Teachers t1, t2 and the student's slot; the first run trains t1 only.
    let first = two_teachers_config(&tmp, "teach", 3, "");
    let cfg = tmp.join("teach.toml");
    std::fs::write(&cfg, &first).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let run = tmp.join("teach");
    let file = tmp.join("t1-top3.safetensors");
    let (ok, out, err) = retort(
        &["teacher", "cache", run.to_str().unwrap(), "--slot", "t1", "--k", "3", "--out", file.to_str().unwrap()],
        &[],
    );
    assert!(ok && out.contains("top-3 of 10 classes for 60000 training samples"), "{out}\n{err}");
    // 60,000 × (3 values + lse + log_tail + id) × 4 bytes + 3 one-byte indices, plus the header.
    let size = std::fs::metadata(&file).unwrap().len();
    assert!((1_620_000..1_640_000).contains(&size), "{size} bytes");
    // The student learns from the cache as from the live teacher: same first loss, and it learns.
    let student = |teacher: &str, name: &str| {
        let text = format!(
            r#"{head}
[models.t1]
plugin = "mlp"
params = {{ hidden = [64] }}
checkpoint = "{t1}"

[models.student]
plugin = "mlp"
params = {{ hidden = [32] }}

[teachers.cache]
plugin = "cached"
params = {{ file = "{file}" }}

[[stages]]
name = "student"
train = "student"
teacher = "{teacher}"
epochs = 2
subset = 600
losses = [{{ plugin = "topk-kd", params = {{ k = 3 }} }}, {{ plugin = "cross-entropy", weight = 0.1 }}]

[logging]
every_steps = 1
"#,
            head = mnist_run(&tmp, name, 3),
            t1 = run.join("models/t1.safetensors").display(),
            file = file.display(),
        );
        let cfg = tmp.join(format!("{name}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
        assert!(ok, "{out}\n{err}");
        tmp.join(name)
    };
    let (live, cached) = (student("t1", "live"), student("cache", "cached"));
    let first_kd = |run: &Path| train_records(run)[0]["terms"]["topk-kd"].as_f64().unwrap();
    let (a, b) = (first_kd(&live), first_kd(&cached));
    assert!((a - b).abs() < 1e-4 * (1.0 + a), "first KD value: live {a} vs cached {b}");
    let acc = report(&cached)["models"]["student"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.6, "student accuracy from the cache {acc}");
}
