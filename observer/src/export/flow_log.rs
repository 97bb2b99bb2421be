//! The JSON Lines flow log: one `FlowRecord` per line, to a file or stdout. A sink of the
//! hub that must not lose records: it subscribes with `WhenFull::Wait`, so a slow disk slows
//! publishing rather than dropping lines.
//!
//! Lines are whole or absent: each batch is serialized first and written at once, and a
//! write that fails (a full disk) is cut back to the last whole line, its records counted
//! lost, exactly. SIGHUP reopens the file (after `logrotate` renamed it); with a size limit
//! the log rotates itself (`flows.jsonl` → `flows.jsonl.1` → ... → `.N`, the oldest
//! dropped).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::flow::FlowRecord;
use crate::hub::Published;

/// Records written at most in one write.
const BATCH: usize = 1_024;

/// Where the flow log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowLogTarget {
    /// Standard output (the container runtime rotates it).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

impl FlowLogTarget {
    /// `-` is stdout, anything else a path.
    pub fn parse(spec: &str) -> Self {
        if spec == "-" {
            Self::Stdout
        } else {
            Self::File(PathBuf::from(spec))
        }
    }
}

/// Size limit of a file log: past `max_bytes`, it is renamed `.1` (older ones shifted up to
/// `.keep`, the oldest removed) and a new file started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes a file may reach before it rotates.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: usize,
}

/// What the flow log's writer counted, read by the stats, and its one control.
#[derive(Debug, Default)]
pub struct FlowLogStats {
    /// Records written (whole lines).
    pub written: AtomicU64,
    /// Writes (batches) that failed.
    pub write_errors: AtomicU64,
    /// Records lost to failed writes, each counted once.
    pub lost: AtomicU64,
    /// Set (by SIGHUP) to reopen the file before the next write.
    pub reopen: AtomicBool,
}

enum Out {
    Stdout(io::Stdout),
    File {
        file: File,
        path: PathBuf,
        /// Bytes of whole lines in the file.
        len: u64,
    },
}

/// An open flow log.
pub struct FlowLog {
    out: Out,
    rotation: Option<Rotation>,
    written: u64,
}

impl FlowLog {
    /// Opens (creates or appends to) the target.
    pub fn open(target: &FlowLogTarget, rotation: Option<Rotation>) -> Result<Self> {
        let out = match target {
            FlowLogTarget::Stdout => Out::Stdout(io::stdout()),
            FlowLogTarget::File(path) => open_file(path)?,
        };
        Ok(Self {
            out,
            rotation,
            written: 0,
        })
    }

    /// Writes records, one whole line each. On failure nothing of the batch stays in the
    /// file (it is cut back to the last whole line) and the error is returned.
    pub fn write<'a>(&mut self, records: impl IntoIterator<Item = &'a FlowRecord>) -> Result<u64> {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut count = 0;
        for record in records {
            serde_json::to_writer(&mut buf, record)?;
            buf.push(b'\n');
            count += 1;
        }
        match &mut self.out {
            Out::Stdout(out) => out.write_all(&buf).and_then(|()| out.flush())?,
            Out::File { file, path, len } => {
                if let Err(e) = file.write_all(&buf) {
                    // A partial write leaves a partial line: cut it off.
                    if let Err(cut) = file.set_len(*len) {
                        warn!(error = %cut, path = %path.display(), "cutting a partial line off the flow log failed");
                    }
                    return Err(e).with_context(|| format!("writing {}", path.display()));
                }
                *len += buf.len() as u64;
            }
        }
        self.written += count;
        // The batch is written: a rotation that fails loses nothing, so it is only logged
        // (the next write tries again).
        if let Err(e) = self.rotate_if_full() {
            warn!(error = format!("{e:#}"), "rotating the flow log failed");
        }
        Ok(count)
    }

    /// Opens the file again (a rotation by rename moved the old one away).
    pub fn reopen(&mut self) -> Result<()> {
        if let Out::File { path, .. } = &self.out {
            self.out = open_file(&path.clone())?;
        }
        Ok(())
    }

    fn rotate_if_full(&mut self) -> Result<()> {
        let (Some(rotation), Out::File { path, len, .. }) = (self.rotation, &self.out) else {
            return Ok(());
        };
        if *len < rotation.max_bytes {
            return Ok(());
        }
        let path = path.clone();
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
        if rotation.keep == 0 {
            std::fs::remove_file(&path).with_context(|| format!("rotating {}", path.display()))?;
        } else {
            let _ = std::fs::remove_file(numbered(rotation.keep));
            for n in (1..rotation.keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&path, numbered(1))
                .with_context(|| format!("rotating {}", path.display()))?;
        }
        info!(path = %path.display(), "flow log rotated");
        self.out = open_file(&path)?;
        Ok(())
    }

    /// Writes every record the hub hands it, in batches of what has queued up, until the
    /// hub closes and the queue is empty. Blocking: run it on a blocking thread.
    pub fn follow(mut self, mut published: mpsc::Receiver<Arc<Published>>, stats: &FlowLogStats) {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(first) = published.blocking_recv() {
            batch.push(first);
            while batch.len() < BATCH {
                match published.try_recv() {
                    Ok(entry) => batch.push(entry),
                    Err(_) => break,
                }
            }
            if stats.reopen.swap(false, Ordering::Relaxed) {
                match self.reopen() {
                    Ok(()) => info!("flow log reopened (SIGHUP)"),
                    Err(e) => warn!(error = format!("{e:#}"), "reopening the flow log failed"),
                }
            }
            if let Err(e) = self.write(batch.iter().map(|entry| &entry.record)) {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                stats.lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                warn!(
                    error = format!("{e:#}"),
                    records = batch.len(),
                    "flow log write failed: records lost"
                );
            }
            stats.written.store(self.written, Ordering::Relaxed);
            batch.clear();
        }
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

fn open_file(path: &Path) -> Result<Out> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening flow log {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading flow log {}", path.display()))?
        .len();
    Ok(Out::File {
        file,
        path: path.to_path_buf(),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::fixtures::flows;

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flow-log-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn the_log_rotates_past_its_size_and_keeps_n_files() {
        let dir = dir("rotate");
        let path = dir.join("flows.jsonl");
        let rotation = Rotation {
            max_bytes: 2_000,
            keep: 2,
        };
        let mut log =
            FlowLog::open(&FlowLogTarget::File(path.clone()), Some(rotation)).expect("open");
        for _ in 0..10 {
            log.write(flows().iter()).expect("write");
        }
        assert_eq!(log.written(), 40);
        let lines = |p: &Path| std::fs::read_to_string(p).map(|t| t.lines().count());
        assert!(path.exists());
        assert!(lines(&dir.join("flows.jsonl.1")).is_ok_and(|n| n > 0));
        assert!(lines(&dir.join("flows.jsonl.2")).is_ok_and(|n| n > 0));
        assert!(!dir.join("flows.jsonl.3").exists(), "two kept");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reopen_follows_a_rename() {
        let dir = dir("reopen");
        let path = dir.join("flows.jsonl");
        let mut log = FlowLog::open(&FlowLogTarget::File(path.clone()), None).expect("open");
        log.write(flows().iter().take(1)).expect("write");
        std::fs::rename(&path, dir.join("flows.jsonl.old")).expect("rename");
        log.reopen().expect("reopen");
        log.write(flows().iter().take(2)).expect("write");
        let count = |p: PathBuf| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
        assert_eq!(count(dir.join("flows.jsonl.old")), 1);
        assert_eq!(count(path), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
