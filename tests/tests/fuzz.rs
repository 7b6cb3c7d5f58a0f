//! Fuzzing the inputs a user or a crash can corrupt: config files, IDX data, checkpoints and plugin
//! state blobs. Every mutated input must give a value or an error — never a panic. Seeded, so a
//! failure reproduces; `RETORT_FUZZ_ITERS` runs longer campaigns (default 1500 per target).
use std::collections::HashMap;

use candle_core::{Device, Tensor};
use retort::{
    config::{load_str, ConfigSource, DEFAULT_CONFIG},
    data::parse_idx,
    train::checkpoint::{self, LoopState},
    Host, Library, LossInstance,
};
use retort_e2e::{
    fuzz::{self, Outcome},
    plugin, workspace,
};

fn iterations() -> u64 {
    std::env::var("RETORT_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500)
}

fn report(target: &str, o: &Outcome) {
    eprintln!("fuzz {target}: {} executions, {} accepted, {} panics", o.executions, o.accepted, o.panics.len());
    if let Some((msg, input)) = o.panics.first() {
        panic!(
            "{target} panicked on a fuzzed input: {msg}\ninput ({} bytes): {:?}",
            input.len(),
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn config_loader() {
    let mut seeds = vec![DEFAULT_CONFIG.as_bytes().to_vec()];
    for dir in ["examples", "examples/losses"] {
        for e in std::fs::read_dir(workspace().join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "toml") {
                seeds.push(std::fs::read(e.path()).unwrap());
            }
        }
    }
    let toml = fuzz::run(1, &seeds, iterations(), |b| {
        let text = String::from_utf8_lossy(b);
        load_str(&text, config::FileFormat::Toml, ConfigSource::Builtin)
            .map(|c| drop(c.to_toml()))
            .map_err(|e| e.to_string())
    });
    report("config (toml)", &toml);
    let json_seed =
        serde_json::to_vec_pretty(&load_str(DEFAULT_CONFIG, config::FileFormat::Toml, ConfigSource::Builtin).unwrap())
            .unwrap();
    let json = fuzz::run(2, &[json_seed], iterations(), |b| {
        let text = String::from_utf8_lossy(b);
        load_str(&text, config::FileFormat::Json, ConfigSource::Builtin).map(drop).map_err(|e| e.to_string())
    });
    report("config (json)", &json);
    assert!(toml.accepted > 0 && json.accepted > 0, "some mutations stay valid configs");
}

#[test]
fn idx_reader() {
    let labels = std::fs::read(workspace().join("data/mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&labels[..]), &mut raw).unwrap();
    // The first 992 real labels with a header that says so, and a small image file (3 images).
    let mut few = vec![0, 0, 8, 1, 0, 0, 0x03, 0xe0];
    few.extend_from_slice(&raw[8..1000]);
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28];
    images.extend((0..3 * 784).map(|i| (i % 251) as u8));
    let o = fuzz::run(3, &[few.clone(), images], iterations(), |b| {
        parse_idx(b).map(|a| assert_eq!(a.data.len(), a.dims.iter().product::<usize>())).map_err(|e| e.to_string())
    });
    report("idx", &o);
    // The gzip layer too: mutated compressed bytes through the file reader.
    let dir = tempdir("idx");
    let path = dir.join("f-idx1-ubyte.gz");
    let mut small_gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut small_gz, &few).unwrap();
    let small_gz = small_gz.finish().unwrap();
    let o = fuzz::run(4, &[small_gz], iterations() / 5, |b| {
        std::fs::write(&path, b).map_err(|e| e.to_string())?;
        retort::data::read_idx(&path).map(drop).map_err(|e| e.to_string())
    });
    report("idx (gzip)", &o);
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    retort_e2e::run::fresh_dir(&format!("fuzz-{tag}"))
}

#[test]
fn checkpoint_loading() {
    let dir = tempdir("ckpt");
    let mut state =
        LoopState { global_step: 42, param_groups: vec!["student".into(), "loss.s.t".into()], ..Default::default() };
    state.rng.insert("student".into(), ([7; 32], 99));
    state.plugin_states.insert("loss.s.t".into(), vec![1, 2, 3]);
    let d = Device::Cpu;
    let weights = HashMap::from([
        ("student.fc.weight".to_string(), Tensor::arange(0f32, 12.0, &d).unwrap().reshape((3, 4)).unwrap()),
        ("loss.s.t.alpha.w".to_string(), Tensor::ones(5, candle_core::DType::F32, &d).unwrap()),
    ]);
    let moments = vec![(
        "student.fc.weight".to_string(),
        retort::train::optim::ParamState { m: vec![0.5; 12], v: vec![0.25; 12] },
    )];
    checkpoint::save(&dir, &mut state, &weights, &moments).unwrap();
    let loaded = checkpoint::load(&dir, &d).unwrap();
    assert_eq!(loaded.state.global_step, 42);
    let state_json = std::fs::read(dir.join("state.json")).unwrap();
    let weights_file = dir.join(&loaded.state.weights_file);
    let weights_bytes = std::fs::read(&weights_file).unwrap();

    let o = fuzz::run(5, std::slice::from_ref(&state_json), iterations(), |b| {
        std::fs::write(dir.join("state.json"), b).map_err(|e| e.to_string())?;
        checkpoint::load(&dir, &d).map(drop)
    });
    report("checkpoint state.json", &o);
    std::fs::write(dir.join("state.json"), &state_json).unwrap();
    let o = fuzz::run(6, &[weights_bytes], iterations(), |b| {
        std::fs::write(&weights_file, b).map_err(|e| e.to_string())?;
        checkpoint::load(&dir, &d).map(drop)
    });
    report("checkpoint weights", &o);
}

#[test]
fn plugin_state_blobs() {
    let host = Host::cpu(0);
    let lib = Library::load(&plugin("retort-loss-methods")).unwrap();
    for (name, cfg) in
        [("taid", "{}"), ("tgeo-kd", "{}"), ("nd", r#"{"student_dim": 4, "teacher_dim": 4}"#), ("lelp", "{}")]
    {
        let mut inst = LossInstance::new(&host, &lib, name, &format!("loss.fuzz.{name}"), cfg).unwrap();
        let seed = inst.state().unwrap();
        let seeds = if seed.is_empty() { vec![vec![0u8; 16]] } else { vec![seed] };
        // The SDK turns a plugin's panic into an error; count it as a finding all the same.
        let contained = |e: retort::HostError| {
            let m = e.to_string();
            assert!(!m.contains("panicked"), "{m}");
            m
        };
        let o = fuzz::run(7, &seeds, iterations(), |b| {
            inst.load_state(b).map_err(contained)?;
            inst.state().map(drop).map_err(contained)
        });
        report(&format!("{name} state"), &o);
    }
}
