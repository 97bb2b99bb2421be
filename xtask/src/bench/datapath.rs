//! The datapath benchmark, in one run on one lab:
//! 1. ns per program run (kernel BPF stats) of the flow programs next to an empty classifier
//!    attached to the same hooks, under a steady iperf3 TCP stream;
//! 2. iperf3 throughput with and without the observer, alternating, as a ratio;
//! 3. a new-flow storm (UDP, one packet per flow): flows recorded vs sent, and losses.

use std::collections::HashSet;
use std::net::{IpAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observer_lab::observer::ObserverProcess;
use observer_lab::{Lab, OUTSIDE_IPV4, Pod, in_netns};

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
    storm_rate: u32,
    /// Seconds of the storm.
    #[arg(long, default_value_t = 10)]
    storm_seconds: u32,
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
        storm(&lab, &binary, &a, options)?;
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

/// Sends `rate` new UDP flows per second for `seconds` from `pod` to the outside address,
/// one packet each, and compares what the observer recorded.
fn storm(lab: &Lab, binary: &std::path::Path, pod: &Pod, options: &Options) -> Result<()> {
    let dir = target_dir().join("bench-storm");
    std::fs::create_dir_all(&dir)?;
    let mut observer = ObserverProcess::start(
        lab,
        binary,
        &dir,
        &["--idle-timeout", "5s", "--poll-interval", "1s"],
    )?;
    observer.wait_attached(&["vetha"])?;
    let total = u64::from(options.storm_rate) * u64::from(options.storm_seconds);
    let sockets_needed = total.div_ceil(60_000).max(1) as usize;
    let sockets: Vec<UdpSocket> = in_netns(&pod.netns, || {
        (0..sockets_needed)
            .map(|_| UdpSocket::bind(("0.0.0.0", 0)))
            .collect::<std::io::Result<Vec<_>>>()
    })??;
    // Resolve the pod's gateway first: packets sent while the neighbour is unresolved are
    // dropped by the pod's stack, before any hook sees them.
    if let Some(socket) = sockets.first() {
        socket.send_to(b"warm-up", (OUTSIDE_IPV4, 9))?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut sent: HashSet<(u16, u16)> = HashSet::new();
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = (u64::from(options.storm_rate) / 100).max(1);
    let mut send_errors = 0u64;
    let mut i = 0u64;
    let mut next = start;
    while i < total {
        for _ in 0..per_tick.min(total - i) {
            let socket = &sockets[(i % sockets_needed as u64) as usize];
            let port = 1 + (i / sockets_needed as u64) as u16;
            match socket.send_to(b"storm", (OUTSIDE_IPV4, port)) {
                Ok(_) => {
                    sent.insert((socket.local_addr()?.port(), port));
                }
                Err(_) => send_errors += 1,
            }
            i += 1;
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let stopped = observer.stop()?;
    let pod_ip = IpAddr::V4(pod.ipv4).to_string();
    let outside = OUTSIDE_IPV4.to_string();
    let mut recorded: HashSet<(u16, u16)> = HashSet::new();
    for line in stopped.flow_log.lines() {
        let r: serde_json::Value = serde_json::from_str(line)?;
        if r["protocol"] == "UDP"
            && r["src"]["ip"] == pod_ip.as_str()
            && r["dst"]["ip"] == outside.as_str()
        {
            let port = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as u16;
            recorded.insert((port(&r["src"]["port"]), port(&r["dst"]["port"])));
        }
    }
    let found = sent.iter().filter(|f| recorded.contains(f)).count();
    let d = &stopped.stats["datapath"];
    println!(
        "  sent {} flows in {:.1} s ({:.0} flows/s, {send_errors} send errors)",
        sent.len(),
        elapsed,
        sent.len() as f64 / elapsed
    );
    println!(
        "  recorded {found} of {} ({:.3}%); the programs saw {} packets",
        sent.len(),
        100.0 * found as f64 / sent.len().max(1) as f64,
        d["packets_seen"]
    );
    println!(
        "  flow_map_full {} (delivered as overflow events: {}), ringbuf_new_flow_failed {}, ringbuf_overflow_failed {}, ringbuf_end_failed {}",
        d["flow_map_full"],
        stopped.stats["overflow_events"],
        d["ringbuf_new_flow_failed"],
        d["ringbuf_overflow_failed"],
        d["ringbuf_end_failed"]
    );
    Ok(())
}
