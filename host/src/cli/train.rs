//! `retort train`, `retort eval`, `retort config check | show`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Subcommand;
use retort::{
    config::{load_file, load_str, ConfigSource, RunConfig, DEFAULT_CONFIG},
    loader::{search_dirs, Registry},
    train::{
        checkpoint::LoopState, console::ProgressMode, preflight::preflight, report::Report, Outcome, TrainOptions,
        Trainer,
    },
};

/// `retort config …`
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a config (file plus RETORT__SECTION__KEY overrides) without running it.
    Check {
        /// The config file (TOML, YAML or JSON); the built-in default when omitted.
        file: Option<PathBuf>,
    },
    /// Print the merged config (defaults filled in, overrides applied) as TOML.
    Show {
        /// The config file; the built-in default when omitted.
        file: Option<PathBuf>,
    },
}

/// Loads a config file, or the built-in default.
pub fn load(file: Option<&PathBuf>) -> anyhow::Result<RunConfig> {
    Ok(match file {
        Some(f) => load_file(f)?,
        None => load_str(DEFAULT_CONFIG, config::FileFormat::Toml, ConfigSource::Builtin)?,
    })
}

/// Applies `run.threads` before any compute starts (candle's thread pools read these once).
fn set_threads(cfg: &RunConfig) {
    if cfg.run.threads > 0 {
        let n = cfg.run.threads.to_string();
        for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
            if std::env::var_os(var).is_none() {
                std::env::set_var(var, &n);
            }
        }
    }
}

pub fn config(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Check { file } => {
            let cfg = load(file.as_ref())?;
            let name = source_name(file.as_ref());
            // Every plugin named is found, its parameters checked and an instance built.
            let registry = Registry::discover(&search_dirs(&cfg.run.plugin_dirs));
            preflight(&cfg, &registry, &name)?;
            let uses = retort::train::preflight::plugin_uses(&cfg).len();
            println!("ok: {name} ({} stages, {} models, {uses} plugins checked)", cfg.stages.len(), cfg.models.len());
        }
        ConfigCommand::Show { file } => print!("{}", load(file.as_ref())?.to_toml()),
    }
    Ok(ExitCode::SUCCESS)
}

/// How a config is named in messages.
fn source_name(file: Option<&PathBuf>) -> String {
    file.map(|f| f.display().to_string()).unwrap_or_else(|| ConfigSource::Builtin.to_string())
}

/// The config a run directory continues with: the one in its last checkpoint (with live changes),
/// else the one it started with.
fn resume_config(dir: &std::path::Path) -> anyhow::Result<RunConfig> {
    let state = dir.join("checkpoint").join("state.json");
    let saved: Option<String> =
        std::fs::read(&state).ok().and_then(|b| serde_json::from_slice::<LoopState>(&b).ok()).and_then(|s| s.config);
    let cfg = match saved {
        Some(text) => load_str(&text, config::FileFormat::Toml, ConfigSource::File(state)),
        None => load_file(&dir.join("config.toml")),
    };
    cfg.with_context(|| format!("cannot resume {}", dir.display()))
}

/// What `retort train` was asked to do.
pub struct TrainArgs {
    pub file: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub overwrite: bool,
    pub stop_after: Option<u64>,
    pub watch: bool,
    pub dev: Vec<PathBuf>,
}

/// `retort train [FILE] [--resume RUN_DIR] [--stop-after N] [--watch] [--dev CRATE]…`.
pub fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let TrainArgs { file, resume, overwrite, stop_after, watch, dev } = args;
    let watch = watch || !dev.is_empty();
    let (cfg, followed) = match &resume {
        Some(dir) => {
            if !dir.join("config.toml").exists() {
                anyhow::bail!("{}: not a run directory (no config.toml)", dir.display());
            }
            (resume_config(dir)?, Some(dir.join("config.toml")))
        }
        None => (load(file.as_ref())?, file.clone()),
    };
    let watch = match (watch, followed) {
        (true, Some(f)) => Some(f),
        (true, None) => anyhow::bail!("--watch and --dev need a config file to follow"),
        (false, _) => None,
    };
    set_threads(&cfg);
    let progress = match (cfg.logging.progress, std::io::IsTerminal::is_terminal(&std::io::stderr())) {
        (false, _) => ProgressMode::Off,
        (true, true) => ProgressMode::Bar,
        (true, false) => ProgressMode::Plain,
    };
    let source = source_name(file.as_ref());
    let opts = TrainOptions { watch, dev, resume, overwrite, stop_after, progress, source };
    let mut trainer = Trainer::new(cfg, opts)?;
    let dir = trainer.run_dir().to_path_buf();
    match trainer.run()? {
        Outcome::Finished(report) => {
            print!("{}", report.table());
            println!("run directory: {}", dir.display());
        }
        Outcome::Stopped(step) => {
            println!("stopped after step {step}; continue with: retort train --resume {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A trainer over the saved models of run `dir` (every slot at its saved weights, no stage),
/// writing only to a scratch directory that goes when the returned guard drops.
pub(super) fn saved_run(dir: &std::path::Path) -> anyhow::Result<(Trainer, tempfile::TempDir)> {
    let mut cfg = load_file(&dir.join("config.toml")).with_context(|| format!("cannot read run {}", dir.display()))?;
    set_threads(&cfg);
    for (slot, m) in cfg.models.iter_mut() {
        let saved = dir.join("models").join(format!("{slot}.safetensors"));
        if saved.exists() {
            m.checkpoint = Some(saved);
        }
    }
    cfg.stages.clear();
    // A fresh directory: a pid-named one could be another user's.
    let scratch = tempfile::Builder::new().prefix("retort-eval-").tempdir()?;
    cfg.run.output_dir = scratch.path().to_path_buf();
    Ok((Trainer::new(cfg, TrainOptions::default())?, scratch))
}

/// `retort eval RUN_DIR`: re-evaluates the saved models of a finished run on the test set.
pub fn eval(dir: PathBuf) -> anyhow::Result<ExitCode> {
    let (mut trainer, scratch) = saved_run(&dir)?;
    let out = match trainer.run()? {
        Outcome::Finished(report) => report,
        Outcome::Stopped(_) => anyhow::bail!("evaluation stopped unexpectedly"),
    };
    drop(trainer);
    drop(scratch);
    let saved: Option<Report> =
        std::fs::read(dir.join("report.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    print!("{}", out.table());
    if let Some(s) = saved {
        let same = s.models.iter().all(|(k, m)| out.models.get(k).is_some_and(|o| o.test_errors == m.test_errors));
        println!("matches report.json: {}", if same { "yes" } else { "NO" });
    }
    Ok(ExitCode::SUCCESS)
}
