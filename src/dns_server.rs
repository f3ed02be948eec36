//! A small authoritative DNS responder (DCDT H1-H2): answers CERT (and any other records put
//! in its [`Zone`]) over UDP and TCP, so partners can discover our certificates without a
//! separate DNS server. hickory-server does the socket work and truncates oversized UDP
//! answers (setting TC so resolvers retry over TCP); the records live in memory and are
//! replaced wholesale when the store changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Metadata, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::rdata::cert::{Algorithm, CERT, CertType};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

#[derive(Debug, thiserror::Error)]
pub enum DnsServerError {
    #[error("bad DNS name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("cannot listen for DNS on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// TTL of the records we publish: short, so a replaced certificate is seen soon.
pub const DEFAULT_TTL: u32 = 300;

#[derive(Default)]
struct Records {
    /// Names we are authoritative for; queries outside them are REFUSED.
    origins: Vec<LowerName>,
    soa: HashMap<LowerName, Record>,
    by_name: HashMap<LowerName, Vec<Record>>,
}

/// The records served. Cheap to read on every query; replaced with [`Zone::replace`].
#[derive(Default)]
pub struct Zone {
    records: RwLock<Records>,
    udp_queries: AtomicUsize,
    tcp_queries: AtomicUsize,
}

/// A zone's content before it is swapped in.
#[derive(Default)]
pub struct ZoneContent {
    origins: Vec<Name>,
    records: Vec<Record>,
}

pub fn name(text: &str) -> Result<Name, DnsServerError> {
    let fq = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_ascii(&fq).map_err(|e| DnsServerError::BadName {
        name: text.to_string(),
        reason: e.to_string(),
    })
}

impl ZoneContent {
    pub fn new() -> ZoneContent {
        ZoneContent::default()
    }

    /// Be authoritative for `origin` and everything below it.
    pub fn origin(&mut self, origin: &str) -> Result<&mut Self, DnsServerError> {
        self.origins.push(name(origin)?);
        Ok(self)
    }

    pub fn record(
        &mut self,
        owner: &str,
        ttl: u32,
        data: RData,
    ) -> Result<&mut Self, DnsServerError> {
        self.records
            .push(Record::from_rdata(name(owner)?, ttl, data));
        Ok(self)
    }

    /// A CERT record of type PKIX holding `der` (SPEC C16).
    pub fn cert(&mut self, owner: &str, der: &[u8]) -> Result<&mut Self, DnsServerError> {
        self.record(owner, DEFAULT_TTL, cert_rdata(der))
    }

    /// A CERT record of type IPKIX pointing at `url`.
    pub fn ipkix(&mut self, owner: &str, url: &str) -> Result<&mut Self, DnsServerError> {
        self.record(
            owner,
            DEFAULT_TTL,
            RData::CERT(CERT::new(
                CertType::IPKIX,
                0,
                Algorithm::from(0),
                url.as_bytes().to_vec(),
            )),
        )
    }
}

pub fn cert_rdata(der: &[u8]) -> RData {
    RData::CERT(CERT::new(
        CertType::PKIX,
        0,
        Algorithm::from(0),
        der.to_vec(),
    ))
}

impl Zone {
    pub fn new() -> Arc<Zone> {
        Arc::new(Zone::default())
    }

    /// Swaps in new content atomically: a query sees the old zone or the new one.
    pub fn replace(&self, content: ZoneContent) {
        let mut next = Records::default();
        for origin in content.origins {
            let lower = LowerName::from(origin.clone());
            let soa = SOA::new(
                origin.clone(),
                Name::from_ascii(format!("hostmaster.{origin}")).unwrap_or_else(|_| origin.clone()),
                crate::clock::now_secs() as u32,
                3600,
                600,
                86400,
                DEFAULT_TTL,
            );
            next.soa.insert(
                lower.clone(),
                Record::from_rdata(origin, DEFAULT_TTL, RData::SOA(soa)),
            );
            next.origins.push(lower);
        }
        for r in content.records {
            next.by_name
                .entry(LowerName::from(r.name.clone()))
                .or_default()
                .push(r);
        }
        *self.records.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// Queries answered so far over UDP and over TCP (tests check that TCP retry happened).
    pub fn query_counts(&self) -> (usize, usize) {
        (
            self.udp_queries.load(Ordering::Relaxed),
            self.tcp_queries.load(Ordering::Relaxed),
        )
    }

    /// (rcode, answers, authority) for one question.
    fn answer(
        &self,
        qname: &LowerName,
        qtype: RecordType,
    ) -> (ResponseCode, Vec<Record>, Vec<Record>) {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        let Some(origin) = records
            .origins
            .iter()
            .filter(|o| o.zone_of(qname))
            .max_by_key(|o| o.num_labels())
        else {
            return (ResponseCode::Refused, Vec::new(), Vec::new());
        };
        let soa: Vec<Record> = records.soa.get(origin).cloned().into_iter().collect();
        if qtype == RecordType::SOA && qname == origin {
            return (ResponseCode::NoError, soa, Vec::new());
        }
        match records.by_name.get(qname) {
            Some(rs) => {
                let answers: Vec<Record> = rs
                    .iter()
                    .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                    .cloned()
                    .collect();
                if answers.is_empty() {
                    (ResponseCode::NoError, Vec::new(), soa)
                } else {
                    (ResponseCode::NoError, answers, Vec::new())
                }
            }
            // An empty non-terminal (e.g. `_tcp.example` above an SRV) exists: NODATA.
            None if records.by_name.keys().any(|n| qname.zone_of(n)) || qname == origin => {
                (ResponseCode::NoError, Vec::new(), soa)
            }
            None => (ResponseCode::NXDomain, Vec::new(), soa),
        }
    }
}

struct Handler {
    zone: Arc<Zone>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        match request.protocol() {
            Protocol::Tcp => self.zone.tcp_queries.fetch_add(1, Ordering::Relaxed),
            _ => self.zone.udp_queries.fetch_add(1, Ordering::Relaxed),
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        let edns = request.edns.as_ref().map(|req| {
            let mut e = hickory_proto::op::Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let sent = match request.request_info() {
            Ok(info) => {
                let (rcode, answers, authority) =
                    self.zone.answer(info.query.name(), info.query.query_type());
                meta.authoritative = rcode != ResponseCode::Refused;
                meta.recursion_available = false;
                meta.response_code = rcode;
                let response = builder.build(
                    meta,
                    answers.iter(),
                    std::iter::empty(),
                    authority.iter(),
                    std::iter::empty(),
                );
                response_handle.send_response(response).await
            }
            Err(_) => {
                let response = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                response_handle.send_response(response).await
            }
        };
        match sent {
            Ok(info) => info,
            Err(_) => {
                meta.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_proto::op::Header {
                    metadata: meta,
                    counts: Default::default(),
                })
            }
        }
    }
}

/// A running responder; dropping it does not stop it, [`DnsServer::shutdown`] does.
pub struct DnsServer {
    server: Server<Handler>,
    pub local_addr: SocketAddr,
}

impl DnsServer {
    /// Listens on `addr` over UDP and TCP (the same port; with port 0 an ephemeral port free
    /// for both is chosen).
    pub async fn start(addr: SocketAddr, zone: Arc<Zone>) -> Result<DnsServer, DnsServerError> {
        let bind_err = |e: std::io::Error| DnsServerError::Bind {
            addr,
            reason: e.to_string(),
        };
        let mut attempt = 0;
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind(addr).await.map_err(bind_err)?;
            let local = udp.local_addr().map_err(bind_err)?;
            match tokio::net::TcpListener::bind(local).await {
                Ok(tcp) => break (udp, tcp),
                // Port 0 gave a UDP port whose TCP twin is taken: pick again.
                Err(_) if addr.port() == 0 && attempt < 20 => attempt += 1,
                Err(e) => return Err(bind_err(e)),
            }
        };
        let local_addr = udp.local_addr().map_err(bind_err)?;
        let mut server = Server::new(Handler { zone });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(10), 64 * 1024);
        Ok(DnsServer { server, local_addr })
    }

    pub async fn shutdown(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_nxdomain_nodata_and_refused() {
        let zone = Zone::default();
        let mut c = ZoneContent::new();
        c.origin("b.example").unwrap();
        c.cert("bob.b.example", &[0x30, 0x00]).unwrap();
        zone.replace(c);
        let q = |n: &str, t| zone.answer(&LowerName::from(name(n).unwrap()), t);
        let (rc, a, _) = q("BOB.b.example", RecordType::CERT);
        assert_eq!((rc, a.len()), (ResponseCode::NoError, 1));
        let (rc, a, auth) = q("bob.b.example", RecordType::A);
        assert_eq!((rc, a.len(), auth.len()), (ResponseCode::NoError, 0, 1));
        let (rc, _, _) = q("alice.b.example", RecordType::CERT);
        assert_eq!(rc, ResponseCode::NXDomain);
        let (rc, _, _) = q("b.example", RecordType::CERT);
        assert_eq!(rc, ResponseCode::NoError);
        let (rc, _, _) = q("other.example", RecordType::CERT);
        assert_eq!(rc, ResponseCode::Refused);
    }
}
