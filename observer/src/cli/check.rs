//! `observer check`: replay recorded or hand-written flows against a set of manifests
//! (what-if). The same evaluation the daemon uses: `policy::check`.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cluster::manifests::{LoadErrorKind, load_paths_strict};
use crate::cluster::tiered_view::TieredView;
use crate::policy::check::{CheckError, TieredJudge, TieredJudges, check_lines_with};
use crate::policy::{CniProfile, PolicySnapshot};

/// Arguments of `observer check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifest files or directories (YAML, multi-document, JSON, List kinds) of Namespaces,
    /// Pods, Nodes and NetworkPolicies.
    #[arg(long, required = true, num_args = 1..)]
    manifests: Vec<PathBuf>,
    /// Refuse manifest objects with unknown fields (a misspelt field is otherwise ignored
    /// with a warning, as kubectl apply does).
    #[arg(long)]
    strict: bool,
    /// Flows, one JSON object per line (flow-log records are valid input); `-` is stdin.
    #[arg(long)]
    flows: String,
    /// How the cluster's CNI treats what NetworkPolicy leaves open (ICMP and other
    /// protocols, host-networked pods): calico, cilium or generic (no verdict there).
    #[arg(long, default_value_t = CniProfile::default())]
    cni_profile: CniProfile,
}

/// Prints one JSON verdict per flow line on stdout; load problems and a summary go to
/// stderr. Exit status: 0 when every line was evaluated, 2 for a malformed flow line
/// (the message names the line), 1 for I/O errors, a manifests path that cannot be read
/// among them: judging against a cluster with a file missing would answer for a cluster
/// nobody described.
pub fn run(args: CheckArgs) -> ExitCode {
    let loaded = load_paths_strict(&args.manifests, args.strict);
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    for e in &loaded.errors {
        eprintln!("error: {e}");
    }
    let unreadable = loaded
        .errors
        .iter()
        .filter(|e| matches!(e.kind, LoadErrorKind::Io(_)))
        .count();
    if unreadable > 0 {
        eprintln!(
            "error: {unreadable} manifests path(s) could not be read (--manifests): no flow judged"
        );
        return ExitCode::from(1);
    }
    let (input, object_errors) = loaded.snapshot_input();
    for e in &object_errors {
        eprintln!("error: {e}");
    }
    let snapshot = PolicySnapshot::build(&input);
    // Calico, AdminNetworkPolicy or ClusterNetworkPolicy objects: every kind is judged
    // together, in tiers.
    let (tiered, tiered_errors) = TieredView::build(&loaded.objects);
    for e in &tiered_errors {
        eprintln!("error: {e}");
    }
    let reader: Box<dyn BufRead> = if args.flows == "-" {
        Box::new(io::stdin().lock())
    } else {
        match File::open(&args.flows) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("error: {}: {e}", args.flows);
                return ExitCode::from(1);
            }
        }
    };
    let other = match tiered {
        Some(_) => None,
        None => TieredView::cni_dependent(&loaded.objects),
    };
    let judges = TieredJudges {
        all: tiered.as_ref().map(|t| t as &dyn TieredJudge),
        cni_dependent: other.as_ref().map(|t| t as &dyn TieredJudge),
        profile: args.cni_profile,
    };
    match check_lines_with(&snapshot, judges, reader, io::stdout().lock()) {
        Ok(s) => {
            eprintln!(
                "{} flows: {} allowed, {} denied, {} undefined, {} not evaluable",
                s.lines, s.allowed, s.denied, s.undefined, s.not_evaluable
            );
            ExitCode::SUCCESS
        }
        Err(e @ CheckError::Line { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
