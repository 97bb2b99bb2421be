//! iperf3 throughput with and without the observer, in paired, alternating rounds; with
//! `floor`, also with only a reference classifier attached, which says how much of the
//! loss any program at the hook causes, and how much the least a flow observer does.

use anyhow::Result;

use super::datapath::{Options, Stream, Traffic, median};

/// One way of running the stream.
#[derive(Clone, Copy)]
struct Setup {
    label: &'static str,
    /// Observer arguments; `None`: no observer at all.
    observer: Option<&'static [&'static str]>,
}

const WITHOUT: Setup = Setup {
    label: "without",
    observer: None,
};
const EMPTY_ONLY: Setup = Setup {
    label: "empty classifier only",
    observer: Some(&["--attach-only", "empty"]),
};
const PARSE_ONLY: Setup = Setup {
    label: "parse-only only",
    observer: Some(&["--attach-only", "parse-only"]),
};
const OBSERVER: Setup = Setup {
    label: "observer",
    observer: Some(&[]),
};

/// Runs the throughput part (and, with `floor`, the reference-only setups beside it).
pub(super) fn throughput(stream: &Stream, options: &Options, floor: bool) -> Result<()> {
    let daemon: Vec<&str> = if options.throughput_daemon_arg.is_empty() {
        vec!["--poll-interval", "1s"]
    } else {
        options
            .throughput_daemon_arg
            .iter()
            .map(String::as_str)
            .collect()
    };
    let setups: Vec<Setup> = if floor {
        vec![WITHOUT, EMPTY_ONLY, PARSE_ONLY, OBSERVER]
    } else {
        vec![WITHOUT, OBSERVER]
    };
    for (traffic, target) in [(Traffic::Tcp, 0.97), (Traffic::Udp64, 0.95)] {
        println!(
            "\n## iperf3 throughput, {}, {} alternating rounds of {} s (client and server \
             pinned to CPUs 0 and 1; daemon arguments {:?})",
            traffic.name(),
            options.rounds,
            options.seconds,
            daemon
        );
        let run = |setup: Setup| -> Result<f64> {
            let Some(extra) = setup.observer else {
                return stream.iperf(options.seconds, traffic);
            };
            let args: Vec<&str> = daemon.iter().chain(extra).copied().collect();
            let observer = stream.observer(&args)?;
            let bits = stream.iperf(options.seconds, traffic)?;
            observer.stop()?;
            Ok(bits)
        };
        // Per setup: its runs' bits per second, and its ratio to the round's run without.
        let mut bits = vec![Vec::new(); setups.len()];
        let mut ratios = vec![Vec::new(); setups.len()];
        for round in 1..=options.rounds {
            // Alternate the order, so that a drift within the round favours no setup.
            let mut order: Vec<usize> = (0..setups.len()).collect();
            if round % 2 == 0 {
                order.reverse();
            }
            let mut measured = vec![0.0; setups.len()];
            for &i in &order {
                measured[i] = run(setups[i])?;
            }
            let line: Vec<String> = setups
                .iter()
                .zip(&measured)
                .map(|(setup, b)| format!("{} {:.3} Gbit/s", setup.label, b / 1e9))
                .collect();
            println!(
                "  round {round} ({} first): {}",
                setups[order[0]].label,
                line.join(", ")
            );
            for (i, b) in measured.iter().enumerate() {
                bits[i].push(*b);
                ratios[i].push(b / measured[0]);
            }
        }
        // This machine's throughput drifts by ±10 % over tens of seconds; a round's runs
        // are adjacent in time, so the median of per-round ratios cancels most of it.
        let base = median(&mut bits[0]);
        for (i, setup) in setups.iter().enumerate().skip(1) {
            let m = median(&mut bits[i]);
            let mut rounds = ratios[i].clone();
            let rounds_text: Vec<String> = rounds.iter().map(|r| format!("{r:.3}")).collect();
            let target_text = if setup.label == OBSERVER.label {
                format!(" (target ≥ {target})")
            } else {
                String::new()
            };
            println!(
                "  {}: median {:.3} Gbit/s against {:.3} without (ratio of medians {:.3}); \
                 median of the rounds' ratios {:.3}{target_text} (rounds {})",
                setup.label,
                m / 1e9,
                base / 1e9,
                m / base,
                median(&mut rounds),
                rounds_text.join(", ")
            );
        }
    }
    Ok(())
}
