//! The certificate-discovery cases of DCDT.md (D1-D18) and the hosting cases (H1-H4), each
//! against real servers started here: hisp's own authoritative DNS responder (hickory-server)
//! on loopback UDP+TCP, OpenLDAP slapd instances, and a small HTTP server for AIA, CRLs and
//! IPKIX URLs. Positive cases assert the exact certificate chosen; negative ones that none is
//! chosen and why.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hisp::address::DirectAddress;
use hisp::config::Config;
use hisp::devpki::{Ca, Issued, Usage};
use hisp::discovery::{Anchors, Discovery, Report, Source};
use hisp::dns_server::{DnsServer, Zone, ZoneContent};
use hisp::trust::Verdict;

use common::http::HttpServer;
use common::slapd::Slapd;

/// One DCDT world: a test CA the sender trusts, a partner domain served by our DNS responder.
struct World {
    ca: Ca,
    domain: String,
    address: DirectAddress,
    zone: Arc<Zone>,
    content: ZoneContent,
    dns: DnsServer,
    /// Kept alive for the test's duration.
    slapds: Vec<Slapd>,
}

impl World {
    async fn new(case: &str) -> World {
        let ca = Ca::root(&format!("DCDT test CA {case}")).unwrap();
        let domain = format!("{case}.dcdt.example");
        let address = DirectAddress::parse(&format!("bob@{domain}")).unwrap();
        let zone = Zone::new();
        let mut content = ZoneContent::new();
        content.origin(&domain).unwrap();
        let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), zone.clone())
            .await
            .unwrap();
        World {
            ca,
            domain,
            address,
            zone,
            content,
            dns,
            slapds: Vec::new(),
        }
    }

    fn address_cert(&self) -> Issued {
        self.ca.leaf().email(self.address.as_str()).build().unwrap()
    }
    fn expired_address_cert(&self) -> Issued {
        self.ca
            .leaf()
            .email(self.address.as_str())
            .expired()
            .build()
            .unwrap()
    }
    fn domain_cert(&self) -> Issued {
        self.ca.leaf().dns(&self.domain).build().unwrap()
    }
    fn expired_domain_cert(&self) -> Issued {
        self.ca.leaf().dns(&self.domain).expired().build().unwrap()
    }

    /// CERT record at the address name (`bob.<domain>`).
    fn dns_address(&mut self, cert: &Issued) {
        let owner = self.address.cert_query_name();
        self.content.cert(&owner, &cert.cert_der()).unwrap();
    }
    /// CERT record at the domain.
    fn dns_domain(&mut self, cert: &Issued) {
        let owner = self.domain.clone();
        self.content.cert(&owner, &cert.cert_der()).unwrap();
    }

    /// A slapd holding `entries` (address- or domain-keyed certificates), published as an SRV
    /// target with this priority and weight.
    fn ldap(&mut self, priority: u16, weight: u16, entries: &[(&str, &Issued)]) {
        let suffix = format!("dc={}", self.slapds.len() + 1);
        let mut ldif = String::new();
        for (mail, cert) in entries {
            ldif.push_str(&hisp::hosting::ldif_entry(
                mail,
                &suffix,
                &[&cert.cert_der()],
            ));
        }
        let slapd = Slapd::start(&suffix, &ldif);
        self.srv(priority, weight, slapd.port);
        self.slapds.push(slapd);
    }

    /// An SRV record to a port where nothing listens.
    fn ldap_down(&mut self, priority: u16, weight: u16) {
        let port = common::slapd::free_port();
        self.srv(priority, weight, port);
    }

    fn srv(&mut self, priority: u16, weight: u16, port: u16) {
        let n = self.slapds.len() + usize::from(priority) * 10 + usize::from(weight % 7);
        let host = format!("ldap{n}-{port}.{}", self.domain);
        let srv = hickory_proto::rr::rdata::SRV::new(
            priority,
            weight,
            port,
            hisp::dns_server::name(&host).unwrap(),
        );
        let name = format!("_ldap._tcp.{}", self.domain);
        self.content
            .record(&name, 60, hickory_proto::rr::RData::SRV(srv))
            .unwrap();
        self.content
            .record(
                &host,
                60,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(127, 0, 0, 1)),
            )
            .unwrap();
    }

    fn config(&self) -> Config {
        let mut c = Config::default();
        c.dns.nameservers = vec![self.dns.local_addr];
        c.dns.timeout = hisp::config::Duration(Duration::from_secs(3));
        c.dns.attempts = 1;
        c.discovery.ldap_timeout = hisp::config::Duration(Duration::from_secs(2));
        c.discovery.fetch_timeout = hisp::config::Duration(Duration::from_secs(3));
        c
    }

    /// Publishes the zone and runs discovery with the CA as the only outgoing anchor.
    async fn discover(&mut self) -> Arc<Report> {
        self.discover_with(vec![self.ca.cert.clone()]).await
    }

    async fn discover_with(&mut self, anchors: Vec<openssl::x509::X509>) -> Arc<Report> {
        self.zone.replace(std::mem::take(&mut self.content));
        let discovery = Discovery::new(&self.config()).unwrap();
        let anchors = Arc::new(Anchors::new(anchors));
        discovery.discover(&self.address, &anchors).await
    }
}

fn chosen(report: &Report) -> Vec<String> {
    report.selected.iter().map(|c| c.sha256.clone()).collect()
}

fn explain(report: &Report) -> String {
    serde_json::to_string_pretty(&report.to_json()).unwrap()
}

#[track_caller]
fn assert_chose(report: &Report, source: Source, expected: &[&Issued]) {
    let want: Vec<String> = expected.iter().map(|c| c.sha256_hex()).collect();
    assert_eq!(chosen(report), want, "{}", explain(report));
    assert_eq!(report.selected_from, Some(source), "{}", explain(report));
}

/// No certificate chosen, and every certificate seen was refused with `verdict`.
#[track_caller]
fn assert_none(report: &Report, verdict: Option<Verdict>) {
    assert!(report.selected.is_empty(), "{}", explain(report));
    let seen: Vec<Verdict> = report
        .steps
        .iter()
        .flat_map(|s| s.certificates.iter().map(|c| c.verdict))
        .collect();
    match verdict {
        Some(v) => {
            assert!(!seen.is_empty(), "{}", explain(report));
            assert!(seen.iter().all(|s| *s == v), "{}", explain(report));
        }
        None => assert!(seen.is_empty(), "{}", explain(report)),
    }
    assert!(!report.failure_reason().is_empty());
}

// ---- D1-D18 -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn d1_valid_address_cert_in_dns_wins_over_expired_others() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d1").await;
    let good = w.address_cert();
    let expired_domain = w.expired_domain_cert();
    w.dns_address(&good);
    w.dns_domain(&expired_domain);
    let (la, ld) = (w.expired_address_cert(), w.expired_domain_cert());
    let (addr, dom) = (w.address.to_string(), w.domain.clone());
    w.ldap(0, 0, &[(&addr, &la), (&dom, &ld)]);
    let r = w.discover().await;
    assert_chose(&r, Source::DnsAddress, &[&good]);
    assert_eq!(
        r.steps.len(),
        1,
        "stops at the first step with a usable certificate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn d2_valid_domain_cert_in_dns() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d2").await;
    let good = w.domain_cert();
    w.dns_domain(&good);
    let (la, ld) = (w.expired_address_cert(), w.expired_domain_cert());
    let (addr, dom) = (w.address.to_string(), w.domain.clone());
    w.ldap(0, 0, &[(&addr, &la), (&dom, &ld)]);
    let r = w.discover().await;
    assert_chose(&r, Source::DnsDomain, &[&good]);
}

#[tokio::test(flavor = "multi_thread")]
async fn d3_valid_address_cert_in_ldap() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d3").await;
    let good = w.address_cert();
    let expired_domain = w.expired_domain_cert();
    let (addr, dom) = (w.address.to_string(), w.domain.clone());
    w.ldap(0, 0, &[(&addr, &good), (&dom, &expired_domain)]);
    let r = w.discover().await;
    assert_chose(&r, Source::LdapAddress, &[&good]);
}

#[tokio::test(flavor = "multi_thread")]
async fn d4_valid_domain_cert_in_ldap() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d4").await;
    let good = w.domain_cert();
    let dom = w.domain.clone();
    w.ldap(0, 0, &[(&dom, &good)]);
    let r = w.discover().await;
    assert_chose(&r, Source::LdapDomain, &[&good]);
}

#[tokio::test(flavor = "multi_thread")]
async fn d5_only_an_expired_address_cert_in_dns() {
    let mut w = World::new("d5").await;
    let c = w.expired_address_cert();
    w.dns_address(&c);
    let r = w.discover().await;
    assert_none(&r, Some(Verdict::Expired));
    assert_eq!(r.steps.len(), 4, "every step is tried");
}

#[tokio::test(flavor = "multi_thread")]
async fn d6_only_an_expired_domain_cert_in_dns() {
    let mut w = World::new("d6").await;
    let c = w.expired_domain_cert();
    w.dns_domain(&c);
    let r = w.discover().await;
    assert_none(&r, Some(Verdict::Expired));
}

#[tokio::test(flavor = "multi_thread")]
async fn d7_only_an_expired_address_cert_in_ldap() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d7").await;
    let c = w.expired_address_cert();
    let addr = w.address.to_string();
    w.ldap(0, 0, &[(&addr, &c)]);
    let r = w.discover().await;
    assert_none(&r, Some(Verdict::Expired));
}

#[tokio::test(flavor = "multi_thread")]
async fn d8_only_an_expired_domain_cert_in_ldap() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d8").await;
    let c = w.expired_domain_cert();
    let dom = w.domain.clone();
    w.ldap(0, 0, &[(&dom, &c)]);
    let r = w.discover().await;
    assert_none(&r, Some(Verdict::Expired));
}

#[tokio::test(flavor = "multi_thread")]
async fn d9_valid_and_expired_address_certs_in_dns() {
    let mut w = World::new("d9").await;
    let (good, old) = (w.address_cert(), w.expired_address_cert());
    w.dns_address(&old);
    w.dns_address(&good);
    let r = w.discover().await;
    assert_chose(&r, Source::DnsAddress, &[&good]);
    let verdicts: Vec<Verdict> = r.steps[0].certificates.iter().map(|c| c.verdict).collect();
    assert!(verdicts.contains(&Verdict::Expired), "{}", explain(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn d10_falls_back_to_the_next_ldap_server() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d10").await;
    let good = w.address_cert();
    let addr = w.address.to_string();
    w.ldap_down(0, 0);
    w.ldap(1, 0, &[(&addr, &good)]);
    let r = w.discover().await;
    assert_chose(&r, Source::LdapAddress, &[&good]);
    let notes = r.steps[2].notes.join("\n");
    assert!(notes.contains("unreachable"), "{notes}");
}

#[tokio::test(flavor = "multi_thread")]
async fn d11_no_cert_records_and_no_srv_records() {
    let mut w = World::new("d11").await;
    let r = w.discover().await;
    assert_none(&r, None);
    assert_eq!(r.steps.len(), 4);
    assert!(r.steps[2].notes.join(" ").contains("no SRV records"));
    assert!(
        r.failure_reason().contains("no certificate"),
        "{}",
        r.failure_reason()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn d12_the_only_ldap_server_is_down() {
    let mut w = World::new("d12").await;
    w.ldap_down(0, 0);
    let r = w.discover().await;
    assert_none(&r, None);
    assert!(
        r.steps[2].unreachable && r.steps[3].unreachable,
        "{}",
        explain(&r)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn d13_servers_reachable_but_empty() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d13").await;
    w.ldap(0, 0, &[]);
    let r = w.discover().await;
    assert_none(&r, None);
    assert!(!r.steps[2].unreachable, "{}", explain(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn d14_large_cert_is_fetched_over_tcp() {
    let mut w = World::new("d14").await;
    // A 4096-bit key and long SANs make the answer larger than any UDP payload a resolver
    // offers (512 bytes plain, 1232 with EDNS), so the responder must truncate.
    let mut builder = w.ca.leaf().email(w.address.as_str()).key_bits(4096);
    for i in 0..12 {
        builder = builder.email(&format!("alias-number-{i}-padding-padding@{}", w.domain));
    }
    let big = builder.build().unwrap();
    assert!(big.cert_der().len() > 1500, "{}", big.cert_der().len());
    w.dns_address(&big);
    let r = w.discover().await;
    assert_chose(&r, Source::DnsAddress, &[&big]);
    let (_, tcp) = w.zone.query_counts();
    assert!(tcp >= 1, "the answer must have come over TCP");
}

#[tokio::test(flavor = "multi_thread")]
async fn d15_priority_zero_server_wins() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d15").await;
    let (good, old) = (w.address_cert(), w.expired_address_cert());
    let addr = w.address.to_string();
    w.ldap(1, 0, &[(&addr, &old)]);
    w.ldap(0, 0, &[(&addr, &good)]);
    let r = w.discover().await;
    assert_chose(&r, Source::LdapAddress, &[&good]);
}

#[tokio::test(flavor = "multi_thread")]
async fn d16_highest_weight_among_equal_priorities() {
    if !common::slapd::slapd_available() {
        return;
    }
    let mut w = World::new("d16").await;
    let (c, e) = (w.address_cert(), w.address_cert());
    let addr = w.address.to_string();
    w.ldap(0, 0, &[(&addr, &e)]);
    w.ldap(0, 100, &[(&addr, &c)]);
    let r = w.discover().await;
    assert_chose(&r, Source::LdapAddress, &[&c]);
}

#[tokio::test(flavor = "multi_thread")]
async fn d17_revoked_and_invalid_certs_are_skipped() {
    let mut w = World::new("d17").await;
    let http = HttpServer::start(HashMap::new());
    let crl_url = format!("{}/ca.crl", http.base_url());
    let leaf = |w: &World| {
        w.ca.leaf()
            .email(w.address.as_str())
            .crl_distribution_point(&crl_url)
            .build()
            .unwrap()
    };
    let good = leaf(&w);
    let (r1, r2) = (leaf(&w), leaf(&w));
    w.ca.revoke(&r1.cert);
    w.ca.revoke(&r2.cert);
    http.set(
        "/ca.crl",
        "application/pkix-crl",
        w.ca.crl_der(7 * 86400).unwrap(),
    );
    // "Invalid": bound to another domain.
    let invalid_domain = w.ca.leaf().dns("elsewhere.example").build().unwrap();
    w.dns_address(&r1);
    w.dns_address(&good);
    w.dns_address(&r2);
    w.dns_domain(&invalid_domain);
    let r = w.discover().await;
    assert_chose(&r, Source::DnsAddress, &[&good]);
    let revoked = r.steps[0]
        .certificates
        .iter()
        .filter(|c| c.verdict == Verdict::Revoked)
        .count();
    assert_eq!(revoked, 2, "{}", explain(&r));
    assert!(http.hits("/ca.crl") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn d18_intermediate_only_reachable_through_aia() {
    let mut w = World::new("d18").await;
    let http = HttpServer::start(HashMap::new());
    let aia = format!("{}/intermediate.der", http.base_url());
    let inter = w.ca.intermediate("DCDT d18 intermediate").build().unwrap();
    let good = inter
        .leaf()
        .email(w.address.as_str())
        .aia_ca_issuers(&aia)
        .build()
        .unwrap();
    http.set(
        "/intermediate.der",
        "application/pkix-cert",
        inter.cert.to_der().unwrap(),
    );
    w.dns_address(&good);
    let r = w.discover().await;
    assert_chose(&r, Source::DnsAddress, &[&good]);
    assert_eq!(http.hits("/intermediate.der"), 1);
}

// ---- extra cases (DCDT.md "worth having") ---------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn ipkix_record_is_fetched() {
    let mut w = World::new("ipkix").await;
    let http = HttpServer::start(HashMap::new());
    let good = w.address_cert();
    http.set("/bob.cer", "application/pkix-cert", good.cert_der());
    let owner = w.address.cert_query_name();
    let url = format!("{}/bob.cer", http.base_url());
    w.content.ipkix(&owner, &url).unwrap();
    let r = w.discover().await;
    assert_chose(&r, Source::DnsAddress, &[&good]);
    assert!(r.selected[0].origin.contains("IPKIX"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_san_sign_only_and_untrusted_are_refused_with_reasons() {
    let mut w = World::new("refuse").await;
    let other_address =
        w.ca.leaf()
            .email("alice@elsewhere.example")
            .build()
            .unwrap();
    let sign_only =
        w.ca.leaf()
            .email(w.address.as_str())
            .usage(Usage::SignOnly)
            .build()
            .unwrap();
    let stranger = Ca::root("Stranger CA").unwrap();
    let untrusted = stranger.leaf().email(w.address.as_str()).build().unwrap();
    w.dns_address(&other_address);
    w.dns_address(&sign_only);
    w.dns_address(&untrusted);
    let r = w.discover().await;
    assert!(r.selected.is_empty(), "{}", explain(&r));
    let verdict = |c: &Issued| {
        r.steps[0]
            .certificates
            .iter()
            .find(|s| s.sha256 == c.sha256_hex())
            .map(|s| s.verdict)
    };
    assert_eq!(verdict(&other_address), Some(Verdict::WrongBinding));
    assert_eq!(verdict(&sign_only), Some(Verdict::WrongKeyUsage));
    assert_eq!(verdict(&untrusted), Some(Verdict::Untrusted));
    let reason = r.failure_reason();
    assert!(
        reason.contains("wrong-binding") && reason.contains("untrusted"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_trust_communities_both_used() {
    let mut w = World::new("twocomm").await;
    let other = Ca::root("Second community").unwrap();
    let a = w.address_cert();
    let b = other.leaf().email(w.address.as_str()).build().unwrap();
    w.dns_address(&a);
    w.dns_address(&b);
    let anchors = vec![w.ca.cert.clone(), other.cert.clone()];
    let r = w.discover_with(anchors).await;
    assert_chose(&r, Source::DnsAddress, &[&a, &b]);
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_failure_is_temporary_not_a_fallback() {
    // A nameserver that never answers: discovery must not go on to the domain or LDAP steps.
    let mut w = World::new("dnsdown").await;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = w.config();
    config.dns.nameservers = vec![silent.local_addr().unwrap()];
    config.dns.timeout = hisp::config::Duration(Duration::from_millis(300));
    w.zone.replace(std::mem::take(&mut w.content));
    let discovery = Discovery::new(&config).unwrap();
    let anchors = Arc::new(Anchors::new(vec![w.ca.cert.clone()]));
    let r = discovery.discover(&w.address, &anchors).await;
    assert!(r.selected.is_empty());
    assert!(r.temporary, "{}", explain(&r));
    assert_eq!(r.steps.len(), 1, "{}", explain(&r));
    assert!(r.failure_reason().contains("retry"));
}

#[tokio::test(flavor = "multi_thread")]
async fn results_are_cached_and_lookups_coalesce() {
    let mut w = World::new("cache").await;
    let good = w.address_cert();
    w.dns_address(&good);
    w.zone.replace(std::mem::take(&mut w.content));
    let discovery = Arc::new(Discovery::new(&w.config()).unwrap());
    let anchors = Arc::new(Anchors::new(vec![w.ca.cert.clone()]));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (d, a, addr) = (discovery.clone(), anchors.clone(), w.address.clone());
        tasks.push(tokio::spawn(async move { d.discover(&addr, &a).await }));
    }
    for t in tasks {
        assert_eq!(chosen(&t.await.unwrap()), vec![good.sha256_hex()]);
    }
    let (udp, tcp) = w.zone.query_counts();
    assert_eq!(udp + tcp, 1, "sixteen concurrent lookups, one DNS query");
    discovery.discover(&w.address, &anchors).await;
    let (udp2, tcp2) = w.zone.query_counts();
    assert_eq!(udp2 + tcp2, 1, "served from the cache");
}
