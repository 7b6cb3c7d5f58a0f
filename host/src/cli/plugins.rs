//! `retort plugins list | inspect | check`.
use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;
use retort::{loader::search_dirs, Library, Registry};

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// Every plugin on the search path: name, kind, version, ABI version, library.
    List,
    /// A plugin's description and parameters with their defaults.
    Inspect {
        /// The plugin's name.
        name: String,
    },
    /// Load and check one library; exit 0 when it is a compatible plugin library, 1 otherwise.
    Check {
        /// Path to the library file.
        path: PathBuf,
    },
}

pub fn run(cmd: PluginsCommand, extra_dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginsCommand::List => {
            let reg = Registry::discover(&search_dirs(extra_dirs));
            list(&reg);
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Inspect { name } => {
            let reg = Registry::discover(&search_dirs(extra_dirs));
            let Some(e) = reg.get(&name) else {
                let known: Vec<&str> = reg.entries().iter().map(|e| e.meta.name.as_str()).collect();
                anyhow::bail!("no plugin named `{name}` (known: {})", known.join(", "));
            };
            println!("{} ({} plugin, version {})", e.meta.name, e.meta.kind_name(), e.meta.version);
            println!("{}", e.meta.summary);
            println!("library: {} (plugin-api {}, sha256 {})", e.path.display(), e.abi_version, e.hash);
            if e.meta.params.is_empty() {
                println!("parameters: none");
            } else {
                println!("parameters:");
                let w = e.meta.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
                let wd = e.meta.params.iter().map(|p| p.default_json.len()).max().unwrap_or(0);
                for p in &e.meta.params {
                    println!("  {:w$}  = {:wd$}  {}", p.name, p.default_json, p.doc);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Check { path } => match Library::load(&path) {
            Ok(lib) => {
                println!("ok: {} (plugin-api {}, sha256 {})", path.display(), lib.abi_version(), lib.hash());
                for p in lib.plugins() {
                    println!("  {} {} {}", p.kind_name(), p.name, p.version);
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("refused: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

fn list(reg: &Registry) {
    let rows: Vec<[String; 5]> = reg
        .entries()
        .iter()
        .map(|e| {
            [
                e.meta.name.clone(),
                e.meta.kind_name().to_string(),
                e.meta.version.clone(),
                e.abi_version.clone(),
                e.path.display().to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "VERSION", "ABI", "LIBRARY"].map(String::from);
    let mut widths = [0usize; 5];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    if rows.is_empty() {
        println!("(no plugins found; searched --plugin-dir, RETORT_PLUGIN_PATH and the executable's directory)");
    }
    for p in &reg.problems {
        eprintln!("warning: {p}");
    }
}
