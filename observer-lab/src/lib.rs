//! A lab of simulated Kubernetes pods on one simulated node, made of network namespaces.
//!
//! The node is its own namespace (the observer runs inside it, so nothing touches the
//! machine's own network settings). Each pod is a namespace with a veth pair whose host side
//! stays in the node namespace and is routed there the way Calico does it: the pod has its
//! address as a /32 (/128) on `eth0` and a default route via a link-local gateway; the node
//! has a /32 (/128) route to the host-side veth and answers ARP for the gateway by proxy ARP.
//! The node reaches "outside" through an uplink veth into a third namespace.
//!
//! Names carry the process id and a sequence number, so labs in parallel tests never clash.
//! Everything is torn down when the [`Lab`] is dropped, also on panic; labs left behind by a
//! killed process are removed by [`Lab::remove_stale`].

pub mod alloc;
/// A small WebDriver client driving headless Chromium, for tests of the web console.
pub mod browser;
pub mod forward;
pub mod http;
pub mod observer;
pub mod synthetic;
pub mod traffic;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// Prefix of every namespace a lab creates.
pub const NETNS_PREFIX: &str = "obslab-";
/// The node's uplink address; its peer in the outside namespace is [`OUTSIDE_IPV4`].
pub const NODE_UPLINK_IPV4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// An address outside the cluster, in the outside namespace.
pub const OUTSIDE_IPV4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// The node's uplink IPv6 address.
pub const NODE_UPLINK_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);
/// An IPv6 address outside the cluster, in the outside namespace.
pub const OUTSIDE_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 2);

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// One simulated pod.
#[derive(Clone, Debug)]
pub struct Pod {
    /// Short name, unique in the lab.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// The host-side veth, in the node namespace.
    pub host_interface: String,
    /// Pod IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Pod IPv6 address.
    pub ipv6: Ipv6Addr,
}

impl Pod {
    /// The pod as a Kubernetes manifest (one YAML document, `---` after it): `name` in
    /// namespace `namespace` with the label `app: APP`, on the lab's node, at this pod's
    /// IPv4 address.
    pub fn manifest(&self, namespace: &str, name: &str, app: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, \
             labels: {{app: {app}}}}}\n\
             spec: {{nodeName: lab-node, containers: [{{name: c, image: x}}]}}\n\
             status: {{phase: Running, podIP: {}}}\n---\n",
            self.ipv4
        )
    }
}

/// A simulated node with pods. Dropping it removes every namespace it made.
#[derive(Debug)]
pub struct Lab {
    base: String,
    node: String,
    outside: String,
    pods: Vec<Pod>,
    next_host: u8,
    offloads: bool,
}

impl Lab {
    /// Makes a node namespace with forwarding on and an uplink to an outside namespace.
    pub fn new() -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the lab needs root (network namespaces, veth, sysctl)");
        }
        let base = format!(
            "{NETNS_PREFIX}{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Self {
            node: format!("{base}-node"),
            outside: format!("{base}-out"),
            base,
            pods: Vec::new(),
            next_host: 10,
            offloads: true,
        };
        lab.setup_node()
            .with_context(|| format!("building lab node {}", lab.node))?;
        Ok(lab)
    }

    /// Removes namespaces of labs whose process is gone (after a crash or a kill -9).
    pub fn remove_stale() {
        let Ok(entries) = std::fs::read_dir("/run/netns") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }

    fn setup_node(&mut self) -> Result<()> {
        for ns in [&self.node, &self.outside] {
            ip(&["netns", "add", ns])?;
            quiet_ipv6_sysctls(ns)?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let node = self.node.clone();
        let outside = self.outside.clone();
        sysctl(&node, "net.ipv4.ip_forward", "1")?;
        sysctl(&node, "net.ipv6.conf.all.forwarding", "1")?;
        ip(&[
            "-n", &node, "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns",
            &outside,
        ])?;
        let (node4, out4) = (NODE_UPLINK_IPV4.to_string(), OUTSIDE_IPV4.to_string());
        let (node6, out6) = (NODE_UPLINK_IPV6.to_string(), OUTSIDE_IPV6.to_string());
        ip(&[
            "-n",
            &node,
            "addr",
            "add",
            &format!("{node4}/24"),
            "dev",
            "uplink0",
        ])?;
        ip(&[
            "-n",
            &node,
            "addr",
            "add",
            &format!("{node6}/64"),
            "dev",
            "uplink0",
            "nodad",
        ])?;
        ip(&["-n", &node, "link", "set", "uplink0", "up"])?;
        ip(&["-n", &node, "route", "add", "default", "via", &out4])?;
        ip(&["-n", &node, "-6", "route", "add", "default", "via", &out6])?;
        ip(&[
            "-n",
            &outside,
            "addr",
            "add",
            &format!("{out4}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&[
            "-n",
            &outside,
            "addr",
            "add",
            &format!("{out6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ip(&["-n", &outside, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            &outside,
            "route",
            "add",
            "10.244.0.0/16",
            "via",
            &node4,
        ])?;
        ip(&[
            "-n",
            &outside,
            "-6",
            "route",
            "add",
            "fd00:244::/64",
            "via",
            &node6,
        ])?;
        Ok(())
    }

    /// Turns checksum and segmentation offloads off on every lab interface made from now
    /// on, so one skb is one wire packet and captures count what the observer counts.
    pub fn without_offloads(mut self) -> Self {
        self.offloads = false;
        self
    }

    /// The node's namespace (where the observer runs).
    pub fn node_netns(&self) -> &str {
        &self.node
    }

    /// The outside namespace (beyond the node's uplink).
    pub fn outside_netns(&self) -> &str {
        &self.outside
    }

    /// All pods.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// A pod by name.
    pub fn pod(&self, name: &str) -> Result<&Pod> {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .with_context(|| format!("no pod {name} in lab {}", self.base))
    }

    /// Adds a pod named `name` (at most 11 characters) with the next free addresses.
    pub fn add_pod(&mut self, name: &str) -> Result<Pod> {
        if name.is_empty() || name.len() > 11 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("pod name {name:?} must be 1-11 ASCII letters or digits");
        }
        if self.pods.iter().any(|p| p.name == name) {
            bail!("pod {name} exists already");
        }
        let host = self.next_host;
        self.next_host = host.checked_add(1).context("lab is full (245 pods)")?;
        let pod = Pod {
            name: name.to_string(),
            netns: format!("{}-{name}", self.base),
            host_interface: format!("veth{name}"),
            ipv4: Ipv4Addr::new(10, 244, 0, host),
            ipv6: Ipv6Addr::new(0xfd00, 0x244, 0, 0, 0, 0, 0, u16::from(host)),
        };
        self.setup_pod(&pod)
            .with_context(|| format!("building pod {name} in lab {}", self.base))?;
        self.pods.push(pod.clone());
        Ok(pod)
    }

    fn setup_pod(&self, pod: &Pod) -> Result<()> {
        let (node, ns, hif) = (&self.node, &pod.netns, &pod.host_interface);
        ip(&["netns", "add", ns])?;
        quiet_ipv6_sysctls(ns)?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", node, "link", "add", hif, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        // Pod side: its address only, and a default route via a link-local gateway.
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/32", pod.ipv4),
            "dev",
            "eth0",
        ])?;
        let v6 = format!("{}/128", pod.ipv6);
        ip(&["-n", ns, "addr", "add", &v6, "dev", "eth0", "nodad"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ])?;
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ])?;
        ip(&[
            "-n", ns, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
        ])?;
        // Node side: a host route to the pod and proxy ARP for the gateway.
        ip(&["-n", node, "addr", "add", "fe80::1/64", "dev", hif, "nodad"])?;
        ip(&["-n", node, "link", "set", hif, "up"])?;
        sysctl(node, &format!("net.ipv4.conf.{hif}.proxy_arp"), "1")?;
        // Answer at once, as Calico configures it: the default delays proxy ARP replies by up
        // to 0.8 s, and a pod's first burst overflows its unresolved-neighbour queue meanwhile.
        sysctl(node, &format!("net.ipv4.neigh.{hif}.proxy_delay"), "0")?;
        ip(&[
            "-n",
            node,
            "route",
            "add",
            &format!("{}/32", pod.ipv4),
            "dev",
            hif,
        ])?;
        ip(&["-n", node, "-6", "route", "add", &v6, "dev", hif])?;
        if !self.offloads {
            offloads_off(node, hif)?;
            offloads_off(ns, "eth0")?;
        }
        Ok(())
    }

    /// Removes a pod: its namespace goes, and with it both ends of its veth.
    pub fn remove_pod(&mut self, name: &str) -> Result<Pod> {
        let index = self
            .pods
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("no pod {name} in lab {}", self.base))?;
        let pod = self.pods.remove(index);
        ip(&["netns", "del", &pod.netns])?;
        Ok(pod)
    }

    /// Translates `protocol` (`tcp` or `udp`) traffic to `vip:port` into `backend` in the
    /// node, as kube-proxy does for a Service ClusterIP (nftables DNAT at prerouting).
    pub fn add_dnat(
        &self,
        protocol: &str,
        vip: std::net::IpAddr,
        port: u16,
        backend: std::net::SocketAddr,
    ) -> Result<()> {
        let node = &self.node;
        let nft = |args: &str| -> Result<()> {
            run(Lab::command_in(node, "nft").arg(args))?;
            Ok(())
        };
        nft("add table inet obslab")?;
        nft("add chain inet obslab prerouting { type nat hook prerouting priority -100 ; }")?;
        let (family, target) = match backend {
            std::net::SocketAddr::V4(b) => ("ip", b.to_string()),
            std::net::SocketAddr::V6(b) => ("ip6", b.to_string()),
        };
        nft(&format!(
            "add rule inet obslab prerouting {family} daddr {vip} {protocol} dport {port} dnat {family} to {target}"
        ))
    }

    /// A command that runs `program` inside namespace `netns`.
    pub fn command_in(netns: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns, program]);
        command
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pod in &self.pods {
            let _ = ip(&["netns", "del", &pod.netns]);
        }
        let _ = ip(&["netns", "del", &self.outside]);
        let _ = ip(&["netns", "del", &self.node]);
    }
}

/// Runs `f` on a thread that has entered namespace `netns`. Sockets made there stay in
/// that namespace for their whole life, wherever they are used afterwards.
pub fn in_netns<R: Send>(netns: &str, f: impl FnOnce() -> R + Send) -> Result<R> {
    let file = std::fs::File::open(format!("/run/netns/{netns}"))
        .with_context(|| format!("opening network namespace {netns}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: a valid namespace fd; setns only affects this new thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!(
                        "entering network namespace {netns}: {}",
                        std::io::Error::last_os_error()
                    );
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread in {netns} panicked"))?
    })
}

/// Runs `ip` with arguments; fails with its stderr.
pub fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

fn sysctl(netns: &str, key: &str, value: &str) -> Result<()> {
    run(Lab::command_in(netns, "sysctl").args(["-q", "-w", &format!("{key}={value}")]))?;
    Ok(())
}

fn quiet_ipv6_sysctls(netns: &str) -> Result<()> {
    // No duplicate address detection: addresses are usable at once.
    for key in ["all", "default"] {
        sysctl(netns, &format!("net.ipv6.conf.{key}.accept_dad"), "0")?;
    }
    Ok(())
}

fn offloads_off(netns: &str, interface: &str) -> Result<()> {
    run(Lab::command_in(netns, "ethtool").args([
        "-K", interface, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off",
    ]))?;
    Ok(())
}

/// Runs a command; a non-zero exit is an error carrying the command line and stderr.
pub fn run(command: &mut Command) -> Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?} (is it installed? `cargo xtask setup`)"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}
