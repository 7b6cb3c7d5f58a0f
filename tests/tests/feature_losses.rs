//! Feature and relational losses against the methods spec's checks (§5.1–§5.6): FitNets'
//! regressor shapes and identity, attention transfer's scale invariance and pooling of mismatched
//! maps, RKD's invariance to similarity transforms (and not to anisotropic scaling), SP's
//! invariance to feature scale and width, CRD's NCE value, memories and Z, OFA's projectors and
//! loss; and the adapters' exact resume through the trainer.
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

/// A run `name` in `tmp`: a resnet teacher (stage 1), then a smaller resnet student trained with
/// CE plus `losses` (TOML array items) reading the stage's `student` and `teacher` taps.
fn feature_run(tmp: &std::path::Path, name: &str, losses: &str, args: &[&str]) -> std::path::PathBuf {
    use retort_e2e::run::{mnist_run, retort};
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
epochs = 2
subset = 100
losses = [{{ plugin = "cross-entropy" }}, {losses}]
"#,
        head = mnist_run(tmp, name, 3)
    );
    let cfg = tmp.join(format!("{name}.toml"));
    std::fs::write(&cfg, text).unwrap();
    let mut a = vec!["train", cfg.to_str().unwrap()];
    a.extend(args);
    let (ok, out, err) = retort(&a, &[]);
    assert!(ok, "{out}\n{err}");
    tmp.join(name)
}

/// Through the trainer: AT over two stages, RKD on the pooled vectors, SP on the last map and OFA's
/// projectors on both stages, each
/// reading the stage's `student` and `teacher` taps by their names; every term finite and positive.
#[test]
fn feature_terms_read_the_stages_taps_in_a_run() {
    use retort_e2e::run::{fresh_dir, train_records};
    let tmp = fresh_dir("feature-terms");
    let losses = r#"{ plugin = "at", params = { student_taps = ["f1", "f2"] } }, { plugin = "rkd" }, { plugin = "sp", params = { student_tap = "f2", teacher_tap = "f2" } }, { plugin = "ofa", params = { stage_taps = ["f1", "f2"] } }"#;
    let recs = train_records(&feature_run(&tmp, "features", losses, &[]));
    let student: Vec<_> = recs.iter().filter(|r| r["stage"] == "student").collect();
    assert_eq!(student.len(), 4);
    for r in student {
        for term in ["at", "rkd", "sp", "ofa"] {
            let v = r["terms"][term].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{term}: {r}");
        }
    }
}

/// FitNets' regressor is made at the student's first step, trained by the student's optimizer,
/// checkpointed (weights, batch-norm statistics, moments) and resumed exactly: a run stopped after
/// the student's first step ends with the weights of the uninterrupted run, bit for bit.
#[test]
fn a_lazily_made_regressor_trains_and_resumes_exactly() {
    use retort_e2e::run::{assert_same_checkpoints, checkpoint_weights, fresh_dir, retort};
    let tmp = fresh_dir("fitnets-resume");
    let hint = r#"{ plugin = "fitnets", params = { student_tap = "f2", teacher_tap = "f2" } }"#;
    let whole = feature_run(&tmp, "whole", hint, &[]);
    let cut = feature_run(&tmp, "cut", hint, &["--stop-after", "3"]);
    let (ok, out, err) = retort(&["train", "--resume", cut.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let a = checkpoint_weights(&whole);
    let reg: Vec<&String> = a.keys().filter(|k| k.contains("fitnets") && k.contains("reg.")).collect();
    assert!(reg.len() >= 5, "the regressor's conv, bn weights and statistics are saved: {:?}", a.keys());
    assert_same_checkpoints(&whole, &cut);
}

fn fitnets(host: &Host, cfg: &str, s: &Tensor, t: &Tensor, train: bool) -> candle_core::Result<f32> {
    let lib = Library::load(&plugin("retort-loss-features")).unwrap();
    let mut l = LossInstance::new(host, &lib, "fitnets", "hint", cfg).unwrap();
    let inputs =
        Inputs::new().tensor("student_feature", s).tensor("teacher_feature", t).scalar("train", f64::from(train));
    l.loss(&inputs).map(|v| v.to_scalar::<f32>().unwrap()).map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// §5.1: ConvReg's three shape cases (stride-2 conv, transposed conv, a (1+H_s−H_t)-sized kernel),
/// a linear map for vectors, a clear error otherwise; and a zero loss when r is the identity and
/// the features are equal.
#[test]
fn fitnets_regressor_covers_the_three_shape_cases_and_the_identity_gives_zero() {
    let cases = [
        ([2, 3, 8, 8], [2, 5, 4, 4], vec![5, 3, 3, 3]),
        ([2, 3, 4, 4], [2, 5, 8, 8], vec![3, 5, 4, 4]),
        ([2, 3, 6, 6], [2, 5, 4, 4], vec![5, 3, 3, 3]),
    ];
    for (k, (s, t, w)) in cases.into_iter().enumerate() {
        let host = Host::cpu(k as u64);
        let v =
            fitnets(&host, "{}", &seeded_normal(&s, 1.0, 1), &seeded_normal(&t, 1.0, 2).relu().unwrap(), true).unwrap();
        assert!(v.is_finite() && v > 0.0, "case {k}: {v}");
        let weight = host.params.value("hint", "reg.conv.weight").unwrap();
        assert_eq!(weight.dims(), w.as_slice(), "case {k}");
    }
    let host = Host::cpu(9);
    fitnets(&host, "{}", &seeded_normal(&[2, 7], 1.0, 1), &seeded_normal(&[2, 9], 1.0, 2), true).unwrap();
    assert_eq!(host.params.value("hint", "reg.linear.weight").unwrap().dims(), &[9, 7]);
    let e = fitnets(
        &Host::cpu(0),
        "{}",
        &seeded_normal(&[2, 3, 4, 4], 1.0, 1),
        &seeded_normal(&[2, 3, 6, 6], 1.0, 2),
        true,
    );
    assert!(e.unwrap_err().to_string().contains("no regressor maps a 4×4"));

    // r = identity: a 1×1 conv with the identity kernel, batch norm in evaluation mode with its
    // initial statistics (mean 0, variance 1), no ReLU.
    let host = Host::cpu(4);
    let eye: Vec<f32> = (0..9).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
    let eye = Tensor::from_vec(eye, (3, 3, 1, 1), &Device::Cpu).unwrap();
    host.params.load("hint", [("reg.conv.weight".to_string(), eye)].into_iter().collect()).unwrap();
    let f = seeded_normal(&[2, 3, 5, 5], 1.0, 3);
    let v = fitnets(&host, r#"{"relu": false}"#, &f, &f, false).unwrap();
    // Batch norm divides by √(1 + 1e-5): a relative error of 5·10⁻⁶ per value.
    assert!(v < 1e-6, "identity regressor: {v}");
    let two =
        fitnets(&Host::cpu(4), r#"{"relu": false, "mode": "two_stage"}"#, &f, &(&f + 1.0).unwrap(), false).unwrap();
    assert!(two > 0.0);
}

fn crd_instance(host: &Host, cfg: &str) -> LossInstance {
    let lib = Library::load(&plugin("retort-loss-features")).unwrap();
    LossInstance::new(host, &lib, "crd", "crd", cfg).unwrap()
}

fn row(host: &Host, name: &str, i: usize) -> Vec<f32> {
    host.params.value("crd", name).unwrap().get(i).unwrap().to_vec1::<f32>().unwrap()
}

/// §5.5: with the memories, heads and Z fixed, the loss is the NCE value computed by hand; the
/// memory rows of the batch then hold normalize(μ·old + (1−μ)·v); Z is set once, at the first
/// call, and kept.
#[test]
fn crd_matches_a_hand_computed_nce_value_and_updates_its_memories() {
    let host = Host::cpu(5);
    let t = |v: &[f32], shape: &[usize]| Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap();
    // N = 3 samples, 2-d embeddings; rows 1 and 2 equal, so any negative drawn for id 0 scores alike.
    let (a, c) = ([0.6f32, 0.8], [1.0f32, 0.0]);
    let bank = t(&[a[0], a[1], c[0], c[1], c[0], c[1]], &[3, 2]);
    let mt_bank = t(&[0.0, 1.0, -0.6, 0.8, -0.6, 0.8], &[3, 2]);
    let eye = t(&[1.0, 0.0, 0.0, 1.0], &[2, 2]);
    let zero = t(&[0.0, 0.0], &[2]);
    let (zs, zt) = (2.0f32, 3.0f32);
    let weights = [
        ("embed_s.weight", eye.clone()),
        ("embed_s.bias", zero.clone()),
        ("embed_t.weight", eye),
        ("embed_t.bias", zero),
        ("memory_s", bank),
        ("memory_t", mt_bank),
        ("z", t(&[zs, zt], &[2])),
    ];
    host.params.load("crd", weights.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).unwrap();
    let cfg = r#"{"feat_dim": 2, "samples": 3, "negatives": 1, "temperature": 0.5, "sampling": "uniform"}"#;
    let mut l = crd_instance(&host, cfg);
    let (fs, ft) = ([3.0f32, 4.0], [0.0f32, 2.0]);
    let inputs = Inputs::new()
        .tensor("student_feature", &t(&fs, &[1, 2]))
        .tensor("teacher_feature", &t(&ft, &[1, 2]))
        .tensor("ids", &Tensor::new(&[0u32], &Device::Cpu).unwrap())
        .tensor("labels", &Tensor::new(&[-1i64], &Device::Cpu).unwrap());
    let got = l.loss(&inputs).unwrap().to_scalar::<f32>().unwrap() as f64;
    // By hand: v_S = (0.6, 0.8), v_T = (0, 1); P = exp(⟨m, v⟩/τ)/Z; m·P_n = 1/3.
    let dot = |m: [f32; 2], v: [f32; 2]| (m[0] * v[0] + m[1] * v[1]) as f64;
    let (vs, vt) = ([0.6f32, 0.8], [0.0f32, 1.0]);
    let side = |pos: f64, neg: f64, z: f64| {
        let (p0, p1, mpn) = ((pos / 0.5).exp() / z, (neg / 0.5).exp() / z, 1.0 / 3.0);
        -(p0 / (p0 + mpn + 1e-7)).ln() - (mpn / (p1 + mpn + 1e-7)).ln()
    };
    // The student's anchor against the teacher's memory (Z_S), the teacher's against the student's.
    let want = side(dot([0.0, 1.0], vs), dot([-0.6, 0.8], vs), zs as f64) + side(dot(a, vt), dot(c, vt), zt as f64);
    assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{got} vs {want}");
    // Memory rows at the batch's ids: normalize(0.5·old + 0.5·v).
    for (name, old, v) in [("memory_s", a, vs), ("memory_t", [0.0, 1.0], vt)] {
        let mix = [0.5 * (old[0] + v[0]), 0.5 * (old[1] + v[1])];
        let n = (mix[0] * mix[0] + mix[1] * mix[1]).sqrt();
        let r = row(&host, name, 0);
        assert!((r[0] - mix[0] / n).abs() < 1e-6 && (r[1] - mix[1] / n).abs() < 1e-6, "{name}: {r:?}");
        assert!(((r[0] * r[0] + r[1] * r[1]) - 1.0).abs() < 1e-6);
        assert_eq!(
            row(&host, name, 1),
            if name == "memory_s" { c.to_vec() } else { vec![-0.6, 0.8] },
            "other rows stay"
        );
    }
    assert_eq!(host.params.value("crd", "z").unwrap().to_vec1::<f32>().unwrap(), vec![zs, zt], "Z is kept");

    // A fresh instance sets Z at its first call, from that call's scores, and never again.
    let host = Host::cpu(6);
    let mut l = crd_instance(&host, r#"{"feat_dim": 4, "samples": 50, "negatives": 8}"#);
    let batch = |seed: u64| {
        Inputs::new()
            .tensor("student_feature", &seeded_normal(&[5, 6], 1.0, seed))
            .tensor("teacher_feature", &seeded_normal(&[5, 3], 1.0, seed + 1))
            .tensor("ids", &Tensor::new(&[1u32, 7, 9, 20, 49], &Device::Cpu).unwrap())
            .tensor("labels", &Tensor::new(&[0i64, 1, 0, 2, 1], &Device::Cpu).unwrap())
    };
    l.loss(&batch(1)).unwrap();
    let z1 = host.params.value("crd", "z").unwrap().to_vec1::<f32>().unwrap();
    assert!(z1[0] > 0.0 && z1[1] > 0.0, "{z1:?}");
    l.loss(&batch(3)).unwrap();
    assert_eq!(host.params.value("crd", "z").unwrap().to_vec1::<f32>().unwrap(), z1);
    let seen = host.params.value("crd", "labels").unwrap().to_vec1::<f32>().unwrap();
    assert_eq!((seen[7], seen[20], seen[2]), (1.0, 2.0, -1.0), "labels seen per sample");
    let e = l.loss(&batch(1).tensor("ids", &Tensor::new(&[1u32, 7, 9, 20, 50], &Device::Cpu).unwrap()));
    assert!(e.unwrap_err().to_string().contains("sample id 50 is outside the memory of 50 rows"));
}

/// CRD's memories, Z and heads are saved with the run: a run stopped after the student's first
/// step resumes to the uninterrupted run's weights and memories, bit for bit.
#[test]
fn crd_state_survives_a_resume() {
    use retort_e2e::run::{assert_same_checkpoints, checkpoint_weights, fresh_dir, retort};
    let tmp = fresh_dir("crd-resume");
    let term = r#"{ plugin = "crd", weight = 0.8, params = { feat_dim = 16, negatives = 64 } }"#;
    let whole = feature_run(&tmp, "whole", term, &[]);
    let cut = feature_run(&tmp, "cut", term, &["--stop-after", "3"]);
    let (ok, out, err) = retort(&["train", "--resume", cut.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let a = checkpoint_weights(&whole);
    assert!(a.keys().any(|k| k.ends_with("memory_s")) && a.keys().any(|k| k.ends_with(".z")), "{:?}", a.keys());
    assert_same_checkpoints(&whole, &cut);
}

/// §5.6: with ε = 1 the target enhancement loss is soft-target CE at T = 1; every stage's
/// projector (SepConv blocks, the last stage's 1×1 conv, an MLP for vectors) ends in the classes;
/// gradients reach the student's stages and the projectors, never the teacher.
#[test]
fn ofa_is_soft_target_ce_at_eps_one_and_trains_projectors_not_the_teacher() {
    use candle_core::Var;
    let host = Host::cpu(8);
    let lib = Library::load(&plugin("retort-loss-features")).unwrap();
    let zs = Var::from_tensor(&seeded_normal(&[4, 10], 1.0, 1)).unwrap();
    let zt = Var::from_tensor(&seeded_normal(&[4, 10], 2.0, 2)).unwrap();
    let maps = [[4, 4, 28, 28], [4, 8, 14, 14], [4, 16, 7, 7]];
    let feats: Vec<Var> = maps
        .iter()
        .enumerate()
        .map(|(k, s)| Var::from_tensor(&seeded_normal(s, 1.0, 10 + k as u64)).unwrap())
        .collect();
    for (k, f) in feats.iter().enumerate() {
        host.taps.record("student", &format!("f{}", k + 1), f.as_tensor());
    }
    let labels = Tensor::new(&[3i64, -100, 0, 9], &Device::Cpu).unwrap();
    let inputs = Inputs::new()
        .tensor("student", zs.as_tensor())
        .tensor("teacher", zt.as_tensor())
        .tensor("labels", &labels)
        .scalar("train", 1.0);
    // Only the logits' term: −Σ p_T log p_S, whatever the labels.
    let mut own =
        LossInstance::new(&host, &lib, "ofa", "own", r#"{"stage_taps": [], "ofa_weight": 0.0, "width": 8}"#).unwrap();
    let got = own.loss(&inputs).unwrap().to_scalar::<f32>().unwrap();
    let pt = softmax_rows(zt.as_tensor());
    let ls = softmax_rows(zs.as_tensor()).log().unwrap();
    let want = (pt * ls).unwrap().sum(1).unwrap().neg().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");

    let mut l = LossInstance::new(&host, &lib, "ofa", "ofa", r#"{"width": 32, "eps": [1.5]}"#).unwrap();
    let loss = l.loss(&inputs).unwrap();
    assert!(loss.to_scalar::<f32>().unwrap().is_finite());
    for s in 1..=3 {
        let head = host.params.value("ofa", &format!("proj{s}.head.weight")).unwrap();
        assert_eq!(head.dims()[0], 10, "stage {s} projects to the classes");
    }
    assert!(host.params.value("ofa", "proj1.block1.b.pw").is_some(), "stage 1 of 3: two SepConv blocks");
    assert!(host.params.value("ofa", "proj3.conv").is_some(), "the last stage: a 1×1 conv");
    let grads = retort::backend::backward(&loss).unwrap();
    for (k, f) in feats.iter().enumerate() {
        assert!(grads.get(f.as_tensor()).is_some(), "stage {} gets a gradient", k + 1);
    }
    assert!(grads.get(zs.as_tensor()).is_some());
    assert!(grads.get(zt.as_tensor()).is_none(), "no gradient reaches the teacher");
    let head = host.params.value("ofa", "proj2.head.weight").unwrap();
    assert!(grads.get(&head).is_some(), "the projectors train");

    // Vector features (an MLP's layers): a linear → ReLU → linear projector.
    let host = Host::cpu(9);
    host.taps.record("student", "layer1", &seeded_normal(&[4, 20], 1.0, 3));
    let mut v = LossInstance::new(&host, &lib, "ofa", "ofa", r#"{"stage_taps": ["layer1"], "width": 12}"#).unwrap();
    assert!(v.loss(&inputs).unwrap().to_scalar::<f32>().unwrap().is_finite());
    assert_eq!(host.params.value("ofa", "proj1.head.weight").unwrap().dims(), &[10, 12]);
}

fn softmax_rows(z: &Tensor) -> Tensor {
    let m = z.max_keepdim(1).unwrap();
    let e = z.broadcast_sub(&m).unwrap().exp().unwrap();
    e.broadcast_div(&e.sum_keepdim(1).unwrap()).unwrap()
}
