//! Progress bars on stderr for long work (reading, hashing, writing large payloads), hidden
//! when stderr is not a terminal, with `--quiet`, and for small totals.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Below this many bytes no bar is drawn: the work is over before a human could read it.
pub const MIN_BYTES: u64 = 32 << 20;

/// Whether and how to draw progress.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Progress on stderr unless `quiet` (indicatif also hides it when stderr is no terminal).
    pub fn new(quiet: bool) -> Self {
        Self { enabled: !quiet }
    }

    /// No progress at all (library callers, tests).
    pub fn hidden() -> Self {
        Self { enabled: false }
    }

    /// A byte-count bar for `total` bytes.
    pub fn bar(&self, what: &str, total: u64) -> ProgressBar {
        if !self.enabled || total < MIN_BYTES {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar
    }
}
