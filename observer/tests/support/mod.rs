//! Shared harness of the privileged integration tests: a running observer in a lab node,
//! packet captures as the independent count, and crafted frames.
#![allow(dead_code)]

pub mod capture;
pub mod frames;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observer::flow::FlowRecord;
use observer_lab::Lab;

/// Fails loudly when not root: these tests are never skipped silently.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "privileged integration tests need root (CAP_BPF, CAP_NET_ADMIN, netns): run them via `cargo xtask test` as root"
    );
    Lab::remove_stale();
}

static DIRS: AtomicU32 = AtomicU32::new(0);

/// A fresh scratch directory for one test.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "observer-test-{}-{}-{tag}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// `observer run` inside a lab node.
pub struct Observer {
    child: Option<Child>,
    /// The flow log it writes.
    pub flow_log: PathBuf,
    /// The stats file it writes.
    pub stats_file: PathBuf,
    log_file: PathBuf,
}

/// What the observer wrote by the time it stopped.
pub struct Outcome {
    /// Every record in the flow log.
    pub records: Vec<FlowRecord>,
    /// The final stats.
    pub stats: serde_json::Value,
}

impl Outcome {
    /// A datapath counter by name.
    pub fn counter(&self, name: &str) -> u64 {
        self.stats["datapath"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no datapath counter {name} in {}", self.stats))
    }
}

impl Observer {
    /// Starts the observer in the lab's node with a short poll interval plus `extra` args.
    pub fn start(lab: &Lab, dir: &Path, extra: &[&str]) -> Result<Self> {
        let flow_log = dir.join("flows.jsonl");
        let stats_file = dir.join("stats.json");
        let log_file = dir.join("observer.log");
        let log = std::fs::File::create(&log_file)?;
        let child = Lab::command_in(lab.node_netns(), env!("CARGO_BIN_EXE_observer"))
            .arg("run")
            .arg("--flow-log")
            .arg(&flow_log)
            .arg("--stats-file")
            .arg(&stats_file)
            .args(["--poll-interval", "100ms"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting observer")?;
        Ok(Self {
            child: Some(child),
            flow_log,
            stats_file,
            log_file,
        })
    }

    /// Waits until the observer reports these interfaces attached.
    pub fn wait_attached(&mut self, interfaces: &[&str]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("observer exited early ({status}): {}", self.log());
                }
            }
            if let Ok(text) = std::fs::read_to_string(&self.stats_file) {
                if let Ok(stats) = serde_json::from_str::<serde_json::Value>(&text) {
                    let attached: Vec<&str> = stats["interfaces"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                        .unwrap_or_default();
                    if interfaces.iter().all(|i| attached.contains(i)) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("observer did not attach to {interfaces:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Process id of the observer.
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

    /// SIGINT, wait for the flush, and read what it wrote.
    pub fn stop(mut self) -> Result<Outcome> {
        let mut child = self.child.take().context("observer already stopped")?;
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
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
        let text = std::fs::read_to_string(&self.flow_log).unwrap_or_default();
        let mut records = Vec::new();
        for (n, line) in text.lines().enumerate() {
            records.push(
                serde_json::from_str(line)
                    .with_context(|| format!("flow log line {}: {line}", n + 1))?,
            );
        }
        let stats = serde_json::from_str(&std::fs::read_to_string(&self.stats_file)?)?;
        Ok(Outcome { records, stats })
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Records of `protocol` between the two addresses, in either orientation.
pub fn records_between<'a>(
    records: &'a [FlowRecord],
    protocol: &str,
    a: std::net::IpAddr,
    b: std::net::IpAddr,
) -> Vec<&'a FlowRecord> {
    records
        .iter()
        .filter(|r| {
            r.protocol == protocol
                && ((r.src.ip == a && r.dst.ip == b) || (r.src.ip == b && r.dst.ip == a))
        })
        .collect()
}
