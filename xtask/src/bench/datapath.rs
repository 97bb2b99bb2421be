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
        options.only.contains(&part) || (options.only.is_empty() && part != Part::Compare)
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
struct Stream<'a> {
    lab: &'a Lab,
    binary: &'a std::path::Path,
    dir: &'a std::path::Path,
    client: &'a Pod,
    server_ip: IpAddr,
}

impl Stream<'_> {
    /// Starts the observer with `extra` arguments and waits until both hooks are attached.
    fn observer(&self, extra: &[&str]) -> Result<ObserverProcess> {
        let mut observer = ObserverProcess::start(self.lab, self.binary, self.dir, extra)?;
        observer.wait_attached(&HOOKS)?;
        Ok(observer)
    }

    /// One iperf3 run; received bits per second.
    fn iperf(&self, seconds: u32) -> Result<f64> {
        iperf(self.client, self.server_ip, seconds)
    }
}

fn cost(stream: &Stream, options: &Options) -> Result<()> {
    println!(
        "## per-packet cost (kernel BPF stats, {} rounds of a {} s iperf3 TCP stream)",
        options.rounds, options.seconds
    );
    let observer = stream.observer(&["--attach-empty-program"])?;
    let mut above = Vec::new();
    let mut totals: Vec<(String, Cost)> = Vec::new();
    {
        let _stats = BpfStats::enable()?;
        for round in 1..=options.rounds.max(1) {
            let before = program_costs()?;
            stream.iperf(options.seconds)?;
            let costs = minus(&program_costs()?, &before);
            let cost_of = |names: &[&str]| {
                costs
                    .iter()
                    .filter(|(n, _)| names.contains(&n.as_str()))
                    .fold(Cost::default(), |acc, (_, c)| acc.plus(c))
            };
            let flow = cost_of(&["flow_ingress", "flow_egress"]);
            let empty = cost_of(&["empty_tc"]);
            if empty.runs == 0 {
                bail!("the empty classifier did not run");
            }
            println!(
                "  round {round}: ingress {:.1}, egress {:.1}, flow programs {:.1}, empty {:.1} ns/run: {:.1} ns above the floor",
                cost_of(&["flow_ingress"]).mean_ns(),
                cost_of(&["flow_egress"]).mean_ns(),
                flow.mean_ns(),
                empty.mean_ns(),
                flow.mean_ns() - empty.mean_ns()
            );
            above.push(flow.mean_ns() - empty.mean_ns());
            totals = costs
                .iter()
                .map(|(n, c)| {
                    let previous = totals.iter().find(|(m, _)| m == n).map(|(_, c)| *c);
                    (n.clone(), previous.unwrap_or_default().plus(c))
                })
                .collect();
        }
    }
    observer.stop()?;
    for (name, cost) in &totals {
        println!(
            "  {name:<14} {:>10} runs  {:>8.1} ns/run (all rounds)",
            cost.runs,
            cost.mean_ns()
        );
    }
    println!(
        "  median cost above the floor: {:.1} ns/run",
        median(&mut above)
    );
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
    println!(
        "\n## iperf3 TCP throughput, {} alternating rounds of {} s",
        options.rounds, options.seconds
    );
    let (mut without, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let with_observer = || -> Result<f64> {
        let observer = stream.observer(&[])?;
        let observed = stream.iperf(options.seconds)?;
        observer.stop()?;
        Ok(observed)
    };
    for round in 1..=options.rounds {
        // Alternate which run comes first, so a drift within the round favours neither.
        let with_first = round % 2 == 0;
        let (base, observed) = if with_first {
            let observed = with_observer()?;
            (stream.iperf(options.seconds)?, observed)
        } else {
            let base = stream.iperf(options.seconds)?;
            (base, with_observer()?)
        };
        println!(
            "  round {round} ({} first): without {:.2} Gbit/s, with {:.2} Gbit/s, ratio {:.3}",
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
    // This machine's throughput drifts by ±10 % over tens of seconds; a round's two runs
    // are adjacent in time, so the median of per-round ratios cancels most of the drift.
    println!(
        "  medians: without {:.2} Gbit/s, with {:.2} Gbit/s (ratio of medians {:.3}); median of the rounds' ratios {:.3}",
        m_without / 1e9,
        m_with / 1e9,
        m_with / m_without,
        median(&mut ratios)
    );
    Ok(())
}

/// iperf3 server in a pod, stopped on drop.
struct IperfServer(Child);

impl IperfServer {
    fn start(pod: &Pod) -> Result<Self> {
        let child = Lab::command_in(&pod.netns, "iperf3")
            .args(["-s", "-B", &pod.ipv4.to_string()])
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
fn iperf(client: &Pod, server: IpAddr, seconds: u32) -> Result<f64> {
    let out = observer_lab::run(Lab::command_in(&client.netns, "iperf3").args([
        "-c",
        &server.to_string(),
        "-t",
        &seconds.to_string(),
        "-J",
    ]))?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no end.sum_received.bits_per_second in iperf3's report")
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
            ["flow_ingress", "flow_egress", "empty_tc"]
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
            .filter(|(_, name, _)| name != "empty_tc")
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
        stream.iperf(options.seconds)?;
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
