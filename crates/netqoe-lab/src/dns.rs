//! UDP DNS server of the lab: every name in the zone resolves to loopback, with DNS faults.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::faults::{roll, FaultState};
use crate::metrics as m;

const TTL: u32 = 5;

/// Answers queries on `socket` until `shutdown`.
pub(crate) async fn serve(
    socket: UdpSocket,
    zone: Name,
    faults: FaultState,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let zone = Arc::new(zone);
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(error) => {
                    debug!(error = %error, "dns receive failed");
                    continue;
                }
            },
        };
        let packet = buf[..len].to_vec();
        let f = faults.get();
        let socket = socket.clone();
        let zone = zone.clone();
        tokio::spawn(async move {
            let Some((reply, rcode)) = answer(&packet, &zone, roll(f.dns_fail_rate)) else {
                metrics::counter!(m::DNS_QUERIES_TOTAL, "rcode" => "dropped").increment(1);
                return;
            };
            if f.dns_delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(f.dns_delay_ms)).await;
            }
            metrics::counter!(m::DNS_QUERIES_TOTAL, "rcode" => rcode).increment(1);
            if let Err(error) = socket.send_to(&reply, peer).await {
                debug!(error = %error, "dns send failed");
            }
        });
    }
}

/// Builds the reply to one query packet; `None` when the packet is not a parseable query.
pub(crate) fn answer(packet: &[u8], zone: &Name, fail: bool) -> Option<(Vec<u8>, &'static str)> {
    let query = match Message::from_bytes(packet) {
        Ok(q) => q,
        Err(_) => {
            // Answer FORMERR when at least the header id can be read.
            if packet.len() < 2 {
                return None;
            }
            let mut resp = Message::new();
            resp.set_id(u16::from_be_bytes([packet[0], packet[1]]))
                .set_message_type(MessageType::Response)
                .set_response_code(ResponseCode::FormErr);
            return resp.to_vec().ok().map(|v| (v, "formerr"));
        }
    };
    if query.message_type() != MessageType::Query {
        return None;
    }
    let mut resp = Message::new();
    resp.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(false);
    resp.add_queries(query.queries().to_vec());
    let rcode;
    if query.op_code() != OpCode::Query || query.queries().len() != 1 {
        resp.set_response_code(ResponseCode::NotImp);
        rcode = "notimp";
    } else if fail {
        resp.set_response_code(ResponseCode::ServFail);
        rcode = "servfail";
    } else {
        let q = &query.queries()[0];
        let name = q.name();
        if !zone.zone_of(name) {
            resp.set_response_code(ResponseCode::Refused);
            rcode = "refused";
        } else {
            resp.set_authoritative(true);
            resp.set_response_code(ResponseCode::NoError);
            rcode = "noerror";
            let rdata = match q.query_type() {
                RecordType::A => Some(RData::A(A(Ipv4Addr::LOCALHOST))),
                RecordType::AAAA => Some(RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
                _ => None,
            };
            if let Some(rdata) = rdata {
                resp.add_answer(Record::from_rdata(name.clone(), TTL, rdata));
            }
        }
    }
    resp.to_vec().ok().map(|v| (v, rcode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use std::str::FromStr;

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7)
            .set_message_type(MessageType::Query)
            .set_recursion_desired(true);
        m.add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn ask(name: &str, t: RecordType, fail: bool) -> Message {
        let zone = Name::from_str("lab.netqoe.").unwrap();
        let (bytes, _) = answer(&query(name, t), &zone, fail).unwrap();
        Message::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn zone_names_resolve_to_loopback() {
        for name in ["lab.netqoe.", "a.b.lab.netqoe.", "WWW.Lab.Netqoe."] {
            let r = ask(name, RecordType::A, false);
            assert_eq!(r.id(), 7);
            assert_eq!(r.response_code(), ResponseCode::NoError);
            assert_eq!(
                r.answers()[0].data(),
                &RData::A(A(Ipv4Addr::LOCALHOST)),
                "{name}"
            );
        }
        let r = ask("x.lab.netqoe.", RecordType::AAAA, false);
        assert_eq!(
            r.answers()[0].data(),
            &RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))
        );
    }

    #[test]
    fn outside_zone_is_refused_and_fail_is_servfail() {
        assert_eq!(
            ask("example.com.", RecordType::A, false).response_code(),
            ResponseCode::Refused
        );
        assert_eq!(
            ask("netqoe.", RecordType::A, false).response_code(),
            ResponseCode::Refused
        );
        let r = ask("lab.netqoe.", RecordType::A, true);
        assert_eq!(r.response_code(), ResponseCode::ServFail);
        assert!(r.answers().is_empty());
    }
}
