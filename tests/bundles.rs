//! Trust bundles (SPEC D26) through the real binary and real sockets: a signed .p7b served by a
//! local HTTP server is added, refreshed, rejected when signed by another key or altered (the
//! last good anchors stay), and removed; and a running `hisp serve` follows the served bundle
//! without restart: a Direct message from a sender whose CA is only in the bundle is accepted,
//! and refused as untrusted within seconds of the CA leaving the served bundle. On SQLite and
//! on PostgreSQL.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hisp::devpki::{Ca, Issued, Usage, certs_only_p7b, signed_bundle};
use sqlx::Row;

use common::http::HttpServer;
use common::smtp::Client;
use common::{Backend, Env, backends};

const SMITH: &str = "dr.smith@hisp-a.example";
const JONES: &str = "dr.jones@hisp-b.example";
const LOCAL: &str = "hisp-b.example";
const PATH: &str = "/bundles/community.p7m";
const P7M: &str = "application/pkcs7-mime";

/// The publisher's signing certificate, and an impostor with the same name from the same CA.
struct Publisher {
    signer: Issued,
    impostor: Issued,
}

impl Publisher {
    fn new() -> Publisher {
        let ca = Ca::root("Bundle Publisher").unwrap();
        let make = || {
            ca.leaf()
                .common_name("Community Bundle Signer")
                .usage(Usage::SignOnly)
                .build()
                .unwrap()
        };
        Publisher {
            signer: make(),
            impostor: make(),
        }
    }

    fn sign(&self, cas: &[&Ca]) -> Vec<u8> {
        sign_with(&self.signer, cas)
    }
}

fn sign_with(signer: &Issued, cas: &[&Ca]) -> Vec<u8> {
    let certs: Vec<_> = cas.iter().map(|c| &c.cert).collect();
    signed_bundle(signer, &certs_only_p7b(&certs).unwrap()).unwrap()
}

/// A signed bundle with one bit of its content flipped, its DER structure intact.
fn tampered(signed: &[u8], ca: &Ca) -> Vec<u8> {
    let der = ca.cert.to_der().unwrap();
    let at = signed
        .windows(der.len())
        .position(|w| w == der.as_slice())
        .unwrap()
        + der.len()
        - 1;
    let mut out = signed.to_vec();
    out[at] ^= 0x01;
    out
}

fn sha(ca: &Ca) -> String {
    hisp::certinfo::sha256_hex(&ca.cert.to_der().unwrap())
}

/// The sha256 of every anchor `anchor list --json` shows with the bundle's name.
fn bundle_anchors(env: &Env, bundle: &str) -> Vec<String> {
    let list = env.run(&["anchor", "list", "--json"]).ok().json();
    let mut out: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["bundle"] == bundle)
        .map(|a| a["sha256"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn audit_events(env: &Env, subject: &str) -> Vec<String> {
    let store = env.store().await;
    let rows = sqlx::query("SELECT event FROM audit_log WHERE subject = $1 ORDER BY id")
        .bind(subject)
        .fetch_all(store.pool())
        .await
        .unwrap();
    store.close().await;
    rows.iter().map(|r| r.get("event")).collect()
}

async fn cli_lifecycle(backend: Backend) {
    let env = Env::new(backend).await;
    env.run(&["domain", "add", LOCAL]).ok();
    let publisher = Publisher::new();
    let (a, c) = (
        Ca::root("Community A").unwrap(),
        Ca::root("Community C").unwrap(),
    );
    let http = HttpServer::empty();
    http.set(PATH, P7M, publisher.sign(&[&a]));
    let url = http.url(PATH);
    let signer = env.write("signer.pem", &publisher.signer.cert_pem());
    let signer = signer.to_str().unwrap();

    // Usage errors and a first fetch that fails store nothing.
    env.run(&["bundle", "add", "community"]).fails(2, "--url");
    env.run(&[
        "bundle",
        "add",
        "community",
        "--url",
        &url,
        "--domain",
        "nowhere.example",
    ])
    .fails(3, "nowhere.example");
    env.run(&[
        "bundle",
        "add",
        "community",
        "--url",
        &url,
        "--refresh",
        "soon",
    ])
    .fails(2, "--refresh");
    env.run(&["bundle", "add", "community", "--url", &url])
        .fails(1, "no signing certificate is configured");
    let impostor = env.write("impostor.pem", &publisher.impostor.cert_pem());
    env.run(&[
        "bundle",
        "add",
        "community",
        "--url",
        &url,
        "--signer",
        impostor.to_str().unwrap(),
    ])
    .fails(1, "not by the configured signer");
    assert_eq!(
        env.run(&["bundle", "list", "--json"]).ok().json(),
        serde_json::json!([])
    );

    // Added: fetched, signature checked, its CA an anchor of the mapped domain.
    let added = env
        .run(&[
            "bundle",
            "add",
            "community",
            "--url",
            &url,
            "--signer",
            signer,
            "--domain",
            LOCAL,
            "--refresh",
            "1h",
            "--incoming",
        ])
        .ok();
    assert!(added.stdout.contains("1 anchors"), "{}", added.stdout);
    assert!(
        added.stdout.contains("signature checked"),
        "{}",
        added.stdout
    );
    assert_eq!(bundle_anchors(&env, "community"), vec![sha(&a)]);
    let anchors = env
        .run(&["anchor", "list", "--domain", LOCAL, "--json"])
        .ok()
        .json();
    assert_eq!(anchors[0]["incoming"], true);
    assert_eq!(anchors[0]["outgoing"], false);
    env.run(&[
        "bundle",
        "add",
        "community",
        "--url",
        &url,
        "--signer",
        signer,
    ])
    .fails(1, "already exists");

    let refreshed = env.run(&["bundle", "refresh"]).ok();
    assert_eq!(refreshed.stdout, "community: unchanged (1 anchors)\n");

    // Signed by another key: refused, the anchors stay, the failure is counted.
    http.set(PATH, P7M, sign_with(&publisher.impostor, &[&c]));
    let failed = env
        .run(&["bundle", "refresh", "community"])
        .fails(1, "failed to refresh");
    assert!(
        failed.stdout.starts_with("community: failed: ")
            && failed.stdout.contains("not by the configured signer"),
        "{}",
        failed.stdout
    );
    assert_eq!(bundle_anchors(&env, "community"), vec![sha(&a)]);

    // Altered after signing: the same.
    http.set(PATH, P7M, tampered(&publisher.sign(&[&c]), &c));
    let failed = env
        .run(&["bundle", "refresh"])
        .fails(1, "failed to refresh");
    assert!(failed.stdout.contains("altered"), "{}", failed.stdout);
    assert_eq!(bundle_anchors(&env, "community"), vec![sha(&a)]);

    // Unreachable: the same.
    http.remove(PATH);
    env.run(&["bundle", "refresh"])
        .fails(1, "failed to refresh");
    assert_eq!(bundle_anchors(&env, "community"), vec![sha(&a)]);

    let list = env.run(&["bundle", "list", "--json"]).ok().json();
    let b = &list[0];
    assert_eq!(b["name"], "community");
    assert_eq!(b["url"], url.as_str());
    assert_eq!(b["anchor_count"], 1);
    assert_eq!(b["failure_count"], 3);
    assert_eq!(b["consecutive_failures"], 3);
    assert_eq!(b["signer_sha256"], publisher.signer.sha256_hex().as_str());
    assert!(b["last_error"].as_str().unwrap().contains("404"), "{b}");
    assert_eq!(
        b["domains"],
        serde_json::json!([{"domain": LOCAL, "incoming": true, "outgoing": false}])
    );
    assert!(b.get("signer_der").is_none());

    // A good new bundle replaces the anchors and clears the failure state.
    http.set(PATH, P7M, publisher.sign(&[&a, &c]));
    let updated = env.run(&["bundle", "refresh", "community"]).ok();
    assert_eq!(updated.stdout, "community: updated 2 anchors\n");
    assert_eq!(
        bundle_anchors(&env, "community"),
        sorted(vec![sha(&a), sha(&c)])
    );
    let store = env.store().await;
    let counters = hisp::bundles::counters(&store).await.unwrap();
    store.close().await;
    assert_eq!(
        (
            counters[0].anchors,
            counters[0].failures_total,
            counters[0].consecutive_failures
        ),
        (2, 3, 0)
    );
    let json = env.run(&["bundle", "refresh", "--json"]).ok().json();
    assert_eq!(
        json,
        serde_json::json!([{"name": "community", "result": "unchanged", "anchors": 2}])
    );

    // A bundle from a file, trusted both ways by default.
    let file = env.write("local.p7b", &certs_only_p7b(&[&c.cert]).unwrap());
    env.run(&["bundle", "add", "local", "--file", file.to_str().unwrap()])
        .ok();
    assert_eq!(bundle_anchors(&env, "local"), vec![sha(&c)]);

    env.run(&["bundle", "remove", "community"]).ok();
    assert!(bundle_anchors(&env, "community").is_empty());
    env.run(&["bundle", "remove", "community"])
        .fails(3, "no bundle named community");
    env.run(&["bundle", "refresh", "community"])
        .fails(3, "no bundle named community");

    assert_eq!(
        audit_events(&env, "community").await,
        [
            "bundle.added",
            "bundle.refresh_failed",
            "bundle.refresh_failed",
            "bundle.refresh_failed",
            "bundle.changed",
            "bundle.removed"
        ]
    );
    env.run(&["audit", "verify"]).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn add_refresh_reject_and_remove_on_every_backend() {
    for backend in backends() {
        cli_lifecycle(backend).await;
    }
}

/// A `hisp serve` for hisp-b.example with Dr. Jones's key, its inbound listener on `port`.
struct Gateway {
    env: Env,
    port: u16,
    child: Option<Child>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Gateway {
    async fn new(backend: Backend, jones: &Issued) -> Gateway {
        let env = Env::new(backend).await;
        env.run(&["domain", "add", LOCAL]).ok();
        env.run_env(
            &["address", "add", JONES, "--password-env", "PW"],
            &[("PW", "pw-secret")],
        )
        .ok();
        let cert = env.write("jones.pem", &jones.cert_pem());
        let key = env.write("jones.key", &jones.key_pem());
        env.import_pem(&cert, &key).ok();
        let port = common::slapd::free_port();
        let mut config = std::fs::read_to_string(&env.config).unwrap();
        config.push_str(&format!(
            "[smtp]\nlisten = [\"127.0.0.1:{port}\"]\nsubmission_listen = [\"127.0.0.1:{sub}\"]\n\
[dns]\nnameservers = [\"127.0.0.1:{dns}\"]\ntimeout = \"1s\"\nattempts = 1\n",
            sub = common::slapd::free_port(),
            dns = common::slapd::free_port(),
        ));
        std::fs::write(&env.config, config).unwrap();
        Gateway {
            env,
            port,
            child: None,
        }
    }

    async fn start(&mut self) {
        self.child = Some(
            self.env
                .command(&["serve"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr = self.addr();
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("hisp serve never listened on {addr}");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Sends Dr. Smith's signed and encrypted message to Dr. Jones; returns the DATA reply.
    async fn deliver(&self, smith: &Issued, jones: &Issued, n: u32) -> String {
        let message = format!(
            "From: {SMITH}\r\nTo: {JONES}\r\nSubject: Referral {n}\r\nMessage-ID: <b{n}@hisp-a.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nPlease see patient 4711.\r\n"
        );
        let signer = hisp::smime::LocalKey {
            cert: smith.cert.clone(),
            key: smith.key.clone(),
            chain: vec![],
        };
        let sealed = hisp::smime::seal(
            message.as_bytes(),
            &[signer],
            std::slice::from_ref(&jones.cert),
            &hisp::smime::SealOptions::from(&hisp::config::Security::default()),
        )
        .unwrap();
        let mut c = Client::connect(self.addr()).await;
        assert!(c.reply().await.starts_with("220 "));
        c.cmd("EHLO hisp-a.example", "250").await;
        c.cmd(&format!("MAIL FROM:<{SMITH}>"), "250").await;
        c.cmd(&format!("RCPT TO:<{JONES}>"), "250").await;
        c.cmd("DATA", "354").await;
        let mut data = String::from_utf8(sealed)
            .unwrap()
            .replace("\r\n.", "\r\n..");
        data.push_str(".\r\n");
        c.send(&data).await;
        let reply = c.reply().await;
        c.cmd("QUIT", "221").await;
        reply
    }
}

async fn running_server(backend: Backend) {
    let publisher = Publisher::new();
    let (a, b, c) = (
        Ca::root("Community A").unwrap(),
        Ca::root("Community B").unwrap(),
        Ca::root("Community C").unwrap(),
    );
    let smith = a.leaf().email(SMITH).build().unwrap();
    let jones = b.leaf().email(JONES).build().unwrap();
    let http = HttpServer::empty();
    http.set(PATH, P7M, publisher.sign(&[&a, &c]));
    let mut gw = Gateway::new(backend, &jones).await;
    let signer = gw.env.write("signer.pem", &publisher.signer.cert_pem());
    gw.env
        .run(&[
            "bundle",
            "add",
            "community",
            "--url",
            &http.url(PATH),
            "--signer",
            signer.to_str().unwrap(),
            "--refresh",
            "1s",
            "--incoming",
        ])
        .ok();
    gw.start().await;

    // Smith's CA is an anchor of hisp-b.example only through the bundle.
    let reply = gw.deliver(&smith, &jones, 1).await;
    assert!(reply.starts_with("250 "), "{reply}");

    // A bundle signed by another key, then an altered one: refused on every refresh, and the
    // last good anchors keep working.
    http.set(PATH, P7M, sign_with(&publisher.impostor, &[&c]));
    let hits = http.hits(PATH);
    wait_for(Duration::from_secs(10), || http.hits(PATH) >= hits + 2).await;
    http.set(PATH, P7M, tampered(&publisher.sign(&[&c]), &c));
    let hits = http.hits(PATH);
    wait_for(Duration::from_secs(10), || http.hits(PATH) >= hits + 2).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reply = gw.deliver(&smith, &jones, 2).await;
    assert!(reply.starts_with("250 "), "{reply}");
    let list = gw.env.run(&["bundle", "list", "--json"]).ok().json();
    assert!(
        list[0]["consecutive_failures"].as_i64().unwrap() >= 4,
        "{list}"
    );
    assert_eq!(list[0]["anchor_count"], 2);

    // A genuine bundle without Smith's CA: refused within the refresh interval plus 5 s.
    http.set(PATH, P7M, publisher.sign(&[&c]));
    let changed = Instant::now();
    let mut n = 3;
    let reply = loop {
        let reply = gw.deliver(&smith, &jones, n).await;
        n += 1;
        if !reply.starts_with("250 ") || changed.elapsed() > Duration::from_secs(20) {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = changed.elapsed();
    eprintln!(
        "{backend:?}: the running server refused the sender {took:?} after the bundle changed"
    );
    assert!(
        reply.starts_with("5") && reply.contains("untrusted signer"),
        "{reply}"
    );
    assert!(
        took <= Duration::from_secs(1 + 5 + 2),
        "trust changed only after {took:?}"
    );
    let list = gw.env.run(&["bundle", "list", "--json"]).ok().json();
    assert_eq!(list[0]["consecutive_failures"], 0);
    assert_eq!(list[0]["anchor_count"], 1);
}

async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn running_server_follows_the_served_bundle_on_every_backend() {
    for backend in backends() {
        running_server(backend).await;
    }
}

/// Bundles made by another implementation (the openssl CLI): a .p7b from `crl2pkcs7` in PEM,
/// and the same signed with `cms -sign`, read from files.
#[tokio::test(flavor = "multi_thread")]
async fn bundles_made_by_the_openssl_cli_are_read() {
    let env = Env::new(Backend::Sqlite).await;
    env.run(&["domain", "add", LOCAL]).ok();
    let publisher = Publisher::new();
    let a = Ca::root("Community A").unwrap();
    let ca = env.write("a.pem", &a.cert.to_pem().unwrap());
    let signer = env.write("signer.pem", &publisher.signer.cert_pem());
    let key = env.write("signer.key", &publisher.signer.key_pem());
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let p7b = env.path("a.p7b");
    common::tool(
        "openssl",
        &[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            &path(&ca),
            "-out",
            &path(&p7b),
        ],
    );
    let signed = env.path("a.p7m");
    common::tool(
        "openssl",
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-in",
            &path(&p7b),
            "-signer",
            &path(&signer),
            "-inkey",
            &path(&key),
            "-outform",
            "DER",
            "-out",
            &path(&signed),
        ],
    );
    env.run(&["bundle", "add", "plain", "--file", &path(&p7b)])
        .ok();
    env.run(&[
        "bundle",
        "add",
        "signed",
        "--file",
        &path(&signed),
        "--signer",
        &path(&signer),
    ])
    .ok();
    assert_eq!(bundle_anchors(&env, "plain"), vec![sha(&a)]);
    assert_eq!(bundle_anchors(&env, "signed"), vec![sha(&a)]);
}

/// Outbound trust: `hisp discover` accepts a partner's certificate in DNS when its CA is in a
/// bundle mapped `--outgoing`, and not when the bundle is trusted for incoming mail only.
#[tokio::test(flavor = "multi_thread")]
async fn discover_uses_outgoing_bundle_anchors() {
    use hisp::dns_server::{DnsServer, Zone, ZoneContent};
    let partner = Ca::root("Partner CA").unwrap();
    let bob = hisp::address::DirectAddress::parse("bob@partner.example").unwrap();
    let cert = partner.leaf().email(bob.as_str()).build().unwrap();
    let zone = Zone::new();
    let mut content = ZoneContent::new();
    content.origin("partner.example").unwrap();
    content
        .cert(&bob.cert_query_name(), &cert.cert_der())
        .unwrap();
    zone.replace(content);
    let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), zone.clone())
        .await
        .unwrap();

    let env = Env::new(Backend::Sqlite).await;
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "[dns]\nnameservers = [\"{}\"]\ntimeout = \"3s\"\nattempts = 1\n[discovery]\nldap_timeout = \"1s\"\n",
        dns.local_addr
    ));
    std::fs::write(&env.config, config).unwrap();
    env.run(&["domain", "add", LOCAL]).ok();
    let file = env.write("partner.p7b", &certs_only_p7b(&[&partner.cert]).unwrap());
    let file = file.to_str().unwrap();

    env.run(&[
        "bundle",
        "add",
        "inbound-only",
        "--file",
        file,
        "--incoming",
    ])
    .ok();
    let run = env.run(&["discover", bob.as_str(), "--json"]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);

    env.run(&["bundle", "add", "partners", "--file", file, "--outgoing"])
        .ok();
    let report = env.run(&["discover", bob.as_str(), "--json"]).ok().json();
    assert_eq!(report["selected"], serde_json::json!([cert.sha256_hex()]));
    dns.shutdown().await;
}
