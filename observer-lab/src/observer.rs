//! An `observer run` process inside a lab node, as tests, benchmarks and the demo use it.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Lab;

/// A running observer writing its flow log and stats file into a directory.
pub struct ObserverProcess {
    child: Option<Child>,
    /// The flow log it writes.
    pub flow_log: PathBuf,
    /// The stats file it writes.
    pub stats_file: PathBuf,
    log_file: PathBuf,
}

/// What the observer left when it stopped.
pub struct Stopped {
    /// The flow log's text (JSON Lines).
    pub flow_log: String,
    /// The final stats.
    pub stats: serde_json::Value,
    /// Everything the observer logged (its stderr).
    pub log: String,
}

impl ObserverProcess {
    /// Starts `binary run` in the lab's node with `extra` args (and a 100 ms poll interval
    /// unless `extra` sets one).
    pub fn start(lab: &Lab, binary: &Path, dir: &Path, extra: &[&str]) -> Result<Self> {
        // `--flow-log PATH` in `extra` replaces the default in `dir`.
        let flow_log = extra
            .iter()
            .position(|a| *a == "--flow-log")
            .and_then(|i| extra.get(i + 1))
            .map_or_else(|| dir.join("flows.jsonl"), PathBuf::from);
        let stats_file = dir.join("stats.json");
        let log_file = dir.join("observer.log");
        for stale in [&flow_log, &stats_file] {
            let _ = std::fs::remove_file(stale);
        }
        let mut command = Lab::command_in(lab.node_netns(), &binary.to_string_lossy());
        command.arg("run");
        if !extra.contains(&"--flow-log") {
            command.arg("--flow-log").arg(&flow_log);
        }
        command.arg("--stats-file").arg(&stats_file);
        if !extra.contains(&"--poll-interval") {
            command.args(["--poll-interval", "100ms"]);
        }
        let child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_file)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child: Some(child),
            flow_log,
            stats_file,
            log_file,
        })
    }

    /// Process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// The observer's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// The stats file as it is now.
    pub fn stats_now(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            &self.stats_file,
        )?)?)
    }

    /// Interfaces the observer reports attached now.
    pub fn attached_now(&self) -> Vec<String> {
        self.stats_now()
            .ok()
            .and_then(|s| serde_json::from_value(s["interfaces"].clone()).ok())
            .unwrap_or_default()
    }

    /// Waits until the observer reports these interfaces attached.
    pub fn wait_attached(&mut self, interfaces: &[&str]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("observer exited early ({status}): {}", self.log());
            }
            let attached = self.attached_now();
            if interfaces.iter().all(|i| attached.iter().any(|a| a == i)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("observer did not attach to {interfaces:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGINT, waits for the final flush, and returns what it wrote.
    pub fn stop(mut self) -> Result<Stopped> {
        let mut child = self.child.take().context("observer already stopped")?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("observer did not stop on SIGINT: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !status.success() {
            bail!("observer failed ({status}): {}", self.log());
        }
        Ok(Stopped {
            flow_log: std::fs::read_to_string(&self.flow_log).unwrap_or_default(),
            stats: self.stats_now()?,
            log: self.log(),
        })
    }
}

impl ObserverProcess {
    /// Sends SIGKILL (no flush: whatever it had not written is gone) and returns the flow
    /// log as it was left.
    pub fn kill(mut self) -> Result<String> {
        let mut child = self.child.take().context("observer already stopped")?;
        child.kill()?;
        child.wait()?;
        Ok(std::fs::read_to_string(&self.flow_log).unwrap_or_default())
    }
}

impl Drop for ObserverProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
