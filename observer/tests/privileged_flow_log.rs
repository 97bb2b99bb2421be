//! Privileged: the flow log under a full disk and a rotation by rename. Lines are whole or
//! absent, every record is written or counted lost exactly once, and SIGHUP reopens the
//! file instead of killing the daemon.

mod support;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use observer_lab::{Lab, OUTSIDE_IPV4, Pod, in_netns};
use support::{Observer, require_root, scratch_dir};

/// `flows` UDP flows from `from` to the outside, one datagram each; their source ports.
fn udp_flows(from: &Pod, flows: usize) -> Result<Vec<u16>> {
    let mut ports = Vec::new();
    for _ in 0..flows {
        let socket = in_netns(&from.netns, || UdpSocket::bind(("0.0.0.0", 0)))??;
        socket.send_to(b"flow", (OUTSIDE_IPV4, 7777))?;
        ports.push(socket.local_addr()?.port());
    }
    Ok(ports)
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program).args(args).status()?;
    if !status.success() {
        bail!("{program} {args:?}: {status}");
    }
    Ok(())
}

/// A tmpfs of `size` at `dir`, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: std::path::PathBuf, size: &str) -> Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let options = format!("size={size}");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &options,
                "tmpfs",
                &dir.to_string_lossy(),
            ],
        )?;
        Ok(Self(dir))
    }

    fn resize(&self, size: &str) -> Result<()> {
        let options = format!("remount,size={size}");
        run("mount", &["-o", &options, &self.0.to_string_lossy()])
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_loses_whole_records_counted_exactly_and_leaves_no_partial_line() -> Result<()> {
    require_root();
    let dir = scratch_dir("flow-log-full");
    let disk = SmallDisk::mount(dir.join("disk"), "32k")?;
    let log = disk.0.join("flows.jsonl");
    let log_arg = log.to_string_lossy().into_owned();
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let mut observer = Observer::start(
        &lab,
        &dir,
        &[
            "--interfaces",
            "veth*",
            "--idle-timeout",
            "1s",
            "--flow-log",
            &log_arg,
        ],
    )?;
    observer.wait_attached(&["vetha"])?;
    // About 300 bytes a record: 400 records do not fit in 32 KiB.
    udp_flows(&a, 400)?;
    observer.wait_stat("flow_log_lost_records", 1)?;
    // Space comes back: later records are written again.
    disk.resize("4m")?;
    let before = std::fs::read_to_string(&log)?.lines().count();
    udp_flows(&a, 20)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log)?.lines().count() < before + 20 {
        if std::time::Instant::now() > deadline {
            bail!("no records written after space came back");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = observer.stop()?;

    // Every line is a whole record (the support parsed each into a FlowRecord).
    let text = std::fs::read_to_string(&log)?;
    assert!(text.ends_with('\n'), "a partial last line");
    assert_eq!(out.records.len(), text.lines().count());
    let stat = |name: &str| out.stats[name].as_u64().unwrap_or(0);
    let lost = stat("flow_log_lost_records");
    assert!(lost > 0, "{}", out.stats);
    assert_eq!(stat("records_written"), out.records.len() as u64);
    let delivered = out.stats["sinks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "flow_log"))
        .and_then(|s| s["delivered"].as_u64())
        .context("flow_log sink")?;
    assert_eq!(
        stat("records_written") + lost,
        delivered,
        "each record written or lost, once: {}",
        out.stats
    );
    Ok(())
}

#[test]
fn sighup_reopens_a_renamed_flow_log_and_loses_nothing() -> Result<()> {
    require_root();
    let dir = scratch_dir("flow-log-hup");
    let mut lab = Lab::new()?;
    let a = lab.add_pod("a")?;
    let mut observer = Observer::start(
        &lab,
        &dir,
        &["--interfaces", "veth*", "--idle-timeout", "1s"],
    )?;
    observer.wait_attached(&["vetha"])?;
    let early = udp_flows(&a, 3)?;
    observer.wait_stat("records_written", 3)?;
    // logrotate's way: rename, then SIGHUP. Records written before the reopen still go
    // to the renamed file, as logrotate expects.
    std::fs::rename(dir.join("flows.jsonl"), dir.join("flows.jsonl.1"))?;
    run("kill", &["-HUP", &observer.pid().to_string()])?;
    std::thread::sleep(Duration::from_millis(300));
    let late = udp_flows(&a, 2)?;
    observer.wait_stat("records_written", 5)?;
    let out = observer.stop()?;
    assert!(out.log.contains("reopened"), "{}", out.log);
    let rotated: Vec<observer::flow::FlowRecord> =
        std::fs::read_to_string(dir.join("flows.jsonl.1"))?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
    let ports = |records: &[observer::flow::FlowRecord]| -> Vec<u16> {
        records
            .iter()
            .filter(|r| r.dst.port == 7777)
            .map(|r| r.src.port)
            .collect()
    };
    let (old, new) = (ports(&rotated), ports(&out.records));
    for port in &late {
        assert!(
            new.contains(port),
            "late flow {port} not in the new file: {new:?}"
        );
    }
    for port in &early {
        assert!(old.contains(port) || new.contains(port), "flow {port} lost");
    }
    assert_eq!(old.len() + new.len(), 5, "each flow once: {old:?} {new:?}");
    assert_eq!(
        out.stats["records_written"].as_u64(),
        Some((rotated.len() + out.records.len()) as u64),
        "{}",
        out.stats
    );
    Ok(())
}
