//! The kernel memory the daemon reports for its BPF maps (stats `kernel_map_bytes`, from
//! `memory::budget::kernel_maps` with this node's possible CPUs) is what the kernel says the
//! maps of its process hold: `bpftool map show`'s memlock, summed over every map the
//! process holds open (its file descriptors' `map_id`s). Needs root (it loads the programs); fails loudly without it.

mod support;

use anyhow::{Context, Result};
use observer_lab::Lab;
use support::{Observer, require_root, scratch_dir};

/// The ids of the BPF maps `pid` holds open (its file descriptors' `map_id`).
fn map_ids_of(pid: i32) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let info = std::fs::read_to_string(fd?.path()).unwrap_or_default();
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Every map `pid` holds, as (name, memlock bytes), from `bpftool -j map show`.
fn maps_of(pid: i32) -> Result<Vec<(String, u64)>> {
    let ids = map_ids_of(pid)?;
    let output = std::process::Command::new("bpftool")
        .args(["-j", "map", "show"])
        .output()
        .context("running bpftool (cargo xtask setup installs it)")?;
    anyhow::ensure!(
        output.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let maps: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
    let mut held = Vec::new();
    for map in &maps {
        if !map["id"].as_u64().is_some_and(|id| ids.contains(&id)) {
            continue;
        }
        let name = map["name"].as_str().unwrap_or("?").to_owned();
        let memlock = map["bytes_memlock"]
            .as_u64()
            .with_context(|| format!("no bytes_memlock in {map}"))?;
        held.push((name, memlock));
    }
    anyhow::ensure!(
        !held.is_empty(),
        "no map of process {pid} in bpftool's list"
    );
    Ok(held)
}

#[test]
fn the_reported_kernel_map_memory_is_what_the_kernel_charges() -> Result<()> {
    require_root();
    let dir = scratch_dir("kernel-memory");
    let mut lab = Lab::new()?;
    lab.add_pod("a")?;
    let mut observer = Observer::start(&lab, &dir, &["--interfaces", "veth*"])?;
    observer.wait_attached(&["vetha"])?;
    let reported = observer.stats_now()?["kernel_map_bytes"]
        .as_u64()
        .context("kernel_map_bytes in the stats")?;
    let maps = maps_of(observer.pid())?;
    let measured: u64 = maps.iter().map(|(_, bytes)| bytes).sum();
    for (name, bytes) in &maps {
        eprintln!("{name:<16} {bytes:>12}");
    }
    eprintln!("measured {measured}, reported {reported}");
    assert!(
        maps.iter().any(|(name, _)| name == "FLOWS"),
        "the flow map is among the process's maps: {maps:?}"
    );
    // The formula rounds the small maps up; it stays within 10% of the kernel's figure.
    let ratio = reported as f64 / measured as f64;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "reported {reported} bytes, the kernel holds {measured} ({ratio:.3}): {maps:?}"
    );
    observer.stop()?;
    Ok(())
}
