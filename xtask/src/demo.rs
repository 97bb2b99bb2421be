//! `cargo xtask demo`: the observer's main job, end to end on one machine.
//!
//! Builds a lab node with three pods, runs the observer in it, makes a little traffic of
//! every kind, stops the observer (which flushes every connection), and prints the records.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use observer_lab::observer::ObserverProcess;
use observer_lab::traffic::{ping, tcp_exchange, udp_exchange};
use observer_lab::{Lab, OUTSIDE_IPV4};

use crate::shell::{build_observer, is_root, target_dir};

/// Runs the demo.
pub fn run() -> Result<()> {
    crate::setup::run()?;
    if !is_root() {
        bail!("the demo loads eBPF programs and makes network namespaces: run it as root");
    }
    let binary = build_observer(false)?;
    Lab::remove_stale();
    let mut lab = Lab::new()?;
    let web = lab.add_pod("web")?;
    let api = lab.add_pod("api")?;
    let db = lab.add_pod("db")?;
    let dir = target_dir().join("demo");
    std::fs::create_dir_all(&dir)?;
    println!("lab node {} with pods:", lab.node_netns());
    for pod in lab.pods() {
        println!(
            "  {:<4} {:<12} {:<16} via {}",
            pod.name, pod.ipv4, pod.ipv6, pod.host_interface
        );
    }

    let mut observer = ObserverProcess::start(&lab, &binary, &dir, &[])?;
    observer.wait_attached(&["vethweb", "vethapi", "vethdb"])?;
    println!("observer attached; making traffic...");
    for _ in 0..3 {
        tcp_exchange(&web, &api, IpAddr::V4(api.ipv4), 20_000, 80_000)?;
    }
    tcp_exchange(&api, &db, IpAddr::V4(db.ipv4), 4_000, 64_000)?;
    tcp_exchange(&api, &db, IpAddr::V6(db.ipv6), 2_000, 16_000)?;
    udp_exchange(&web, &api, IpAddr::V4(api.ipv4), 5)?;
    ping(&web, IpAddr::V4(db.ipv4), 3)?;
    ping(&db, IpAddr::V4(OUTSIDE_IPV4), 2)?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let stopped = observer.stop()?;

    let names: HashMap<IpAddr, String> = lab
        .pods()
        .iter()
        .flat_map(|p| {
            [
                (IpAddr::V4(p.ipv4), p.name.clone()),
                (IpAddr::V6(p.ipv6), p.name.clone()),
            ]
        })
        .chain([(IpAddr::V4(OUTSIDE_IPV4), "outside".to_string())])
        .collect();
    let name = |ip: &serde_json::Value| -> String {
        let text = ip.as_str().unwrap_or("?");
        text.parse::<IpAddr>()
            .ok()
            .and_then(|ip| names.get(&ip).cloned())
            .unwrap_or_else(|| text.to_string())
    };
    println!(
        "\n{:<7} {:<22} {:<22} {:>14} {:>14} {:<7} interfaces",
        "proto", "from", "to", "fwd pkts/B", "rev pkts/B", "state"
    );
    let mut shown = 0;
    for line in stopped.flow_log.lines() {
        let r: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("flow log line: {line}"))?;
        let (src, dst) = (name(&r["src"]["ip"]), name(&r["dst"]["ip"]));
        // Link-local IPv6 housekeeping (router and neighbour discovery) is real traffic, but
        // not what the demo is about.
        if src.starts_with("fe80") || dst.starts_with("ff02") || dst.starts_with("fe80") {
            continue;
        }
        shown += 1;
        println!(
            "{:<7} {:<22} {:<22} {:>14} {:>14} {:<7} {}",
            r["protocol"].as_str().unwrap_or("?"),
            format!("{src}:{}", r["src"]["port"]),
            format!("{dst}:{}", r["dst"]["port"]),
            format!("{}/{}", r["fwd"]["packets"], r["fwd"]["bytes"]),
            format!("{}/{}", r["rev"]["packets"], r["rev"]["bytes"]),
            r["state"].as_str().unwrap_or("?"),
            r["interfaces"]
        );
    }
    if shown == 0 {
        bail!("the observer wrote no pod records: {}", stopped.flow_log);
    }
    let total = stopped.flow_log.lines().count();
    println!("\n{shown} pod connections shown ({total} records in all, with IPv6 housekeeping)");
    println!(
        "flow log (JSON Lines): {}",
        observer_file(&dir, "flows.jsonl")
    );
    println!("counters: {}", stopped.stats["datapath"]);
    Ok(())
}

fn observer_file(dir: &std::path::Path, name: &str) -> String {
    dir.join(name).display().to_string()
}
