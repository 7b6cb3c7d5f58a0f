//! What feature taps cost a training step: the `resnet` student of the Fashion-MNIST table (taps
//! f0…f3, pooled, logits) and the default run's MLP student, forward + backward at batch 128, with
//! the host keeping every tap (a stage's first step, or a run whose plugins read them) against
//! keeping none (every later step of a run whose plugins read no tap). Interleaved, median of 15.
//! Run: `RAYON_NUM_THREADS=1 cargo run --release -p retort-bench --bin tap-cost` (after
//! `cargo build --release`, so the plugin libraries are next to the binary).
use retort::{backend::backward, Host, Inputs, Library, ModelInstance};
use retort_bench::{exe_dir, median_ns};

fn lib(name: &str) -> anyhow::Result<std::sync::Arc<Library>> {
    let file = format!("{}{name}.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION);
    Ok(Library::load(&exe_dir().join(file))?)
}

fn main() -> anyhow::Result<()> {
    println!("forward + backward, batch 128, one thread; median ms of 15 (interleaved)");
    println!("{:<24} {:>12} {:>12} {:>9}", "model", "keep all", "keep none", "ratio");
    let cases = [
        ("retort_model_resnet", "resnet", r#"{"stem": 8, "stem_stride": 2, "widths": [8, 16, 32]}"#, "resnet 8-16-32"),
        ("retort_model_mlp", "mlp", r#"{"hidden": [800, 800]}"#, "mlp 800-800"),
    ];
    for (file, plugin, cfg, label) in cases {
        let host = Host::cpu(0);
        let mut m = ModelInstance::new(&host, &lib(file)?, plugin, "student", cfg)?;
        let x = candle_core::Tensor::randn(0f32, 1.0, (128, 1, 28, 28), &candle_core::Device::Cpu)?;
        let mut step = || {
            host.taps.clear();
            let z = m.forward(&Inputs::new().tensor("input", &x).scalar("train", 1.0)).expect("forward");
            drop(backward(&z.sqr().and_then(|s| s.mean_all()).expect("loss")).expect("backward"));
        };
        let (mut all, mut none) = (Vec::new(), Vec::new());
        for _ in 0..15 {
            host.taps.keep_all();
            all.push(median_ns(1, 2, &mut step));
            host.taps.keep_read(); // nothing was read: nothing is kept
            none.push(median_ns(1, 2, &mut step));
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2] / 1e6
        };
        let (a, n) = (med(&mut all), med(&mut none));
        println!("{label:<24} {a:>12.2} {n:>12.2} {:>9.3}", n / a);
    }
    Ok(())
}
