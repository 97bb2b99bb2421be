//! Developer and CI entry points: `cargo xtask <command>`.
//!
//! - `setup`: installs what builds and tests need (idempotent).
//! - `test`: format check, clippy, unit tests, privileged integration tests.
//! - `demo`: builds a lab, runs the observer on it, makes traffic, prints the flow records.
//! - `bench datapath`: the datapath benchmark (per-packet cost, throughput, new-flow storm).
//! - `lab`: a lab to experiment in, kept until Enter is pressed.
//! - `build`: the observer in release mode.

mod bench;
mod demo;
mod lab;
mod setup;
mod shell;
mod test;
mod ui_vendor;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "Developer and CI entry points of the observer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the toolchain pieces and Debian packages builds and tests need (idempotent).
    Setup,
    /// rustfmt check, clippy -D warnings, unit tests, then the privileged integration tests.
    Test,
    /// Build a lab, run the observer on it, generate traffic and print the flow records.
    Demo {
        /// Keep the lab and the web console up until Enter is pressed.
        #[arg(long)]
        ui: bool,
    },
    /// Refresh the console's vendored Cytoscape.js from npm, as package-lock.json pins it.
    UiVendor,
    /// Run a benchmark and print its numbers.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// Build a lab with N pods and keep it until Enter is pressed.
    Lab {
        /// Number of pods.
        #[arg(long, default_value_t = 3)]
        pods: usize,
    },
    /// Build the observer in release mode.
    Build,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test => test::run_all(),
        Command::Demo { ui } => demo::run(ui),
        Command::UiVendor => ui_vendor::run(),
        Command::Bench { which } => bench::run(which),
        Command::Lab { pods } => lab::run(pods),
        Command::Build => {
            setup::run()?;
            shell::cargo(&["build", "--release", "-p", "observer"])
        }
    }
}
