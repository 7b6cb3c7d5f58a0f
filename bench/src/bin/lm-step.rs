//! Tokens per second of a byte-level GPT training step (forward, token cross-entropy over a
//! `[B, L, 256]` batch, backward, AdamW) in Retort, at one thread — the Rust side of
//! `bench/lm_step.py`, which times the same model in PyTorch (a nanoGPT-style loop).
//! Run: `RAYON_NUM_THREADS=1 cargo run --release -p retort-bench --bin lm-step [layers width heads context batch]`
//! (after `cargo build --release`, so the plugin libraries are next to the binary).
use candle_core::{DType, Device, Tensor};
use retort::{backend::backward, Host, Inputs, Library, LossInstance, ModelInstance};
use retort_bench::{exe_dir, median_ns};

fn lib(name: &str) -> anyhow::Result<std::sync::Arc<Library>> {
    let file = format!("{}{name}.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION);
    Ok(Library::load(&exe_dir().join(file))?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let [layers, width, heads, context, batch] = match args.as_slice() {
        [a, b, c, d, e] => [*a, *b, *c, *d, *e],
        _ => [4, 128, 4, 128, 32],
    };
    let host = Host::cpu(0);
    let cfg = format!(r#"{{"layers": {layers}, "width": {width}, "heads": {heads}, "context": {context}}}"#);
    let mut m = ModelInstance::new(&host, &lib("retort_model_gpt")?, "gpt", "student", &cfg)?;
    let mut ce = LossInstance::new(&host, &lib("retort_loss_cross_entropy")?, "cross-entropy", "ce", "{}")?;
    let ids: Vec<u32> = (0..batch * context).map(|i| (i * 7919 % 251) as u32).collect();
    let x = Tensor::from_vec(ids.clone(), (batch, context), &Device::Cpu)?;
    let y = Tensor::from_vec(
        ids.iter().map(|&v| ((v + 1) % 256) as i64).collect::<Vec<_>>(),
        (batch, context),
        &Device::Cpu,
    )?;
    let mask = Tensor::ones((batch, context), DType::F32, &Device::Cpu)?;
    host.taps.keep_read();
    let mut step = || {
        host.taps.clear();
        let z = m.forward(&Inputs::new().tensor("input", &x).scalar("train", 1.0)).expect("forward");
        let l = ce.loss(&Inputs::new().tensor("student", &z).tensor("labels", &y).tensor("mask", &mask)).expect("loss");
        drop(backward(&l).expect("backward"));
    };
    step();
    let ms = median_ns(7, 1, &mut step) / 1e6;
    let tokens = (batch * context) as f64;
    println!(
        "retort gpt layers={layers} width={width} heads={heads} context={context} batch={batch}: \
         {ms:.1} ms per forward+backward, {:.0} tokens/s (median of 7, one thread; no optimizer step)",
        tokens / (ms / 1e3)
    );
    Ok(())
}
