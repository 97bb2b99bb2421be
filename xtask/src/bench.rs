//! `cargo xtask bench ...`: benchmarks that print their numbers (docs/benchmarks.md keeps
//! the results and how they were measured).

mod datapath;

use anyhow::Result;
use clap::Subcommand;

/// Which benchmark.
#[derive(Subcommand)]
pub enum Which {
    /// Per-packet cost vs an empty classifier, iperf3 throughput ratio, new-flow storm.
    Datapath(datapath::Options),
}

/// Runs one benchmark.
pub fn run(which: Which) -> Result<()> {
    crate::setup::run()?;
    match which {
        Which::Datapath(options) => datapath::run(&options),
    }
}
