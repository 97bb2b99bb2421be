//! tcpdump on a lab interface: the independent count the observer is checked against.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use observer_lab::Lab;

/// A running capture.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
    stderr: PathBuf,
}

/// One captured frame: its bytes (possibly snapped) and its length on the wire.
pub struct Frame {
    /// Captured bytes.
    pub data: Vec<u8>,
    /// Original length.
    pub len: u64,
}

impl Frame {
    /// (source, destination, protocol, source port, destination port) of an untagged
    /// IPv4 (no options) or IPv6 (no extension headers) frame; ports are 0 for ICMP.
    pub fn flow(&self) -> Option<(IpAddr, IpAddr, u8, u16, u16)> {
        let d = &self.data;
        let (src, dst, proto, l4) = match (d.get(12)?, d.get(13)?) {
            (0x08, 0x00) => {
                let s: [u8; 4] = d.get(26..30)?.try_into().ok()?;
                let t: [u8; 4] = d.get(30..34)?.try_into().ok()?;
                (IpAddr::from(s), IpAddr::from(t), *d.get(23)?, 34)
            }
            (0x86, 0xdd) => {
                let s: [u8; 16] = d.get(22..38)?.try_into().ok()?;
                let t: [u8; 16] = d.get(38..54)?.try_into().ok()?;
                (IpAddr::from(s), IpAddr::from(t), *d.get(20)?, 54)
            }
            _ => return None,
        };
        let (sport, dport) = match proto {
            6 | 17 | 132 => {
                let p = d.get(l4..l4 + 4)?;
                (
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                )
            }
            _ => (0, 0),
        };
        Some((src, dst, proto, sport, dport))
    }
}

impl Capture {
    /// Starts `tcpdump -i interface filter` in `netns`; returns once it is listening.
    pub fn start(netns: &str, interface: &str, filter: &str, dir: &Path) -> Result<Self> {
        let file = dir.join(format!("{interface}.pcap"));
        let stderr = dir.join(format!("{interface}.tcpdump.log"));
        let child = Lab::command_in(netns, "tcpdump")
            // Immediate mode: without it, packets still in libpcap's current ring block when
            // tcpdump stops are never written.
            .args([
                "-i",
                interface,
                "-n",
                "--immediate-mode",
                "-U",
                "-s",
                "128",
                "-w",
            ])
            .arg(&file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .context("starting tcpdump (installed by `cargo xtask setup`)")?;
        let capture = Self {
            child: Some(child),
            file,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&capture.stderr)
            .unwrap_or_default()
            .contains("listening on")
        {
            if Instant::now() > deadline {
                bail!("tcpdump did not start on {interface}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(capture)
    }

    /// Stops the capture and returns its frames.
    pub fn stop(mut self) -> Result<Vec<Frame>> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            child.wait()?;
        }
        read_pcap(&std::fs::read(&self.file)?)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses a classic little-endian pcap file.
fn read_pcap(bytes: &[u8]) -> Result<Vec<Frame>> {
    if bytes.len() < 24 || bytes[..4] != [0xd4, 0xc3, 0xb2, 0xa1] {
        bail!("not a little-endian pcap file");
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let caplen = u32_at(at + 8) as usize;
        let len = u32_at(at + 12) as u64;
        let data = bytes
            .get(at + 16..at + 16 + caplen)
            .context("truncated pcap record")?
            .to_vec();
        frames.push(Frame { data, len });
        at += 16 + caplen;
    }
    Ok(frames)
}

/// Packets and bytes of the frames of one direction of one flow (ports ignored for ICMP).
pub fn count_flow(
    frames: &[Frame],
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    proto: u8,
) -> (u64, u64) {
    frames
        .iter()
        .filter(|f| {
            f.flow().is_some_and(|(s, d, p, sp, dp)| {
                s == src.0
                    && d == dst.0
                    && p == proto
                    && (matches!(p, 1 | 58) || (sp == src.1 && dp == dst.1))
            })
        })
        .fold((0, 0), |(p, b), f| (p + 1, b + f.len))
}
