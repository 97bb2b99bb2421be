//! The new-flow storm: one packet per new UDP flow, from a pod to an outside address, at
//! the daemon's defaults. Reports flows recorded vs sent, every loss counter, and the
//! daemon's memory: its peak (VmHWM) and the BPF maps it created (charged to its cgroup).

use std::collections::HashSet;
use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Result;
use observer_lab::observer::ObserverProcess;
use observer_lab::{Lab, OUTSIDE_IPV4, Pod, in_netns};

use super::datapath::Options;
use crate::shell::target_dir;

/// Sends `rate` new UDP flows per second for `seconds` from `pod` to the outside address,
/// one packet each, and compares what the observer recorded.
pub fn storm(lab: &Lab, binary: &std::path::Path, pod: &Pod, options: &Options) -> Result<()> {
    let dir = target_dir().join("bench-storm");
    std::fs::create_dir_all(&dir)?;
    // The daemon's defaults (its poll interval too: the lab helper's is 100 ms).
    let mut args = vec!["--poll-interval", "1s"];
    args.extend(options.storm_daemon_arg.iter().map(String::as_str));
    let mut observer = ObserverProcess::start(lab, binary, &dir, &args)?;
    observer.wait_attached(&["vetha"])?;
    let total = u64::from(options.storm_rate) * u64::from(options.storm_seconds);
    let sockets_needed = total.div_ceil(60_000).max(1) as usize;
    let sockets: Vec<UdpSocket> = in_netns(&pod.netns, || {
        (0..sockets_needed)
            .map(|_| UdpSocket::bind(("0.0.0.0", 0)))
            .collect::<std::io::Result<Vec<_>>>()
    })??;
    // Resolve the pod's gateway first: packets sent while the neighbour is unresolved are
    // dropped by the pod's stack, before any hook sees them.
    if let Some(socket) = sockets.first() {
        socket.send_to(b"warm-up", (OUTSIDE_IPV4, 9))?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut sent: HashSet<(u16, u16)> = HashSet::new();
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = (u64::from(options.storm_rate) / 100).max(1);
    let mut send_errors = 0u64;
    let mut i = 0u64;
    let mut next = start;
    while i < total {
        for _ in 0..per_tick.min(total - i) {
            let socket = &sockets[(i % sockets_needed as u64) as usize];
            let port = 1 + (i / sockets_needed as u64) as u16;
            match socket.send_to(b"storm", (OUTSIDE_IPV4, port)) {
                Ok(_) => {
                    sent.insert((socket.local_addr()?.port(), port));
                }
                Err(_) => send_errors += 1,
            }
            i += 1;
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let memory = Memory::of(observer.pid())?;
    let stopped = observer.stop()?;
    let pod_ip = IpAddr::V4(pod.ipv4).to_string();
    let outside = OUTSIDE_IPV4.to_string();
    let mut recorded: HashSet<(u16, u16)> = HashSet::new();
    for line in stopped.flow_log.lines() {
        let r: serde_json::Value = serde_json::from_str(line)?;
        if r["protocol"] == "UDP"
            && r["src"]["ip"] == pod_ip.as_str()
            && r["dst"]["ip"] == outside.as_str()
        {
            let port = |v: &serde_json::Value| v.as_u64().unwrap_or(0) as u16;
            recorded.insert((port(&r["src"]["port"]), port(&r["dst"]["port"])));
        }
    }
    let found = sent.iter().filter(|f| recorded.contains(f)).count();
    let d = &stopped.stats["datapath"];
    println!(
        "  sent {} flows in {:.1} s ({:.0} flows/s, {send_errors} send errors)",
        sent.len(),
        elapsed,
        sent.len() as f64 / elapsed
    );
    println!(
        "  recorded {found} of {} ({:.3}%); the programs saw {} packets",
        sent.len(),
        100.0 * found as f64 / sent.len().max(1) as f64,
        d["packets_seen"]
    );
    println!(
        "  flow_map_full {} (delivered as overflow events: {}), ringbuf_new_flow_failed {}, ringbuf_overflow_failed {}, ringbuf_end_failed {}",
        d["flow_map_full"],
        stopped.stats["overflow_events"],
        d["ringbuf_new_flow_failed"],
        d["ringbuf_overflow_failed"],
        d["ringbuf_end_failed"]
    );
    println!(
        "  evicted {} connections (written early to keep --max-connections), table_full_packets {}",
        stopped.stats["connections_evicted"], stopped.stats["table_full_packets"]
    );
    println!(
        "  daemon memory: peak {:.1} MiB (VmHWM), now {:.1} MiB (VmRSS); its BPF maps {:.1} MiB \
         (bytes_memlock: {})",
        memory.peak_kib as f64 / 1024.0,
        memory.resident_kib as f64 / 1024.0,
        memory.maps_bytes as f64 / f64::from(1 << 20),
        memory.maps
    );
    Ok(())
}

/// What a daemon holds: its process memory and the BPF maps it created.
struct Memory {
    peak_kib: u64,
    resident_kib: u64,
    maps_bytes: u64,
    /// `NAME=MiB` of each map.
    maps: String,
}

impl Memory {
    fn of(pid: i32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        // Each BPF map the daemon holds open: its fdinfo names its id and memlock bytes.
        let mut maps_bytes = 0;
        let mut maps = std::collections::BTreeMap::new();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
            let Ok(info) = std::fs::read_to_string(fd?.path()) else {
                continue;
            };
            let value = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
            };
            if let (Some(id), Some(bytes)) = (value("map_id:"), value("memlock:")) {
                let bytes: u64 = bytes.parse().unwrap_or(0);
                if maps.insert(id, bytes).is_none() {
                    maps_bytes += bytes;
                }
            }
        }
        let maps = maps
            .iter()
            .map(|(id, bytes)| format!("map {id}: {:.2}", *bytes as f64 / f64::from(1 << 20)))
            .collect::<Vec<_>>();
        Ok(Self {
            peak_kib: field("VmHWM:"),
            resident_kib: field("VmRSS:"),
            maps_bytes,
            maps: maps.join(", "),
        })
    }
}
