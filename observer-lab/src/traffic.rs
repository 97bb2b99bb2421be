//! Traffic between lab pods, made with real sockets inside the pods' namespaces.

use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{Lab, Pod, in_netns, run};

/// A TCP connection client → server carrying `up` bytes and `down` bytes back, closed with
/// FIN both ways. Returns (client port, server port).
pub fn tcp_exchange(
    client: &Pod,
    server: &Pod,
    server_ip: IpAddr,
    up: usize,
    down: usize,
) -> Result<(u16, u16)> {
    let listener = in_netns(&server.netns, || TcpListener::bind((server_ip, 0)))??;
    let port = listener.local_addr()?.port();
    let client_port = exchange(client, listener, SocketAddr::new(server_ip, port), up, down)?;
    Ok((client_port, port))
}

/// Like [`tcp_exchange`], with a server listening on `listen` in namespace `server_netns`
/// and a client connecting to `connect` (a Service ClusterIP that the node translates to
/// `listen`, say). Returns the client port.
pub fn tcp_exchange_via(
    client: &Pod,
    server_netns: &str,
    listen: SocketAddr,
    connect: SocketAddr,
    up: usize,
    down: usize,
) -> Result<u16> {
    let listener = in_netns(server_netns, || TcpListener::bind(listen))??;
    exchange(client, listener, connect, up, down)
}

fn exchange(
    client: &Pod,
    listener: TcpListener,
    connect: SocketAddr,
    up: usize,
    down: usize,
) -> Result<u16> {
    let serving = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0; up];
        s.read_exact(&mut buf)?;
        s.write_all(&vec![7; down])?;
        s.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)?;
        Ok(())
    });
    let mut stream = in_netns(&client.netns, || TcpStream::connect(connect))?
        .with_context(|| format!("connecting {} -> {connect}", client.name))?;
    let client_port = stream.local_addr()?.port();
    stream.write_all(&vec![1; up])?;
    let mut buf = vec![0; down];
    stream.read_exact(&mut buf)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    stream.shutdown(Shutdown::Write)?;
    drop(stream);
    serving
        .join()
        .map_err(|_| anyhow::anyhow!("TCP server thread panicked"))??;
    Ok(client_port)
}

/// `count` datagrams client → server, each echoed back. Returns (client port, server port).
pub fn udp_exchange(
    client: &Pod,
    server: &Pod,
    server_ip: IpAddr,
    count: usize,
) -> Result<(u16, u16)> {
    let any = unspecified(server_ip);
    let srv = in_netns(&server.netns, || UdpSocket::bind((server_ip, 0)))??;
    let port = srv.local_addr()?.port();
    let cli = in_netns(&client.netns, || UdpSocket::bind((any, 0)))??;
    cli.set_read_timeout(Some(Duration::from_secs(5)))?;
    srv.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 2048];
    for i in 0..count {
        cli.send_to(&vec![i as u8; 100 + i * 10], (server_ip, port))?;
        let (n, from) = srv.recv_from(&mut buf).context("UDP echo server")?;
        srv.send_to(&buf[..n], from)?;
        cli.recv_from(&mut buf).context("UDP echo client")?;
    }
    Ok((cli.local_addr()?.port(), port))
}

/// `ping -c count` from a pod.
pub fn ping(from: &Pod, to: IpAddr, count: u32) -> Result<()> {
    run(Lab::command_in(&from.netns, "ping").args([
        "-n",
        "-q",
        "-c",
        &count.to_string(),
        "-i",
        "0.2",
        "-W",
        "2",
        &to.to_string(),
    ]))?;
    Ok(())
}

/// The unspecified address of `ip`'s family.
pub fn unspecified(ip: IpAddr) -> IpAddr {
    if ip.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    }
}
