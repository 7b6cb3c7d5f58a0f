//! `retort teacher …`: offline teachers.
use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::Subcommand;

/// `retort teacher` subcommands.
#[derive(Subcommand, Debug)]
pub enum TeacherCommand {
    /// Write a trained model's top-k logits on the training split to a safetensors file, for the
    /// `cached` teacher plugin (KD without running the teacher).
    Cache {
        /// The run directory holding the model (`runs/<name>`).
        run_dir: PathBuf,
        /// The model slot to cache.
        #[arg(long, default_value = "teacher")]
        slot: String,
        /// Logits kept per sample (the rest become one tail bucket).
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Output file (default: RUN_DIR/cache/<slot>-top<k>.safetensors).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs a `teacher` subcommand.
pub fn run(cmd: TeacherCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TeacherCommand::Cache { run_dir, slot, k, out } => {
            let out = out.unwrap_or_else(|| run_dir.join("cache").join(format!("{slot}-top{k}.safetensors")));
            let (mut trainer, _scratch) = super::train::saved_run(&run_dir)?;
            if !run_dir.join("models").join(format!("{slot}.safetensors")).exists() {
                anyhow::bail!("{}: no saved model `{slot}` (models/{slot}.safetensors)", run_dir.display());
            }
            let t = Instant::now();
            let s = trainer.cache_teacher(&slot, k, &out)?;
            println!(
                "cached `{slot}`: top-{} of {} classes for {} training samples (tokens, for text) in {:.1} s",
                s.k,
                s.classes,
                s.samples,
                t.elapsed().as_secs_f64()
            );
            println!(
                "{}: {} bytes ({:.1} per sample; full logits would be {} bytes)",
                out.display(),
                s.bytes,
                s.bytes as f64 / s.samples.max(1) as f64,
                s.full_bytes
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
