//! Fair CPU between functions: a function whose calls keep trapping, timing out or running long
//! on the CPU has its calls run on low-priority threads, so that the short calls of every other
//! function never wait behind them.
//!
//! The priority is the kernel's (`SCHED_IDLE` threads): when a normal thread has work, it takes
//! the core from a low-priority one at once, which no scheduling inside tokio can do for a guest
//! that is in the middle of its 1 ms epoch slice. A low-priority function still runs at full
//! speed on a core nobody else wants; it loses only where it would have taken time from others.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use crate::logs::{LogSink, Stream};

/// Fixed-point 1.0 of a [`Standing`]'s score.
const ONE: u32 = 1 << 16;
/// Moved to low priority once the score reaches this (about 6 hostile calls in a row)...
const DEMOTE_AT: u32 = ONE / 2;
/// ...and back once it has fallen to this (about 16 good calls in a row after a long run of
/// hostile ones): the gap keeps a function that fails now and then from flapping.
const RESTORE_AT: u32 = ONE / 8;
/// Weight of the newest call in the moving average: 1/8.
const SHIFT: u32 = 3;

/// How a function's recent calls behaved: a moving average of marks, one for each call that
/// behaved and one hostile mark for each call that trapped, timed out or ran out of memory and
/// for each [`crate::limits::SHORT_CALL_TICKS`] of CPU a call holds past its short budget (so a
/// spinning call is caught within tens of milliseconds, not after it times out).
pub(crate) struct Standing {
    score: AtomicU32,
    low: AtomicBool,
    /// Where a change of priority is told, with the function's name.
    function: Arc<str>,
    logs: Arc<LogSink>,
}

/// A change of priority that a call's outcome caused.
#[derive(Debug, PartialEq, Eq)]
enum Moved {
    ToLow,
    Back,
}

impl Standing {
    pub(crate) fn new(function: Arc<str>, logs: Arc<LogSink>) -> Arc<Standing> {
        Arc::new(Standing {
            score: AtomicU32::new(0),
            low: AtomicBool::new(false),
            function,
            logs,
        })
    }

    /// Records one mark, and tells the function's log when it moves the function.
    pub(crate) fn record(&self, hostile: bool) {
        let note = match self.mark(hostile) {
            None => return,
            Some(Moved::ToLow) => format!(
                "calls of `{}` keep trapping, timing out or running long on the CPU: they run at low priority, behind other functions' calls, until they behave",
                self.function
            ),
            Some(Moved::Back) => format!(
                "calls of `{}` behave again: they run at normal priority",
                self.function
            ),
        };
        tracing::info!(function = %self.function, "{note}");
        self.logs.push(Stream::Wafer, note);
    }

    /// Adds one mark to the average; says if that moved the function between priorities.
    fn mark(&self, hostile: bool) -> Option<Moved> {
        // The usual case, a good call of a function in good standing, writes nothing: a shared
        // atomic written on every call would bounce between the cores serving it.
        if !hostile && self.score.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let target = if hostile { ONE } else { 0 };
        // Rounding the decay up lets a good run reach 0 again (and the no-write case above).
        let step = |s: u32| s - s.div_ceil(1 << SHIFT) + (target >> SHIFT);
        let before = self
            .score
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| Some(step(s)))
            .unwrap_or_else(|s| s);
        let score = step(before);
        if score >= DEMOTE_AT && !self.low.load(Ordering::Relaxed) {
            return (!self.low.swap(true, Ordering::Relaxed)).then_some(Moved::ToLow);
        }
        if score <= RESTORE_AT && self.low.load(Ordering::Relaxed) {
            return self
                .low
                .swap(false, Ordering::Relaxed)
                .then_some(Moved::Back);
        }
        None
    }

    /// Whether the function's calls run at low priority.
    pub(crate) fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }
}

/// The process's low-priority runtime, started on first use with a thread per core. It lives
/// as long as the process: workers come and go in tests, their calls' threads need not.
pub(crate) fn low_priority() -> Result<&'static tokio::runtime::Handle, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("wafer-low")
                .on_thread_start(lower_this_thread)
                .enable_all()
                .build()
                .map_err(|e| format!("could not start the low-priority threads: {e}"))
        })
        .as_ref()
        .map(|runtime| runtime.handle())
        .map_err(Clone::clone)
}

thread_local! {
    static LOW: Cell<bool> = const { Cell::new(false) };
}

/// Whether this is one of the low-priority threads. Calls running here need no CPU lane (see
/// `limits::Lanes`): the kernel already keeps them from taking a core from anyone, and a lane
/// held by a call the kernel has paused would hold up the normal calls queued for it.
pub(crate) fn on_low_thread() -> bool {
    LOW.with(Cell::get)
}

/// Makes the calling thread `SCHED_IDLE`: it runs only when no normal thread wants its core.
fn lower_this_thread() {
    LOW.with(|low| low.set(true));
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "could not lower the priority of a low-priority thread"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing() -> Arc<Standing> {
        let unwritten = prometheus::IntCounter::new("unwritten", "lines").unwrap();
        let logs = crate::logs::Logs::new(None, unwritten).unwrap();
        Standing::new(Arc::from("f"), logs.sink("f"))
    }

    #[test]
    fn hostile_calls_in_a_row_demote_and_good_ones_restore_without_flapping() {
        let standing = standing();
        let moves: Vec<_> = (0..5).filter_map(|_| standing.mark(true)).collect();
        assert!(moves.is_empty(), "five hostile calls are not yet a pattern");
        assert_eq!(standing.mark(true), Some(Moved::ToLow));
        assert!(standing.is_low());
        for _ in 0..20 {
            assert_eq!(standing.mark(true), None);
        }
        // Good calls bring it back, but not the first few.
        let back = (1..=40).find(|_| standing.mark(false) == Some(Moved::Back));
        assert!(matches!(back, Some(n) if n > 8), "{back:?}");
        assert!(!standing.is_low());
        // A good run ends at a clean slate, where good calls write nothing.
        for _ in 0..200 {
            assert_eq!(standing.mark(false), None);
        }
        assert_eq!(standing.score.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_function_that_fails_now_and_then_keeps_its_priority() {
        let standing = standing();
        for i in 0..1000 {
            assert_eq!(standing.mark(i % 5 == 0), None, "call {i}");
        }
        assert!(!standing.is_low());
    }

    #[test]
    fn a_move_is_told_in_the_functions_log() {
        let standing = standing();
        for _ in 0..6 {
            standing.record(true);
        }
        let lines = standing.logs.recent(10);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].text.contains("low priority"), "{lines:?}");
    }

    #[test]
    fn low_priority_threads_run_futures() {
        let handle = low_priority().unwrap();
        let (answer, low) = handle.block_on(async {
            handle
                .spawn(async { (6 * 7, on_low_thread()) })
                .await
                .unwrap()
        });
        assert_eq!((answer, low), (42, true));
        assert!(!on_low_thread());
    }
}
