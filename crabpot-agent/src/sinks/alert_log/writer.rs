//! Writing the alerts log so that no line is ever torn or interleaved: each line is
//! serialised first and appended with one `write(2)` on an `O_APPEND` descriptor by the one
//! task that owns the file; a failed write is cut back off; and at start a torn tail (a
//! SIGKILL between the pages of one write) is removed.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::sync::mpsc;

use crate::alert::Alert;

pub struct AlertLogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

/// The `n`th rotated file: `alerts.log.1` is the newest.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Remove a partial last line (one without its newline). Returns the bytes removed.
pub fn repair_torn_tail(path: &Path) -> io::Result<u64> {
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
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..self.keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Append one alert as one line.
    pub fn append(&mut self, alert: &Alert) -> io::Result<()> {
        let mut line = serde_json::to_vec(alert).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        match self.file.write(&line) {
            Ok(n) if n == line.len() => {
                self.size += n as u64;
                Ok(())
            }
            result => {
                // A short or failed write (disk full): cut the partial line back off.
                let _ = self.file.set_len(self.size);
                Err(match result {
                    Ok(n) => io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short write ({n} of {} bytes)", line.len()),
                    ),
                    Err(e) => e,
                })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Drain the queue into the file on a blocking thread. A write error is reported once and
/// retried with every later alert; recovery is reported too.
pub async fn run(mut writer: AlertLogWriter, mut alerts: mpsc::Receiver<Arc<Alert>>) {
    let task = tokio::task::spawn_blocking(move || {
        let mut failing = false;
        while let Some(alert) = alerts.blocking_recv() {
            match writer.append(&alert) {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("writing to {} works again", writer.path().display());
                }
                Ok(()) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::error!(
                        "cannot write alerts to {}: {error}; alerts still reach the other sinks",
                        writer.path().display()
                    );
                }
                Err(_) => {}
            }
        }
    });
    if let Err(error) = task.await {
        tracing::error!("alerts log writer stopped: {error}");
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
