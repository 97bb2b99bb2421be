//! Privileged: the benchmarks' hidden attach options put exactly the asked programs at both
//! hooks, in the asked order. `cargo xtask bench datapath` reads its ratios from the order:
//! a program that runs after another at a hook finds the packet's lines in the cache, so a
//! wrong order, or a flow program left attached beside a rung measured alone, would skew
//! every figure in docs/benchmarks.md without failing anything else.

mod support;

use std::path::Path;

use anyhow::{Context, Result};
use aya::programs::{SchedClassifier, TcAttachType};
use observer_lab::observer::ObserverProcess;
use observer_lab::{Lab, in_netns};
use support::{require_root, scratch_dir};

/// The names of the programs at one hook of `interface` in the lab's node, in run order.
fn chain(lab: &Lab, interface: &str, hook: TcAttachType) -> Result<Vec<String>> {
    let interface = interface.to_string();
    in_netns(lab.node_netns(), move || -> Result<Vec<String>> {
        let (_, programs) = SchedClassifier::query_tcx(&interface, hook)
            .with_context(|| format!("listing the TCX programs of {interface}"))?;
        Ok(programs
            .iter()
            .map(|p| p.name_as_str().unwrap_or("?").to_string())
            .collect())
    })?
}

/// Starts an observer with `args`, reads both hooks of the pod's interface, stops it.
fn chains(lab: &Lab, tag: &str, args: &[&str]) -> Result<(Vec<String>, Vec<String>)> {
    let dir = scratch_dir(tag);
    let binary = Path::new(env!("CARGO_BIN_EXE_observer"));
    let mut all = vec!["--interfaces", "veth*"];
    all.extend(args);
    let mut observer = ObserverProcess::start(lab, binary, &dir, &all)?;
    observer.wait_attached(&["vetha"])?;
    let read = (
        chain(lab, "vetha", TcAttachType::Ingress),
        chain(lab, "vetha", TcAttachType::Egress),
    );
    let stopped = observer.stop()?;
    let (ingress, egress) = (read.0?, read.1?);
    assert_eq!(
        stopped.stats["attach_failures"].as_u64(),
        Some(0),
        "{}",
        stopped.log
    );
    Ok((ingress, egress))
}

#[test]
fn the_benchmarks_attach_options_put_the_asked_programs_in_the_asked_order() -> Result<()> {
    require_root();
    let mut lab = Lab::new()?;
    lab.add_pod("a")?;
    let references = ["empty_tc", "parse_only_tc", "count_one_tc", "count_slot_tc"];

    // The daemon's own: the flow programs alone.
    let (ingress, egress) = chains(&lab, "hooks-default", &[])?;
    assert_eq!(ingress, ["flow_ingress"]);
    assert_eq!(egress, ["flow_egress"]);

    // The cost part: the flow programs, then the ladder's references...
    let (ingress, egress) = chains(&lab, "hooks-references", &["--attach-empty-program"])?;
    let after = |flow: &str| -> Vec<String> {
        std::iter::once(flow)
            .chain(references)
            .map(String::from)
            .collect()
    };
    assert_eq!(ingress, after("flow_ingress"));
    assert_eq!(egress, after("flow_egress"));

    // ...or the references first.
    let (ingress, egress) = chains(
        &lab,
        "hooks-references-first",
        &["--attach-empty-program", "--attach-references-first"],
    )?;
    let first = |flow: &str| -> Vec<String> {
        references
            .into_iter()
            .chain(std::iter::once(flow))
            .map(String::from)
            .collect()
    };
    assert_eq!(ingress, first("flow_ingress"));
    assert_eq!(egress, first("flow_egress"));

    // The ladder part and the throughput floor: a rung alone, the empty one after it, no
    // flow program.
    let (ingress, egress) = chains(&lab, "hooks-only", &["--attach-only", "count-slot,empty"])?;
    assert_eq!(ingress, ["count_slot_tc", "empty_tc"]);
    assert_eq!(egress, ["count_slot_tc", "empty_tc"]);
    Ok(())
}
