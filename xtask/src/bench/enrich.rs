//! `cargo xtask bench enrich`: the criterion bench (view rebuild, identity lookup, record
//! enrichment), then the daemon's resident memory with a synthetic cluster of 10,000 pods
//! in 500 namespaces and 2,000 policies loaded from manifests.

use anyhow::{Context, Result, bail};
use observer_lab::Lab;
use observer_lab::observer::ObserverProcess;
use observer_lab::synthetic::{Shape, cluster_yaml};

use crate::shell::{build_observer, cargo, is_root, target_dir};

pub fn run(criterion: &[String]) -> Result<()> {
    let mut args = vec!["bench", "-p", "observer", "--bench", "enrich", "--"];
    args.extend(criterion.iter().map(String::as_str));
    cargo(&args)?;

    if !is_root() {
        bail!("the memory part runs the daemon in a lab: run it as root");
    }
    let shape = Shape {
        namespaces: 500,
        pods: 10_000,
        policies: 2_000,
    };
    let dir = target_dir().join("bench-enrich");
    std::fs::create_dir_all(&dir)?;
    let manifests = dir.join("cluster.yaml");
    std::fs::write(&manifests, cluster_yaml(&shape))?;
    let binary = build_observer(true)?;
    Lab::remove_stale();
    let mut lab = Lab::new()?;
    lab.add_pod("a")?;
    let path = manifests.to_string_lossy().to_string();
    let mut observer = ObserverProcess::start(&lab, &binary, &dir, &["--manifests", &path])?;
    observer.wait_attached(&["vetha"])?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while observer
        .stats_now()
        .ok()
        .and_then(|s| s["cluster_views"].as_u64())
        < Some(1)
    {
        if std::time::Instant::now() > deadline {
            bail!(
                "the observer never loaded the manifests: {}",
                observer.log()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let status = std::fs::read_to_string(format!("/proc/{}/status", observer.pid()))
        .context("reading the daemon's /proc status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "\n## daemon memory, {} pods in {} namespaces, {} policies loaded from manifests",
        shape.pods, shape.namespaces, shape.policies
    );
    println!("  VmRSS  {}", field("VmRSS:"));
    println!("  VmHWM  {} (peak)", field("VmHWM:"));
    observer.stop()?;
    Ok(())
}
