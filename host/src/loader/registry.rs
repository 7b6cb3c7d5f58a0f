use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use retort_plugin_api::codes::kind;

use super::{Library, PluginMeta};
use crate::error::{HostError, Result};

/// A plugin found on the search path.
#[derive(Debug, Clone)]
pub struct Entry {
    pub meta: PluginMeta,
    pub path: PathBuf,
    pub abi_version: String,
    pub hash: String,
}

/// Every plugin found on the search path, by name, with what went wrong along the way.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Vec<Entry>,
    /// The directories scanned, in order.
    pub searched: Vec<PathBuf>,
    /// Libraries refused (incompatible, failed to load) and duplicate names, one line each.
    pub problems: Vec<String>,
}

const LIB_EXT: &str = std::env::consts::DLL_EXTENSION;

/// Where plugins are looked for, in priority order: `extra` (directories named in config),
/// `RETORT_PLUGIN_PATH` entries, then the executable's directory.
pub fn search_dirs(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = extra.to_vec();
    if let Some(p) = std::env::var_os("RETORT_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&p).filter(|d| !d.as_os_str().is_empty()));
    }
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(exe_dir);
    }
    dirs
}

fn candidates(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) == Some(LIB_EXT))
        .collect();
    v.sort();
    v
}

impl Registry {
    /// Scans `dirs` (see [`search_dirs`]), loading each library once to read its plugin list.
    pub fn discover(dirs: &[PathBuf]) -> Registry {
        let mut reg = Registry { searched: dirs.to_vec(), ..Registry::default() };
        let mut seen = BTreeSet::new();
        for dir in dirs {
            for path in candidates(dir) {
                let canon = path.canonicalize().unwrap_or_else(|_| path.clone());
                if !seen.insert(canon) {
                    continue;
                }
                reg.add_library(&path);
            }
        }
        reg
    }

    /// Loads one library and records its plugins (or why it was refused).
    pub fn add_library(&mut self, path: &Path) {
        match Library::load(path) {
            Ok(lib) => {
                for meta in lib.plugins() {
                    if let Some(prev) =
                        self.entries.iter().find(|e| e.meta.name == meta.name && e.meta.kind == meta.kind)
                    {
                        self.problems.push(format!(
                            "duplicate {} plugin `{}`: {} and {}; using the first",
                            meta.kind_name(),
                            meta.name,
                            prev.path.display(),
                            path.display()
                        ));
                        continue;
                    }
                    self.entries.push(Entry {
                        meta: meta.clone(),
                        path: path.to_path_buf(),
                        abi_version: lib.abi_version().to_string(),
                        hash: lib.hash().to_string(),
                    });
                }
            }
            Err(HostError::Load { reason, .. }) if reason.starts_with("not a Retort plugin") => {
                tracing::debug!(path = %path.display(), "skipped: {reason}");
            }
            Err(e) => self.problems.push(e.to_string()),
        }
    }

    /// Every plugin found.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The plugin `name` of any kind.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.meta.name == name)
    }

    /// The plugin `name` of `kind`, or an error listing the known ones of that kind.
    pub fn find(&self, name: &str, kind_code: u32) -> Result<&Entry> {
        self.entries.iter().find(|e| e.meta.name == name && e.meta.kind == kind_code).ok_or_else(|| {
            HostError::NotFound {
                kind: kind::name(kind_code),
                name: name.into(),
                known: self
                    .entries
                    .iter()
                    .filter(|e| e.meta.kind == kind_code)
                    .map(|e| e.meta.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })
    }

    /// Loads the library that provides plugin `name` of `kind`.
    pub fn load(&self, name: &str, kind_code: u32) -> Result<Arc<Library>> {
        Library::load(&self.find(name, kind_code)?.path)
    }
}
