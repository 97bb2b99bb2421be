//! `cargo xtask bench ...`: benchmarks that print their numbers (docs/benchmarks.md keeps
//! the results and how they were measured).

mod cost;
pub(crate) mod datapath;
mod enrich;
mod profile;
mod started;
mod storm;
mod throughput;

use anyhow::Result;
use clap::Subcommand;

/// Which benchmark.
#[derive(Subcommand)]
pub enum Which {
    /// Per-packet cost vs an empty classifier, iperf3 throughput ratio, new-flow storm.
    Datapath(datapath::Options),
    /// Enrichment: view rebuild and lookups (criterion), and the daemon's memory with
    /// 10,000 pods and 2,000 policies loaded.
    Enrich {
        /// Extra arguments for criterion (after `--`), e.g. `--quick`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        criterion: Vec<String>,
    },
    /// gRPC API: publishing rate, memory per buffered flow, fan-out to 4 followers over
    /// loopback.
    Api,
    /// Suggestions: learning rate, memory per edge, generation and proof for 2,000
    /// workloads and 100,000 edges.
    Suggest,
    /// Relay: flows per second from three nodes through `observer relay` to one subscriber
    /// (against one node's direct stream), write-to-receive latency, memory per node and
    /// per subscriber.
    Relay,
    /// Web console with 2,000 workloads and 20,000 edges: the JSON API's map answers
    /// (against the same bytes served static) and, in headless Chromium, the page's load
    /// and first map render (against an empty map and a trivial page), by the browser's
    /// performance API.
    Console,
    /// Kernel memory of the BPF maps: the formula at 2, 64 and 128 possible CPUs, and
    /// measured against it here (root).
    Memory,
    /// Violations at the first packet: latency to a gRPC subscriber for four kinds of
    /// connection, and the rate of new connections judged and published (root: a lab).
    Started(started::Options),
    /// Policy evaluation and snapshot rebuild (criterion): 10,000 pods, 2,000 policies;
    /// then the tiered engine with Calico, GlobalNetworkPolicy and ClusterNetworkPolicy
    /// objects beside them.
    Policy {
        /// Extra arguments for criterion (after `--`), e.g. `--quick`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        criterion: Vec<String>,
    },
}

/// Runs one benchmark.
pub fn run(which: Which) -> Result<()> {
    crate::setup::run()?;
    match which {
        Which::Datapath(options) => datapath::run(&options),
        Which::Enrich { criterion } => enrich::run(&criterion),
        Which::Started(options) => started::run(&options),
        Which::Suggest => crate::shell::cargo(&["bench", "-p", "observer", "--bench", "suggest"]),
        Which::Api => crate::shell::cargo(&["bench", "-p", "observer", "--bench", "api"]),
        Which::Relay => crate::shell::cargo(&["bench", "-p", "observer", "--bench", "relay"]),
        Which::Console => crate::shell::cargo(&["bench", "-p", "observer", "--bench", "console"]),
        Which::Memory => {
            crate::shell::cargo(&["bench", "-p", "observer", "--bench", "kernel_memory"])
        }
        Which::Policy { criterion } => {
            for bench in ["policy", "tiered"] {
                let mut args = vec!["bench", "-p", "observer", "--bench", bench, "--"];
                args.extend(criterion.iter().map(String::as_str));
                crate::shell::cargo(&args)?;
            }
            Ok(())
        }
    }
}
