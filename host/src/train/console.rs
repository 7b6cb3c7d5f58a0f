//! What a run shows a person on stderr: a progress bar on a terminal, a plain progress line every
//! few seconds otherwise (logs and CI), and one line for every live event (swap, rejection,
//! rollback, stop). Everything else goes to `tracing`.
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Nothing but event lines.
    #[default]
    Off,
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// A plain line every `PLAIN_EVERY` (stderr is a file or pipe).
    Plain,
}

const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// The terminal side of a run.
pub struct Console {
    mode: ProgressMode,
    bar: ProgressBar,
    stage: String,
    total: u64,
    pos: u64,
    last_plain: Instant,
    started: (Instant, u64),
}

impl Console {
    /// A console showing progress in `mode`.
    pub fn new(mode: ProgressMode) -> Self {
        Console {
            mode,
            bar: ProgressBar::hidden(),
            stage: String::new(),
            total: 0,
            pos: 0,
            last_plain: Instant::now(),
            started: (Instant::now(), 0),
        }
    }

    /// Starts showing stage `name` at step `pos` of `total`.
    pub fn stage(&mut self, name: &str, total: u64, pos: u64) {
        self.bar.finish_and_clear();
        (self.stage, self.total, self.pos) = (name.to_string(), total, pos);
        self.started = (Instant::now(), pos);
        self.last_plain = Instant::now();
        self.bar = match self.mode {
            ProgressMode::Bar => {
                let bar = ProgressBar::new(total).with_prefix(name.to_string()).with_position(pos);
                if let Ok(style) =
                    ProgressStyle::with_template("{prefix:>8} {bar:30} {pos}/{len} {msg} {per_sec} eta {eta}")
                {
                    bar.set_style(style);
                }
                bar
            }
            _ => ProgressBar::hidden(),
        };
    }

    /// One step done; `message` is the latest loss and status.
    pub fn step(&mut self, message: impl FnOnce() -> String) {
        self.pos += 1;
        match self.mode {
            ProgressMode::Bar => self.bar.inc(1),
            ProgressMode::Plain if self.last_plain.elapsed() >= PLAIN_EVERY || self.pos == self.total => {
                self.last_plain = Instant::now();
                let secs = self.started.0.elapsed().as_secs_f64().max(1e-9);
                let rate = (self.pos - self.started.1) as f64 / secs;
                let eta = if rate > 0.0 { (self.total.saturating_sub(self.pos)) as f64 / rate } else { 0.0 };
                eprintln!(
                    "[{}] step {}/{} ({:.0}%) {} {rate:.1} steps/s eta {eta:.0}s",
                    self.stage,
                    self.pos,
                    self.total,
                    100.0 * self.pos as f64 / self.total.max(1) as f64,
                    message()
                );
            }
            _ => {}
        }
    }

    /// Updates the message next to the bar.
    pub fn message(&self, text: String) {
        if self.mode == ProgressMode::Bar {
            self.bar.set_message(text);
        }
    }

    /// Prints one line (above the bar when one is drawn).
    pub fn line(&self, text: &str) {
        if self.mode == ProgressMode::Bar && !self.bar.is_hidden() {
            self.bar.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    /// Removes the bar (stage finished).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Leaves the bar where it is (run stopped).
    pub fn abandon(&self) {
        self.bar.abandon();
    }
}
