//! Shared harness of the privileged integration tests: a running observer in a lab node,
//! packet captures as the independent count, and crafted frames.
#![allow(dead_code)]

pub mod capture;
pub mod frames;
pub mod otlp_receiver;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use observer::flow::FlowRecord;
use observer_lab::Lab;
use observer_lab::observer::ObserverProcess;

/// Four flow-log records covering every field (`tests/data/api/flows.jsonl`), for the API
/// tests.
pub fn api_flows() -> Vec<FlowRecord> {
    include_str!("../data/api/flows.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("fixture flow"))
        .collect()
}

/// 2025-12-01T10:00:00Z, the time of [`numbered_flow`] 0.
pub const NUMBERED_BASE: i64 = 1_764_583_200;

/// Flow `i` of a numbered series: the fixture flow `i % 4` ([`api_flows`]: 0 allowed
/// shop/web → shop/api, 1 denied shop/web → db/postgres, 2 UDP to an outside address
/// without verdict, 3 ICMP without pods), its first packet at `NUMBERED_BASE + i` seconds
/// and its last half a second later, its source port `30000 + i`, written by node-a
/// (even) or node-b (odd).
pub fn numbered_flow(i: usize) -> FlowRecord {
    let mut r = api_flows().swap_remove(i % 4);
    r.first_seen = observer::flow::Timestamp((NUMBERED_BASE + i as i64) * 1_000_000_000);
    r.last_seen = observer::flow::Timestamp(r.first_seen.0 + 500_000_000);
    r.src.port = 30_000 + i as u16;
    r.node_name = Some(
        if i.is_multiple_of(2) {
            "node-a"
        } else {
            "node-b"
        }
        .into(),
    );
    r
}

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

/// `observer run` inside a lab node (the test binary's own build of it).
pub struct Observer(ObserverProcess);

/// What the observer wrote by the time it stopped.
pub struct Outcome {
    /// Every record in the flow log.
    pub records: Vec<FlowRecord>,
    /// The final stats.
    pub stats: serde_json::Value,
    /// Everything the observer logged.
    pub log: String,
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
        let binary = Path::new(env!("CARGO_BIN_EXE_observer"));
        Ok(Self(ObserverProcess::start(lab, binary, dir, extra)?))
    }

    /// Waits until the observer reports these interfaces attached.
    pub fn wait_attached(&mut self, interfaces: &[&str]) -> Result<()> {
        self.0.wait_attached(interfaces)
    }

    /// Interfaces attached now.
    pub fn attached_now(&self) -> Vec<String> {
        self.0.attached_now()
    }

    /// Process id.
    pub fn pid(&self) -> i32 {
        self.0.pid()
    }

    /// The stats file as it is now.
    pub fn stats_now(&self) -> Result<serde_json::Value> {
        self.0.stats_now()
    }

    /// Waits until the stats field `field` reaches at least `value`.
    pub fn wait_stat(&self, field: &str, value: u64) -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let now = self.0.stats_now().ok().and_then(|s| s[field].as_u64());
            if now.is_some_and(|n| n >= value) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("stats {field} never reached {value}: {}", self.0.log());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGKILL, and parse what it had written.
    pub fn kill(self) -> Result<Vec<FlowRecord>> {
        let flow_log = self.0.kill()?;
        let mut records = Vec::new();
        for (n, line) in flow_log.lines().enumerate() {
            // The last line may be cut short by the kill.
            match serde_json::from_str(line) {
                Ok(record) => records.push(record),
                Err(e) if n + 1 == flow_log.lines().count() => {
                    eprintln!("the killed observer's last line is cut short: {e}")
                }
                Err(e) => return Err(e).with_context(|| format!("flow log line {}", n + 1)),
            }
        }
        Ok(records)
    }

    /// SIGINT, wait for the flush, and parse what it wrote.
    pub fn stop(self) -> Result<Outcome> {
        let stopped = self.0.stop()?;
        let mut records = Vec::new();
        for (n, line) in stopped.flow_log.lines().enumerate() {
            records.push(
                serde_json::from_str(line)
                    .with_context(|| format!("flow log line {}: {line}", n + 1))?,
            );
        }
        Ok(Outcome {
            records,
            stats: stopped.stats,
            log: stopped.log,
        })
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
            r.protocol.to_string() == protocol
                && ((r.src.ip == a && r.dst.ip == b) || (r.src.ip == b && r.dst.ip == a))
        })
        .collect()
}

/// Serves `hub` with `config` on a loopback port (until the test ends) and connects to it:
/// the channel, and the address for other clients.
pub async fn api_channel(
    hub: std::sync::Arc<observer::hub::FlowHub>,
    config: observer::api::server::ApiConfig,
) -> (tonic::transport::Channel, std::net::SocketAddr) {
    use observer::api::server;
    let listener = server::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(server::serve(listener, hub, config, std::future::pending()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    (channel, address)
}
