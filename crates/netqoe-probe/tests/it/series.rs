//! What each event says about its series and context: probe_kind per kind, ip_version per
//! family, the dns target as the queried name, the resolver actually used, and throughput
//! from `throughput_url` on a connection of its own to a server that closes after answering.

use netqoe_lab::{Lab, LabConfig};
use netqoe_model::ProbeKind;
use netqoe_probe::config::parse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn lab(dir: &std::path::Path) -> (Lab, CancellationToken) {
    let token = CancellationToken::new();
    let lab = netqoe_lab::start(LabConfig::loopback(dir.to_path_buf()), token.clone())
        .await
        .unwrap();
    (lab, token)
}

/// Whether ::1 can be bound here (IPv6 loopback exists).
fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_names_its_series() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, stop) = lab(dir.path()).await;
    let v6 = ipv6_loopback();
    // a TCP port open on both families when IPv6 loopback exists
    let listener = if v6 {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        sock.set_only_v6(false).unwrap();
        sock.bind(&"[::]:0".parse::<std::net::SocketAddr>().unwrap().into())
            .unwrap();
        sock.listen(64).unwrap();
        std::net::TcpListener::from(sock)
    } else {
        eprintln!("no IPv6 loopback: ip_version = \"both\" checked for IPv4 only");
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    };
    let port = listener.local_addr().unwrap().port();
    let dns = lab.dns_addr();
    let cfg = format!(
        "timeout = \"5s\"\n\
         [[targets]]\nurl = \"http://www.lab.netqoe:{http}/\"\nresolver = \"{dns}\"\n\
         [[targets]]\nhost = \"www.lab.netqoe\"\nport = {port}\nkind = \"tcp\"\nresolver = \"{dns}\"\nip_version = \"both\"\n\
         [[targets]]\nhost = \"www.lab.netqoe\"\nkind = \"dns\"\nresolver = \"{dns}\"\n\
         [[targets]]\nurl = \"http://www.lab.netqoe:{http}/\"\nkind = \"dns\"\nresolver = \"{dns}\"\n\
         [[targets]]\nhost = \"www.lab.netqoe\"\nport = {port}\nkind = \"ping\"\ncount = 2\nresolver = \"{dns}\"\n",
        http = lab.http_addr().port(),
    );
    let config = parse(&cfg).unwrap();
    let events = netqoe_probe::measure_once(&config, "series-test").await;
    let summary: Vec<(ProbeKind, String, Option<u8>)> = events
        .iter()
        .map(|e| {
            let ctx = e.network_context.as_ref().unwrap();
            (e.probe_kind, e.target.clone(), ctx.ip_version)
        })
        .collect();
    let http = format!("http://www.lab.netqoe:{}/", lab.http_addr().port());
    let tcp = format!("www.lab.netqoe:{port}");
    assert_eq!(
        summary,
        vec![
            (ProbeKind::Http, http, Some(4)),
            (ProbeKind::Tcp, tcp.clone(), Some(4)),
            (ProbeKind::Tcp, tcp.clone(), Some(6)),
            (ProbeKind::Dns, "www.lab.netqoe".into(), Some(4)),
            (ProbeKind::Dns, "www.lab.netqoe".into(), Some(4)),
            (ProbeKind::Ping, tcp, Some(4)),
        ]
    );
    for (i, ev) in events.iter().enumerate() {
        let ctx = ev.network_context.as_ref().unwrap();
        assert_eq!(
            ctx.resolver.as_deref(),
            Some(dns.to_string().as_str()),
            "event {i}"
        );
        // every event passes ingest's validator as it is
        let value = serde_json::to_value(ev).unwrap();
        assert!(
            netqoe_model::validate(&value).is_ok(),
            "event {i} is refused: {:?}",
            netqoe_model::validate(&value).err()
        );
        if i == 2 && !v6 {
            continue; // measured over a family this host lacks: a tcp failure
        }
        assert!(ev.is_success(), "event {i}: {:?}", ev.error_message);
    }
    let v6_remote = events[2]
        .network_context
        .as_ref()
        .unwrap()
        .remote_ip
        .clone();
    assert_eq!(v6_remote.as_deref(), Some("::1"));
    assert_eq!(
        events[1]
            .network_context
            .as_ref()
            .unwrap()
            .remote_ip
            .as_deref(),
        Some("127.0.0.1")
    );
    stop.cancel();
}

/// The first nameserver of /etc/resolv.conf, as `ip:port`.
fn system_nameserver() -> Option<String> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines().find_map(|l| {
        let ip: std::net::IpAddr = l.strip_prefix("nameserver")?.trim().parse().ok()?;
        Some(std::net::SocketAddr::new(ip, 53).to_string())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_resolver_is_named_not_system() {
    let Some(want) = system_nameserver() else {
        eprintln!("no nameserver in /etc/resolv.conf: nothing to check");
        return;
    };
    // the lookup may fail on a host without DNS: the resolver asked is reported either way
    let cfg = "[[targets]]\nhost = \"example.invalid\"\nkind = \"dns\"\ntimeout = \"1s\"\n";
    let ev = netqoe_probe::measure(&parse(cfg).unwrap().targets[0], "it").await;
    assert_eq!(ev.target, "example.invalid");
    assert_eq!(
        ev.network_context.unwrap().resolver.as_deref(),
        Some(want.as_str())
    );
}

/// A server answering every request with `body` in HTTP/1.0 style and closing the connection
/// after the response; with `length`, it sends Content-Length, else the body ends at close.
async fn closing_server(body: usize, length: bool) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = if length {
                    format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {body}\r\nConnection: close\r\n\r\n"
                    )
                } else {
                    "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n".to_string()
                };
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&vec![b'x'; body]).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn throughput_comes_from_its_own_host_even_when_it_closes_after_answering() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, stop) = lab(dir.path()).await;
    for length in [true, false] {
        let other = closing_server(300_000, length).await;
        // the target is the lab (HTTPS, by name); throughput comes from another host and port
        let cfg = format!(
            "[[targets]]\nurl = \"https://www.lab.netqoe:{}/\"\nresolver = \"{}\"\nca_file = \"{}\"\n\
             throughput_url = \"http://{other}/big\"\n",
            lab.https_addr().port(),
            lab.dns_addr(),
            lab.ca_cert_path().display(),
        );
        let ev = netqoe_probe::measure(&parse(&cfg).unwrap().targets[0], "it").await;
        assert!(ev.is_success(), "length {length}: {:?}", ev.error_message);
        assert_eq!(ev.http_status, Some(200));
        assert_eq!(ev.bytes, Some(300_000), "length {length}");
        assert!(ev.throughput_kbps.unwrap() > 0.0);

        // the target itself closing after its response keeps its figures too
        let cfg = format!("[[targets]]\nurl = \"http://{other}/\"\n");
        let ev = netqoe_probe::measure(&parse(&cfg).unwrap().targets[0], "it").await;
        assert!(ev.is_success(), "length {length}: {:?}", ev.error_message);
        assert_eq!(ev.bytes, Some(300_000));
        assert!(ev.throughput_kbps.unwrap() > 0.0);
    }
    stop.cancel();
}
