//! ICMP echo for the `ping` kind, when the process may open an ICMP socket: an unprivileged
//! datagram socket (Linux `net.ipv4.ping_group_range` includes the process's group), else a
//! raw socket (root or CAP_NET_RAW). The caller falls back to TCP connects when neither opens.
//!
//! socket2 opens the sockets; they are then used as blocking std sockets with a read timeout
//! on a blocking thread (a handful of packets per round does not need a reactor).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Gap between two echo requests of one round.
const GAP: Duration = Duration::from_millis(100);

/// Sends `count` echo requests to `ip`, each waiting up to `wait` for its reply; returns the
/// round trip of each in ms (None when lost). Errors only when no ICMP socket can be opened.
pub async fn echo(ip: IpAddr, count: u32, wait: Duration) -> io::Result<Vec<Option<f64>>> {
    tokio::task::spawn_blocking(move || echo_blocking(ip, count, wait))
        .await
        .map_err(io::Error::other)?
}

fn open(ip: IpAddr) -> io::Result<(UdpSocket, bool)> {
    let (domain, proto) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => Ok((s.into(), false)),
        Err(_) => Socket::new(domain, Type::RAW, Some(proto)).map(|s| (s.into(), true)),
    }
}

fn echo_blocking(ip: IpAddr, count: u32, wait: Duration) -> io::Result<Vec<Option<f64>>> {
    let (sock, raw) = open(ip)?;
    let id = (std::process::id() as u16) ^ rand::random::<u16>();
    let mut out = Vec::with_capacity(count as usize);
    let mut buf = [0u8; 1500];
    for seq in 0..count as u16 {
        if seq > 0 {
            std::thread::sleep(GAP);
        }
        let sent = Instant::now();
        sock.send_to(&request(ip.is_ipv6(), id, seq), SocketAddr::new(ip, 0))?;
        let mut rtt = None;
        while let Some(left) = wait.checked_sub(sent.elapsed()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let n = match sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            };
            // The kernel rewrites the identifier of datagram ICMP sockets; raw ones see every
            // ICMP packet of the host, so only they need it checked.
            if is_reply(&buf[..n], ip.is_ipv6(), raw, id, seq) {
                rtt = Some(sent.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        out.push(rtt);
    }
    Ok(out)
}

/// An echo request: type, code, checksum, identifier, sequence, 16 bytes of payload.
pub fn request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend(id.to_be_bytes());
    p.extend(seq.to_be_bytes());
    p.extend(b"netqoe-probe-pin");
    // ICMPv6 checksums cover a pseudo-header and are filled in by the kernel.
    if !v6 {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// Whether `packet` is the reply to request `seq` (IPv4 raw sockets include the IP header).
pub fn is_reply(packet: &[u8], v6: bool, raw: bool, id: u16, seq: u16) -> bool {
    let icmp = if raw && !v6 {
        let header = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
        packet.get(header..).unwrap_or(&[])
    } else {
        packet
    };
    if icmp.len() < 8 || icmp[0] != if v6 { 129 } else { 0 } {
        return false;
    }
    let got_seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    got_seq == seq && (!raw || got_id == id)
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_checksum_verifies() {
        let p = request(false, 0x1234, 7);
        assert_eq!(p[0], 8);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
    }

    #[test]
    fn replies_are_matched_by_sequence_and_raw_identifier() {
        let mut reply = request(false, 9, 3);
        reply[0] = 0;
        assert!(
            is_reply(&reply, false, false, 1, 3),
            "datagram: id rewritten by the kernel"
        );
        assert!(
            !is_reply(&reply, false, true, 1, 3),
            "raw: someone else's echo"
        );
        let mut with_ip = vec![0x45u8; 20];
        with_ip.extend(&reply);
        assert!(is_reply(&with_ip, false, true, 9, 3));
        assert!(!is_reply(&with_ip, false, true, 9, 4));
        assert!(
            !is_reply(&request(false, 9, 3), false, false, 9, 3),
            "a request is no reply"
        );
    }
}
