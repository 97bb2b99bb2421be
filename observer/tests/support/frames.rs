//! Hand-made Ethernet frames, sent from inside a pod through an AF_PACKET socket: SCTP
//! (this kernel has no SCTP sockets), fragments, and truncated or malformed headers.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};

/// EtherTypes.
pub const IPV4: u16 = 0x0800;
/// EtherTypes.
pub const IPV6: u16 = 0x86dd;

/// Ethernet frame to the broadcast address (the node sees it at TC ingress of the host-side
/// veth and then drops it: it is never routed anywhere).
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 header (no checksum: nothing validates it before the hook) followed by `payload`.
/// `ihl_words` other than 5 makes room for (zeroed) options or lies about them.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    fragment_offset: u16,
    ihl_words: u8,
    payload: &[u8],
) -> Vec<u8> {
    let options = (usize::from(ihl_words) * 4).saturating_sub(20);
    let total = (20 + options + payload.len()) as u16;
    let mut h = vec![0x40 | (ihl_words & 0x0f), 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&(fragment_offset & 0x1fff).to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend(std::iter::repeat_n(0, options));
    h.extend_from_slice(payload);
    h
}

/// IPv6 header with `next` header followed by `payload` (extension headers included).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// UDP header and payload (checksum zero).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// SCTP common header with one INIT chunk.
pub fn sctp(sport: u16, dport: u16) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&[0; 8]); // verification tag, checksum
    s.extend_from_slice(&[1, 0, 0, 20]); // INIT, flags, length
    s.extend_from_slice(&[0xab; 16]);
    s
}

/// Sends frames out of `interface` of the calling thread's network namespace.
pub fn send(interface: &str, frames: &[Vec<u8>]) -> Result<()> {
    let name = std::ffi::CString::new(interface)?;
    // SAFETY: valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("no interface {interface}");
    }
    // SAFETY: plain socket call; protocol 0 means the socket receives nothing.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let mut result = Ok(());
    for frame in frames {
        // SAFETY: buffer and address are valid for the given lengths.
        let sent = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent != frame.len() as isize {
            result = Err(anyhow::anyhow!(
                "sending a {}-byte frame: {}",
                frame.len(),
                std::io::Error::last_os_error()
            ));
            break;
        }
    }
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    result
}
