//! MX lookups for delivery, on hickory-resolver: the `[dns]` name servers, else the system
//! resolver configuration.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

use super::client::Resolve;
use crate::config::Dns;

#[derive(Debug, thiserror::Error)]
#[error("DNS resolver set-up failed (check [dns] nameservers and /etc/resolv.conf): {0}")]
pub struct MxError(String);

#[derive(Clone)]
pub struct HickoryMx(TokioResolver);

impl HickoryMx {
    pub fn new(dns: &Dns) -> Result<HickoryMx, MxError> {
        let mut builder = if dns.nameservers.is_empty() {
            Resolver::builder_tokio().map_err(|e| MxError(e.to_string()))?
        } else {
            let mut config = ResolverConfig::default();
            for ns in &dns.nameservers {
                let mut udp = ConnectionConfig::udp();
                udp.port = ns.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = ns.port();
                config.add_name_server(NameServerConfig::new(ns.ip(), true, vec![udp, tcp]));
            }
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        };
        let opts = builder.options_mut();
        opts.timeout = dns.timeout.std().max(Duration::from_millis(100));
        opts.attempts = dns.attempts.max(1) as usize;
        builder
            .build()
            .map(HickoryMx)
            .map_err(|e| MxError(e.to_string()))
    }
}

impl Resolve for HickoryMx {
    async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, String> {
        // A trailing dot: the domain is absolute, never completed with a search list.
        let name = format!("{}.", domain.trim_end_matches('.'));
        match self.0.mx_lookup(name.as_str()).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_utf8())),
                    _ => None,
                })
                .collect()),
            // No MX (NODATA): RFC 5321 5.1 says use the domain's own address records. A
            // domain that does not exist fails at the A/AAAA step and is retried like any
            // unreachable host.
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let name = format!("{}.", host.trim_end_matches('.'));
        let found: Vec<IpAddr> = self
            .0
            .lookup_ip(name.as_str())
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .collect();
        if found.is_empty() {
            return Err(format!("{host} has no A or AAAA record"));
        }
        Ok(found)
    }
}
