//! Command-line interface: one file per subcommand, parsing and wiring only.

mod check;
mod client;
mod duration;
mod observe;
mod relay;
mod run;
mod status;
pub mod suggest;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use duration::parse_duration;

/// eBPF traffic observer for Kubernetes: who talks to whom.
#[derive(Debug, Parser)]
#[command(name = "observer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How logs are written to stderr: `text` (coloured only on a terminal) or `json`
    /// (one object per line, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture pod traffic on this node and write connection records.
    Run(Box<run::RunArgs>),
    /// Replay flows against manifests: allowed or denied, by which policy (what-if).
    Check(check::CheckArgs),
    /// Stream flows and violations from a running observer's gRPC API.
    Observe(Box<observe::ObserveArgs>),
    /// A running observer's version, node, uptime, flow buffer and losses.
    Status(status::StatusArgs),
    /// Suggest least-privilege NetworkPolicies from flow logs, proven against them.
    Suggest(suggest::SuggestArgs),
    /// Serve one API for the whole cluster: every node observer's flows, merged.
    Relay(Box<relay::RelayArgs>),
}

/// Parses a command line as the `observer` binary would, without running it: manifests
/// that start the observer (deploy/daemonset.yaml) are checked with it.
pub fn check_args<I, T>(args: I) -> Result<(), String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); colour codes only when stderr
/// is a terminal, so files and collectors get plain text.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Entry point of the `observer` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Relay(args) => relay::run(*args),
        Command::Observe(args) => return observe::run(*args),
        Command::Status(args) => return status::run(args),
        Command::Check(args) => return check::run(args),
        Command::Suggest(args) => return suggest::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("observer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
