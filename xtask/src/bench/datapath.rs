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

use crate::shell::{build_observer, is_root, output, target_dir};

/// The lab's two host-side interfaces.
const HOOKS: [&str; 2] = ["vetha", "vethb"];

/// Options of `cargo xtask bench datapath`.
#[derive(clap::Args)]
pub struct Options {
    /// Seconds of each iperf3 run.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Rounds of each measure: cost streams, and alternating throughput runs without / with
    /// the observer. Medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
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
    throughput_daemon_arg: Vec<String>,
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
    /// ns per program run vs the empty classifier.
    Cost,
    /// iperf3 throughput ratio.
    Throughput,
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
            || (options.only.is_empty() && part != Part::Compare && part != Part::Profile)
    };

    let stream = Stream {
        lab: &lab,
        binary: &binary,
        dir: &dir,
        client: &a,
        server_ip,
    };
    if wanted(Part::Cost) {
        cost(&stream, options)?;
    }
    if wanted(Part::Throughput) {
        throughput(&stream, options)?;
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

/// Per traffic, per round: flow / parse-only, flow / empty, and flow − empty in ns.
type Ratios = (Traffic, Vec<f64>, Vec<f64>, Vec<f64>);

fn cost(stream: &Stream, options: &Options) -> Result<()> {
    println!(
        "## per-packet cost (kernel BPF stats), {} alternating rounds of {} s iperf3 runs, \
         TCP stream and 64-byte UDP; references attached at the same hooks: the empty \
         classifier and a parse-only one",
        options.rounds, options.seconds
    );
    let mut ratios: Vec<Ratios> = [Traffic::Tcp, Traffic::Udp64]
        .into_iter()
        .map(|t| (t, Vec::new(), Vec::new(), Vec::new()))
        .collect();
    {
        let _stats = BpfStats::enable()?;
        for round in 1..=options.rounds.max(1) {
            // At a hook, a program runs on warmer caches when another ran before it: the
            // references go after the flow programs in odd rounds, before them in even
            // ones. The traffic's order alternates too, so a drift favours neither.
            let mut args = vec!["--attach-empty-program"];
            let order = if round % 2 == 0 {
                args.push("--attach-references-first");
                [Traffic::Udp64, Traffic::Tcp]
            } else {
                [Traffic::Tcp, Traffic::Udp64]
            };
            let observer = stream.observer(&args)?;
            for traffic in order {
                let before = program_costs()?;
                stream.iperf(options.seconds, traffic)?;
                let costs = minus(&program_costs()?, &before);
                let cost_of = |names: &[&str]| {
                    costs
                        .iter()
                        .filter(|(n, _)| names.contains(&n.as_str()))
                        .fold(Cost::default(), |acc, (_, c)| acc.plus(c))
                };
                let flow = cost_of(&["flow_ingress", "flow_egress"]).mean_ns();
                let empty = cost_of(&["empty_tc"]);
                let parse = cost_of(&["parse_only_tc"]);
                if empty.runs == 0 || parse.runs == 0 {
                    bail!("a reference program did not run");
                }
                let (empty, parse) = (empty.mean_ns(), parse.mean_ns());
                println!(
                    "  round {round} (references {}), {}: flow programs {flow:.1}, parse-only \
                     {parse:.1}, empty {empty:.1} ns/run: {:.2}× the parse-only, {:.2}× the \
                     empty",
                    if round % 2 == 0 { "first" } else { "after" },
                    traffic.name(),
                    flow / parse,
                    flow / empty
                );
                if let Some((_, p, e, a)) = ratios.iter_mut().find(|(t, ..)| *t == traffic) {
                    p.push(flow / parse);
                    e.push(flow / empty);
                    a.push(flow - empty);
                }
            }
            observer.stop()?;
        }
    }
    for (traffic, parse, empty, above) in &mut ratios {
        let (targets_parse, targets_empty) = match traffic {
            Traffic::Tcp => (1.5, 2.0),
            Traffic::Udp64 => (1.3, 1.7),
        };
        println!(
            "  {}: median {:.2}× the parse-only (target ≤ {targets_parse}), {:.2}× the empty \
             (target ≤ {targets_empty}), {:.1} ns/run above the empty",
            traffic.name(),
            median(parse),
            median(empty),
            median(above)
        );
    }
    Ok(())
}

/// Per-program differences of two `program_costs` readings.
fn minus(after: &[(String, Cost)], before: &[(String, Cost)]) -> Vec<(String, Cost)> {
    after
        .iter()
        .map(|(name, a)| {
            let b = before
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            (name.clone(), a.since(&b))
        })
        .collect()
}

fn throughput(stream: &Stream, options: &Options) -> Result<()> {
    let extra: Vec<&str> = if options.throughput_daemon_arg.is_empty() {
        vec!["--poll-interval", "1s"]
    } else {
        options
            .throughput_daemon_arg
            .iter()
            .map(String::as_str)
            .collect()
    };
    for (traffic, target) in [(Traffic::Tcp, 0.97), (Traffic::Udp64, 0.95)] {
        println!(
            "\n## iperf3 throughput, {}, {} alternating rounds of {} s (client and server \
             pinned to CPUs 0 and 1; daemon arguments {:?})",
            traffic.name(),
            options.rounds,
            options.seconds,
            extra
        );
        let (mut without, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let with_observer = || -> Result<f64> {
            let observer = stream.observer(&extra)?;
            let observed = stream.iperf(options.seconds, traffic)?;
            observer.stop()?;
            Ok(observed)
        };
        for round in 1..=options.rounds {
            // Alternate which run comes first, so a drift within the round favours neither.
            let with_first = round % 2 == 0;
            let (base, observed) = if with_first {
                let observed = with_observer()?;
                (stream.iperf(options.seconds, traffic)?, observed)
            } else {
                let base = stream.iperf(options.seconds, traffic)?;
                (base, with_observer()?)
            };
            println!(
                "  round {round} ({} first): without {:.3} Gbit/s, with {:.3} Gbit/s, ratio {:.3}",
                if with_first { "with" } else { "without" },
                base / 1e9,
                observed / 1e9,
                observed / base
            );
            without.push(base);
            with.push(observed);
            ratios.push(observed / base);
        }
        let (m_without, m_with) = (median(&mut without), median(&mut with));
        // This machine's throughput drifts by ±10 % over tens of seconds; a round's two
        // runs are adjacent in time, so the median of per-round ratios cancels most of it.
        println!(
            "  medians: without {:.3} Gbit/s, with {:.3} Gbit/s (ratio of medians {:.3}); \
             median of the rounds' ratios {:.3} (target ≥ {target})",
            m_without / 1e9,
            m_with / 1e9,
            m_with / m_without,
            median(&mut ratios)
        );
    }
    Ok(())
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

/// Turns `kernel.bpf_stats_enabled` on, and back off when dropped.
struct BpfStats;

impl BpfStats {
    fn enable() -> Result<Self> {
        observer_lab::run(std::process::Command::new("sysctl").args([
            "-q",
            "-w",
            "kernel.bpf_stats_enabled=1",
        ]))?;
        Ok(Self)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sysctl")
            .args(["-q", "-w", "kernel.bpf_stats_enabled=0"])
            .status();
    }
}

#[derive(Clone, Copy, Default)]
struct Cost {
    runs: u64,
    ns: u64,
}

impl Cost {
    fn mean_ns(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.ns as f64 / self.runs as f64
        }
    }

    /// What ran between an `earlier` reading and this one.
    fn since(self, earlier: &Cost) -> Cost {
        Cost {
            runs: self.runs.saturating_sub(earlier.runs),
            ns: self.ns.saturating_sub(earlier.ns),
        }
    }

    fn plus(self, other: &Cost) -> Cost {
        Cost {
            runs: self.runs + other.runs,
            ns: self.ns + other.ns,
        }
    }
}

/// run_cnt and run_time_ns of every loaded copy of our programs, by program id, from
/// `bpftool prog show -j`.
fn program_runs() -> Result<Vec<(u64, String, Cost)>> {
    let json = output("bpftool", &["prog", "show", "-j"]).context("bpftool prog show -j")?;
    let programs: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    Ok(programs
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?;
            ["flow_ingress", "flow_egress", "empty_tc", "parse_only_tc"]
                .contains(&name)
                .then(|| {
                    let cost = Cost {
                        runs: p["run_cnt"].as_u64().unwrap_or(0),
                        ns: p["run_time_ns"].as_u64().unwrap_or(0),
                    };
                    (p["id"].as_u64().unwrap_or(0), name.to_string(), cost)
                })
        })
        .collect())
}

/// run_cnt and run_time_ns of our programs, summed by name.
fn program_costs() -> Result<Vec<(String, Cost)>> {
    let mut costs: Vec<(String, Cost)> = Vec::new();
    for (_, name, cost) in program_runs()? {
        match costs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c = c.plus(&cost),
            None => costs.push((name, cost)),
        }
    }
    Ok(costs)
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
            .filter(|(_, name, _)| name != "empty_tc" && name != "parse_only_tc")
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
            let mut observer = ObserverProcess::start(stream.lab, binary, &dir, &[])?;
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
