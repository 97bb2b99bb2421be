//! The datapath benchmark, in one run on one lab:
//! 1. ns per program run (kernel BPF stats) of the flow programs next to an empty classifier
//!    attached to the same hooks, under a steady iperf3 TCP stream;
//! 2. iperf3 throughput with and without the observer, alternating, as a ratio;
//! 3. a new-flow storm (UDP, one packet per flow): flows recorded vs sent, and losses.

use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use observer_lab::observer::ObserverProcess;
use observer_lab::{Lab, Pod};

use super::cost::{BpfStats, Cost, program_runs};
use crate::shell::{build_observer, is_root, target_dir};

/// The lab's two host-side interfaces.
const HOOKS: [&str; 2] = ["vetha", "vethb"];

/// Options of `cargo xtask bench datapath`.
#[derive(clap::Args)]
pub struct Options {
    /// Seconds of each iperf3 run.
    #[arg(long, default_value_t = 5)]
    pub(super) seconds: u32,
    /// Rounds of each measure: cost streams, and alternating throughput runs without / with
    /// the observer. Medians are reported.
    #[arg(long, default_value_t = 5)]
    pub(super) rounds: u32,
    /// New UDP flows per second in the storm.
    #[arg(long, default_value_t = 50_000)]
    pub storm_rate: u32,
    /// Seconds of the storm.
    #[arg(long, default_value_t = 10)]
    pub storm_seconds: u32,
    /// Extra arguments for the daemon in the storm (repeatable), e.g.
    /// `--storm-daemon-arg=--max-connections=65536`: its defaults otherwise.
    #[arg(long, allow_hyphen_values = true)]
    pub storm_daemon_arg: Vec<String>,
    /// Arguments for the daemon in the throughput runs (repeatable). Default: the daemon's
    /// own poll interval, `--poll-interval 1s` (the lab's observer polls every 100 ms for
    /// the tests, which walks the flow map ten times as often);
    /// `--throughput-daemon-arg=--poll-interval --throughput-daemon-arg=100ms` measures that.
    #[arg(long, allow_hyphen_values = true)]
    pub(super) throughput_daemon_arg: Vec<String>,
    /// Run only these parts (default: all but `compare`).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Another observer binary to compare the per-packet cost with (part `compare`).
    #[arg(long)]
    against: Option<std::path::PathBuf>,
}

/// The benchmark's parts.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// ns per program run vs the references (`bench/cost.rs`).
    Cost,
    /// The cost ladder's rungs, each alone first at the hooks (`bench/cost.rs`).
    Ladder,
    /// iperf3 throughput ratio.
    Throughput,
    /// The throughput ratio, and beside it the ratios with only the empty classifier and
    /// only the parse-only one attached (what the hook, and the least any flow observer
    /// does, take from it).
    Floor,
    /// New-flow storm.
    Storm,
    /// Per-run cost of this build against `--against`, both attached at once.
    Compare,
    /// Per-packet cycles by program from perf samples (`bench/profile.rs`).
    Profile,
}

pub fn run(options: &Options) -> Result<()> {
    if !is_root() {
        bail!("the datapath benchmark loads eBPF programs: run it as root");
    }
    let binary = build_observer(true)?;
    Lab::remove_stale();
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    let dir = target_dir().join("bench-datapath");
    std::fs::create_dir_all(&dir)?;
    let _server = IperfServer::start(&b)?;
    let server_ip = IpAddr::V4(b.ipv4);
    let wanted = |part: Part| {
        options.only.contains(&part)
            || (options.only.is_empty()
                && !matches!(
                    part,
                    Part::Compare | Part::Profile | Part::Floor | Part::Ladder
                ))
    };

    let stream = Stream {
        lab: &lab,
        binary: &binary,
        dir: &dir,
        client: &a,
        server_ip,
    };
    if wanted(Part::Cost) {
        super::cost::cost(&stream, options)?;
    }
    if wanted(Part::Ladder) {
        super::cost::ladder(&stream, options)?;
    }
    if wanted(Part::Throughput) || wanted(Part::Floor) {
        super::throughput::throughput(&stream, options, wanted(Part::Floor))?;
    }
    if wanted(Part::Compare) {
        let other = options
            .against
            .as_deref()
            .context("--only compare needs --against PATH (another observer binary)")?;
        compare(&stream, other, options)?;
    }
    if wanted(Part::Profile) {
        super::profile::profile(&stream, options.seconds, options.rounds)?;
    }
    if wanted(Part::Storm) {
        println!(
            "\n## new-flow storm: {} new UDP flows/s for {} s",
            options.storm_rate, options.storm_seconds
        );
        super::storm::storm(&lab, &binary, &a, options)?;
    }
    Ok(())
}

/// The lab, observer binary and iperf3 pair the cost and throughput measures share.
pub(super) struct Stream<'a> {
    lab: &'a Lab,
    binary: &'a std::path::Path,
    pub(super) dir: &'a std::path::Path,
    client: &'a Pod,
    server_ip: IpAddr,
}

impl Stream<'_> {
    /// Starts the observer with `extra` arguments and waits until both hooks are attached.
    pub(super) fn observer(&self, extra: &[&str]) -> Result<ObserverProcess> {
        let mut observer = ObserverProcess::start(self.lab, self.binary, self.dir, extra)?;
        observer.wait_attached(&HOOKS)?;
        Ok(observer)
    }

    /// One iperf3 run; received bits per second.
    pub(super) fn iperf(&self, seconds: u32, traffic: Traffic) -> Result<f64> {
        iperf(self.client, self.server_ip, seconds, traffic)
    }
}

/// The streams the cost and throughput are measured with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Traffic {
    /// One iperf3 TCP stream.
    Tcp,
    /// iperf3 UDP datagrams of 64 bytes, as fast as the sender can.
    Udp64,
}

impl Traffic {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP stream",
            Self::Udp64 => "64-byte UDP",
        }
    }
}

/// iperf3 server in a pod, stopped on drop.
struct IperfServer(Child);

impl IperfServer {
    fn start(pod: &Pod) -> Result<Self> {
        let child = Lab::command_in(&pod.netns, "iperf3")
            .args(["-s", "-A", "1", "-B", &pod.ipv4.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 -s")?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Self(child))
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an iperf3 TCP client; returns received bits per second.
fn iperf(client: &Pod, server: IpAddr, seconds: u32, traffic: Traffic) -> Result<f64> {
    let mut command = Lab::command_in(&client.netns, "iperf3");
    command.args([
        "-c",
        &server.to_string(),
        "-t",
        &seconds.to_string(),
        "-J",
        "-A",
        "0",
    ]);
    if traffic == Traffic::Udp64 {
        command.args(["-u", "-l", "64", "-b", "0"]);
    }
    let out = observer_lab::run(&mut command)?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    match traffic {
        Traffic::Tcp => report["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .context("no end.sum_received.bits_per_second in iperf3's report"),
        // UDP: what was sent, less what the receiver lost.
        Traffic::Udp64 => {
            let sum = &report["end"]["sum"];
            let sent = sum["bits_per_second"]
                .as_f64()
                .context("no end.sum.bits_per_second in iperf3's UDP report")?;
            let lost = sum["lost_percent"].as_f64().unwrap_or(0.0);
            Ok(sent * (1.0 - lost / 100.0))
        }
    }
}

/// Per-run cost of two observer builds attached to the same hooks at once, so both see the
/// same packets in the same machine state. The one attached second runs on warmer caches,
/// so rounds alternate the order and the mean over rounds is reported for each.
fn compare(stream: &Stream, other: &std::path::Path, options: &Options) -> Result<()> {
    println!(
        "\n## per-run cost, this build (A) vs {} (B), both attached, {} rounds of {} s",
        other.display(),
        options.rounds,
        options.seconds
    );
    let flow_ids = || -> Result<Vec<u64>> {
        Ok(program_runs()?
            .into_iter()
            .filter(|(_, name, _)| name.starts_with("flow_"))
            .map(|(id, _, _)| id)
            .collect())
    };
    let (mut a_means, mut b_means) = (Vec::new(), Vec::new());
    for round in 1..=options.rounds.max(1) {
        let a_first = round % 2 == 1;
        let order = if a_first {
            [("A", stream.binary), ("B", other)]
        } else {
            [("B", other), ("A", stream.binary)]
        };
        let mut running = Vec::new();
        for (label, binary) in order {
            let before = flow_ids()?;
            let dir = stream.dir.join(format!("compare-{label}"));
            std::fs::create_dir_all(&dir)?;
            // Both run at once in the lab's node: each needs ports of its own.
            let (grpc, metrics) = if label == "A" {
                ("127.0.0.1:4251", "127.0.0.1:9471")
            } else {
                ("127.0.0.1:4252", "127.0.0.1:9472")
            };
            let ports = ["--grpc-listen", grpc, "--metrics-listen", metrics];
            let mut observer = ObserverProcess::start(stream.lab, binary, &dir, &ports)?;
            observer.wait_attached(&HOOKS)?;
            let ids: Vec<u64> = flow_ids()?
                .into_iter()
                .filter(|id| !before.contains(id))
                .collect();
            running.push((label, observer, ids));
        }
        let _stats = BpfStats::enable()?;
        let before = program_runs()?;
        stream.iperf(options.seconds, Traffic::Tcp)?;
        let after = program_runs()?;
        let mut line = format!("  round {round} ({} first):", order[0].0);
        for (label, observer, ids) in running {
            let cost_of = |runs: &[(u64, String, Cost)]| {
                runs.iter()
                    .filter(|(id, _, _)| ids.contains(id))
                    .fold(Cost::default(), |acc, (_, _, c)| acc.plus(c))
            };
            let mean = cost_of(&after).since(&cost_of(&before)).mean_ns();
            line.push_str(&format!(" {label} {mean:.1} ns/run"));
            if label == "A" {
                a_means.push(mean);
            } else {
                b_means.push(mean);
            }
            observer.stop()?;
        }
        println!("{line}");
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "  mean over rounds: A {:.1} ns/run, B {:.1} ns/run, B - A {:+.1} ns/run",
        mean(&a_means),
        mean(&b_means),
        mean(&b_means) - mean(&a_means)
    );
    Ok(())
}

pub(super) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
