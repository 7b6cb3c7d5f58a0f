//! `retort device`: what a device costs to start, and warming a GPU's kernel cache.
use std::{process::ExitCode, time::Instant};

use clap::Subcommand;

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Open a device and load every kernel module a run uses, so that the driver compiles and
    /// caches them now (once per machine and driver) instead of at the first step of a run.
    Warm {
        /// cpu, cuda or cuda:N.
        #[arg(default_value = "cuda")]
        device: String,
    },
}

/// Runs a `device` subcommand.
pub fn run(command: DeviceCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeviceCommand::Warm { device } => {
            let t0 = Instant::now();
            let dev = retort::device::open(&device)?;
            let opened = t0.elapsed().as_secs_f64();
            let warmed = retort::device::warm(&dev)?;
            println!("{device}: opened in {opened:.2} s");
            for (module, s) in &warmed.modules {
                println!("  {module:<9} {s:>7.2} s");
            }
            println!("total {:.2} s", t0.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
    }
}
