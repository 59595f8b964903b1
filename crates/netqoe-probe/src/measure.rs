//! Measurement engine: DNS, TCP, TLS and HTTP phases timed on one connection per measurement
//! (throughput from `throughput_url` on a second connection, to that URL's own host).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use netqoe_model::{ErrorStage, Event, NetworkContext, PingStats, ProbeKind, Timings, TlsInfo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{IpVersion, Kind, Target};

/// A failed phase: the stage and a message.
struct Fail(ErrorStage, String);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An error message cut to the schema's limit (`MAX_ERROR_MESSAGE_CHARS` characters, the
/// last one an ellipsis when cut), so that a long error never gets its event rejected.
pub fn clip(msg: String) -> String {
    const MAX: usize = netqoe_model::MAX_ERROR_MESSAGE_CHARS;
    if msg.chars().count() <= MAX {
        return msg;
    }
    let mut cut: String = msg.chars().take(MAX - 1).collect();
    cut.push('…');
    cut
}

/// Measures one target once and returns its event (a failure is still an event).
pub async fn measure(target: &Target, client_id: &str) -> Event {
    let mut ev = Event::new(
        uuid::Uuid::now_v7(),
        client_id,
        netqoe_model::now_ms(),
        &target.name,
    );
    ev.probe_kind = match target.kind {
        Kind::Http => ProbeKind::Http,
        Kind::Tcp => ProbeKind::Tcp,
        Kind::Dns => ProbeKind::Dns,
        Kind::Ping => ProbeKind::Ping,
    };
    // every event says its address family: with ip_version = "both" the two are two series
    let mut ctx = NetworkContext {
        ip_version: Some(if target.ip_version == IpVersion::V6 {
            6
        } else {
            4
        }),
        ..Default::default()
    };
    let mut timings = Timings::default();
    let start = Instant::now();
    let res = tokio::time::timeout(
        target.timeout,
        run_phases(target, &mut ev, &mut timings, &mut ctx),
    )
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(Fail(stage, msg))) => {
            ev.error_stage = Some(stage);
            ev.error_message = Some(clip(msg));
        }
        Err(_) => {
            ev.error_stage = Some(ErrorStage::Timeout);
            ev.error_message = Some(format!("no result within {:?}", target.timeout));
        }
    }
    timings.total_ms = Some(ms(start.elapsed()));
    if let Some(local) = ctx
        .local_ip
        .as_deref()
        .and_then(|s| s.parse::<IpAddr>().ok())
    {
        let (itype, vpn) = crate::netctx::interface_for(local);
        ctx.interface_type = Some(itype);
        ctx.vpn_enabled = Some(vpn);
    }
    ev.timings = Some(timings);
    ev.network_context = Some(ctx);
    ev
}

async fn run_phases(
    t: &Target,
    ev: &mut Event,
    timings: &mut Timings,
    ctx: &mut NetworkContext,
) -> Result<(), Fail> {
    let t0 = Instant::now();
    let ip = resolve(t, &t.host, &mut ctx.resolver).await?;
    if t.host.parse::<IpAddr>().is_err() {
        timings.dns_ms = Some(ms(t0.elapsed()));
    }
    ctx.remote_ip = Some(ip.to_string());
    if t.kind == Kind::Dns {
        return Ok(());
    }
    let addr = SocketAddr::new(ip, t.port);
    if t.kind == Kind::Ping {
        let (stats, icmp) = ping(addr, t.count, ctx).await;
        let lost = stats.received == Some(0);
        ev.ping = Some(stats);
        if lost {
            let how = if icmp {
                "ICMP echo reply from"
            } else {
                "TCP connect to"
            };
            return Err(Fail(ErrorStage::Tcp, format!("no {how} {addr} succeeded")));
        }
        return Ok(());
    }
    let t1 = Instant::now();
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| Fail(ErrorStage::Tcp, format!("connect {addr}: {e}")))?;
    timings.tcp_ms = Some(ms(t1.elapsed()));
    ctx.local_ip = tcp.local_addr().ok().map(|a| a.ip().to_string());
    let _ = tcp.set_nodelay(true);
    if t.kind == Kind::Tcp {
        return Ok(());
    }
    if t.scheme == "https" {
        let t2 = Instant::now();
        let tls = tls_connect(t, &t.host, tcp).await?;
        timings.tls_ms = Some(ms(t2.elapsed()));
        let (_, conn) = tls.get_ref();
        ev.tls = Some(TlsInfo {
            version: conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .map(str::to_string),
            cert_not_after_ms: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::cert::not_after_ms(c.as_ref())),
        });
        http_exchange(t, tls, ev, timings).await
    } else {
        http_exchange(t, tcp, ev, timings).await
    }
}

/// Resolves a host with a fresh, cache-less resolver (an IP literal is returned as is) and
/// records in `used` the server asked: the target's `resolver`, else the first nameserver of
/// /etc/resolv.conf as hickory reads it (asked first; the others only if it fails).
async fn resolve(t: &Target, host: &str, used: &mut Option<String>) -> Result<IpAddr, Fail> {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
    use hickory_resolver::name_server::TokioConnectionProvider;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let dns_err = |e: String| Fail(ErrorStage::Dns, format!("resolve {host}: {e}"));
    let (config, mut opts, server) = match t.resolver {
        Some(server) => {
            let group = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
            (
                ResolverConfig::from_parts(None, vec![], group),
                ResolverOpts::default(),
                server.to_string(),
            )
        }
        None => {
            let (config, opts) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| dns_err(format!("system resolver configuration: {e}")))?;
            let first = config
                .name_servers()
                .first()
                .map(|ns| ns.socket_addr.to_string())
                .ok_or_else(|| dns_err("no nameserver in /etc/resolv.conf".into()))?;
            (config, opts, first)
        }
    };
    *used = Some(server);
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.num_concurrent_reqs = 1;
    opts.timeout = t.timeout;
    let resolver =
        hickory_resolver::Resolver::builder_with_config(config, TokioConnectionProvider::default())
            .with_options(opts)
            .build();
    let name = if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    };
    let ip = match t.ip_version {
        IpVersion::V6 => resolver
            .ipv6_lookup(name)
            .await
            .map_err(|e| dns_err(e.to_string()))?
            .iter()
            .next()
            .map(|a| IpAddr::V6(a.0)),
        _ => resolver
            .ipv4_lookup(name)
            .await
            .map_err(|e| dns_err(e.to_string()))?
            .iter()
            .next()
            .map(|a| IpAddr::V4(a.0)),
    };
    ip.ok_or_else(|| dns_err("no address records".into()))
}

/// `count` ICMP echoes when an ICMP socket can be opened, else `count` TCP connects to `addr`;
/// also says whether ICMP was used.
async fn ping(addr: SocketAddr, count: u32, ctx: &mut NetworkContext) -> (PingStats, bool) {
    match crate::icmp::echo(addr.ip(), count, Duration::from_secs(1)).await {
        Ok(replies) => {
            let rtts: Vec<f64> = replies.into_iter().flatten().collect();
            return (ping_stats(count, &rtts), true);
        }
        Err(error) => {
            tracing::debug!(%error, "no ICMP socket; pinging with TCP connects");
        }
    }
    let mut rtts = Vec::new();
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let t = Instant::now();
        if let Ok(s) = TcpStream::connect(addr).await {
            rtts.push(ms(t.elapsed()));
            ctx.local_ip = s.local_addr().ok().map(|a| a.ip().to_string());
        }
    }
    (ping_stats(count, &rtts), false)
}

fn ping_stats(count: u32, rtts: &[f64]) -> PingStats {
    let mut p = PingStats {
        sent: Some(count),
        received: Some(rtts.len() as u32),
        ..Default::default()
    };
    if !rtts.is_empty() {
        p.rtt_min_ms = rtts.iter().cloned().reduce(f64::min);
        p.rtt_max_ms = rtts.iter().cloned().reduce(f64::max);
        p.rtt_avg_ms = Some(rtts.iter().sum::<f64>() / rtts.len() as f64);
        p.jitter_ms = Some(jitter(rtts));
    }
    p
}

/// Mean absolute difference between consecutive round trips.
pub fn jitter(rtts: &[f64]) -> f64 {
    if rtts.len() < 2 {
        return 0.0;
    }
    rtts.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (rtts.len() - 1) as f64
}

/// TLS handshake with `host` (the target's `ca_file` and `insecure_skip_verify` apply).
async fn tls_connect(
    t: &Target,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Fail> {
    let cfg = crate::tls::client_config(t.ca_file.as_deref(), t.insecure_skip_verify)
        .map_err(|e| Fail(ErrorStage::Tls, e.to_string()))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| Fail(ErrorStage::Tls, format!("server name {host}: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| Fail(ErrorStage::Tls, format!("handshake with {host}: {e}")))
}

/// The request of an http target on its connection, then throughput (from the same body, or
/// from `throughput_url` on a connection of its own).
async fn http_exchange<S>(
    t: &Target,
    stream: S,
    ev: &mut Event,
    timings: &mut Timings,
) -> Result<(), Fail>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let authority = authority(&t.scheme, &t.host, t.port);
    let (status, body_ms, bytes) =
        exchange(t, stream, &t.method, &authority, &t.path, timings).await?;
    ev.http_status = Some(status);
    if let Some(expect) = t.expect_status {
        if status != expect {
            return Err(Fail(
                ErrorStage::Http,
                format!("status {status}, expected {expect}"),
            ));
        }
    }
    let (bytes, body_ms) = match &t.throughput_url {
        None => (bytes, body_ms),
        Some(url) => throughput(t, url)
            .await
            .map_err(|Fail(_, m)| Fail(ErrorStage::Throughput, format!("{url}: {m}")))?,
    };
    ev.bytes = Some(bytes);
    ev.throughput_kbps = kbps(bytes, body_ms);
    Ok(())
}

/// Throughput of `bytes` received in `body_ms`, in kbit/s (1000 bit/s). None when nothing
/// was timed, or when the rate is beyond the schema's bound (a small body that arrived with
/// the headers takes microseconds to read: that measures a buffer, not the network).
pub fn kbps(bytes: u64, body_ms: f64) -> Option<f64> {
    if body_ms <= 0.0 || bytes == 0 {
        return None;
    }
    let kbps = bytes as f64 * 8.0 / (body_ms / 1000.0) / 1000.0;
    (kbps <= netqoe_model::MAX_THROUGHPUT_KBPS).then_some(kbps)
}

/// The Host header: `host`, with the port unless it is the scheme's default.
fn authority(scheme: &str, host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if (scheme == "https" && port == 443) || (scheme == "http" && port == 80) {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// GETs `url` on a new connection to its own host (resolved like the target, over the
/// target's address family and resolver; TLS trusting the target's `ca_file`): body bytes and
/// transfer time. A server that closes the connection after its response is fine.
async fn throughput(t: &Target, url: &str) -> Result<(u64, f64), Fail> {
    let fail = |m: String| Fail(ErrorStage::Throughput, m);
    let uri: http::Uri = url.parse().map_err(|e| fail(format!("{e}")))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_string();
    let host = uri
        .host()
        .ok_or_else(|| fail("no host".into()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let ip = resolve(t, &host, &mut None).await?;
    let addr = SocketAddr::new(ip, port);
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| fail(format!("connect {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let authority = authority(&scheme, &host, port);
    let mut scratch = Timings::default();
    let (_, body_ms, bytes) = if scheme == "https" {
        let tls = tls_connect(t, &host, tcp).await?;
        exchange(t, tls, "GET", &authority, &path, &mut scratch).await?
    } else {
        exchange(t, tcp, "GET", &authority, &path, &mut scratch).await?
    };
    Ok((bytes, body_ms))
}

/// One HTTP/1.1 request on a fresh connection over `stream`: status, body transfer time and
/// body bytes.
async fn exchange<S>(
    t: &Target,
    stream: S,
    method: &str,
    authority: &str,
    path: &str,
    timings: &mut Timings,
) -> Result<(u16, f64, u64), Fail>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Fail(ErrorStage::Http, e.to_string()))?;
    let conn_task = tokio::spawn(conn);
    let result = fetch(&mut sender, t, method, authority, path, timings).await;
    conn_task.abort();
    result
}

/// One request on the connection: returns status, body transfer time and body bytes.
async fn fetch(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    t: &Target,
    method: &str,
    authority: &str,
    path: &str,
    timings: &mut Timings,
) -> Result<(u16, f64, u64), Fail> {
    let herr = |e: String| Fail(ErrorStage::Http, e);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority)
        .header(
            http::header::USER_AGENT,
            concat!("netqoe-probe/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in &t.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| herr(e.to_string()))?;
    sender.ready().await.map_err(|e| herr(e.to_string()))?;
    let t0 = Instant::now();
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| herr(e.to_string()))?;
    timings.http_ttfb_ms = Some(ms(t0.elapsed()));
    let status = resp.status().as_u16();
    let t1 = Instant::now();
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| herr(format!("body: {e}")))?;
        if let Some(d) = frame.data_ref() {
            bytes += d.len() as u64;
        }
    }
    let transfer = ms(t1.elapsed());
    timings.transfer_ms = Some(transfer);
    Ok((status, transfer, bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_error_messages_are_cut_to_the_schema_limit() {
        let long = "é".repeat(5000);
        let cut = super::clip(long);
        assert_eq!(cut.chars().count(), netqoe_model::MAX_ERROR_MESSAGE_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(super::clip("short".into()), "short");
    }

    #[test]
    fn throughput_stays_within_the_schema_bound() {
        assert_eq!(super::kbps(125_000, 1000.0), Some(1000.0));
        assert_eq!(super::kbps(0, 5.0), None);
        assert_eq!(super::kbps(1000, 0.0), None);
        // 64 KiB read from a buffer in a microsecond: not a network rate
        assert_eq!(super::kbps(65_536, 0.001), None);
        let at_bound = super::kbps(12_500_000_000, 1000.0).expect("100 Gbit/s is kept");
        assert_eq!(at_bound, netqoe_model::MAX_THROUGHPUT_KBPS);
    }

    #[test]
    fn jitter_is_mean_consecutive_difference() {
        assert_eq!(super::jitter(&[10.0, 12.0, 9.0]), 2.5);
        assert_eq!(super::jitter(&[10.0]), 0.0);
    }
}
