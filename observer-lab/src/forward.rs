//! A TCP port on the host's loopback forwarded to an address inside a lab namespace: an
//! observer's console listens inside the lab node, where a browser on the host (the demo's
//! user, a test's headless Chromium) cannot reach.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

use crate::in_netns;
use anyhow::{Context, Result};

/// Forwards connections to `listen` (on the host; port 0 picks one) to `target` in
/// `netns`, in the background for as long as the process lives. Answers the host address.
pub fn forward(listen: SocketAddr, netns: &str, target: SocketAddr) -> Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .or_else(|e| match e.kind() {
            // Someone uses the usual port: any free one will do.
            ErrorKind::AddrInUse => TcpListener::bind(SocketAddr::new(listen.ip(), 0)),
            _ => Err(e),
        })
        .with_context(|| format!("binding {listen} to forward to the lab"))?;
    let bound = listener.local_addr()?;
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let netns = netns.clone();
            std::thread::spawn(move || {
                // The socket is made inside the namespace and keeps it.
                let Ok(Ok(server)) = in_netns(&netns, || TcpStream::connect(target)) else {
                    return;
                };
                pipe(client, server);
            });
        }
    });
    Ok(bound)
}

/// Copies both ways until either side closes.
fn pipe(client: TcpStream, server: TcpStream) {
    let (Ok(mut client_read), Ok(mut server_read)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let (mut client_write, mut server_write) = (client, server);
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = upstream.join();
}
