//! DNS answers over real UDP, and the DNS faults.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use netqoe_lab::Faults;
use tokio::net::UdpSocket;

use crate::start_lab;

async fn query(server: SocketAddr, name: &str, t: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(4242)
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(Name::from_str(name).unwrap(), t));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&m.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("dns answer within 5 s")
        .unwrap();
    let r = Message::from_bytes(&buf[..n]).unwrap();
    assert_eq!(r.id(), 4242);
    r
}

#[tokio::test]
async fn zone_resolves_to_loopback_and_others_are_refused() {
    let t = start_lab(Faults::default()).await;
    let d = t.lab.dns_addr();
    for name in ["lab.netqoe.", "api.lab.netqoe.", "a.b.lab.netqoe."] {
        let r = query(d, name, RecordType::A).await;
        assert_eq!(r.response_code(), ResponseCode::NoError, "{name}");
        assert_eq!(r.answers().len(), 1);
        assert_eq!(r.answers()[0].data(), &RData::A(A(Ipv4Addr::LOCALHOST)));
    }
    let r = query(d, "lab.netqoe.", RecordType::AAAA).await;
    assert_eq!(
        r.answers()[0].data(),
        &RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))
    );
    let r = query(d, "example.com.", RecordType::A).await;
    assert_eq!(r.response_code(), ResponseCode::Refused);
    assert!(r.answers().is_empty());
}

#[tokio::test]
async fn dns_faults_delay_and_fail() {
    let t = start_lab(Faults {
        dns_delay_ms: 150,
        ..Faults::default()
    })
    .await;
    let d = t.lab.dns_addr();
    let start = Instant::now();
    let r = query(d, "lab.netqoe.", RecordType::A).await;
    let took = start.elapsed();
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");

    t.lab.set_faults(Faults {
        dns_fail_rate: 1.0,
        ..Faults::default()
    });
    let start = Instant::now();
    for _ in 0..5 {
        let r = query(d, "lab.netqoe.", RecordType::A).await;
        assert_eq!(r.response_code(), ResponseCode::ServFail);
        assert!(r.answers().is_empty());
    }
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "delay cleared"
    );

    // Half the queries fail at rate 0.5 (loose bounds over 200 queries).
    t.lab.set_faults(Faults {
        dns_fail_rate: 0.5,
        ..Faults::default()
    });
    let mut fails = 0;
    for _ in 0..200 {
        if query(d, "x.lab.netqoe.", RecordType::A)
            .await
            .response_code()
            == ResponseCode::ServFail
        {
            fails += 1;
        }
    }
    assert!((50..=150).contains(&fails), "{fails} of 200 failed");
}

#[tokio::test]
async fn hickory_resolver_resolves_the_zone() {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::Resolver;

    let t = start_lab(Faults::default()).await;
    let d = t.lab.dns_addr();
    let group = NameServerConfigGroup::from_ips_clear(&[d.ip()], d.port(), true);
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 1;
    let resolver = Resolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], group),
        TokioConnectionProvider::default(),
    )
    .with_options(opts)
    .build();
    let v4 = resolver.ipv4_lookup("www.lab.netqoe.").await.unwrap();
    assert_eq!(
        v4.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![Ipv4Addr::LOCALHOST]
    );
    let v6 = resolver.ipv6_lookup("lab.netqoe.").await.unwrap();
    assert_eq!(
        v6.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![Ipv6Addr::LOCALHOST]
    );
    assert!(resolver.ipv4_lookup("example.com.").await.is_err());
}
