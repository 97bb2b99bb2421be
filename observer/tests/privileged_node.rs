//! Privileged: how the daemon lives on a node. It needs exactly CAP_BPF, CAP_NET_ADMIN and
//! CAP_PERFMON, the set `deploy/daemonset.yaml` grants instead of `privileged: true`: it
//! runs here with every other capability dropped from its bounding set (root without
//! CAP_SYS_ADMIN and the rest), loads and attaches its programs, and records traffic. And a
//! second observer attached to the same interfaces is noticed and reported, and an attach
//! that fails (no file descriptor left) is retried until it works. And a cgroup memory
//! limit below what a new-flow flood may need is warned about at start.

mod support;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use observer::flow::{FlowRecord, IpProtocol};
use observer_lab::Lab;
use observer_lab::observer::ObserverProcess;
use observer_lab::traffic::udp_exchange;
use support::{require_root, scratch_dir};

/// CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39).
const GRANTED: u64 = (1 << 12) | (1 << 38) | (1 << 39);

#[test]
fn the_daemon_runs_with_only_bpf_net_admin_and_perfmon() -> Result<()> {
    require_root();
    let dir = scratch_dir("capabilities");
    let wrapper = dir.join("observer-with-three-caps");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --bounding-set=-all,+bpf,+net_admin,+perfmon \
             --inh-caps=-all {} \"$@\"\n",
            env!("CARGO_BIN_EXE_observer")
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let b = lab.add_pod("b")?;
    let mut observer = ObserverProcess::start(
        &lab,
        Path::new(&wrapper),
        &dir,
        &["--interfaces", "veth*", "--idle-timeout", "1s"],
    )?;
    observer.wait_attached(&["vetha", "vethb"])?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", observer.pid()))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .context("CapEff")?;
    assert_eq!(effective, GRANTED, "effective capabilities {effective:#x}");
    let (client, server) = udp_exchange(&a, &b, IpAddr::V4(b.ipv4), 3)?;
    std::thread::sleep(Duration::from_millis(300));
    let stopped = observer.stop()?;
    let records: Vec<FlowRecord> = stopped
        .flow_log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let ours: Vec<&FlowRecord> = records
        .iter()
        .filter(|r| r.protocol == IpProtocol::UDP && r.src.port == client && r.dst.port == server)
        .collect();
    assert_eq!(ours.len(), 1, "{records:?}\n{}", stopped.log);
    assert_eq!((ours[0].fwd.packets, ours[0].rev.packets), (3, 3));
    Ok(())
}

#[test]
fn a_second_observer_on_the_same_interfaces_is_noticed() -> Result<()> {
    require_root();
    let (first_dir, second_dir) = (
        scratch_dir("first-observer"),
        scratch_dir("second-observer"),
    );
    let mut lab = Lab::new()?;
    lab.add_pod("a")?;
    let binary = Path::new(env!("CARGO_BIN_EXE_observer"));
    let mut first = ObserverProcess::start(&lab, binary, &first_dir, &["--interfaces", "veth*"])?;
    first.wait_attached(&["vetha"])?;
    // The second one serves nothing (the first holds the ports) but attaches all the same.
    let mut second = ObserverProcess::start(
        &lab,
        binary,
        &second_dir,
        &[
            "--interfaces",
            "veth*",
            "--grpc-listen",
            "off",
            "--metrics-listen",
            "off",
        ],
    )?;
    second.wait_attached(&["vetha"])?;
    let stopped = second.stop()?;
    first.stop()?;
    assert_eq!(
        stopped.stats["other_observer_interfaces"].as_u64(),
        Some(1),
        "{}",
        stopped.stats
    );
    assert!(stopped.log.contains("another observer"), "{}", stopped.log);
    Ok(())
}

#[test]
fn an_attach_that_fails_is_retried_until_it_works() -> Result<()> {
    require_root();
    let dir = scratch_dir("attach-retry");
    let mut lab = Lab::new()?;
    lab.add_pod("a")?;
    let binary = Path::new(env!("CARGO_BIN_EXE_observer"));
    let mut observer = ObserverProcess::start(&lab, binary, &dir, &["--interfaces", "veth*"])?;
    observer.wait_attached(&["vetha"])?;
    let pid = observer.pid().to_string();
    let limit = |soft: &str| -> Result<()> {
        let status = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={soft}:")])
            .status()?;
        anyhow::ensure!(status.success(), "prlimit {soft}");
        Ok(())
    };
    // No file descriptor to spare: the new pod's links cannot be made.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    limit(&open.to_string())?;
    lab.add_pod("b")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Watch the log, not the stats file: with no descriptor to spare the
    // daemon cannot write its stats file either, so the file may stay stale
    // until the limit is raised.
    loop {
        let log = observer.log();
        if log.contains("attach failed; retrying at every poll") {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the attach never failed:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let several polls (100 ms apart) retry and fail while there is no room, so the
    // attach below comes from a retry and not from a late link event for the new pod.
    std::thread::sleep(Duration::from_secs(2));
    // Room again: a later poll's retry attaches it.
    limit("4096")?;
    observer.wait_attached(&["vetha", "vethb"])?;
    let stopped = observer.stop()?;
    assert!(
        stopped.stats["attach_failures"].as_u64() >= Some(1),
        "{}",
        stopped.stats
    );
    assert!(
        stopped.stats["attach_retries"].as_u64() >= Some(1),
        "{}",
        stopped.stats
    );
    assert!(
        stopped.log.contains("attached on a retry"),
        "{}",
        stopped.log
    );
    Ok(())
}

/// A child of this process's memory cgroup (v2, or v1's memory hierarchy) with `limit`
/// bytes, removed on drop.
struct MemoryCgroup {
    dir: std::path::PathBuf,
    /// The shell lines that mount the hierarchy and join the cgroup: `ip netns exec`
    /// mounts a fresh sysfs, without the cgroup file systems, in its own mount namespace.
    join: String,
}

impl MemoryCgroup {
    fn new(tag: &str, limit: u64) -> Result<Self> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup")?;
        let (v1, path) = cgroups
            .lines()
            .find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                if controllers.split(',').any(|c| c == "memory") {
                    Some((true, path.to_owned()))
                } else if controllers.is_empty() {
                    Some((false, path.to_owned()))
                } else {
                    None
                }
            })
            .context("no memory cgroup")?;
        let (root, limit_file, mount) = if v1 {
            (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "mount -t tmpfs none /sys/fs/cgroup && mkdir /sys/fs/cgroup/memory && \
                 mount -t cgroup -o memory none /sys/fs/cgroup/memory",
            )
        } else {
            (
                "/sys/fs/cgroup",
                "memory.max",
                "mount -t cgroup2 none /sys/fs/cgroup",
            )
        };
        let child = format!(
            "{}/observer-test-{}-{tag}",
            path.trim_end_matches('/'),
            std::process::id()
        );
        let dir = Path::new(root).join(child.trim_start_matches('/'));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join(limit_file), limit.to_string())?;
        let join = format!("{mount} && echo $$ > {}/cgroup.procs", dir.display());
        Ok(Self { dir, join })
    }

    /// A script that runs the observer in this cgroup.
    fn wrapper(&self, path: &Path) -> Result<()> {
        std::fs::write(
            path,
            format!(
                "#!/bin/sh\nset -e\n{}\nexec {} \"$@\"\n",
                self.join,
                env!("CARGO_BIN_EXE_observer")
            ),
        )?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn a_memory_limit_below_the_flood_budget_is_warned_about_at_start() -> Result<()> {
    require_root();
    let dir = scratch_dir("memory-limit");
    let mut lab = Lab::new()?;
    lab.add_pod("a")?;
    // Enough to run (about 50 MiB idle here), not enough for a flood at the defaults
    // (about 395 MiB on 2 CPUs: deploy/README.md, Memory).
    let tight = MemoryCgroup::new("tight", 200 << 20)?;
    let wrapper = dir.join("observer-in-tight-cgroup");
    tight.wrapper(&wrapper)?;
    let mut observer = ObserverProcess::start(&lab, &wrapper, &dir, &["--interfaces", "veth*"])?;
    observer.wait_attached(&["vetha"])?;
    let stopped = observer.stop()?;
    assert!(stopped.log.contains("limit_mib=200"), "{}", stopped.log);
    assert!(
        stopped
            .log
            .contains("the memory limit is below what a new-flow flood may need"),
        "{}",
        stopped.log
    );
    // Within the budget: no warning.
    let roomy = MemoryCgroup::new("roomy", 2 << 30)?;
    let wrapper = dir.join("observer-in-roomy-cgroup");
    roomy.wrapper(&wrapper)?;
    let mut observer = ObserverProcess::start(&lab, &wrapper, &dir, &["--interfaces", "veth*"])?;
    observer.wait_attached(&["vetha"])?;
    let stopped = observer.stop()?;
    assert!(stopped.log.contains("limit_mib=2048"), "{}", stopped.log);
    assert!(
        !stopped.log.contains("the memory limit is below"),
        "{}",
        stopped.log
    );
    Ok(())
}
