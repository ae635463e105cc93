//! Guest stdout/stderr capture: bounded per call, in memory and on disk, readable and followable.
//!
//! Each function name has a [`LogSink`] that outlives redeploys. Instances write into it through
//! `GuestOutput` (the WASI stdout/stderr of every store); complete lines go to a small in-memory
//! ring (what `wafer logs` shows), to followers, and to a queue that one background thread drains
//! every `DISK_FLUSH` into `<logs>/<name>.log`, rotating at a fixed size. Nothing on the guest's
//! write path blocks, fails or wakes a thread: past its per-call budget a guest's output is
//! dropped (once marked), and when the disk writer falls behind, lines skip the disk rather than
//! stall the guest.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use prometheus::IntCounter;
use tokio::sync::broadcast;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Lines kept in memory per function.
const RECENT_LINES: usize = 1000;
/// Bytes kept in memory per function.
const RECENT_BYTES: usize = 256 << 10;
/// Longest line kept; longer output is split.
const MAX_LINE: usize = 16 << 10;
/// Size at which a log file is rotated to `<name>.log.1` (one generation is kept).
const ROTATE_BYTES: u64 = 4 << 20;
/// Lines queued for the disk writer before new ones skip the disk.
const DISK_QUEUE: usize = 64 << 10;
/// How often the disk writer drains its queue. Batching keeps a chatty guest from paying a
/// thread wake-up per line.
const DISK_FLUSH: Duration = Duration::from_millis(50);

/// Where a log line came from.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
    /// The platform, about the function: traps, timeouts, truncated output.
    Wafer,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Wafer => "wafer",
        }
    }

    fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            "wafer" => Some(Stream::Wafer),
            _ => None,
        }
    }
}

/// One line of a function's output.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub stream: Stream,
    pub text: String,
    /// The worker that wrote it, where there are several (a cluster); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl LogLine {
    fn new(stream: Stream, text: String) -> LogLine {
        LogLine {
            time_ms: crate::time::now_ms(),
            stream,
            text,
            worker: None,
        }
    }

    fn to_disk(&self) -> String {
        format!("{} {} {}\n", self.time_ms, self.stream.as_str(), self.text)
    }

    fn from_disk(line: &str) -> Option<LogLine> {
        let mut parts = line.splitn(3, ' ');
        let time_ms = parts.next()?.parse().ok()?;
        let stream = Stream::parse(parts.next()?)?;
        let text = parts.next().unwrap_or("").to_string();
        Some(LogLine {
            time_ms,
            stream,
            text,
            worker: None,
        })
    }
}

enum DiskOp {
    Append(Arc<str>, LogLine),
    Remove(Arc<str>),
}

/// Lines on their way to disk.
struct DiskQueue {
    ops: Mutex<Vec<DiskOp>>,
    /// Lines that skipped the disk: the writer fell behind, or the disk refused them.
    unwritten: IntCounter,
}

impl DiskQueue {
    fn push_line(&self, name: &Arc<str>, line: LogLine) {
        let mut ops = self.ops.lock().unwrap();
        if ops.len() < DISK_QUEUE {
            ops.push(DiskOp::Append(name.clone(), line));
        } else {
            self.unwritten.inc();
        }
    }

    fn push_removal(&self, name: Arc<str>) {
        // Never dropped: a removal must happen even when the queue is full.
        self.ops.lock().unwrap().push(DiskOp::Remove(name));
    }
}

/// All functions' logs on this worker.
pub struct Logs {
    dir: Option<PathBuf>,
    disk: Option<Arc<DiskQueue>>,
    sinks: DashMap<Arc<str>, Arc<LogSink>>,
}

impl Logs {
    /// Logs kept in memory and appended under `dir` (or in memory only when `dir` is `None`),
    /// counting lines that skip the disk in `unwritten`.
    pub fn new(dir: Option<PathBuf>, unwritten: IntCounter) -> io::Result<Logs> {
        let disk = match &dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let queue = Arc::new(DiskQueue {
                    ops: Mutex::new(Vec::new()),
                    unwritten,
                });
                let writer = queue.clone();
                let dir = dir.clone();
                std::thread::Builder::new()
                    .name("wafer-logs".into())
                    .spawn(move || disk_writer(&dir, writer))?;
                Some(queue)
            }
            None => None,
        };
        Ok(Logs {
            dir,
            disk,
            sinks: DashMap::new(),
        })
    }

    /// The sink for `function`, created (and seeded from disk) on first use.
    pub fn sink(&self, function: &str) -> Arc<LogSink> {
        if let Some(sink) = self.sinks.get(function) {
            return sink.clone();
        }
        let name: Arc<str> = Arc::from(function);
        let recent = self
            .dir
            .as_deref()
            .map(|dir| read_tail(&dir.join(format!("{function}.log"))))
            .unwrap_or_default();
        let sink = Arc::new(LogSink {
            name: name.clone(),
            recent: Mutex::new(Recent::from_lines(recent)),
            follow: broadcast::channel(1024).0,
            disk: self.disk.clone(),
            dir: self.dir.clone(),
        });
        self.sinks.entry(name).or_insert(sink).clone()
    }

    /// The sink for `function` if it has one.
    pub fn get(&self, function: &str) -> Option<Arc<LogSink>> {
        self.sinks.get(function).map(|s| s.clone())
    }

    /// Forgets a deleted function's logs, in memory and on disk.
    pub fn remove(&self, function: &str) {
        if let Some((name, _)) = self.sinks.remove(function)
            && let Some(disk) = &self.disk
        {
            disk.push_removal(name);
        }
    }
}

#[derive(Default)]
struct Recent {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

impl Recent {
    fn from_lines(lines: Vec<LogLine>) -> Recent {
        let mut recent = Recent::default();
        for line in lines {
            recent.push(line);
        }
        recent
    }

    fn push(&mut self, line: LogLine) {
        self.bytes += line.text.len();
        self.lines.push_back(line);
        while self.lines.len() > RECENT_LINES || self.bytes > RECENT_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.text.len(),
                None => break,
            }
        }
    }
}

/// One function's log: recent lines, followers, and the way to disk.
pub struct LogSink {
    name: Arc<str>,
    recent: Mutex<Recent>,
    follow: broadcast::Sender<LogLine>,
    disk: Option<Arc<DiskQueue>>,
    /// Where its files are (`<name>.log`, and `<name>.log.1` before the last rotation).
    dir: Option<PathBuf>,
}

impl LogSink {
    /// Records one line.
    pub fn push(&self, stream: Stream, text: String) {
        let line = LogLine::new(stream, text);
        if let Some(disk) = &self.disk {
            disk.push_line(&self.name, line.clone());
        }
        if self.follow.receiver_count() > 0 {
            let _ = self.follow.send(line.clone());
        }
        self.recent.lock().unwrap().push(line);
    }

    /// The last `n` lines held in memory, oldest first.
    pub fn recent(&self, n: usize) -> Vec<LogLine> {
        let recent = self.recent.lock().unwrap();
        let skip = recent.lines.len().saturating_sub(n);
        recent.lines.iter().skip(skip).cloned().collect()
    }

    /// The last `n` lines, oldest first: from memory while it holds that many, else as far back
    /// as the kept files go (the previous file and the current one), then the lines in memory
    /// that the disk writer has not caught up with.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let memory = self.recent(usize::MAX);
        let Some(dir) = self.dir.as_deref().filter(|_| memory.len() < n) else {
            let skip = memory.len().saturating_sub(n);
            return memory.into_iter().skip(skip).collect();
        };
        let mut lines: Vec<LogLine> =
            [format!("{}.log.1", self.name), format!("{}.log", self.name)]
                .iter()
                .flat_map(|file| read_all(&dir.join(file)))
                .collect();
        // The newest lines on disk are the oldest in memory: line them up, append the rest.
        let written = (0..=memory.len().min(lines.len()))
            .rev()
            .find(|&k| lines[lines.len() - k..] == memory[..k])
            .unwrap_or(0);
        lines.extend(memory.into_iter().skip(written));
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
        lines
    }

    /// New lines as they are written.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.follow.subscribe()
    }
}

/// Drains the queue every [`DISK_FLUSH`], one write per function and batch; once no one else
/// holds the queue (the logs were dropped), drains it a last time and stops. Lines the disk
/// refuses (full, read-only) are counted and skipped; they stay in memory, and writing resumes
/// by itself when the disk takes them again.
fn disk_writer(dir: &Path, queue: Arc<DiskQueue>) {
    let mut files: HashMap<Arc<str>, (File, u64)> = HashMap::new();
    let mut failing = false;
    loop {
        std::thread::sleep(DISK_FLUSH);
        let last = Arc::strong_count(&queue) == 1;
        let ops = std::mem::take(&mut *queue.ops.lock().unwrap());
        // Each function's lines of this batch, in order: their text and how many.
        let mut batch: HashMap<Arc<str>, (String, u64)> = HashMap::new();
        for op in ops {
            match op {
                DiskOp::Append(name, line) => {
                    let (text, lines) = batch.entry(name).or_default();
                    text.push_str(&line.to_disk());
                    *lines += 1;
                }
                DiskOp::Remove(name) => {
                    batch.remove(&name);
                    files.remove(&name);
                    for path in [
                        dir.join(format!("{name}.log")),
                        dir.join(format!("{name}.log.1")),
                    ] {
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
        }
        let mut written = std::collections::HashSet::new();
        for (name, (text, lines)) in batch {
            match append(dir, &mut files, &name, &text) {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(dir = %dir.display(), "function logs reach the disk again");
                }
                Ok(()) => {}
                Err(e) => {
                    queue.unwritten.inc_by(lines);
                    // Opened afresh next time, so nothing half-written is appended to.
                    files.remove(&name);
                    if !failing {
                        failing = true;
                        tracing::warn!(dir = %dir.display(), error = %e, "function log lines do not reach the disk (they stay in memory; counted in wafer_log_lines_unwritten_total)");
                    }
                    continue;
                }
            }
            written.insert(name);
        }
        // Keep open only the files of functions still logging: a thousand quiet functions
        // should not hold a thousand descriptors.
        files.retain(|name, _| written.contains(name));
        if last {
            return;
        }
    }
}

/// Appends `text` to the function's log in one write, rotating first if it would grow past
/// [`ROTATE_BYTES`].
fn append(
    dir: &Path,
    files: &mut HashMap<Arc<str>, (File, u64)>,
    name: &Arc<str>,
    text: &str,
) -> io::Result<()> {
    let path = dir.join(format!("{name}.log"));
    if !files.contains_key(name) {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        files.insert(name.clone(), (file, len));
    }
    let (file, len) = files.get_mut(name).expect("inserted above");
    if *len + text.len() as u64 > ROTATE_BYTES {
        std::fs::rename(&path, dir.join(format!("{name}.log.1")))?;
        *file = OpenOptions::new().create(true).append(true).open(&path)?;
        *len = 0;
    }
    file.write_all(text.as_bytes())?;
    *len += text.len() as u64;
    Ok(())
}

/// Every line of a log file (none if it is missing).
fn read_all(path: &Path) -> Vec<LogLine> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().filter_map(LogLine::from_disk).collect())
        .unwrap_or_default()
}

/// The last lines of a log file, for seeding memory after a restart.
fn read_tail(path: &Path) -> Vec<LogLine> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(RECENT_BYTES as u64);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.lines();
    if start > 0 {
        lines.next(); // most likely cut in the middle
    }
    lines.filter_map(LogLine::from_disk).collect()
}

/// What a call may still write; shared by an instance's stdout and stderr, reset per call.
#[derive(Default)]
pub(crate) struct OutputBudget {
    remaining: AtomicU64,
    truncated: AtomicBool,
}

impl OutputBudget {
    pub(crate) fn reset(&self, bytes: u64) {
        self.remaining.store(bytes, Ordering::Relaxed);
        self.truncated.store(false, Ordering::Relaxed);
    }

    /// How many of `len` bytes may be kept; the first refusal of a call is reported once.
    fn take(&self, len: usize, sink: &LogSink) -> usize {
        let mut remaining = self.remaining.load(Ordering::Relaxed);
        loop {
            let take = remaining.min(len as u64);
            match self.remaining.compare_exchange_weak(
                remaining,
                remaining - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if take < len as u64 && !self.truncated.swap(true, Ordering::Relaxed) {
                        sink.push(
                            Stream::Wafer,
                            "output truncated: this call wrote more than its log budget".into(),
                        );
                    }
                    return take as usize;
                }
                Err(now) => remaining = now,
            }
        }
    }
}

/// A guest's stdout or stderr, as handed to `WasiCtxBuilder`.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    pub(crate) sink: Arc<LogSink>,
    pub(crate) stream: Stream,
    pub(crate) budget: Arc<OutputBudget>,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter::new(self.clone()))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter::new(self.clone()))
    }
}

/// Splits what a guest writes into lines. Writes always succeed: a guest must never trap (Rust's
/// `println!` panics on error) because its logs are full.
struct LineWriter {
    out: GuestOutput,
    partial: Vec<u8>,
}

impl LineWriter {
    fn new(out: GuestOutput) -> LineWriter {
        LineWriter {
            out,
            partial: Vec::new(),
        }
    }

    fn write_bytes(&mut self, bytes: &[u8]) {
        let keep = self.out.budget.take(bytes.len(), &self.out.sink);
        let mut rest = &bytes[..keep];
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..pos]);
            self.emit();
            rest = &rest[pos + 1..];
        }
        self.partial.extend_from_slice(rest);
        while self.partial.len() >= MAX_LINE {
            let tail = self.partial.split_off(MAX_LINE);
            self.emit();
            self.partial = tail;
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.strip_suffix('\r').unwrap_or(&line).to_string();
        self.partial.clear();
        self.out.sink.push(self.out.stream, line);
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.emit();
        }
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn unwritten() -> IntCounter {
        IntCounter::new("unwritten", "test").unwrap()
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn lines_the_disk_refuses_are_counted_kept_in_memory_and_writing_resumes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let counter = unwritten();
        let logs = Logs::new(Some(dir.clone()), counter.clone()).unwrap();
        let sink = logs.sink("f");
        // The directory goes, and a file takes its place: every write fails.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, "not a directory").unwrap();
        sink.push(Stream::Stdout, "refused one".into());
        sink.push(Stream::Stdout, "refused two".into());
        wait_for("the refusals counted", || counter.get() == 2);
        assert_eq!(sink.recent(2).len(), 2, "still in memory");
        // Space is back: the next lines are written.
        std::fs::remove_file(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        sink.push(Stream::Stdout, "written".into());
        wait_for("the line on disk", || {
            std::fs::read_to_string(dir.join("f.log")).is_ok_and(|t| t.contains("written"))
        });
        assert_eq!(counter.get(), 2);
    }

    fn output(sink: &Arc<LogSink>, budget: u64) -> (LineWriter, Arc<OutputBudget>) {
        let budget_ = Arc::new(OutputBudget::default());
        budget_.reset(budget);
        let out = GuestOutput {
            sink: sink.clone(),
            stream: Stream::Stdout,
            budget: budget_.clone(),
        };
        (LineWriter::new(out), budget_)
    }

    #[test]
    fn splits_lines_and_keeps_partials_until_drop() {
        let logs = Logs::new(None, unwritten()).unwrap();
        let sink = logs.sink("f");
        let (mut w, _) = output(&sink, 1 << 20);
        w.write_bytes(b"one\ntw");
        w.write_bytes(b"o\r\nthree");
        let texts: Vec<_> = sink.recent(10).into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["one", "two"]);
        drop(w);
        assert_eq!(sink.recent(1)[0].text, "three");
    }

    #[test]
    fn budget_truncates_once_per_call() {
        let logs = Logs::new(None, unwritten()).unwrap();
        let sink = logs.sink("f");
        let (mut w, budget) = output(&sink, 10);
        for _ in 0..100 {
            w.write_bytes(b"0123456789abcdef\n");
        }
        let lines = sink.recent(100);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].stream, Stream::Wafer);
        budget.reset(100);
        w.write_bytes(b"\nnext call\n");
        let texts: Vec<_> = sink.recent(2).into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["0123456789", "next call"]);
    }

    #[test]
    fn memory_is_bounded_and_disk_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let logs = Logs::new(Some(dir.path().to_path_buf()), unwritten()).unwrap();
            let sink = logs.sink("f");
            for i in 0..(RECENT_LINES * 2) {
                sink.push(Stream::Stderr, format!("line {i}"));
            }
            assert_eq!(sink.recent(usize::MAX).len(), RECENT_LINES);
        }
        // The writer thread drains its queue before the file is read back.
        let path = dir.path().join("f.log");
        let last = format!("line {}", RECENT_LINES * 2 - 1);
        wait_for("never written to disk", || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.contains(&last))
        });
        let logs = Logs::new(Some(dir.path().to_path_buf()), unwritten()).unwrap();
        let sink = logs.sink("f");
        let last = sink.recent(1);
        assert_eq!(last[0].text, format!("line {}", RECENT_LINES * 2 - 1));
        assert_eq!(last[0].stream, Stream::Stderr);
        // A tail longer than memory reads back from the file, in order and whole.
        let all = sink.tail(RECENT_LINES * 2);
        let texts: Vec<String> = all.iter().map(|l| l.text.clone()).collect();
        let expected: Vec<String> = (0..RECENT_LINES * 2).map(|i| format!("line {i}")).collect();
        assert_eq!(texts, expected);
    }
}
