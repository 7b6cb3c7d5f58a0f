//! `metrics.jsonl` and `events` of a run directory: one JSON object per line, appended and flushed.
use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use serde_json::Value;

/// An append-only JSON-lines file.
pub struct JsonLines {
    path: PathBuf,
    file: File,
}

impl JsonLines {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLines { path: path.to_path_buf(), file })
    }

    /// Keeps only the records for which `keep` is true (dropping what was written after the
    /// checkpoint a run resumes from).
    pub fn retain(path: &Path, keep: impl Fn(&Value) -> bool) -> std::io::Result<()> {
        let Ok(f) = File::open(path) else { return Ok(()) };
        let kept: Vec<String> = BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| keep(&v)))
            .collect();
        let tmp = path.with_extension("jsonl.tmp");
        let mut out = File::create(&tmp)?;
        for l in kept {
            writeln!(out, "{l}")?;
        }
        out.sync_all()?;
        std::fs::rename(tmp, path)
    }

    /// Appends one record.
    pub fn write(&mut self, record: &Value) -> std::io::Result<()> {
        writeln!(self.file, "{record}")?;
        self.file.flush()
    }

    /// Where the records go.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}
