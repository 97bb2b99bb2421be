//! `cargo xtask lab`: a lab to experiment in.

use anyhow::Result;
use observer_lab::Lab;

/// Builds a node with `pods` pods, prints how to use it, and waits for Enter.
pub fn run(pods: usize) -> Result<()> {
    crate::setup::run()?;
    Lab::remove_stale();
    let mut lab = Lab::new()?;
    for i in 0..pods {
        lab.add_pod(&format!("pod{i}"))?;
    }
    println!("node namespace: {}", lab.node_netns());
    println!("outside namespace: {}", lab.outside_netns());
    for pod in lab.pods() {
        println!(
            "pod {:<6} netns {:<28} {} {} host side {}",
            pod.name, pod.netns, pod.ipv4, pod.ipv6, pod.host_interface
        );
    }
    println!(
        "\nrun the observer:  ip netns exec {} target/debug/observer run",
        lab.node_netns()
    );
    println!("press Enter to tear the lab down");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}
