//! File watching with `notify`: plugin libraries and the config file.
//!
//! Directories are watched rather than files, so that an atomic install (write elsewhere, rename
//! over) is seen. Access events are ignored: the loader's own copy of a library triggers them.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::mpsc::{self, Receiver, Sender},
};

use notify::{event::EventKind, RecursiveMode, Watcher as _};

/// Something the run should look at, at its next step boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A watched plugin library was (re)written.
    Library(PathBuf),
    /// The run's config file was (re)written.
    Config(PathBuf),
    /// A `--dev` build failed; the text is cargo's error output.
    BuildFailed { krate: String, message: String },
}

/// Watches files; changes arrive on [`Watcher::changes`].
pub struct Watcher {
    inner: notify::RecommendedWatcher,
    files: std::sync::Arc<std::sync::Mutex<BTreeSet<PathBuf>>>,
    config: Option<PathBuf>,
    dirs: BTreeSet<PathBuf>,
    tx: Sender<Change>,
    rx: Receiver<Change>,
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Watcher {
    /// A watcher reporting changes to `config` (if given) and to the libraries added later.
    pub fn new(config: Option<&Path>) -> notify::Result<Watcher> {
        let (tx, rx) = mpsc::channel();
        let files = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::<PathBuf>::new()));
        let config = config.map(absolute);
        let (f2, c2, t2) = (files.clone(), config.clone(), tx.clone());
        let inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, EventKind::Access(_) | EventKind::Remove(_) | EventKind::Other) {
                return;
            }
            let watched = f2.lock().map(|s| s.clone()).unwrap_or_default();
            for p in ev.paths {
                let p = absolute(&p);
                if c2.as_ref() == Some(&p) {
                    let _ = t2.send(Change::Config(p));
                } else if watched.contains(&p) {
                    let _ = t2.send(Change::Library(p));
                }
            }
        })?;
        let mut w = Watcher { inner, files, config: config.clone(), dirs: BTreeSet::new(), tx, rx };
        if let Some(c) = config {
            w.watch_dir_of(&c)?;
        }
        Ok(w)
    }

    fn watch_dir_of(&mut self, file: &Path) -> notify::Result<()> {
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        if self.dirs.insert(dir.clone()) {
            self.inner.watch(&dir, RecursiveMode::NonRecursive)?;
        }
        Ok(())
    }

    /// Also report changes to the library at `path`.
    pub fn watch_library(&mut self, path: &Path) -> notify::Result<()> {
        let p = absolute(path);
        self.watch_dir_of(&p)?;
        if let Ok(mut f) = self.files.lock() {
            f.insert(p);
        }
        Ok(())
    }

    /// A sender for other sources of changes (the `--dev` builder).
    pub fn sender(&self) -> Sender<Change> {
        self.tx.clone()
    }

    /// The config file watched, if any.
    pub fn config(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// Every change since the last call, deduplicated, in arrival order.
    pub fn changes(&self) -> Vec<Change> {
        let mut out: Vec<Change> = Vec::new();
        while let Ok(c) = self.rx.try_recv() {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}
