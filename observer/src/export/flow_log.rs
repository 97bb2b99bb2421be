//! The JSON Lines flow log: one `FlowRecord` per line, to a file or stdout. A sink of the
//! hub that must not lose records: it subscribes with `WhenFull::Wait`, so a slow disk slows
//! publishing rather than dropping lines.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::warn;

use crate::flow::FlowRecord;
use crate::hub::Published;

/// Records written at most between two flushes.
const BATCH: usize = 1_024;

/// Where the flow log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowLogTarget {
    /// Standard output.
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

/// An open flow log.
pub struct FlowLog {
    out: BufWriter<Box<dyn Write + Send>>,
    written: u64,
}

impl FlowLog {
    /// Opens (creates or appends to) the target.
    pub fn open(target: &FlowLogTarget) -> Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            FlowLogTarget::Stdout => Box::new(std::io::stdout()),
            FlowLogTarget::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening flow log {}", path.display()))?,
            ) as Box<dyn Write + Send>,
        };
        Ok(Self {
            out: BufWriter::new(out),
            written: 0,
        })
    }

    /// Writes records, one line each, and flushes.
    pub fn write<'a>(&mut self, records: impl IntoIterator<Item = &'a FlowRecord>) -> Result<()> {
        for record in records {
            serde_json::to_writer(&mut self.out, record)?;
            self.out.write_all(b"\n")?;
            self.written += 1;
        }
        self.out.flush().context("writing the flow log")
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
            if let Err(e) = self.write(batch.iter().map(|entry| &entry.record)) {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = format!("{e:#}"), "flow log write failed");
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

/// What the flow log's writer counted, read by the stats.
#[derive(Debug, Default)]
pub struct FlowLogStats {
    /// Records written.
    pub written: AtomicU64,
    /// Writes (batches) that failed.
    pub write_errors: AtomicU64,
}
