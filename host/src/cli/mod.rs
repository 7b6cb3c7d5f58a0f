//! Command-line definitions and dispatch.
mod compare;
mod device;
mod generate;
mod new;
mod plugins;
mod runs;
mod svg;
mod teacher;
mod train;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (plugin-api ", env!("RETORT_ABI_VERSION"), ")");

/// Retort: knowledge distillation with compiled, hot-swappable method plugins.
#[derive(Parser)]
#[command(name = "retort", version = VERSION, about)]
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a distillation: the built-in default (MNIST, Hinton KD) or a config file.
    Train {
        /// The config file (TOML, YAML or JSON); the built-in default when omitted.
        file: Option<PathBuf>,
        /// Continue an interrupted (or stopped) run from its directory, from any working directory;
        /// a run directory copied elsewhere works too.
        #[arg(long, conflicts_with = "file")]
        resume: Option<PathBuf>,
        /// Start over when the run directory already exists (its models, checkpoint and logs are
        /// deleted); without it such a run is refused.
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Stop after this many optimizer steps, leaving a resumable checkpoint.
        #[arg(long)]
        stop_after: Option<u64>,
        /// Follow the config file and the plugin libraries in use: changes are applied at the next
        /// step boundary (a failed change keeps the old version running).
        #[arg(long)]
        watch: bool,
        /// A plugin crate directory to rebuild (`cargo build --release`) and swap in whenever its
        /// sources change; repeatable; implies --watch.
        #[arg(long = "dev", value_name = "CRATE_DIR")]
        dev: Vec<PathBuf>,
    },
    /// Scaffold a plugin crate: `plugins/<kind>s/<name>` in this Retort checkout (or --dir), with
    /// documented parameters and a test that loads the built library into a host.
    New {
        /// loss, model, teacher, router or augmenter.
        #[arg(value_enum)]
        kind: new::Kind,
        /// The plugin's name in config files (lowercase, dashes: `my-loss`).
        name: String,
        /// Where to create the crate (default: plugins/<kind>s/<name> of the checkout).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The Retort checkout to build against (default: found above the working directory or
        /// the executable).
        #[arg(long)]
        retort_src: Option<PathBuf>,
    },
    /// Re-evaluate the saved models of a run directory on the test set.
    Eval {
        /// The run directory (`runs/<name>`).
        run_dir: PathBuf,
    },
    /// Sample text from a trained language model of a run (`retort generate RUN --prompt TEXT`).
    Generate(generate::GenerateArgs),
    /// Offline teachers: cache a trained model's top-k logits for the `cached` teacher plugin.
    Teacher {
        #[command(subcommand)]
        command: teacher::TeacherCommand,
    },
    /// Inspect run directories.
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
    /// Validate or print configs.
    Config {
        #[command(subcommand)]
        command: train::ConfigCommand,
    },
    /// Start-up costs of a device; warm a GPU's kernel cache before the first run.
    Device {
        #[command(subcommand)]
        command: device::DeviceCommand,
    },
    /// List, inspect and check plugins.
    Plugins {
        #[command(subcommand)]
        command: plugins::PluginsCommand,
        /// Extra directories to search for plugin libraries (before RETORT_PLUGIN_PATH and the
        /// executable's directory).
        #[arg(long = "plugin-dir", global = true)]
        plugin_dirs: Vec<PathBuf>,
    },
}

/// Sets up `tracing` on stderr; `RUST_LOG` filters (default `warn`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    // Colour only on a terminal: redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plugins { command, plugin_dirs } => plugins::run(command, &plugin_dirs),
        Command::Train { file, resume, overwrite, stop_after, watch, dev } => {
            train::train(train::TrainArgs { file, resume, overwrite, stop_after, watch, dev })
        }
        Command::Eval { run_dir } => train::eval(run_dir),
        Command::Generate(args) => generate::run(args),
        Command::New { kind, name, dir, retort_src } => new::run(new::NewArgs { kind, name, dir, retort_src }),
        Command::Runs { command } => runs::run(command),
        Command::Teacher { command } => teacher::run(command),
        Command::Config { command } => train::config(command),
        Command::Device { command } => device::run(command),
    }
}
