//! `observer suggest`: least-privilege NetworkPolicies learned from flow-log files and the
//! cluster's manifests (offline, no root), proven against the records they were learned
//! from. The learning, generation and proof are `crate::suggest`'s; this file reads the
//! files, builds the two policy snapshots (declared; declared plus suggested) and prints.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cluster::manifests::{LoadErrorKind, load_paths_strict};
use crate::cluster::state::ClusterObjects;
use crate::cluster::view::ClusterView;
use crate::flow::{FlowRecord, Timestamp};
use crate::policy::SnapshotInput;
use crate::suggest::calico::CalicoPlacement;
use crate::suggest::generate::{GenerateConfig, Granularity};
use crate::suggest::learn::{LearnConfig, Learner};
use crate::suggest::render;
use crate::suggest::report::{Known, report};
pub use crate::suggest::report::{Report, as_calico, prove_with_every_kind};
use crate::wire::proto::{GetSuggestionsRequest, SuggestionFormat, SuggestionGranularity};

/// Arguments of `observer suggest`.
#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// Ask running observers for what they learned instead of reading files: a gRPC
    /// address (`http://HOST:PORT` or `unix:///PATH`, as for `observer observe`).
    /// Repeatable: the observers' learning is merged (a Deployment's replicas run on many
    /// nodes) and the proof covers every server's flows.
    #[arg(long, conflicts_with_all = ["flows", "manifests"])]
    server: Vec<String>,
    /// TLS to the servers (as for `observer observe`).
    #[command(flatten)]
    tls: crate::cli::client::ClientTls,
    /// Flow-log files (JSON Lines, as `observer run` writes them); `-` is stdin.
    #[arg(long, required_unless_present = "server", num_args = 1..)]
    flows: Vec<String>,
    /// Manifest files or directories of the cluster the flows were seen in (Namespaces,
    /// Pods, Nodes, NetworkPolicies...): the pods the selectors must select, and the
    /// declared policies the suggestion is proven together with.
    #[arg(long, required_unless_present = "server", num_args = 1..)]
    manifests: Vec<PathBuf>,
    /// Write one multi-document YAML file per namespace here (`kubectl apply -f DIR`)
    /// instead of printing the policies.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Edges learned at most; past it, new edges are counted as dropped and the
    /// suggestion says it is incomplete.
    #[arg(long, default_value_t = 100_000)]
    max_edges: usize,
    /// External IPv4 peers are aggregated to this prefix length.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(0..=32))]
    external_prefix_v4: u8,
    /// Write a port by the name the destination's pods give it (`port: http`) where they
    /// all do, so that the policy follows the port if it moves.
    #[arg(long)]
    named_ports: bool,
    /// Print only what differs from the declared policies: suggestions whose policy is not
    /// declared yet, or is declared with another spec (by namespace and name).
    #[arg(long)]
    diff: bool,
    /// One policy per `workload` (its pods' labels select it), or per `namespace` (every
    /// pod of the namespace, allowed what any of them did).
    #[arg(long, value_enum, default_value_t = GranularityArg::Workload)]
    granularity: GranularityArg,
    /// The policies' kind: `k8s` (networking.k8s.io/v1 NetworkPolicy) or `calico`
    /// (projectcalico.org/v3 NetworkPolicy, proven with the tiered engine).
    #[arg(long, value_enum, default_value_t = Format::K8s)]
    format: Format,
    /// Calico format: `spec.order` of the policies (Kubernetes NetworkPolicies sit at 1000).
    #[arg(long, default_value_t = 1000.0)]
    calico_order: f64,
    /// Calico format: put the policies in this tier (it must exist in the cluster).
    #[arg(long)]
    calico_tier: Option<String>,
    /// External IPv6 peers are aggregated to this prefix length.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u8).range(0..=128))]
    external_prefix_v6: u8,
}

/// `--granularity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GranularityArg {
    /// One policy per workload.
    Workload,
    /// One policy per namespace.
    Namespace,
}

/// The kind of policies written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Kubernetes `networking.k8s.io/v1` NetworkPolicy.
    K8s,
    /// Calico `projectcalico.org/v3` NetworkPolicy.
    Calico,
}

/// Learns from `records`, then generates, renders and proves the policies together with
/// the declared policies of `objects` (`crate::suggest::report`).
pub fn suggest_offline(
    objects: &ClusterObjects,
    records: &[FlowRecord],
    config: LearnConfig,
) -> Result<Report, String> {
    suggest_offline_with(objects, records, config, &GenerateConfig::default())
}

/// [`suggest_offline`], with the generation's settings.
pub fn suggest_offline_with(
    objects: &ClusterObjects,
    records: &[FlowRecord],
    config: LearnConfig,
    generation: &GenerateConfig,
) -> Result<Report, String> {
    let start = std::time::Instant::now();
    let mut learner = Learner::new(config);
    for record in records {
        learner.learn(record);
    }
    let learned_at = start.elapsed();
    let (view, _) = ClusterView::build(objects);
    let (declared, _) = SnapshotInput::from_objects(
        &objects.namespaces,
        &objects.pods,
        &objects.nodes,
        &objects.policies,
    );
    let window_end = records
        .iter()
        .map(|r| r.last_seen)
        .max()
        .unwrap_or(Timestamp(0));
    let mut report = report(
        learner.learned(),
        &Known::from_view(&view),
        &declared,
        records,
        window_end,
        generation,
    )?;
    report.timings[0] = learned_at;
    Ok(report)
}

/// Reads flow-log records; a line that is not one is an error naming the file and line.
fn read_records(paths: &[String]) -> Result<Vec<FlowRecord>, String> {
    let mut records = Vec::new();
    for path in paths {
        let reader: Box<dyn BufRead> = if path == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
            Box::new(BufReader::new(file))
        };
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| format!("{path}: line {}: {e}", n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(&line)
                .map_err(|e| format!("{path}: line {}: not a flow-log record: {e}", n + 1))?;
            records.push(record);
        }
    }
    Ok(records)
}

/// Prints the policies (or writes them to `--out`), and a summary on stderr. Exit status:
/// 0 when the proof holds, 1 when a file cannot be read or the proof fails (a bug), 2 for
/// input that is not flow-log records.
pub fn run(args: SuggestArgs) -> ExitCode {
    if !args.server.is_empty() {
        if args.diff {
            eprintln!(
                "error: --diff reads the declared policies from --manifests; it is not available with --server"
            );
            return ExitCode::from(2);
        }
        let request = GetSuggestionsRequest {
            format: match args.format {
                Format::K8s => SuggestionFormat::Kubernetes,
                Format::Calico => SuggestionFormat::Calico,
            } as i32,
            granularity: match args.granularity {
                GranularityArg::Workload => SuggestionGranularity::Workload,
                GranularityArg::Namespace => SuggestionGranularity::Namespace,
            } as i32,
            calico_order: args.calico_order,
            calico_tier: args.calico_tier.clone().unwrap_or_default(),
            named_ports: args.named_ports,
            ..GetSuggestionsRequest::default()
        };
        return remote::run(&args.server, &args.tls, request, args.out.as_deref());
    }
    let loaded = load_paths_strict(&args.manifests, false);
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    for e in &loaded.errors {
        eprintln!("error: {e}");
    }
    if loaded
        .errors
        .iter()
        .any(|e| matches!(e.kind, LoadErrorKind::Io(_)))
    {
        eprintln!("error: a --manifests path could not be read: nothing suggested");
        return ExitCode::from(1);
    }
    let records = match read_records(&args.flows) {
        Ok(records) => records,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let config = LearnConfig {
        max_edges: args.max_edges,
        external_prefix_v4: args.external_prefix_v4,
        external_prefix_v6: args.external_prefix_v6,
    };
    let objects = loaded.into_objects();
    let generation = GenerateConfig {
        granularity: match args.granularity {
            GranularityArg::Workload => Granularity::Workload,
            GranularityArg::Namespace => Granularity::Namespace,
        },
        named_ports: args.named_ports,
        ..GenerateConfig::default()
    };
    let mut report = match suggest_offline_with(&objects, &records, config, &generation) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let placement = CalicoPlacement {
        order: args.calico_order,
        tier: args.calico_tier.clone(),
    };
    if args.format == Format::Calico
        && let Err(e) = as_calico(&mut report, &objects, &records, &placement)
    {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    if args.format == Format::K8s
        && let Err(e) = prove_with_every_kind(&mut report, &objects, &records)
    {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    if args.diff {
        match args.format {
            Format::K8s => keep_kubernetes_differences(&mut report, &objects),
            Format::Calico => keep_calico_differences(&mut report, &objects, &placement),
        }
    }
    if let Some(dir) = &args.out {
        if let Err(e) = write_out(dir, &report.yaml) {
            eprintln!("error: {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    } else {
        for text in report.yaml.values() {
            print!("{text}");
        }
    }
    summarize(&report, records.len());
    if report.proof.denied.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

mod remote;

/// Whether a suggested policy is declared already, by namespace and name.
enum Declared {
    /// Not declared.
    New,
    /// Declared with another spec.
    Changed,
    /// Declared with this spec.
    Same,
}

/// Keeps in `report.yaml` only the suggestions that are not declared as suggested (each
/// suggestion's state and text in `judged`, in order), and says how many are new, changed
/// and unchanged.
fn keep_differences(report: &mut Report, judged: Vec<(Declared, String)>) {
    let (mut new, mut changed, mut unchanged) = (0, 0, 0);
    let mut yaml: BTreeMap<String, String> = BTreeMap::new();
    for (s, (declared, text)) in report.suggestions.iter().zip(judged) {
        match declared {
            Declared::Same => {
                unchanged += 1;
                continue;
            }
            Declared::Changed => changed += 1,
            Declared::New => new += 1,
        }
        yaml.entry(s.subject.namespace.clone())
            .or_default()
            .push_str(&text);
    }
    eprintln!("--diff: {new} new, {changed} changed, {unchanged} already declared as suggested");
    report.yaml = yaml;
}

/// [`keep_differences`] for the Kubernetes format: against the declared NetworkPolicies.
fn keep_kubernetes_differences(report: &mut Report, objects: &ClusterObjects) {
    let declared: BTreeMap<(Option<String>, Option<String>), _> = objects
        .policies
        .iter()
        .map(|p| {
            let key = (p.metadata.namespace.clone(), p.metadata.name.clone());
            (key, p.spec.clone())
        })
        .collect();
    let judged: Vec<(Declared, String)> = report
        .suggestions
        .iter()
        .zip(&report.objects)
        .map(|(s, object)| {
            let key = (
                object.metadata.namespace.clone(),
                object.metadata.name.clone(),
            );
            let state = match declared.get(&key) {
                Some(spec) if *spec == object.spec => Declared::Same,
                Some(_) => Declared::Changed,
                None => Declared::New,
            };
            (state, render::kubernetes(s))
        })
        .collect();
    keep_differences(report, judged);
}

/// [`keep_differences`] for the Calico format: against the declared Calico
/// NetworkPolicies, their specs compared as the loader reads them.
fn keep_calico_differences(
    report: &mut Report,
    objects: &ClusterObjects,
    placement: &CalicoPlacement,
) {
    use crate::cluster::kinds::policy_objects::{CalicoNetworkPolicyKind, PolicyKindInfo};
    let declared: BTreeMap<(Option<String>, Option<String>), Option<serde_json::Value>> = objects
        .calico_policies
        .iter()
        .map(|p| {
            let key = (p.metadata.namespace.clone(), p.metadata.name.clone());
            (key, CalicoNetworkPolicyKind::normalize(&p.spec))
        })
        .collect();
    let judged: Vec<(Declared, String)> = report
        .suggestions
        .iter()
        .map(|s| {
            let text = crate::suggest::calico::network_policy(s, placement);
            let parsed = crate::cluster::manifests::parse("suggested.yaml", &text);
            let mine = parsed.into_objects().calico_policies.into_iter().next();
            let same = mine.and_then(|p| {
                let key = (p.metadata.namespace.clone(), p.metadata.name.clone());
                declared
                    .get(&key)
                    .map(|spec| *spec == CalicoNetworkPolicyKind::normalize(&p.spec))
            });
            let state = match same {
                None => Declared::New,
                Some(true) => Declared::Same,
                Some(false) => Declared::Changed,
            };
            (state, text)
        })
        .collect();
    keep_differences(report, judged);
}

fn write_out(dir: &std::path::Path, yaml: &BTreeMap<String, String>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (namespace, text) in yaml {
        std::fs::write(dir.join(format!("{namespace}.yaml")), text)?;
    }
    Ok(())
}

/// The summary table and the proof, on stderr.
fn summarize(report: &Report, records: usize) {
    let mut rows = vec![[
        "WORKLOAD".to_string(),
        "STABILITY".into(),
        "INGRESS".into(),
        "EGRESS".into(),
        "NOTE".into(),
    ]];
    for s in &report.suggestions {
        rows.push([
            s.subject.to_string(),
            s.stability.name().into(),
            s.ingress.len().to_string(),
            s.egress.len().to_string(),
            s.selector_note
                .as_ref()
                .map_or(String::new(), |_| "selector not unique".into()),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        eprintln!("{}", cells.join("  ").trim_end());
    }
    let skipped = report.learned.skipped;
    let proof = &report.proof;
    eprintln!(
        "\n{} records read; {} edges learned ({} dropped at --max-edges{}), {} unresolved \
         Service records and {} without identity skipped",
        records,
        report.learned.edge_count(),
        skipped.dropped_edges,
        if skipped.dropped_edges > 0 {
            ": the suggestion is INCOMPLETE"
        } else {
            ""
        },
        skipped.unresolved_services,
        skipped.without_identity
    );
    eprintln!(
        "proof: {} records judged with the declared and suggested policies: {} allowed, {} \
         denied; {} not judged (protocols the format cannot express, unknown ends)",
        proof.checked,
        proof.allowed,
        proof.checked - proof.allowed - proof.denied_by_declared,
        proof.not_judged
    );
    if proof.denied_by_declared > 0 {
        eprintln!(
            "  and {} denied by a declared Deny rule with or without the suggestion \
             (violations today, below)",
            proof.denied_by_declared
        );
    }
    for denied in &proof.denied {
        eprintln!("  DENIED (a bug in the suggestion): {denied}");
    }
    let impact = &report.impact;
    eprintln!(
        "impact: {} pairs of known workloads allowed today would be denied",
        impact.newly_denied
    );
    for (from, to, port) in impact.newly_denied_pairs.iter().take(20) {
        eprintln!("  {from} -> {to} (port {port})");
    }
    let existing = &report.existing;
    if !existing.unselected_workloads.is_empty() {
        eprintln!(
            "workloads no declared policy selects: {}",
            existing.unselected_workloads.len()
        );
        for w in existing.unselected_workloads.iter().take(20) {
            eprintln!("  {w}");
        }
    }
    if !existing.unused_rules.is_empty() {
        eprintln!(
            "declared rules no recorded flow was decided by (candidates to remove): {}",
            existing.unused_rules.len()
        );
        for rule in existing.unused_rules.iter().take(20) {
            eprintln!("  {rule}");
        }
    }
    if !impact.violations_today.is_empty() {
        eprintln!(
            "observed flows the declared policies deny today (violations; the suggestion allows those NetworkPolicy can express): {}",
            impact.violations_today.len()
        );
        for v in impact.violations_today.iter().take(20) {
            eprintln!("  {v}");
        }
    }
}
