//! Hosting (DCDT H1-H4): what `hisp cert export --format dns|ldif` produces, loaded into a real
//! DNS server and a real slapd, is found by independent clients (`dig`, `ldapsearch`) and by
//! our own discovery; `hisp serve` answers CERT queries from the store and picks up changes;
//! `hisp discover` explains what it saw.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hisp::address::DirectAddress;
use hisp::config::Config;
use hisp::devpki::{Ca, Issued};
use hisp::discovery::{Anchors, Discovery, Source};
use hisp::dns_server::{DnsServer, Zone, ZoneContent, cert_rdata};

use common::slapd::{Slapd, free_port, ldapsearch, ldif_values};
use common::{Backend, Env};

const DOMAIN: &str = "hisp-a.example";
const BOB: &str = "bob@hisp-a.example";

/// A gateway store with hisp-a.example, bob's address-bound and the domain-bound certificate.
async fn gateway(root: &Ca) -> (Env, Issued, Issued) {
    let env = Env::new(Backend::Sqlite).await;
    env.run(&["domain", "add", DOMAIN]).ok();
    env.run(&["address", "add", BOB]).ok();
    let bob = root.leaf().email(BOB).build().unwrap();
    let org = root.leaf().dns(DOMAIN).build().unwrap();
    for (name, c) in [("bob", &bob), ("org", &org)] {
        let cert = env.write(&format!("{name}.pem"), &c.cert_pem());
        let key = env.write(&format!("{name}.key"), &c.key_pem());
        env.import_pem(&cert, &key).ok();
    }
    (env, bob, org)
}

/// `owner. ttl IN CERT 1 0 0 base64` lines → (owner, DER), read without hisp's code.
fn parse_cert_rrs(text: &str) -> Vec<(String, Vec<u8>)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(&f[2..7], ["IN", "CERT", "1", "0", "0"], "{l}");
            assert!(f[1].parse::<u32>().is_ok(), "{l}");
            let der = openssl::base64::decode_block(f[7]).unwrap();
            (f[0].trim_end_matches('.').to_string(), der)
        })
        .collect()
}

/// `dig CERT name` against our responder → the DER of each PKIX answer.
fn dig_cert(server: std::net::SocketAddr, name: &str, tcp: bool) -> Vec<Vec<u8>> {
    let port = server.port().to_string();
    let at = format!("@{}", server.ip());
    let mut args = vec![
        "+short", "+time=3", "+tries=1", "-p", &port, &at, name, "CERT",
    ];
    if tcp {
        args.push("+tcp");
    }
    let out = String::from_utf8(common::tool("dig", &args)).unwrap();
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f[0] == "PKIX" || f[0] == "1", "{l}");
            openssl::base64::decode_block(&f[3..].concat()).unwrap()
        })
        .collect()
}

fn discovery_config(dns: std::net::SocketAddr) -> Config {
    let mut c = Config::default();
    c.dns.nameservers = vec![dns];
    c.dns.attempts = 1;
    c.discovery.ldap_timeout = hisp::config::Duration(Duration::from_secs(2));
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn h1_h2_exported_cert_records_are_found_by_dig_and_discovery() {
    let root = Ca::root("Hosting Root").unwrap();
    let (env, bob, org) = gateway(&root).await;
    let bob_rr = env.run(&["cert", "export", BOB, "--format", "dns"]).ok();
    let org_rr = env
        .run(&["cert", "export", DOMAIN, "--format", "dns", "--ttl", "120"])
        .ok();
    assert!(
        org_rr.stdout.contains(" 120 IN CERT 1 0 0 "),
        "{}",
        org_rr.stdout
    );
    let mut records = parse_cert_rrs(&bob_rr.stdout);
    records.extend(parse_cert_rrs(&org_rr.stdout));
    assert_eq!(
        records,
        vec![
            ("bob.hisp-a.example".to_string(), bob.cert_der()),
            (DOMAIN.to_string(), org.cert_der()),
        ]
    );

    let zone = Zone::new();
    let mut content = ZoneContent::new();
    content.origin(DOMAIN).unwrap();
    for (owner, der) in &records {
        content.record(owner, 120, cert_rdata(der)).unwrap();
    }
    zone.replace(content);
    let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), zone.clone())
        .await
        .unwrap();
    // H1 and H2 by an independent client, over UDP and over TCP.
    for tcp in [false, true] {
        assert_eq!(
            dig_cert(dns.local_addr, "bob.hisp-a.example", tcp),
            vec![bob.cert_der()]
        );
        assert_eq!(dig_cert(dns.local_addr, DOMAIN, tcp), vec![org.cert_der()]);
    }
    // And by our discovery: bob by his own record, alice by the domain's.
    let discovery = Discovery::new(&discovery_config(dns.local_addr)).unwrap();
    let anchors = Arc::new(Anchors::new(vec![root.cert.clone()]));
    let r = discovery
        .discover(&DirectAddress::parse(BOB).unwrap(), &anchors)
        .await;
    assert_eq!(r.selected_from, Some(Source::DnsAddress));
    assert_eq!(r.selected[0].sha256, bob.sha256_hex());
    let r = discovery
        .discover(
            &DirectAddress::parse("alice@hisp-a.example").unwrap(),
            &anchors,
        )
        .await;
    assert_eq!(r.selected_from, Some(Source::DnsDomain));
    assert_eq!(r.selected[0].sha256, org.sha256_hex());
}

#[tokio::test(flavor = "multi_thread")]
async fn h3_h4_exported_ldif_loads_into_slapd_and_is_found() {
    if !common::slapd::slapd_available() {
        return;
    }
    let root = Ca::root("Hosting LDAP Root").unwrap();
    let (env, bob, org) = gateway(&root).await;
    let mut ldif = env
        .run(&["cert", "export", BOB, "--format", "ldif"])
        .ok()
        .stdout;
    ldif.push_str(
        &env.run(&["cert", "export", DOMAIN, "--format", "ldif"])
            .ok()
            .stdout,
    );
    assert!(
        ldif.starts_with("dn: cn=bob@hisp-a.example,dc=hisp-a,dc=example\n"),
        "{ldif}"
    );
    let slapd = Slapd::start("dc=hisp-a,dc=example", &ldif);

    // H3 and H4 by ldapsearch, anonymously, as a partner would.
    for (mail, cert) in [(BOB, &bob), (DOMAIN, &org)] {
        let out = ldapsearch(
            &slapd.url,
            "dc=hisp-a,dc=example",
            "sub",
            &format!("(mail={mail})"),
            &["userSMIMECertificate", "userCertificate;binary"],
        )
        .unwrap();
        assert_eq!(
            ldif_values(&out, "userSMIMECertificate"),
            vec![cert.cert_der()]
        );
        assert_eq!(
            ldif_values(&out, "userCertificate;binary"),
            vec![cert.cert_der()]
        );
    }

    // And by our discovery through SRV → root DSE → mail search.
    let zone = Zone::new();
    let mut content = ZoneContent::new();
    content.origin(DOMAIN).unwrap();
    let target = hisp::dns_server::name("ldap.hisp-a.example").unwrap();
    content
        .record(
            "_ldap._tcp.hisp-a.example",
            60,
            hickory_proto::rr::RData::SRV(hickory_proto::rr::rdata::SRV::new(
                0, 0, slapd.port, target,
            )),
        )
        .unwrap();
    content
        .record(
            "ldap.hisp-a.example",
            60,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(127, 0, 0, 1)),
        )
        .unwrap();
    zone.replace(content);
    let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), zone)
        .await
        .unwrap();
    let discovery = Discovery::new(&discovery_config(dns.local_addr)).unwrap();
    let anchors = Arc::new(Anchors::new(vec![root.cert.clone()]));
    let r = discovery
        .discover(&DirectAddress::parse(BOB).unwrap(), &anchors)
        .await;
    assert_eq!(r.selected_from, Some(Source::LdapAddress), "{:?}", r.steps);
    assert_eq!(r.selected[0].sha256, bob.sha256_hex());
    let r = discovery
        .discover(
            &DirectAddress::parse("carol@hisp-a.example").unwrap(),
            &anchors,
        )
        .await;
    assert_eq!(r.selected_from, Some(Source::LdapDomain), "{:?}", r.steps);
    assert_eq!(r.selected[0].sha256, org.sha256_hex());
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_cert_queries_from_the_store_and_follows_changes() {
    let root = Ca::root("Serve Root").unwrap();
    let (env, bob, org) = gateway(&root).await;
    let port = free_port();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    // Only the DNS responder: no SMTP listeners for this test.
    config.push_str(&format!(
        "[smtp]\nlisten = []\nsubmission_listen = []\n[dns_server]\nlisten = \"127.0.0.1:{port}\"\nzone = \"{DOMAIN}\"\naddress = \"127.0.0.1\"\n"
    ));
    std::fs::write(&env.config, config).unwrap();
    let mut child = env
        .command(&["serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut serving = Serving(child);
    // Start-up lines go to stderr (the journal); keep draining it so the server never blocks.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("hisp serve start-up line");
        if line.contains("DNS responder") {
            break line;
        }
    };
    assert!(first.contains("DNS responder on 127.0.0.1:"), "{first}");
    assert!(first.contains("2 CERT record(s)"), "{first}");
    let server: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(
        dig_cert(server, "bob.hisp-a.example", false),
        vec![bob.cert_der()]
    );
    assert_eq!(dig_cert(server, DOMAIN, true), vec![org.cert_der()]);
    let mx = common::tool(
        "dig",
        &[
            "+short",
            "-p",
            &port.to_string(),
            "@127.0.0.1",
            DOMAIN,
            "MX",
        ],
    );
    assert_eq!(String::from_utf8(mx).unwrap().trim(), "10 hisp-a.example.");

    // A certificate imported while the server runs is published within the refresh interval.
    env.run(&["address", "add", "carol@hisp-a.example"]).ok();
    let carol = root.leaf().email("carol@hisp-a.example").build().unwrap();
    let cert = env.write("carol.pem", &carol.cert_pem());
    let key = env.write("carol.key", &carol.key_pem());
    env.import_pem(&cert, &key).ok();
    let started = Instant::now();
    loop {
        if dig_cert(server, "carol.hisp-a.example", false) == vec![carol.cert_der()] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "new certificate not published within 8 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // SIGTERM: a clean exit.
    let pid = serving.0.id().to_string();
    common::tool("kill", &["-TERM", &pid]);
    let status = serving.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_command_explains_every_step() {
    let root = Ca::root("Discover CLI Root").unwrap();
    let env = Env::new(Backend::Sqlite).await;
    env.run(&["domain", "add", DOMAIN]).ok();
    let anchor = env.write("root.pem", &root.cert.to_pem().unwrap());
    env.run(&[
        "anchor",
        "add",
        "--domain",
        DOMAIN,
        "--file",
        anchor.to_str().unwrap(),
    ])
    .ok();

    let partner = "dr.jones@hisp-b.example";
    let good = root.leaf().email(partner).build().unwrap();
    let expired = root.leaf().dns("hisp-b.example").expired().build().unwrap();
    let zone = Zone::new();
    let mut content = ZoneContent::new();
    content.origin("hisp-b.example").unwrap();
    content
        .cert("dr.jones.hisp-b.example", &good.cert_der())
        .unwrap();
    content.cert("hisp-b.example", &expired.cert_der()).unwrap();
    zone.replace(content);
    let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), zone)
        .await
        .unwrap();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"3s\"\nattempts = 1\n",
        dns.local_addr
    ));
    std::fs::write(&env.config, config).unwrap();

    let found = env.run(&["discover", partner]).ok();
    assert!(
        found
            .stdout
            .contains("[1] dns-address: dr.jones.hisp-b.example"),
        "{}",
        found.stdout
    );
    assert!(found.stdout.contains(&good.sha256_hex()));
    assert!(found.stdout.contains("verdict   valid"), "{}", found.stdout);
    assert!(
        found.stdout.contains("Selected (dns-address):"),
        "{}",
        found.stdout
    );

    let json = env
        .run(&["discover", partner, "--domain", DOMAIN, "--json"])
        .ok()
        .json();
    assert_eq!(json["address"], partner);
    assert_eq!(json["steps"][0]["source"], "dns-address");
    assert_eq!(json["steps"][0]["certificates"][0]["verdict"], "valid");
    assert_eq!(json["selected"][0], good.sha256_hex());

    // Someone whose only certificate is the expired domain one: every step, exit 3.
    let none = env.run(&["discover", "nobody@hisp-b.example", "--json"]);
    assert_eq!(none.code, 3, "{}", none.stderr);
    let json = none.json();
    let sources: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        ["dns-address", "dns-domain", "ldap-address", "ldap-domain"]
    );
    assert_eq!(json["steps"][1]["certificates"][0]["verdict"], "expired");
    assert!(json["selected"].as_array().unwrap().is_empty());
    assert!(none.stderr.contains("expired"), "{}", none.stderr);

    // A local domain that doesn't exist is a usage error naming it.
    env.run(&["discover", partner, "--domain", "nope.example"])
        .fails(3, "nope.example");
}
