//! The per-packet cost part: ns per program run from the kernel's BPF statistics, for the
//! flow programs and a ladder of references attached to the same hooks in the same run.
//!
//! The ladder, from the bottom: the empty classifier (the hook's floor, and the statistics'
//! own timing), the parse-only one (the least any flow observer does), parse + one per-CPU
//! counter at a fixed index (the one map operation per packet a counting observer needs),
//! and parse + one add to the flow's own word found as the flow cache finds a slot (the
//! least a per-flow counter does). Each rung is reported against the parse-only and the
//! empty references, so that a target can be set against what the rungs below cost.

use anyhow::{Context, Result, bail};

use super::datapath::{Options, Stream, Traffic, median};
use crate::shell::output;

/// The rungs, top first, each with the programs whose runs it sums.
const LADDER: [(&str, &[&str]); 5] = [
    ("flow programs", &["flow_ingress", "flow_egress"]),
    ("per-flow word", &["count_slot_tc"]),
    ("one counter", &["count_one_tc"]),
    ("parse-only", &["parse_only_tc"]),
    ("empty", &["empty_tc"]),
];
const PARSE_ONLY: usize = 3;
const EMPTY: usize = 4;

/// Every program of ours the statistics are read for: the ladder's.
fn is_ours(name: &str) -> bool {
    LADDER.iter().any(|(_, programs)| programs.contains(&name))
}

/// Each rung's rounds, for one traffic.
struct Series {
    traffic: Traffic,
    /// Per rung: its ratio to the parse-only reference, to the empty one, and its ns per
    /// run above the empty, one entry per round.
    rungs: Vec<[Vec<f64>; 3]>,
}

/// Runs the cost part.
pub(super) fn cost(stream: &Stream, options: &Options) -> Result<()> {
    println!(
        "## per-packet cost (kernel BPF stats), {} alternating rounds of {} s iperf3 runs, \
         TCP stream and 64-byte UDP; references attached at the same hooks: empty, \
         parse-only, parse + one counter, parse + the flow's word",
        options.rounds, options.seconds
    );
    let mut series: Vec<Series> = [Traffic::Tcp, Traffic::Udp64]
        .into_iter()
        .map(|traffic| Series {
            traffic,
            rungs: LADDER.iter().map(|_| Default::default()).collect(),
        })
        .collect();
    let _stats = BpfStats::enable()?;
    for round in 1..=options.rounds.max(1) {
        // At a hook, a program runs on warmer caches when another ran before it: the
        // references go after the flow programs in odd rounds, before them in even ones.
        // The traffic's order alternates too, so a drift favours neither.
        let mut args = vec!["--attach-empty-program"];
        let order = if round % 2 == 0 {
            args.push("--attach-references-first");
            [Traffic::Udp64, Traffic::Tcp]
        } else {
            [Traffic::Tcp, Traffic::Udp64]
        };
        let observer = stream.observer(&args)?;
        if round == 1 {
            print_translated_sizes()?;
        }
        for traffic in order {
            let before = program_costs()?;
            stream.iperf(options.seconds, traffic)?;
            let costs = minus(&program_costs()?, &before);
            let mut ns = Vec::new();
            for (rung, names) in LADDER {
                let cost = costs
                    .iter()
                    .filter(|(n, _)| names.contains(&n.as_str()))
                    .fold(Cost::default(), |acc, (_, c)| acc.plus(c));
                if cost.runs == 0 {
                    bail!("the {rung} program did not run");
                }
                ns.push(cost.mean_ns());
            }
            let line: Vec<String> = LADDER
                .iter()
                .zip(&ns)
                .map(|((rung, _), ns)| format!("{rung} {ns:.1}"))
                .collect();
            println!(
                "  round {round} (references {}), {}: {} ns/run; flow programs {:.2}× the \
                 parse-only, {:.2}× the empty",
                if round % 2 == 0 { "first" } else { "after" },
                traffic.name(),
                line.join(", "),
                ns[0] / ns[PARSE_ONLY],
                ns[0] / ns[EMPTY]
            );
            if let Some(s) = series.iter_mut().find(|s| s.traffic == traffic) {
                for (rung, values) in s.rungs.iter_mut().enumerate() {
                    values[0].push(ns[rung] / ns[PARSE_ONLY]);
                    values[1].push(ns[rung] / ns[EMPTY]);
                    values[2].push(ns[rung] - ns[EMPTY]);
                }
            }
        }
        observer.stop()?;
    }
    for s in &mut series {
        let (target_parse, target_empty) = match s.traffic {
            Traffic::Tcp => (1.5, 2.0),
            Traffic::Udp64 => (1.3, 1.7),
        };
        println!(
            "  {}, medians over the rounds (targets for the flow programs: ≤ {target_parse}× \
             the parse-only, ≤ {target_empty}× the empty):",
            s.traffic.name()
        );
        for ((rung, _), values) in LADDER.iter().zip(&mut s.rungs).take(PARSE_ONLY + 1) {
            let [to_parse, to_empty, above] = values;
            println!(
                "    {rung}: {:.2}× the parse-only, {:.2}× the empty, {:.1} ns/run above the \
                 empty",
                median(to_parse),
                median(to_empty),
                median(above)
            );
        }
    }
    Ok(())
}

/// The observer's arguments that put each rung of [`LADDER`] above the empty one first at
/// the hooks with the empty classifier right after it: a reference rung alone, or the flow
/// programs as in the cost part's odd rounds (the other references follow the empty one).
const ALONE: [&[&str]; EMPTY] = [
    &["--attach-empty-program"],
    &["--attach-only", "count-slot,empty"],
    &["--attach-only", "count-one,empty"],
    &["--attach-only", "parse-only,empty"],
];

/// Runs the ladder part: each rung first at the hooks, the empty classifier right after
/// it, in rounds that rotate the rungs' order, for both traffics. In the cost part all
/// the rungs share the hook, and a program that runs after another finds the packet's
/// lines in the cache: measured that way, the rungs below the flow programs look cheaper
/// than they can be first at a hook, which is where the flow programs run.
pub(super) fn ladder(stream: &Stream, options: &Options) -> Result<()> {
    println!(
        "\n## the cost ladder, each rung first at the hooks with the empty classifier right \
         after it, {} rounds of {} s per traffic",
        options.rounds, options.seconds
    );
    let rungs = ALONE.len();
    // Per traffic, per rung: the rounds' ratios to the empty classifier of the same run.
    let mut to_empty = vec![vec![Vec::new(); rungs]; 2];
    let traffics = [Traffic::Tcp, Traffic::Udp64];
    let _stats = BpfStats::enable()?;
    for round in 1..=options.rounds.max(1) {
        let mut line = Vec::new();
        for step in 0..rungs {
            let rung = (step + round as usize) % rungs;
            let (label, programs) = LADDER[rung];
            let observer = stream.observer(ALONE[rung])?;
            for (t, traffic) in traffics.into_iter().enumerate() {
                let before = program_costs()?;
                stream.iperf(options.seconds, traffic)?;
                let costs = minus(&program_costs()?, &before);
                let (mut ours, mut empty) = (Cost::default(), Cost::default());
                for (name, cost) in &costs {
                    if name == "empty_tc" {
                        empty = empty.plus(cost);
                    } else if programs.contains(&name.as_str()) {
                        ours = ours.plus(cost);
                    }
                }
                if ours.runs == 0 || empty.runs == 0 {
                    bail!("the {label} program or the empty one did not run");
                }
                let ratio = ours.mean_ns() / empty.mean_ns();
                to_empty[t][rung].push(ratio);
                line.push(format!(
                    "{label} {} {:.1}/{:.1} ns ({ratio:.2}×)",
                    if traffic == Traffic::Tcp {
                        "TCP"
                    } else {
                        "UDP"
                    },
                    ours.mean_ns(),
                    empty.mean_ns()
                ));
            }
            observer.stop()?;
        }
        println!("  round {round}: {}", line.join(", "));
    }
    for (t, traffic) in traffics.into_iter().enumerate() {
        println!("  {}, medians over the rounds:", traffic.name());
        // A rung against the parse-only one: their ratios to the empty classifier of the
        // same round, divided (each run has its own floor).
        let parse: Vec<f64> = to_empty[t][PARSE_ONLY].clone();
        for (rung, (label, _)) in LADDER.iter().take(rungs).enumerate() {
            let mut against_parse: Vec<f64> = to_empty[t][rung]
                .iter()
                .zip(&parse)
                .map(|(r, p)| r / p)
                .collect();
            println!(
                "    {label}: {:.2}× the empty, {:.2}× the parse-only",
                median(&mut to_empty[t][rung].clone()),
                median(&mut against_parse)
            );
        }
    }
    Ok(())
}

/// The translated (post-verifier) size of each attached program, in instructions.
fn print_translated_sizes() -> Result<()> {
    let json = output("bpftool", &["prog", "show", "-j"]).context("bpftool prog show -j")?;
    let programs: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    let mut sizes = Vec::new();
    for name in LADDER.iter().flat_map(|(_, names)| names.iter()) {
        if let Some(p) = programs.iter().find(|p| p["name"].as_str() == Some(name)) {
            let bytes = p["bytes_xlated"].as_u64().unwrap_or(0);
            sizes.push(format!("{name} {}", bytes / 8));
        }
    }
    println!("  translated instructions: {}", sizes.join(", "));
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

/// Turns `kernel.bpf_stats_enabled` on, and back off when dropped.
pub(super) struct BpfStats;

impl BpfStats {
    pub(super) fn enable() -> Result<Self> {
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

/// Runs and their total time, from the statistics.
#[derive(Clone, Copy, Default)]
pub(super) struct Cost {
    pub(super) runs: u64,
    pub(super) ns: u64,
}

impl Cost {
    /// ns per run.
    pub(super) fn mean_ns(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.ns as f64 / self.runs as f64
        }
    }

    /// What ran between an `earlier` reading and this one.
    pub(super) fn since(self, earlier: &Cost) -> Cost {
        Cost {
            runs: self.runs.saturating_sub(earlier.runs),
            ns: self.ns.saturating_sub(earlier.ns),
        }
    }

    /// Both together.
    pub(super) fn plus(self, other: &Cost) -> Cost {
        Cost {
            runs: self.runs + other.runs,
            ns: self.ns + other.ns,
        }
    }
}

/// run_cnt and run_time_ns of every loaded copy of our programs, by program id, from
/// `bpftool prog show -j`.
pub(super) fn program_runs() -> Result<Vec<(u64, String, Cost)>> {
    let json = output("bpftool", &["prog", "show", "-j"]).context("bpftool prog show -j")?;
    let programs: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    Ok(programs
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?;
            is_ours(name).then(|| {
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
