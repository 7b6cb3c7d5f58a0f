//! `retort generate RUN --prompt TEXT`: text from a trained language model of a run directory.
use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use retort::{config::SamplingSection, train::text::lossy};

/// Options of `retort generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// The run directory (`runs/<name>`).
    pub run_dir: PathBuf,
    /// The text to continue.
    #[arg(long)]
    pub prompt: String,
    /// The model slot to sample from (default: `student` when it has weights, else the run's only
    /// model with weights).
    #[arg(long)]
    pub model: Option<String>,
    /// Bytes to generate.
    #[arg(long, default_value_t = 200)]
    pub bytes: usize,
    /// Softmax temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Sample among the k most likely bytes only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Sample among the smallest set of bytes whose probability reaches p.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Seed of the draw (the same seed, prompt and model give the same text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continuations to write (each from the same prompt, one after another in the draw).
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
}

/// Runs `retort generate`.
pub fn run(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    if a.temperature < 0.0 || !(a.top_p > 0.0 && a.top_p <= 1.0) {
        anyhow::bail!("--temperature must be ≥ 0 and --top-p in (0, 1]");
    }
    if a.prompt.is_empty() {
        anyhow::bail!("--prompt is empty: give the model some text to continue");
    }
    let (mut trainer, scratch) = super::train::saved_run(&a.run_dir)?;
    let ready = trainer.ready_slots().to_vec();
    let slot = match a.model {
        Some(s) => s,
        None if ready.iter().any(|s| s == "student") => "student".into(),
        None if ready.len() == 1 => ready[0].clone(),
        None => anyhow::bail!("{} has models {ready:?}: choose one with --model", a.run_dir.display()),
    };
    if !ready.contains(&slot) {
        anyhow::bail!("{}: model `{slot}` has no saved weights (saved: {ready:?})", a.run_dir.display());
    }
    let sampling = SamplingSection { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p };
    let prompt: Vec<u32> = a.prompt.bytes().map(u32::from).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut out = std::io::stdout().lock();
    for k in 0..a.samples.max(1) {
        let text = trainer.generate(&slot, std::slice::from_ref(&prompt), a.bytes, &sampling, &mut rng)?;
        if k > 0 {
            writeln!(out, "\n---")?;
        }
        writeln!(out, "{}{}", a.prompt, lossy(&text[0]))?;
    }
    drop(trainer);
    drop(scratch);
    Ok(ExitCode::SUCCESS)
}
