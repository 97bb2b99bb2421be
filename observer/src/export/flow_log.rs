//! The JSON Lines flow log: one `FlowRecord` per line, to a file or stdout.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::flow::FlowRecord;

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
    pub fn write(&mut self, records: &[FlowRecord]) -> Result<()> {
        for record in records {
            serde_json::to_writer(&mut self.out, record)?;
            self.out.write_all(b"\n")?;
            self.written += 1;
        }
        self.out.flush().context("writing the flow log")
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}
