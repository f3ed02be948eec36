//! Certificate discovery (SPEC C15-C19, DCDT.md): find the certificates to encrypt to for a
//! Direct address, in the order address-DNS → domain-DNS → address-LDAP → domain-LDAP. Every
//! candidate is validated for encryption against the sending domain's outgoing anchors; the
//! first step with a usable certificate wins and all its usable certificates are returned;
//! address- and domain-level results are never mixed.
//!
//! Results (positive and negative) are cached per address and anchor set, with one lookup in
//! flight per key: a burst of messages to one new partner costs one discovery.

mod cache;
pub mod dns;
pub mod ldap;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::x509::X509;

pub use cache::Anchors;
pub use report::{Report, SeenCert, Source, Step};

use crate::address::DirectAddress;
use crate::certinfo::{CertInfo, sha256_hex};
use crate::config::Config;
use crate::fetch::HttpFetcher;
use crate::trust::{BindTo, CrlCache, Policy, Purpose, Validator, parse_certificates};
use dns::{CertRecord, DnsClient, DnsError};
use ldap::LdapClient;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Dns(#[from] DnsError),
}

/// The discovery service: resolver, LDAP client, HTTP fetcher, CRL cache, result cache.
pub struct Discovery {
    dns: DnsClient,
    ldap: LdapClient,
    fetcher: Arc<HttpFetcher>,
    crl_cache: Arc<CrlCache>,
    policy: Arc<Policy>,
    cache: cache::Cache,
    ttl: Duration,
    negative_ttl: Duration,
}

impl Discovery {
    pub fn new(config: &Config) -> Result<Discovery, DiscoveryError> {
        Ok(Discovery {
            dns: DnsClient::new(&config.dns)?,
            ldap: LdapClient {
                timeout: config.discovery.ldap_timeout.0,
            },
            fetcher: Arc::new(HttpFetcher::from_config(&config.discovery)),
            crl_cache: Arc::new(CrlCache::new()),
            policy: Arc::new(Policy::from(&config.security)),
            cache: cache::Cache::new(config.discovery.cache_entries as usize),
            ttl: config.discovery.cache_ttl.0,
            negative_ttl: config.discovery.negative_cache_ttl.0,
        })
    }

    /// The DNS client, shared with callers that need MX or SRV lookups.
    pub fn dns(&self) -> &DnsClient {
        &self.dns
    }

    /// The HTTP fetcher and CRL cache, shared with inbound trust validation.
    pub fn fetcher(&self) -> Arc<HttpFetcher> {
        self.fetcher.clone()
    }

    pub fn crl_cache(&self) -> Arc<CrlCache> {
        self.crl_cache.clone()
    }

    /// Discovery for `address` under `anchors`, from the cache when fresh.
    pub async fn discover(&self, address: &DirectAddress, anchors: &Arc<Anchors>) -> Arc<Report> {
        let key = (address.as_str().to_string(), anchors.id());
        let ran = std::sync::atomic::AtomicBool::new(false);
        let report = self
            .cache
            .get_or_run(key, || {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                async {
                    let _t = crate::metrics::Timer::start(
                        crate::metrics::DISCOVERY_SECONDS,
                        ("cache", "miss"),
                    );
                    self.run(address, anchors.clone()).await
                }
            })
            .await;
        let result = if ran.load(std::sync::atomic::Ordering::Relaxed) {
            "miss"
        } else {
            "hit"
        };
        metrics::counter!(crate::metrics::DISCOVERY_LOOKUPS, "result" => result).increment(1);
        report
    }

    /// Discovery without the cache (what `hisp discover` shows an admin).
    pub async fn discover_uncached(
        &self,
        address: &DirectAddress,
        anchors: &Arc<Anchors>,
    ) -> Arc<Report> {
        self.run(address, anchors.clone()).await
    }

    /// Forget cached results, e.g. after trust anchors changed.
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    async fn run(&self, address: &DirectAddress, anchors: Arc<Anchors>) -> Arc<Report> {
        let mut report = Report::new(address.as_str());
        let domain = address.domain().to_string();
        for source in Source::ORDER {
            let mut step = Step::new(source, self.query_for(source, address));
            let found = match source {
                Source::DnsAddress | Source::DnsDomain => {
                    self.dns_step(&step.query.clone(), &mut step).await
                }
                Source::LdapAddress | Source::LdapDomain => {
                    let mail = if source == Source::LdapAddress {
                        address.as_str()
                    } else {
                        domain.as_str()
                    };
                    let outcome = self.ldap.find(&self.dns, &domain, mail).await;
                    step.notes.extend(outcome.notes);
                    if !outcome.searched {
                        step.unreachable = true;
                    }
                    let mut found = Vec::new();
                    for c in outcome.certs {
                        let origin = format!("LDAP {} {} {}", c.server, c.dn, c.attribute);
                        // RFC 2798 defines userSMIMECertificate as a PKCS#7 SignedData; many
                        // directories hold a bare certificate there instead. Take both.
                        match X509::from_der(&c.der) {
                            Err(_) if let Ok(certs) = parse_certificates(&c.der) => {
                                for cert in certs {
                                    if let Ok(der) = cert.to_der() {
                                        found.push((der, format!("{origin} (PKCS#7)")));
                                    }
                                }
                            }
                            _ => found.push((c.der, origin)),
                        }
                    }
                    found
                }
            };
            let seen = self.validate_all(found, address, &anchors).await;
            step.certificates = seen;
            let chosen: Vec<SeenCert> = step
                .certificates
                .iter()
                .filter(|c| c.is_valid())
                .cloned()
                .collect();
            let dns_failed = step.error.is_some();
            report.steps.push(step);
            if !chosen.is_empty() {
                report.selected = chosen;
                report.selected_from = Some(source);
                break;
            }
            if dns_failed {
                // A DNS failure is not an answer: going on could pick a domain certificate
                // when the partner publishes an address one we just couldn't read.
                report.temporary = true;
                break;
            }
        }
        let ttl = if report.selected.is_empty() {
            self.negative_ttl
        } else {
            self.ttl
        };
        report.expires = Instant::now() + ttl;
        Arc::new(report)
    }

    fn query_for(&self, source: Source, address: &DirectAddress) -> String {
        match source {
            Source::DnsAddress => address.cert_query_name(),
            Source::DnsDomain => address.domain().to_string(),
            Source::LdapAddress => format!("_ldap._tcp.{} (mail={})", address.domain(), address),
            Source::LdapDomain => format!(
                "_ldap._tcp.{} (mail={})",
                address.domain(),
                address.domain()
            ),
        }
    }

    /// CERT records at `name`, with IPKIX URLs fetched; each certificate with where it came from.
    async fn dns_step(&self, name: &str, step: &mut Step) -> Vec<(Vec<u8>, String)> {
        let records = match self.dns.cert_records(name).await {
            Ok(r) => r,
            Err(e) => {
                step.error = Some(e.to_string());
                return Vec::new();
            }
        };
        if records.is_empty() {
            step.notes.push(format!("no CERT records at {name}"));
        }
        let mut out = Vec::new();
        for record in records {
            match record {
                CertRecord::Pkix(der) => out.push((der, format!("DNS CERT PKIX at {name}"))),
                CertRecord::Ipkix(url) => {
                    let fetcher = self.fetcher.clone();
                    let u = url.clone();
                    let fetched = tokio::task::spawn_blocking(move || fetcher.get(&u))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                        .and_then(|bytes| parse_certificates(&bytes));
                    match fetched {
                        Ok(certs) => {
                            for c in certs {
                                if let Ok(der) = c.to_der() {
                                    out.push((der, format!("DNS CERT IPKIX at {name} → {url}")));
                                }
                            }
                        }
                        Err(e) => step.notes.push(format!("CERT IPKIX at {name}: {url}: {e}")),
                    }
                }
                CertRecord::Other(t) => step.notes.push(format!(
                    "CERT record of type {t} at {name} ignored (Direct uses PKIX 1 and IPKIX 4)"
                )),
            }
        }
        out
    }

    /// Validates every candidate for encryption to `address`, off the reactor (path building
    /// may fetch intermediates and CRLs).
    async fn validate_all(
        &self,
        found: Vec<(Vec<u8>, String)>,
        address: &DirectAddress,
        anchors: &Arc<Anchors>,
    ) -> Vec<SeenCert> {
        if found.is_empty() {
            return Vec::new();
        }
        let fetcher = self.fetcher.clone();
        let crl_cache = self.crl_cache.clone();
        let policy = self.policy.clone();
        let anchors = anchors.clone();
        let bind = BindTo::Address(address.clone());
        let work = move || {
            let validator = Validator {
                anchors: anchors.certs(),
                policy: &policy,
                fetcher: fetcher.as_ref(),
                crl_cache: &crl_cache,
                time: crate::clock::now_secs(),
            };
            let mut seen: Vec<SeenCert> = Vec::new();
            for (der, origin) in found {
                let sha256 = sha256_hex(&der);
                if seen.iter().any(|s| s.sha256 == sha256) {
                    continue;
                }
                seen.push(match X509::from_der(&der) {
                    Ok(cert) => {
                        let v = validator.validate(&cert, &[], Purpose::Encryption, &bind);
                        let info = CertInfo::of(&cert);
                        SeenCert {
                            subject: info.subject,
                            sha256,
                            not_after: info.not_after,
                            verdict: v.verdict,
                            reason: v.reason,
                            warnings: v.warnings,
                            origin,
                            cert: Some(cert),
                        }
                    }
                    Err(e) => SeenCert::malformed(sha256, origin, &e),
                });
            }
            seen
        };
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| vec![SeenCert::internal(&e.to_string())])
    }
}
