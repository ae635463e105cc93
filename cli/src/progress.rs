//! Progress of long CLI steps on stderr: a spinner naming the step with its elapsed time, or a
//! bar of bytes for an upload. Drawn only when stderr is a terminal; otherwise each step is one
//! plain line, so that logs and pipes stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One step in progress.
pub struct Step {
    bar: ProgressBar,
}

fn live() -> bool {
    std::io::stderr().is_terminal()
}

impl Step {
    /// A step of unknown length: `what` with a spinner and the time since it started.
    pub fn start(what: impl Into<String>) -> Step {
        let what = what.into();
        if !live() {
            eprintln!("{what}...");
            return Step {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("a valid template"),
            )
            .with_message(what);
        bar.enable_steady_tick(Duration::from_millis(100));
        Step { bar }
    }

    /// A step of `total` bytes: `what` with a bar, the bytes done and the rate.
    pub fn bytes(what: impl Into<String>, total: u64) -> Step {
        let what = what.into();
        if !live() {
            eprintln!("{what}...");
            return Step {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            )
            .with_message(what);
        Step { bar }
    }

    /// Moves a byte step on.
    pub fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    /// Turns this step into the next one (a spinner again), keeping the line.
    pub fn next(self, what: impl Into<String>) -> Step {
        self.bar.finish_and_clear();
        Step::start(what)
    }

    /// Ends the step, leaving nothing behind (the command prints its own result).
    pub fn done(self) {
        self.bar.finish_and_clear();
    }
}
