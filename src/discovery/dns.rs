//! DNS lookups for discovery: CERT records (SPEC C16-C17) and the SRV records that point at
//! LDAP servers (C18), through hickory's resolver.
//!
//! The resolver retries a truncated UDP answer over TCP by itself (C17); we configure every
//! nameserver for both UDP and TCP so that retry has somewhere to go.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::proto::rr::rdata::cert::{CERT, CertType};

use crate::config;

#[derive(Debug, thiserror::Error, Clone)]
pub enum DnsError {
    #[error("cannot set up the DNS resolver: {0} (check [dns] nameservers or /etc/resolv.conf)")]
    Setup(String),
    #[error("DNS query {qtype} {name} failed: {reason}")]
    Query {
        name: String,
        qtype: &'static str,
        reason: String,
    },
}

/// One CERT record's payload, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRecord {
    /// Type 1: the DER certificate itself.
    Pkix(Vec<u8>),
    /// Type 4: a URL to fetch the certificate from.
    Ipkix(String),
    /// Any other type (PGP, SPKI, ...): not usable for Direct, reported as seen.
    Other(u16),
}

/// One SRV target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the trailing dot.
    pub host: String,
}

#[derive(Clone)]
pub struct DnsClient {
    resolver: Arc<TokioResolver>,
}

impl DnsClient {
    /// A resolver from `[dns]`: the listed nameservers (UDP with TCP fallback) or, when none
    /// are listed, the system configuration.
    pub fn new(cfg: &config::Dns) -> Result<DnsClient, DnsError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = cfg.timeout.0;
        opts.attempts = cfg.attempts.max(1) as usize;
        // We cache whole discovery results ourselves, with the TTLs the admin configured.
        opts.cache_size = 0;
        let builder = if cfg.nameservers.is_empty() {
            let mut b =
                TokioResolver::builder_tokio().map_err(|e| DnsError::Setup(e.to_string()))?;
            // Keep what resolv.conf said (ndots, ...) but apply our timeouts.
            let o = b.options_mut();
            o.timeout = opts.timeout;
            o.attempts = opts.attempts;
            o.cache_size = 0;
            b
        } else {
            let servers = cfg.nameservers.iter().map(server_config).collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
            .with_options(opts)
        };
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(DnsClient {
            resolver: Arc::new(resolver),
        })
    }

    /// CERT records at `name`. No such name or no CERT records is an empty list, not an
    /// error: that is the common case for most addresses.
    pub async fn cert_records(&self, name: &str) -> Result<Vec<CertRecord>, DnsError> {
        let lookup = match self.resolver.cert_lookup(fqdn(name)).await {
            Ok(l) => l,
            Err(e) if is_empty_answer(&e) => return Ok(Vec::new()),
            Err(e) => return Err(query_error(name, "CERT", e)),
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::CERT(c) => Some(cert_record(c)),
                _ => None,
            })
            .collect())
    }

    /// SRV records at `name`, in the order a client must try them (RFC 2782, SPEC C18).
    pub async fn srv_records(&self, name: &str) -> Result<Vec<SrvTarget>, DnsError> {
        let lookup = match self.resolver.srv_lookup(fqdn(name)).await {
            Ok(l) => l,
            Err(e) if is_empty_answer(&e) => return Ok(Vec::new()),
            Err(e) => return Err(query_error(name, "SRV", e)),
        };
        let mut targets: Vec<SrvTarget> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(SrvTarget {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    host: s.target.to_ascii().trim_end_matches('.').to_string(),
                }),
                _ => None,
            })
            // RFC 2782: a target of "." means the service is decidedly not available.
            .filter(|t| !t.host.is_empty())
            .collect();
        order_srv(&mut targets);
        Ok(targets)
    }

    /// IPv4 and IPv6 addresses of `host`.
    pub async fn addresses(&self, host: &str) -> Result<Vec<std::net::IpAddr>, DnsError> {
        if let Ok(ip) = host.parse() {
            return Ok(vec![ip]);
        }
        match self.resolver.lookup_ip(fqdn(host)).await {
            Ok(l) => Ok(l.iter().collect()),
            Err(e) if is_empty_answer(&e) => Ok(Vec::new()),
            Err(e) => Err(query_error(host, "A/AAAA", e)),
        }
    }
}

/// What a CERT record holds, by type (SPEC C16).
pub fn cert_record(c: &CERT) -> CertRecord {
    match c.cert_type {
        CertType::PKIX => CertRecord::Pkix(c.cert_data.clone()),
        CertType::IPKIX => {
            CertRecord::Ipkix(String::from_utf8_lossy(&c.cert_data).trim().to_string())
        }
        other => CertRecord::Other(u16::from(other)),
    }
}

fn server_config(addr: &SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn is_empty_answer(e: &NetError) -> bool {
    e.is_nx_domain() || e.is_no_records_found()
}

fn query_error(name: &str, qtype: &'static str, e: NetError) -> DnsError {
    DnsError::Query {
        name: name.to_string(),
        qtype,
        reason: e.to_string(),
    }
}

/// Lowest priority first; among equal priorities the highest weight first (SPEC C18 asks for a
/// deterministic "highest weight among equals" rather than RFC 2782's weighted lottery, so the
/// DCDT cases have one right answer). Ties keep DNS order.
pub fn order_srv(targets: &mut [SrvTarget]) {
    targets.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| b.weight.cmp(&a.weight))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(priority: u16, weight: u16, host: &str) -> SrvTarget {
        SrvTarget {
            priority,
            weight,
            port: 389,
            host: host.into(),
        }
    }

    #[test]
    fn srv_order_is_priority_then_weight() {
        let mut v = vec![
            t(1, 0, "p1"),
            t(0, 0, "light"),
            t(0, 100, "heavy"),
            t(0, 0, "light2"),
        ];
        order_srv(&mut v);
        let hosts: Vec<&str> = v.iter().map(|t| t.host.as_str()).collect();
        assert_eq!(hosts, ["heavy", "light", "light2", "p1"]);
    }

    #[test]
    fn names_are_absolute() {
        assert_eq!(fqdn("a.example"), "a.example.");
        assert_eq!(fqdn("a.example."), "a.example.");
    }
}
