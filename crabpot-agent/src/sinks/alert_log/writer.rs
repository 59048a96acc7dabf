//! Writing the alerts log so that no line is ever torn or interleaved: each line is
//! serialised first and appended on an `O_APPEND` descriptor by the one task that owns the
//! file (a short write is continued); a failed write is cut back off (and, if even that fails, before
//! the next write); and at start a torn tail (a SIGKILL between the pages of one write) is
//! removed. When the disk is full, lines wait in memory (bounded) and are retried.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::sync::mpsc;

use crate::{model::alert::Alert, sinks::formats::OutputFormat};

pub struct AlertLogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
    /// The file may hold a partial line past `size` that could not be cut off yet.
    dirty: bool,
    /// Rotated away, but the new file could not be opened yet.
    reopen: bool,
    format: OutputFormat,
}

/// The `n`th rotated file: `alerts.log.1` is the newest.
pub(crate) fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Remove a partial last line (one without its newline). Returns the bytes removed.
pub(crate) fn repair_torn_tail(path: &Path) -> io::Result<u64> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut keep = len;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let start = keep.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(keep - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if keep == len && chunk.last() == Some(&b'\n') {
            return Ok(0);
        }
        if let Some(newline) = chunk.iter().rposition(|b| *b == b'\n') {
            keep = start + newline as u64 + 1;
            break;
        }
        keep = start;
        if start == 0 {
            break;
        }
    }
    file.set_len(keep)?;
    Ok(len - keep)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl AlertLogWriter {
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let removed = repair_torn_tail(path)?;
        if removed > 0 {
            tracing::warn!(
                "{}: removed a torn last line ({removed} bytes) left by an interrupted write",
                path.display()
            );
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(AlertLogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            dirty: false,
            reopen: false,
            format: OutputFormat::Json,
        })
    }

    /// Write lines in `format` rather than alert schema v1.
    pub(crate) fn with_format(mut self, format: OutputFormat) -> Self {
        self.format = format;
        self
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..self.keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.reopen = true;
        self.dirty = false;
        self.size = 0;
        self.file = open_append(&self.path)?;
        self.reopen = false;
        Ok(())
    }

    /// One alert as its log line (alert schema v1).
    pub fn encode(alert: &Alert) -> io::Result<Vec<u8>> {
        Self::encode_as(alert, OutputFormat::Json)
    }

    /// One alert as its log line in `format`.
    pub(crate) fn encode_as(alert: &Alert, format: OutputFormat) -> io::Result<Vec<u8>> {
        let value = crate::sinks::formats::encode(alert, format);
        let mut line = serde_json::to_vec(&value).map_err(io::Error::other)?;
        line.push(b'\n');
        Ok(line)
    }

    /// Append one alert as one line.
    pub fn append(&mut self, alert: &Alert) -> io::Result<()> {
        self.append_line(&Self::encode_as(alert, self.format)?)
    }

    /// Append one encoded line (ending in a newline) whole, or leave the file as it was.
    pub fn append_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.reopen {
            self.file = open_append(&self.path)?;
            self.size = self.file.metadata()?.len();
            self.reopen = false;
        }
        if self.dirty {
            self.file.set_len(self.size)?;
            self.dirty = false;
        }
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let mut done = 0;
        while done < line.len() {
            match self.file.write(&line[done..]) {
                Ok(0) => {
                    return Err(self.cut_back(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("wrote {done} of {} bytes", line.len()),
                    )));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Disk full, I/O error…: the real reason, after the partial line is gone.
                Err(e) => return Err(self.cut_back(e)),
            }
        }
        self.size += done as u64;
        Ok(())
    }

    /// Cut a partial line back off, or remember to before anything else is written.
    fn cut_back(&mut self, error: io::Error) -> io::Error {
        self.dirty = self.file.set_len(self.size).is_err();
        error
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Encoded lines waiting for the file while it cannot be written (e.g. the disk is full).
const MAX_HELD_BYTES: usize = 8 << 20;
/// How often held lines are retried when no new alert comes.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The writer and the lines it could not write yet, oldest first.
pub(crate) struct HeldWriter {
    writer: AlertLogWriter,
    held: std::collections::VecDeque<Vec<u8>>,
    held_bytes: usize,
    /// Held lines given up because the backlog was full, this failure episode.
    lost: u64,
}

impl HeldWriter {
    pub(crate) fn new(writer: AlertLogWriter) -> Self {
        HeldWriter {
            writer,
            held: Default::default(),
            held_bytes: 0,
            lost: 0,
        }
    }

    pub(crate) fn is_failing(&self) -> bool {
        !self.held.is_empty()
    }

    /// Queue one alert behind any held lines, and write all that can be written. A failure
    /// is reported once, when it starts; the recovery is reported too.
    pub(crate) fn write(&mut self, alert: Option<&Alert>) {
        let was_failing = self.is_failing();
        if let Some(alert) = alert {
            match AlertLogWriter::encode_as(alert, self.writer.format) {
                Ok(line) => {
                    self.held_bytes += line.len();
                    self.held.push_back(line);
                }
                Err(error) => tracing::error!("cannot encode an alert for the log: {error}"),
            }
        }
        while let Some(line) = self.held.front() {
            if let Err(error) = self.writer.append_line(line) {
                if !was_failing {
                    tracing::error!(
                        "cannot write alerts to {}: {error}; alerts still reach the other sinks \
                         and are held in memory (up to {} MiB) until the log can be written",
                        self.writer.path().display(),
                        MAX_HELD_BYTES >> 20
                    );
                }
                self.shed();
                return;
            }
            let written = self.held.pop_front().map_or(0, |l| l.len());
            self.held_bytes -= written;
        }
        if was_failing {
            // Outside the macro: its arguments are not evaluated when the level is off.
            let lost = match std::mem::take(&mut self.lost) {
                0 => String::new(),
                lost => format!(", {lost} older ones lost (backlog full)"),
            };
            tracing::info!(
                "writing alerts to {} works again; held alerts written{lost}",
                self.writer.path().display(),
            );
        }
    }

    /// Drop the oldest held lines beyond the bound.
    fn shed(&mut self) {
        while self.held_bytes > MAX_HELD_BYTES {
            let Some(line) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= line.len();
            self.lost += 1;
        }
    }

    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }
}

/// Drain the queue into the file on a blocking thread. While writing fails, alerts are held
/// and retried every [`RETRY_EVERY`] and with every later alert.
pub(crate) async fn run(writer: AlertLogWriter, mut alerts: mpsc::Receiver<Arc<Alert>>) {
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let mut log = HeldWriter::new(writer);
        loop {
            let next = if log.is_failing() {
                match runtime.block_on(tokio::time::timeout(RETRY_EVERY, alerts.recv())) {
                    Ok(Some(alert)) => Some(alert),
                    Ok(None) => break,
                    Err(_elapsed) => None,
                }
            } else {
                match alerts.blocking_recv() {
                    Some(alert) => Some(alert),
                    None => break,
                }
            };
            log.write(next.as_deref());
        }
        log.write(None);
        if log.is_failing() {
            tracing::error!(
                "{} alerts could not be written to {} before stopping",
                log.held(),
                log.writer.path().display()
            );
        }
    });
    if let Err(error) = task.await {
        tracing::error!("alerts log writer stopped: {error}");
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
