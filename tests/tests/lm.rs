//! Language-model runs on real text (Moby Dick, bytes as tokens): a GPT learns, evaluation speaks
//! bits per byte on the book and on the SOTU domain, KD reports the token KL to the teacher,
//! GKD's on-policy batches follow λ, `retort generate` is deterministic under a seed, and losses
//! average over the masked tokens only.
use candle_core::{Device, Tensor};
use retort::{Host, Inputs, Library, LossInstance};
use retort_e2e::{
    plugin,
    run::{fresh_dir, report, retort, text_run, train_records},
    seeded_normal,
};

const GPT: &str = "params = { context = 32, layers = 1, width = 32, heads = 2 }";

/// The `teacher` and `student` slots (the teacher's weights from `checkpoint` when given), the
/// optimizer, logging and generation settings.
fn lm_models(checkpoint: Option<&std::path::Path>) -> String {
    let ck = checkpoint.map(|c| format!("checkpoint = \"{}\"\n", c.display())).unwrap_or_default();
    format!(
        "[models.teacher]\nplugin = \"gpt\"\n{GPT}\n{ck}\n[models.student]\nplugin = \"gpt\"\n\
         params = {{ context = 32, layers = 1, width = 16, heads = 2 }}\n\n[optimizer]\nkind = \"adamw\"\nlr = 0.01\n\n\
         [logging]\nevery_steps = 1\n\n[eval.generate]\nsamples = 1\nprompt_bytes = 8\nnew_bytes = 12\n\n"
    )
}

/// [`lm_models`], a stage that trains the teacher for 10 steps, then `rest`.
fn teacher_stage(rest: &str) -> String {
    format!(
        "{}[[stages]]\nname = \"teacher\"\ntrain = \"teacher\"\nepochs = 1\nsubset = 160\n\
         losses = [{{ plugin = \"cross-entropy\" }}]\n\n{rest}",
        lm_models(None)
    )
}

/// Writes `text` as `<name>.toml` in `tmp`, trains it and returns the run directory and stdout.
fn train(tmp: &std::path::Path, name: &str, text: &str) -> (std::path::PathBuf, String) {
    let cfg = tmp.join(format!("{name}.toml"));
    std::fs::write(&cfg, text).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    (tmp.join(name), out)
}

#[test]
fn a_gpt_learns_moby_dick_and_reports_bits_per_byte() {
    let tmp = fresh_dir("lm-learn");
    let (run, out) = train(&tmp, "lm", &format!("{}\n{}", text_run(&tmp, "lm", 1, 32), teacher_stage("")));
    let loss: Vec<f64> = train_records(&run).iter().map(|r| r["loss"].as_f64().unwrap()).collect();
    assert_eq!(loss.len(), 10, "160 rows in batches of 16");
    assert!(loss[9] < loss[0] - 1.0, "the loss falls from ln 256 ≈ 5.5: {loss:?}");
    let t = &report(&run)["models"]["teacher"];
    let bpb = t["bits_per_byte"].as_f64().unwrap();
    assert!((3.0..7.0).contains(&bpb), "below the uniform 8 bits after 10 steps: {bpb}");
    assert!((t["nll"].as_f64().unwrap() / std::f64::consts::LN_2 - bpb).abs() < 1e-9);
    let sotu = t["domains"]["sotu"].as_f64().unwrap();
    assert!(sotu.is_finite() && sotu < 8.0, "{sotu}");
    let samples = t["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0]["prompt"].as_str().unwrap().len(), 8);
    assert!(out.contains("bits per byte on the test text, sotu"), "{out}");
}

#[test]
fn kd_reports_token_kl_and_gkd_generates_on_a_share_lambda_of_steps() {
    for (lambda, expect) in [(0.0, Some(0u64)), (1.0, Some(1)), (0.5, None)] {
        let tmp = fresh_dir(&format!("lm-gkd-{lambda}"));
        let student = format!(
            "[[stages]]\nname = \"student\"\ntrain = \"student\"\nteacher = \"teacher\"\nepochs = 1\nsubset = 96\n\
             losses = [{{ plugin = \"generalized-jsd\", params = {{ beta = 0.5 }} }}]\n\
             [stages.on_policy]\nfraction = {lambda}\nprompt = 8\n"
        );
        let (run, _) = train(&tmp, "gkd", &format!("{}\n{}", text_run(&tmp, "gkd", 2, 32), teacher_stage(&student)));
        let gen: Vec<u64> = train_records(&run)
            .iter()
            .filter(|r| r["stage"] == "student")
            .map(|r| r["generated"].as_u64().unwrap())
            .collect();
        assert_eq!(gen.len(), 6);
        match expect {
            Some(e) => assert!(gen.iter().all(|&g| g == e), "λ = {lambda}: {gen:?}"),
            None => assert!(gen.contains(&0) && gen.contains(&1), "λ = 0.5 mixes: {gen:?}"),
        }
        let s = &report(&run)["models"]["student"];
        let kl = s["kl_to_teacher"].as_f64().unwrap();
        let fid = s["fidelity"].as_f64().unwrap();
        assert!(kl > 0.0 && kl.is_finite() && (0.0..=1.0).contains(&fid), "kl {kl}, fidelity {fid}");
        assert!(train_records(&run).iter().all(|r| r["loss"].as_f64().unwrap().is_finite()));
    }
}

#[test]
fn generate_is_deterministic_under_a_seed() {
    let tmp = fresh_dir("lm-generate");
    let (run, _) = train(&tmp, "lm", &format!("{}\n{}", text_run(&tmp, "lm", 3, 32), teacher_stage("")));
    let gen = |seed: &str, extra: &[&str]| {
        let mut args = vec!["generate", run.to_str().unwrap(), "--model", "teacher", "--prompt", "Call me Ishmael"];
        args.extend_from_slice(&["--seed", seed]);
        args.extend_from_slice(if extra.is_empty() { &["--bytes", "60"] } else { extra });
        let (ok, out, err) = retort(&args, &[]);
        assert!(ok, "{out}\n{err}");
        out
    };
    let a = gen("5", &[]);
    assert!(a.starts_with("Call me Ishmael"), "{a}");
    assert_eq!(a, gen("5", &[]), "same seed, same text");
    assert_ne!(a, gen("6", &[]), "another seed, another text");
    // Longer than the context (32): the window slides; greedy decoding repeats itself exactly.
    let long = gen("1", &["--bytes", "80", "--temperature", "0"]);
    assert_eq!(long, gen("2", &["--bytes", "80", "--temperature", "0"]), "greedy ignores the seed");
    // The only slot with weights is the default; a slot without weights is refused by name.
    let (ok, default, _) = retort(
        &["generate", run.to_str().unwrap(), "--prompt", "Call me Ishmael", "--seed", "5", "--bytes", "60"],
        &[],
    );
    assert!(ok && default == a);
    let (ok, _, err) = retort(&["generate", run.to_str().unwrap(), "--model", "student", "--prompt", "x"], &[]);
    assert!(!ok && err.contains("model `student` has no saved weights"), "{err}");
}

#[test]
fn sequence_losses_average_over_the_masked_tokens_only() {
    let host = Host::cpu(4);
    let d = Device::Cpu;
    let zs = seeded_normal(&[2, 5, 7], 1.0, 1);
    let zt = seeded_normal(&[2, 5, 7], 1.0, 2);
    let labels = Tensor::new(&[[1i64, 2, 3, -100, -100], [4, 5, 6, 0, -100]], &d).unwrap();
    let mask = Tensor::new(&[[1f32, 1., 1., 0., 0.], [1., 1., 1., 1., 0.]], &d).unwrap();
    let kept = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3)];
    let row = |z: &Tensor, b: usize, t: usize| z.get(b).unwrap().get(t).unwrap().to_vec1::<f32>().unwrap();
    let log_softmax = |v: Vec<f32>| {
        let m = v.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = v.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
        v.into_iter().map(|x| x as f64 - lse).collect::<Vec<_>>()
    };
    let y = labels.to_vec2::<i64>().unwrap();
    let ce: f64 = kept.iter().map(|&(b, t)| -log_softmax(row(&zs, b, t))[y[b][t] as usize]).sum::<f64>() / 7.0;
    let kl: f64 = kept
        .iter()
        .map(|&(b, t)| {
            let (ls, lt) = (log_softmax(row(&zs, b, t)), log_softmax(row(&zt, b, t)));
            lt.iter().zip(&ls).map(|(a, s)| a.exp() * (a - s)).sum::<f64>()
        })
        .sum::<f64>()
        / 7.0;
    let inputs =
        Inputs::new().tensor("student", &zs).tensor("teacher", &zt).tensor("labels", &labels).tensor("mask", &mask);
    let value = |package: &str, name: &str, cfg: &str| {
        let lib = Library::load(&plugin(package)).unwrap();
        let mut l = LossInstance::new(&host, &lib, name, name, cfg).unwrap();
        l.loss(&inputs).unwrap().to_scalar::<f32>().unwrap() as f64
    };
    let got = value("retort-loss-cross-entropy", "cross-entropy", "{}");
    assert!((got - ce).abs() < 1e-5, "cross-entropy {got} vs the token mean {ce}");
    // GKD's β = 0 is forward KL (TRL's convention), reduced as a mean over unmasked tokens.
    let got = value("retort-loss-divergences", "generalized-jsd", r#"{"beta": 0.0}"#);
    assert!((got - kl).abs() < 1e-5, "generalized-jsd(β = 0) {got} vs the token mean of KL {kl}");
}

#[test]
fn a_per_token_top_k_cache_round_trips_and_distils_like_the_live_teacher() {
    let tmp = fresh_dir("lm-cache");
    let (run, _) = train(&tmp, "lm", &format!("{}\n{}", text_run(&tmp, "lm", 4, 32), teacher_stage("")));
    let file = tmp.join("top4.safetensors");
    let (ok, out, err) = retort(
        &["teacher", "cache", run.to_str().unwrap(), "--slot", "teacher", "--k", "4", "--out", file.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{out}\n{err}");
    // 99 % of Moby Dick in rows of 32 targets: per token 4 f16 values, 4 u8 indices, lse and
    // log_tail in f32 (16 bytes, against 1,024 for the full f32 row), plus a u32 id per row.
    let tokens: u64 = out.split("for ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
    let rows = tokens / 32;
    assert_eq!(rows, 1_192_947u64.div_ceil(32), "{out}");
    let size = std::fs::metadata(&file).unwrap().len();
    let expect = tokens * 20 + rows * 4;
    assert!(size >= expect && size < expect + 2_000, "{size} bytes, {expect} of data");
    let student = |teacher: &str, name: &str| {
        let stage = format!(
            "[teachers.cache]\nplugin = \"cached\"\nparams = {{ file = \"{}\" }}\n\n[[stages]]\nname = \"student\"\n\
             train = \"student\"\nteacher = \"{teacher}\"\nepochs = 1\nsubset = 64\n\
             losses = [{{ plugin = \"topk-kd\", params = {{ k = 4 }} }}]\n",
            file.display()
        );
        // The teacher's weights come from the first run; only the student trains.
        let models = lm_models(Some(&run.join("models/teacher.safetensors")));
        train(&tmp, name, &format!("{}\n{models}{stage}", text_run(&tmp, name, 4, 32))).0
    };
    let (live, cached) = (student("teacher", "live"), student("cache", "cached"));
    let first = |run: &std::path::Path| train_records(run)[0]["terms"]["topk-kd"].as_f64().unwrap();
    let (a, b) = (first(&live), first(&cached));
    assert!((a - b).abs() < 2e-3 * (1.0 + a), "first KD value: live {a} vs cached (f16) {b}");
    let bpb = |run: &std::path::Path| report(run)["models"]["student"]["bits_per_byte"].as_f64().unwrap();
    assert!((bpb(&live) - bpb(&cached)).abs() < 0.05, "{} vs {}", bpb(&live), bpb(&cached));
}

#[test]
fn difference_sampling_trains_on_the_rows_the_teacher_knows_better_than_the_reference() {
    let tmp = fresh_dir("lm-miniplm");
    let stages =
        "[models.reference]\nplugin = \"gpt\"\nparams = { context = 32, layers = 1, width = 8, heads = 1 }\n\n\
         [[stages]]\nname = \"reference\"\ntrain = \"reference\"\nepochs = 1\nsubset = 32\n\
         losses = [{ plugin = \"cross-entropy\" }]\n\n\
         [[stages]]\nname = \"student\"\ntrain = \"student\"\nepochs = 1\nsubset = 48\n\
         losses = [{ plugin = \"cross-entropy\" }]\n\
         [stages.difference_sampling]\nteacher = \"teacher\"\nreference = \"reference\"\nkeep = 0.25\n";
    let (run, _) = train(&tmp, "ds", &format!("{}\n{}", text_run(&tmp, "ds", 5, 32), teacher_stage(stages)));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("difference-sampling.json")).unwrap()).unwrap();
    let (t, r) = (rec["teacher_nll"].as_array().unwrap(), rec["reference_nll"].as_array().unwrap());
    let kept: Vec<u64> = rec["kept_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(kept.len(), t.len() / 4, "⌊α·N⌋ rows of {}", t.len());
    // The kept rows are those with the largest reference − teacher NLL (row ids are row indices here).
    let score = |i: usize| r[i].as_f64().unwrap() - t[i].as_f64().unwrap();
    let worst_kept = kept.iter().map(|&i| score(i as usize)).fold(f64::INFINITY, f64::min);
    let best_dropped =
        (0..t.len()).filter(|i| !kept.contains(&(*i as u64))).map(score).fold(f64::NEG_INFINITY, f64::max);
    assert!(worst_kept >= best_dropped, "{worst_kept} < {best_dropped}");
    let ev = retort_e2e::run::events(&run, "data_selected");
    assert_eq!(ev.len(), 1);
    assert!(report(&run)["models"]["student"]["bits_per_byte"].as_f64().unwrap() < 8.0);
}

#[test]
fn the_monitor_logs_proxy_and_golden_distances_and_raises_its_event() {
    let tmp = fresh_dir("lm-monitor");
    // The teacher is the proxy and, for the plumbing, the student's own earlier self is no
    // oracle: a second teacher-sized model trained on the same text serves as the golden one.
    // A tolerance of −100 makes every fitted reading "deviate", so the event must come at the
    // `patience`-th reading after the fit.
    let stages = "[models.oracle]\nplugin = \"gpt\"\nparams = { context = 32, layers = 1, width = 32, heads = 2 }\n\n\
         [[stages]]\nname = \"oracle\"\ntrain = \"oracle\"\nepochs = 1\nsubset = 64\n\
         losses = [{ plugin = \"cross-entropy\" }]\n\n\
         [[stages]]\nname = \"student\"\ntrain = \"student\"\nteacher = \"teacher\"\nepochs = 1\nsubset = 192\n\
         losses = [{ plugin = \"reverse-kl\" }]\n\n\
         [monitor]\nstudent = \"student\"\nproxy = \"teacher\"\ngolden = \"oracle\"\nfit_evals = 2\npatience = 2\ntolerance = -100.0\n";
    let text = format!("{}\n{}", text_run(&tmp, "mon", 6, 32), teacher_stage(stages))
        .replace("[eval.generate]", "[eval]\nevery_steps = 2\n\n[eval.generate]");
    let (run, _) = train(&tmp, "mon", &text);
    let readings: Vec<serde_json::Value> =
        retort_e2e::run::records(&run.join("metrics.jsonl")).into_iter().filter(|r| r["type"] == "monitor").collect();
    assert_eq!(readings.len(), 6, "12 steps: evaluations at 2, 4, …, 10 and the stage's end");
    for (k, r) in readings.iter().enumerate() {
        let (p, g) = (r["proxy"].as_f64().unwrap(), r["golden"].as_f64().unwrap());
        assert!(p > 0.0 && g > 0.0 && p.is_finite() && g.is_finite(), "{r}");
        assert_eq!(r["residual"].is_null(), k < 2, "the fit needs two readings: {r}");
    }
    assert!(readings[3]["alert"].is_string() && readings[2]["alert"].is_null(), "{readings:?}");
    // One power-law alert per run of deviations (the golden rule may add its own).
    let ev = retort_e2e::run::events(&run, "teacher_hacking");
    let trend = ev.iter().filter(|e| e.to_string().contains("power-law trend")).count();
    assert_eq!(trend, 1, "{ev:?}");
}

#[test]
fn a_text_run_refuses_a_model_that_is_not_a_sequence_model() {
    let tmp = fresh_dir("lm-not-sequence");
    let text = format!("{}\n{}", text_run(&tmp, "mlp", 7, 32), teacher_stage("")).replace(
        "[models.teacher]\nplugin = \"gpt\"\nparams = { context = 32, layers = 1, width = 32, heads = 2 }",
        "[models.teacher]\nplugin = \"mlp\"\nparams = { input_dim = 32 }",
    );
    let cfg = tmp.join("mlp.toml");
    std::fs::write(&cfg, text).unwrap();
    let (ok, _, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("models.teacher.plugin") && err.contains("not a sequence model"), "{err}");
    assert!(!tmp.join("mlp").exists(), "refused before the run directory exists");
}
