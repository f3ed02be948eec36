//! MX and address lookups for delivery against a small authoritative DNS responder started
//! by the test, and delivery that follows them to a real SMTP peer.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hisp::config::Dns;
use hisp::smtp::client::{Resolve, next_hops};
use hisp::smtp::mx::HickoryMx;
use tokio::net::UdpSocket;

const MX: u16 = 15;
const A: u16 = 1;

/// The answers the responder knows: (name, type) → rdata list; `None` for NXDOMAIN.
fn answers(name: &str, qtype: u16) -> Option<Vec<Vec<u8>>> {
    let mx = |pref: u16, host: &str| {
        let mut r = pref.to_be_bytes().to_vec();
        r.extend(encode_name(host));
        r
    };
    match (name, qtype) {
        ("c.example", MX) => Some(vec![mx(20, "mx2.c.example"), mx(10, "mx1.c.example")]),
        ("mx1.c.example", A) => Some(vec![vec![127, 0, 0, 1]]),
        ("mx2.c.example", A) => Some(vec![vec![127, 0, 0, 2]]),
        ("nomx.example", A) => Some(vec![vec![127, 0, 0, 3]]),
        ("gone.example", _) => None,
        _ => Some(Vec::new()),
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Answers one query packet (no compression in questions, which resolvers never use).
fn respond(query: &[u8]) -> Option<Vec<u8>> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = query.get(12..i + 4)?;
    let name = labels.join(".");
    let found = answers(&name, qtype);
    let mut out = query[..2].to_vec();
    let rcode = if found.is_none() { 3 } else { 0 };
    out.extend_from_slice(&[0x85, 0x80 | rcode]);
    let records = found.unwrap_or_default();
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for rdata in records {
        out.extend_from_slice(&[0xC0, 12]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

async fn dns_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if let Some(reply) = respond(&buf[..n]) {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    addr
}

fn resolver(ns: SocketAddr) -> HickoryMx {
    HickoryMx::new(&Dns {
        nameservers: vec![ns],
        timeout: hisp::config::Duration(Duration::from_secs(2)),
        attempts: 1,
    })
    .unwrap()
}

#[tokio::test]
async fn mx_hosts_in_preference_order_then_address_fallback() {
    let r = resolver(dns_server().await);
    let mx = r.mx("c.example").await.unwrap();
    let routes = Default::default();
    assert_eq!(
        next_hops("c.example", &routes, &mx, 25),
        ["mx1.c.example:25", "mx2.c.example:25"]
    );
    assert_eq!(
        r.addresses("mx2.c.example").await.unwrap(),
        vec!["127.0.0.2".parse::<IpAddr>().unwrap()]
    );
    // No MX: the domain's own address.
    let none = r.mx("nomx.example").await.unwrap();
    assert!(none.is_empty());
    assert_eq!(
        next_hops("nomx.example", &routes, &none, 25),
        ["nomx.example:25"]
    );
    assert_eq!(
        r.addresses("nomx.example").await.unwrap(),
        vec!["127.0.0.3".parse::<IpAddr>().unwrap()]
    );
    // A domain that does not exist has no MX and no address.
    assert!(r.mx("gone.example").await.unwrap().is_empty());
    assert!(r.addresses("gone.example").await.is_err());
}
