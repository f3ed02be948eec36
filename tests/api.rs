//! The HTTP API over real HTTP against two running gateways (`hisp serve` processes on
//! 127.0.0.1 and 127.0.0.2, MX and CERT records from a real DNS server): send raw and JSON
//! through A, read them from B's mailbox, follow the status to `dispatched`; every
//! authorization boundary and bad request answers with the right status and a JSON error.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::{A, MX};
use hisp::devpki::{Ca, Issued};
use hisp::dns_server::{DnsServer, Zone, ZoneContent, name};
use serde_json::json;

use common::http::HttpServer;
use common::http_client::{Request, Response};
use common::{Backend, Env, backends};

const SMITH: &str = "dr.smith@hisp-a.example";
const NURSE: &str = "nurse@hisp-a.example";
const JONES: &str = "dr.jones@hisp-b.example";
const GHOST: &str = "ghost@hisp-b.example";
const A_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const PASSWORD: &str = "pw-secret";

struct Gateway {
    env: Env,
    ip: Ipv4Addr,
    api: SocketAddr,
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
    async fn new(backend: Backend, domain: &str, ip: Ipv4Addr) -> Gateway {
        let env = Env::new(backend).await;
        env.run(&["domain", "add", domain]).ok();
        let api = SocketAddr::new(IpAddr::V4(A_IP), common::slapd::free_port());
        Gateway {
            env,
            ip,
            api,
            child: None,
        }
    }

    fn user(&self, address: &str, cert: &Issued) {
        self.env
            .run_env(
                &["address", "add", address, "--password-env", "PW"],
                &[("PW", PASSWORD)],
            )
            .ok();
        let c = self.env.write("me.pem", &cert.cert_pem());
        let k = self.env.write("me.key", &cert.key_pem());
        self.env.import_pem(&c, &k).ok();
    }

    fn trust(&self, domain: &str, ca: &Ca) {
        let anchor = self.env.write("anchor.pem", &ca.cert.to_pem().unwrap());
        let file = anchor.to_str().unwrap();
        self.env
            .run(&["anchor", "add", "--domain", domain, "--file", file])
            .ok();
    }

    fn token(&self, args: &[&str]) -> String {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(args);
        self.env.run(&all).ok().stdout.trim().to_string()
    }

    fn configure(&self, port: u16, dns: SocketAddr, extra: &str) {
        let config = std::fs::read_to_string(&self.env.config).unwrap().replace(
            "[api]\nlisten = \"\"\n",
            &format!(
                "[api]\nlisten = \"{}\"\nmax_body_size = \"256KiB\"\n",
                self.api
            ),
        );
        let config = format!(
            "{config}[smtp]\nlisten = [\"{ip}:{port}\"]\nsubmission_listen = []\n\
[delivery]\nport = {port}\nretry = [\"1s\"]\n\
[dns]\nnameservers = [\"{dns}\"]\ntimeout = \"3s\"\nattempts = 1\n\
[discovery]\nldap_timeout = \"1s\"\nnegative_cache_ttl = \"1s\"\n{extra}",
            ip = self.ip,
        );
        std::fs::write(&self.env.config, config).unwrap();
    }

    async fn start(&mut self, port: u16) {
        self.child = Some(
            self.env
                .command(&["serve"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        for addr in [SocketAddr::new(IpAddr::V4(self.ip), port), self.api] {
            let mut ok = false;
            for _ in 0..300 {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ok, "hisp serve never listened on {addr}");
        }
    }

    /// Sends on a blocking thread, so the async test's runtime keeps running.
    async fn call(&self, req: Request<'static>) -> Response {
        let addr = self.api;
        tokio::task::spawn_blocking(move || req.send(addr))
            .await
            .unwrap()
    }

    /// Polls `path` until `done` holds for its JSON, or fails after 30 s with the last answer.
    async fn wait_for(
        &self,
        path: &'static str,
        token: &str,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.call(Request::new("GET", path).bearer(token)).await;
            if r.status == 200 && done(&r.json()) {
                return r.json();
            }
            assert!(
                Instant::now() < deadline,
                "{what} never happened: {}",
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

const RAW: &str = "From: dr.smith@hisp-a.example\r\nTo: dr.jones@hisp-b.example\r\nSubject: Raw referral\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nPlease see patient 4711.\r\n";

async fn api_end_to_end(backend: Backend) {
    let root = Ca::root("API Test Root").unwrap();
    let smith = root.leaf().email(SMITH).build().unwrap();
    let nurse = root.leaf().email(NURSE).build().unwrap();
    let jones = root.leaf().email(JONES).build().unwrap();
    let ghost = root.leaf().email(GHOST).build().unwrap();

    let port = common::slapd::free_port();
    let zone = Zone::new();
    let mut content = ZoneContent::new();
    content.origin("hisp-a.example").unwrap();
    content.origin("hisp-b.example").unwrap();
    for (owner, cert) in [
        ("dr.smith.hisp-a.example", &smith),
        ("nurse.hisp-a.example", &nurse),
        ("dr.jones.hisp-b.example", &jones),
        ("ghost.hisp-b.example", &ghost),
    ] {
        content.cert(owner, &cert.cert_der()).unwrap();
    }
    for (domain, mx, ip) in [
        ("hisp-a.example", "mx.hisp-a.example", A_IP),
        ("hisp-b.example", "mx.hisp-b.example", B_IP),
    ] {
        content
            .record(domain, 60, RData::MX(MX::new(10, name(mx).unwrap())))
            .unwrap();
        content.record(mx, 60, RData::A(A(ip))).unwrap();
    }
    zone.replace(content);
    let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), zone)
        .await
        .unwrap();

    let mut a = Gateway::new(backend, "hisp-a.example", A_IP).await;
    a.user(SMITH, &smith);
    a.user(NURSE, &nurse);
    a.trust("hisp-a.example", &root);
    a.configure(port, dns.local_addr, "");
    let mut b = Gateway::new(backend, "hisp-b.example", B_IP).await;
    b.user(JONES, &jones);
    b.user(GHOST, &ghost);
    b.trust("hisp-b.example", &root);
    b.configure(port, dns.local_addr, "");
    let smith_token = a.token(&["--address", SMITH]);
    let nurse_token = a.token(&["--address", NURSE]);
    let a_admin = a.token(&["--admin"]);
    let jones_token = b.token(&["--address", JONES]);
    let ghost_token = b.token(&["--address", GHOST]);
    a.start(port).await;
    b.start(port).await;

    // Liveness and readiness need no credentials.
    let r = a.call(Request::new("GET", "/healthz")).await;
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("ok")));
    let r = a.call(Request::new("GET", "/readyz")).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Raw message/rfc822 with a bearer token.
    let r = a
        .call(
            Request::new("POST", "/api/v1/messages")
                .bearer(&smith_token)
                .body("message/rfc822", RAW.as_bytes()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let raw_sent = r.json();
    let raw_id = raw_sent["id"].as_str().unwrap().to_string();
    assert_eq!(raw_sent["message_id"], format!("<{raw_id}>"));

    // JSON with an attachment, authenticated with Basic address + password.
    let ccd = b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>";
    let r = a
        .call(
            Request::new("POST", "/api/v1/messages")
                .basic(SMITH, PASSWORD)
                .json(&json!({
                    "to": [JONES],
                    "subject": "JSON referral",
                    "text": "Summary attached.",
                    "attachments": [{"filename": "ccd.xml", "content_type": "application/xml",
                                     "content_base64": openssl::base64::encode_block(ccd)}],
                })),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let json_id = r.json()["id"].as_str().unwrap().to_string();

    // Both arrive in B's mailbox and are listed and fetched through B's API.
    let listing = b
        .wait_for(
            "/api/v1/mailbox",
            &jones_token,
            "delivery of both messages",
            |j| {
                j["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["kind"] == "message")
                    .count()
                    == 2
            },
        )
        .await;
    let messages = listing["messages"].as_array().unwrap();
    let entry = |id: &str| {
        messages
            .iter()
            .find(|m| m["message_id"] == format!("<{id}>"))
            .unwrap_or_else(|| panic!("{id} not listed: {listing}"))["id"]
            .as_i64()
            .unwrap()
    };
    let (raw_entry, json_entry) = (entry(&raw_id), entry(&json_id));
    let r = b
        .call(
            Request::new("GET", leak(format!("/api/v1/mailbox/{json_entry}"))).bearer(&jones_token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let shown = r.json();
    assert_eq!(shown["subject"], "JSON referral");
    assert_eq!(shown["sender"], SMITH);
    assert_eq!(shown["text"].as_str().unwrap().trim(), "Summary attached.");
    let att = &shown["attachments"][0];
    assert_eq!(att["filename"], "ccd.xml");
    assert_eq!(att["size"], ccd.len());
    let href = leak(att["href"].as_str().unwrap().to_string());
    let r = b.call(Request::new("GET", href).bearer(&jones_token)).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &ccd[..]));
    assert_eq!(r.header("content-type"), Some("application/xml"));
    let r = b
        .call(
            Request::new("GET", leak(format!("/api/v1/mailbox/{raw_entry}")))
                .bearer(&jones_token)
                .header("Accept", "message/rfc822"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("message/rfc822"));
    assert!(
        r.text().contains("Please see patient 4711."),
        "{}",
        r.text()
    );
    // Paging: one at a time, following next_after.
    let r = b
        .call(Request::new("GET", "/api/v1/mailbox?limit=1").bearer(&jones_token))
        .await;
    let first = r.json();
    assert_eq!(first["messages"].as_array().unwrap().len(), 1);
    let next = first["next_after"].as_i64().unwrap();
    let r = b
        .call(
            Request::new("GET", leak(format!("/api/v1/mailbox?limit=1&after={next}")))
                .bearer(&jones_token),
        )
        .await;
    assert!(r.json()["messages"][0]["id"].as_i64().unwrap() > next);

    // The sender follows both to `dispatched` through A's API.
    for id in [&raw_id, &json_id] {
        let path = leak(format!("/api/v1/messages/{id}/status"));
        a.wait_for(path, &smith_token, "the dispatched MDN", |j| {
            j["recipients"][0]["state"] == "dispatched"
        })
        .await;
    }

    // Authorization boundaries.
    let r = b
        .call(
            Request::new("GET", leak(format!("/api/v1/mailbox/{raw_entry}"))).bearer(&ghost_token),
        )
        .await;
    r.error(403, "forbidden");
    let r = b
        .call(
            Request::new("GET", leak(format!("/api/v1/mailbox?address={JONES}")))
                .bearer(&ghost_token),
        )
        .await;
    r.error(403, "forbidden");
    let r = b
        .call(
            Request::new("DELETE", leak(format!("/api/v1/mailbox/{raw_entry}")))
                .bearer(&ghost_token),
        )
        .await;
    r.error(403, "forbidden");
    let r = a
        .call(
            Request::new("GET", leak(format!("/api/v1/messages/{raw_id}/status")))
                .bearer(&nurse_token),
        )
        .await;
    r.error(403, "forbidden");
    // Sending as someone else, in JSON and raw.
    let r = a
        .call(
            Request::new("POST", "/api/v1/messages")
                .bearer(&nurse_token)
                .json(&json!({"from": SMITH, "to": JONES, "text": "spoof"})),
        )
        .await;
    r.error(403, "forbidden");
    let r = a
        .call(
            Request::new("POST", "/api/v1/messages")
                .bearer(&nurse_token)
                .body("message/rfc822", RAW.as_bytes()),
        )
        .await;
    r.error(403, "forbidden");
    // Admin endpoints refuse address tokens, and everything refuses no or bad credentials.
    let r = a
        .call(Request::new("GET", "/api/v1/admin/domains").bearer(&smith_token))
        .await;
    r.error(403, "forbidden");
    let r = a.call(Request::new("GET", "/api/v1/mailbox")).await;
    r.error(401, "unauthorized");
    assert!(r.header("www-authenticate").is_some());
    let r = a
        .call(Request::new("GET", "/api/v1/mailbox").bearer("hisp_0000"))
        .await;
    r.error(401, "unauthorized");
    let r = a
        .call(Request::new("GET", "/api/v1/mailbox").basic(SMITH, "wrong"))
        .await;
    r.error(401, "unauthorized");

    // Bad requests.
    let send = || Request::new("POST", "/api/v1/messages").bearer(&smith_token);
    let r = a.call(send().body("application/json", b"{\"to\": ")).await;
    r.error(400, "bad_json");
    let r = a
        .call(send().json(&json!({"to": JONES, "subjekt": "typo"})))
        .await;
    assert!(r.error(400, "bad_json").contains("subjekt"));
    let r = a.call(send().json(&json!({"text": "nobody"}))).await;
    r.error(400, "no_recipients");
    let r = a.call(send().body("text/plain", b"hello")).await;
    r.error(415, "unsupported_media_type");
    let big = vec![b'x'; 300 * 1024];
    let r = a.call(send().body("message/rfc822", &big)).await;
    r.error(413, "too_large");
    let r = b
        .call(Request::new("GET", "/api/v1/mailbox/999999").bearer(&jones_token))
        .await;
    r.error(404, "not_found");
    let r = b
        .call(Request::new("GET", "/api/v1/mailbox/not-a-number").bearer(&jones_token))
        .await;
    r.error(404, "not_found");
    let r = b
        .call(Request::new("GET", "/api/v1/mailbox?limit=100000").bearer(&jones_token))
        .await;
    r.error(400, "bad_query");
    let r = a.call(Request::new("GET", "/api/v1/nothing-here")).await;
    r.error(404, "not_found");
    let r = a.call(Request::new("PUT", "/api/v1/mailbox")).await;
    r.error(405, "method_not_allowed");

    // Admin over HTTP, audited with the API as the actor.
    let r = a
        .call(
            Request::new("POST", "/api/v1/admin/domains")
                .bearer(&a_admin)
                .json(&json!({"name": "clinic.hisp-a.example"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = a
        .call(Request::new("GET", "/api/v1/admin/domains").bearer(&a_admin))
        .await;
    let names: Vec<String> = r.json()["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"clinic.hisp-a.example".to_string()),
        "{names:?}"
    );
    let r = a
        .call(
            Request::new("POST", "/api/v1/admin/domains")
                .bearer(&a_admin)
                .json(&json!({"name": "clinic.hisp-a.example"})),
        )
        .await;
    r.error(409, "conflict");
    let r = a
        .call(
            Request::new("DELETE", "/api/v1/admin/domains/clinic.hisp-a.example").bearer(&a_admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = a
        .call(Request::new("GET", "/api/v1/admin/queue?all=true").bearer(&a_admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.json()["queue"].as_array().unwrap().is_empty());
    // An admin reads a named mailbox and sends as a named local address.
    let r = a
        .call(
            Request::new("POST", "/api/v1/messages")
                .bearer(&a_admin)
                .json(&json!({"to": JONES, "text": "from the admin"})),
        )
        .await;
    r.error(400, "no_sender");

    // Trust bundles over the admin API: a signed bundle served over HTTP is fetched,
    // verified against its signer, listed, refreshed and removed; the anchors show in metrics.
    let signer = Ca::root("API Bundle Signer").unwrap();
    let signer_leaf = signer
        .leaf()
        .email("bundles@hisp-a.example")
        .build()
        .unwrap();
    let p7b = hisp::devpki::certs_only_p7b(&[&root.cert]).unwrap();
    let signed = hisp::devpki::signed_bundle(&signer_leaf, &p7b).unwrap();
    let http = HttpServer::start(std::collections::HashMap::new());
    http.set("/community.p7m", "application/pkcs7-mime", signed);
    let bundle = json!({
        "name": "community", "url": http.url("/community.p7m"),
        "signer_pem": String::from_utf8(signer_leaf.cert_pem()).unwrap(),
        "domains": ["hisp-a.example"], "refresh": "1h",
    });
    let r = a
        .call(
            Request::new("POST", "/api/v1/admin/bundles")
                .bearer(&a_admin)
                .json(&bundle),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["anchors"], 1);
    let mut wrong = bundle.clone();
    wrong["name"] = json!("impostor");
    wrong["signer_pem"] = json!(String::from_utf8(nurse.cert_pem()).unwrap());
    let r = a
        .call(
            Request::new("POST", "/api/v1/admin/bundles")
                .bearer(&a_admin)
                .json(&wrong),
        )
        .await;
    r.error(422, "bundle_unusable");
    let r = a
        .call(Request::new("GET", "/api/v1/admin/bundles").bearer(&a_admin))
        .await;
    let names: Vec<String> = r.json()["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["community"]);
    // Like `hisp anchor list`, the API lists the bundle's anchors with the hand-added ones.
    let r = a
        .call(Request::new("GET", "/api/v1/admin/anchors").bearer(&a_admin))
        .await;
    assert!(
        r.json()["anchors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["bundle"] == "community"),
        "{}",
        r.text()
    );
    let r = a
        .call(Request::new("POST", "/api/v1/admin/bundles/community/refresh").bearer(&a_admin))
        .await;
    assert_eq!(
        r.json()["outcomes"][0]["result"],
        "unchanged",
        "{}",
        r.text()
    );
    let metrics = a.call(Request::new("GET", "/metrics")).await.text();
    assert!(
        metrics.contains("hisp_bundle_anchors{bundle=\"community\"} 1"),
        "{metrics}"
    );
    let r = a
        .call(Request::new("DELETE", "/api/v1/admin/bundles/community").bearer(&a_admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    a.call(Request::new("DELETE", "/api/v1/admin/bundles/community").bearer(&a_admin))
        .await
        .error(404, "not_found");

    // The jones entry can be deleted by its owner, and is gone after.
    let path = leak(format!("/api/v1/mailbox/{raw_entry}"));
    let r = b
        .call(Request::new("DELETE", path).bearer(&jones_token))
        .await;
    assert_eq!(r.status, 204);
    b.call(Request::new("GET", path).bearer(&jones_token))
        .await
        .error(404, "not_found");

    // A relay attempt and an unknown user on A's inbound port are refused and counted.
    {
        let mut c = common::smtp::Client::connect(SocketAddr::new(IpAddr::V4(A_IP), port)).await;
        assert!(c.reply().await.starts_with("220 "));
        c.cmd("EHLO relay.example", "250").await;
        c.cmd("MAIL FROM:<x@elsewhere.example>", "250").await;
        c.cmd("RCPT TO:<victim@elsewhere.example>", "550 5.7.1")
            .await;
        c.cmd("RCPT TO:<nobody@hisp-a.example>", "550 5.1.1").await;
        c.cmd("QUIT", "221").await;
    }

    // Metrics saw the traffic; stored state is exported too.
    let r = a.call(Request::new("GET", "/metrics")).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    for needle in [
        "hisp_messages_total{direction=\"out\",outcome=\"accepted\"",
        "hisp_queue_depth ",
        "hisp_tracking_records{state=\"dispatched\"} 2",
        "hisp_discovery_lookups_total",
        "hisp_crypto_seconds_bucket{op=\"seal\"",
        "hisp_http_requests_total{status=\"4xx\"}",
        "hisp_smtp_rcpt_refused_total{status=\"5.7.1\"} 1",
        "hisp_smtp_rcpt_refused_total{status=\"5.1.1\"} 1",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle:?}:\n{text}");
    }
    let text = b.call(Request::new("GET", "/metrics")).await.text();
    assert!(
        text.contains("hisp_messages_total{direction=\"in\",outcome=\"accepted\""),
        "{text}"
    );
    assert!(
        text.contains("hisp_crypto_seconds_bucket{op=\"open\""),
        "{text}"
    );

    // Every documented route is served (with no credentials: 401, never 404 or 405).
    let doc = a
        .call(Request::new("GET", "/api/v1/openapi.json"))
        .await
        .json();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{message_id}", "x@y")
                .replace("{id}", "1")
                .replace("{index}", "0")
                .replace("{name}", "x.example")
                .replace("{address}", "x@x.example")
                .replace("{sha256}", "00");
            let r = a
                .call(Request::new(
                    leak(method.to_uppercase()),
                    leak(concrete.clone()),
                ))
                .await;
            assert!(
                r.status == 200 || r.status == 401,
                "{method} {concrete}: {} {}",
                r.status,
                r.text()
            );
        }
    }

    // Password guessing: after [smtp] max_auth_failures (3) wrong logins in a row the client's
    // IP is refused for a while, even with the right credentials.
    for _ in 0..3 {
        a.call(Request::new("GET", "/api/v1/mailbox").basic(SMITH, "guess"))
            .await
            .error(401, "unauthorized");
    }
    let r = a
        .call(Request::new("GET", "/api/v1/mailbox").bearer(&smith_token))
        .await;
    r.error(429, "too_many_failures");
    assert!(r.header("retry-after").is_some());

    // The audit log holds the decisions: the submission with its chosen certificates, the
    // failed logins, the admin's changes; and no secret.
    let audit = a.env.run(&["audit", "list", "--json"]).ok();
    let entries = audit.json();
    let events: Vec<&serde_json::Value> = entries.as_array().unwrap().iter().collect();
    let submitted = events
        .iter()
        .find(|e| e["event"] == "message.submitted" && e["subject"] == format!("<{raw_id}>"))
        .unwrap_or_else(|| panic!("no submission audited: {entries}"));
    assert_eq!(
        submitted["detail"]["recipients"][0]["certificates"][0],
        hisp::certinfo::sha256_hex(&jones.cert_der())
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "login" && e["outcome"] == "denied")
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "domain.added" && e["actor"] == "api:admin")
    );
    // Each MDN that came back for it is a trust decision too: signer and effect recorded.
    let mdns: Vec<&&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "notification.received" && e["subject"] == format!("<{raw_id}>"))
        .collect();
    assert!(
        mdns.iter().any(|e| e["detail"]["tracking"] == "dispatched"),
        "no dispatched MDN audited: {entries}"
    );
    for e in &mdns {
        assert_eq!(e["outcome"], "accepted");
        assert_eq!(e["detail"]["kind"], "mdn");
        assert_eq!(e["detail"]["reporter"], JONES);
        assert_eq!(
            e["detail"]["signer"],
            hisp::certinfo::sha256_hex(&jones.cert_der())
        );
    }
    assert!(!audit.stdout.contains(PASSWORD) && !audit.stdout.contains(&smith_token));
    let received = b.env.run(&["audit", "list", "--json"]).ok().json();
    assert!(
        received
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "message.received" && e["outcome"] == "accepted"),
        "{received}"
    );
    a.env.run(&["audit", "verify"]).ok();
    b.env.run(&["audit", "verify"]).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_send_read_status_and_refusals_on_every_backend() {
    for backend in backends() {
        api_end_to_end(backend).await;
    }
}
