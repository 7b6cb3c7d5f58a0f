//! Feature and relational losses against the methods spec's checks (§5.2–§5.4): attention
//! transfer's scale invariance and pooling of mismatched maps, RKD's invariance to similarity
//! transforms (and not to anisotropic scaling), SP's invariance to feature scale and width.
use candle_core::{Device, Tensor};
use retort::{Host, Inputs, Library, LossInstance};
use retort_e2e::{plugin, seeded_normal};

fn loss(host: &Host, name: &str, cfg: &str, inputs: &Inputs) -> f32 {
    let lib = Library::load(&plugin("retort-loss-features")).unwrap();
    let mut l = LossInstance::new(host, &lib, name, name, cfg).unwrap();
    l.loss(inputs).unwrap().to_scalar::<f32>().unwrap()
}

/// Attention transfer over one stage: taps `f1` of the student and the teacher.
fn at(s: &Tensor, t: &Tensor, mode: &str) -> f32 {
    let host = Host::cpu(0);
    host.taps.record("student", "f1", s);
    host.taps.record("teacher", "f1", t);
    loss(&host, "at", &format!(r#"{{"student_taps": ["f1"], "mode": "{mode}", "beta": 1.0}}"#), &Inputs::new())
}

#[test]
fn attention_transfer_matches_its_formula_is_scale_free_and_pools_larger_maps() {
    let s = seeded_normal(&[3, 4, 4, 4], 1.0, 1);
    let t = seeded_normal(&[3, 6, 4, 4], 1.0, 2);
    // By hand (code mode): per sample a_i = mean_c F²; q = a/‖a‖; mean over (b, i) of (q_S − q_T)².
    let hand = |f: &Tensor| -> Vec<Vec<f64>> {
        let (b, c, h, w) = f.dims4().unwrap();
        let v = f.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (0..b)
            .map(|n| {
                let a: Vec<f64> = (0..h * w)
                    .map(|i| (0..c).map(|k| (v[((n * c + k) * h * w) + i] as f64).powi(2)).sum::<f64>() / c as f64)
                    .collect();
                let norm = a.iter().map(|x| x * x).sum::<f64>().sqrt();
                a.iter().map(|x| x / norm).collect()
            })
            .collect()
    };
    let (qs, qt) = (hand(&s), hand(&t));
    let want: f64 =
        qs.iter().zip(&qt).flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).powi(2))).sum::<f64>() / (3.0 * 16.0);
    let got = at(&s, &t, "code");
    assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
    for mode in ["code", "paper"] {
        let base = at(&s, &t, mode);
        assert!(base > 0.0);
        let scaled = at(&(&s * 7.5).unwrap(), &(&t * 0.2).unwrap(), mode);
        assert!((scaled - base).abs() < 1e-5 * base.max(1.0), "{mode}: {scaled} vs {base}");
        // Zero up to the 1e-6 (√1e-12) the paper form adds so that its gradient stays finite at 0.
        assert!(at(&s, &s, mode).abs() <= 1.01e-6, "{mode}: equal maps, no pooling, zero loss");
    }
    // A student map twice the teacher's size is average-pooled to it first.
    let big = seeded_normal(&[3, 4, 8, 8], 1.0, 3);
    let pooled = big.avg_pool2d(2).unwrap();
    assert!((at(&big, &t, "code") - at(&pooled, &t, "code")).abs() < 1e-7);
    let odd = seeded_normal(&[3, 4, 6, 6], 1.0, 4);
    let host = Host::cpu(0);
    host.taps.record("student", "f1", &odd);
    host.taps.record("teacher", "f1", &t);
    let lib = Library::load(&plugin("retort-loss-features")).unwrap();
    let mut l = LossInstance::new(&host, &lib, "at", "at", r#"{"student_taps": ["f1"]}"#).unwrap();
    assert!(l.loss(&Inputs::new()).unwrap_err().to_string().contains("cannot pool a 6×6 map to 4×4"));
}

fn rkd(s: &Tensor, t: &Tensor) -> f32 {
    let inputs = Inputs::new().tensor("student_feature", s).tensor("teacher_feature", t);
    loss(&Host::cpu(0), "rkd", "{}", &inputs)
}

#[test]
fn rkd_ignores_scale_rotation_and_translation_but_not_anisotropic_scaling() {
    let t = seeded_normal(&[12, 3], 1.0, 7);
    // e_S = c·R·e_T + t with R a rotation about the z axis followed by a reflection of y.
    let (c, th) = (2.5f32, 0.7f32);
    let r =
        Tensor::new(&[[th.cos(), -th.sin(), 0.0], [-th.sin(), -th.cos(), 0.0], [0.0, 0.0, 1.0]], &Device::Cpu).unwrap();
    let shift = Tensor::new(&[[1.0f32, -3.0, 0.5]], &Device::Cpu).unwrap();
    let s = t.matmul(&r.t().unwrap()).unwrap().affine(c as f64, 0.0).unwrap().broadcast_add(&shift).unwrap();
    let same = rkd(&s, &t);
    assert!(same.abs() < 1e-4, "similar embeddings: {same}");
    let stretch = Tensor::new(&[[3.0f32, 1.0, 1.0]], &Device::Cpu).unwrap();
    let skewed = t.broadcast_mul(&stretch).unwrap();
    assert!(rkd(&skewed, &t) > 0.05, "anisotropic scaling changes the relations: {}", rkd(&skewed, &t));
}

fn sp(s: &Tensor, t: &Tensor) -> f32 {
    let inputs = Inputs::new().tensor("student_feature", s).tensor("teacher_feature", t);
    loss(&Host::cpu(0), "sp", "{}", &inputs)
}

#[test]
fn sp_compares_batch_similarity_whatever_the_scale_or_width() {
    let t = seeded_normal(&[6, 8, 2, 2], 1.0, 11);
    let s = seeded_normal(&[6, 4, 2, 2], 1.0, 12);
    let base = sp(&s, &t);
    assert!(base > 0.0);
    let scaled = sp(&(&s * 3.0).unwrap(), &(&t * 0.1).unwrap());
    assert!((scaled - base).abs() < 1e-4 * base, "{scaled} vs {base}");
    // The same Gram structure at another width: the teacher's features with zero channels added.
    let wide =
        Tensor::cat(&[&t, &Tensor::zeros((6, 5, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap()], 1).unwrap();
    assert!(sp(&wide, &t).abs() < 1e-6, "{}", sp(&wide, &t));
}

/// Through the trainer: a resnet student distilled from a resnet teacher by AT (two stages), RKD
/// on the pooled vectors and SP on the last map, each term reading the stage's `student` and
/// `teacher` taps by their names; every term is finite and positive.
#[test]
fn feature_terms_read_the_stages_taps_in_a_run() {
    use retort_e2e::run::{fresh_dir, mnist_run, retort, train_records};
    let tmp = fresh_dir("feature-terms");
    let text = format!(
        r#"{head}
[models.t]
plugin = "resnet"
params = {{ stem = 4, widths = [8, 8] }}

[models.s]
plugin = "resnet"
params = {{ stem = 4, widths = [4, 4] }}

[logging]
every_steps = 1

[eval]
every_epochs = 100

[[stages]]
name = "teacher"
train = "t"
epochs = 1
subset = 100
losses = [{{ plugin = "cross-entropy" }}]

[[stages]]
name = "student"
train = "s"
teacher = "t"
epochs = 1
subset = 100
losses = [
  {{ plugin = "cross-entropy" }},
  {{ plugin = "at", params = {{ student_taps = ["f1", "f2"] }} }},
  {{ plugin = "rkd" }},
  {{ plugin = "sp", params = {{ student_tap = "f2", teacher_tap = "f2" }} }},
]
"#,
        head = mnist_run(&tmp, "features", 3)
    );
    let cfg = tmp.join("features.toml");
    std::fs::write(&cfg, text).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let recs = train_records(&tmp.join("features"));
    let student: Vec<_> = recs.iter().filter(|r| r["stage"] == "student").collect();
    assert_eq!(student.len(), 2);
    for r in student {
        for term in ["at", "rkd", "sp"] {
            let v = r["terms"][term].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{term}: {r}");
        }
    }
}
