//! Direct end to end: two `hisp serve` processes (separate configs and stores) and a DNS
//! server with their CERT, MX and A records. Gateway A listens on 127.0.0.1, B on 127.0.0.2,
//! both on one port number; B's MX points at 127.0.0.3, where a tap records (and, when told
//! to, corrupts) what A sends B. A referral submitted over SMTP AUTH to A lands decrypted in
//! B's mailbox with its attachment byte-identical, only enveloped-data crossed the wire, and
//! A's status reaches dispatched. Then the failure paths, each ending in its DSN and status.
//! On SQLite and on PostgreSQL.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::{A, MX};
use hisp::devpki::{Ca, Issued, Usage};
use hisp::dns_server::{DnsServer, Zone, ZoneContent, name};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::smtp::{Client, b64};
use common::{Backend, Env, backends};

const SMITH: &str = "dr.smith@hisp-a.example";
const WHO: &str = "dr.who@hisp-a.example";
const JONES: &str = "dr.jones@hisp-b.example";
const GHOST: &str = "ghost@hisp-b.example";
const STRANGER: &str = "stranger@hisp-b.example";
const SILENT: &str = "silent@hisp-b.example";
const FULL: &str = "full@hisp-b.example";
const NURSE: &str = "nurse@hisp-a.example";

const A_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const TAP_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

struct Gateway {
    env: Env,
    ip: Ipv4Addr,
    submission: u16,
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
        Gateway {
            env,
            ip,
            submission: common::slapd::free_port(),
            child: None,
        }
    }

    fn user(&self, address: &str, cert: &Issued) {
        self.env
            .run_env(
                &["address", "add", address, "--password-env", "PW"],
                &[("PW", "pw-secret")],
            )
            .ok();
        let c = self.env.write("me.pem", &cert.cert_pem());
        let k = self.env.write("me.key", &cert.key_pem());
        self.env.import_pem(&c, &k).ok();
    }

    fn trust(&self, domain: &str, ca: &Ca) {
        let anchor = self.env.write("anchor.pem", &ca.cert.to_pem().unwrap());
        self.env
            .run(&[
                "anchor",
                "add",
                "--domain",
                domain,
                "--file",
                anchor.to_str().unwrap(),
            ])
            .ok();
    }

    fn configure(&self, port: u16, dns: SocketAddr) {
        let mut config = std::fs::read_to_string(&self.env.config).unwrap();
        config.push_str(&format!(
            "[smtp]\nlisten = [\"{ip}:{port}\"]\nsubmission_listen = [\"127.0.0.1:{sub}\"]\nrequire_tls_for_auth = false\n\
[delivery]\nport = {port}\nretry = [\"1s\"]\n\
[dns]\nnameservers = [\"{dns}\"]\ntimeout = \"3s\"\nattempts = 1\n\
[discovery]\nldap_timeout = \"1s\"\nnegative_cache_ttl = \"1s\"\n\
[notifications]\ntimeout = \"6s\"\n",
            ip = self.ip,
            sub = self.submission,
        ));
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
        for addr in [
            SocketAddr::new(IpAddr::V4(self.ip), port),
            SocketAddr::new(IpAddr::V4(A_IP), self.submission),
        ] {
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

    async fn mailbox(&self, address: &str) -> Vec<(String, String, Vec<u8>)> {
        let store = self.env.store().await;
        let rows = sqlx::query(
            "SELECT m.kind, m.message_id, m.raw FROM mailbox m JOIN addresses a ON a.id = m.address_id
             WHERE a.address = $1 ORDER BY m.id",
        )
        .bind(address)
        .fetch_all(store.pool())
        .await
        .unwrap();
        store.close().await;
        rows.iter()
            .map(|r| (r.get("kind"), r.get("message_id"), r.get("raw")))
            .collect()
    }

    /// Waits for `hisp status` of `message_id` to show `state` for `recipient`.
    async fn wait_status(
        &self,
        message_id: &str,
        recipient: &str,
        state: &str,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        for _ in 0..300 {
            let run = self.env.run(&["status", message_id, "--json"]);
            if run.code == 0 {
                last = run.json();
                let rec = last["recipients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["recipient"] == recipient)
                    .cloned();
                if let Some(r) = rec
                    && r["state"] == state
                {
                    return r;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{message_id} to {recipient} never reached {state}: {last}");
    }

    /// Waits for a DSN in `address`'s mailbox that mentions `needle`.
    async fn wait_dsn(&self, address: &str, needle: &str) -> String {
        for _ in 0..300 {
            for (kind, _, raw) in self.mailbox(address).await {
                let text = String::from_utf8_lossy(&raw).into_owned();
                if kind == "dsn" && text.contains(needle) {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no DSN mentioning {needle:?} for {address}");
    }
}

/// A TCP forwarder that records what the client sends, and corrupts the next message's body
/// when `corrupt` is set.
struct Tap {
    seen: Arc<Mutex<Vec<u8>>>,
    corrupt: Arc<AtomicBool>,
}

impl Tap {
    async fn start(listen: SocketAddr, upstream: SocketAddr) -> Tap {
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let corrupt = Arc::new(AtomicBool::new(false));
        let (s, c) = (seen.clone(), corrupt.clone());
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let (s, c) = (s.clone(), c.clone());
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut dr, mut dw) = down.split();
                    let (mut ur, mut uw) = up.split();
                    let to_server = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match dr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let chunk = &mut buf[..n];
                            // A big chunk is message content (base64 of the enveloped data):
                            // flip one character in its middle.
                            if n > 2000 && c.swap(false, Ordering::SeqCst) {
                                let i = (n / 2..n)
                                    .find(|&i| chunk[i].is_ascii_alphanumeric())
                                    .unwrap_or(n / 2);
                                chunk[i] = if chunk[i] == b'A' { b'B' } else { b'A' };
                            }
                            s.lock().unwrap().extend_from_slice(chunk);
                            if uw.write_all(chunk).await.is_err() {
                                break;
                            }
                        }
                        let _ = uw.shutdown().await;
                    };
                    let to_client = async {
                        let _ = tokio::io::copy(&mut ur, &mut dw).await;
                        let _ = dw.shutdown().await;
                    };
                    tokio::join!(to_server, to_client);
                });
            }
        });
        Tap { seen, corrupt }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

const PDF_B64: &str = "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK";

fn referral(from: &str, to: &str, id: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: Referral: patient 4711\r\nMessage-ID: <{id}@hisp-a.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nPlease see the attached summary.\r\n--b1\r\nContent-Type: application/pdf; name=\"summary.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{PDF_B64}\r\n--b1--\r\n"
    )
}

async fn submit(port: u16, user: &str, rcpt: &str, body: &str, expect: &str) -> String {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut c = Client::connect(addr).await;
    assert!(c.reply().await.starts_with("220 "));
    c.cmd("EHLO ehr.example", "250-").await;
    c.cmd(
        &format!("AUTH PLAIN {}", b64(&format!("\0{user}\0pw-secret"))),
        "235 2.7.0",
    )
    .await;
    c.cmd(&format!("MAIL FROM:<{user}>"), "250 2.1.0").await;
    c.cmd(&format!("RCPT TO:<{rcpt}>"), "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    let reply = c.cmd(&format!("{body}."), expect).await;
    c.cmd("QUIT", "221").await;
    reply
}

fn pdf_bytes(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let part = text
        .split("Content-Transfer-Encoding: base64\r\n\r\n")
        .nth(1)
        .unwrap();
    let b64: String = part
        .split("\r\n--b1--")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    openssl::base64::decode_block(&b64).unwrap()
}

async fn end_to_end(backend: Backend) {
    let root = Ca::root("Direct E2E Root").unwrap();
    let other_ca = Ca::root("A community B does not trust").unwrap();
    let smith = root.leaf().email(SMITH).build().unwrap();
    let who = other_ca.leaf().email(WHO).build().unwrap();
    let jones = root.leaf().email(JONES).build().unwrap();
    let ghost = root.leaf().email(GHOST).build().unwrap();
    let stranger = other_ca.leaf().email(STRANGER).build().unwrap();
    // Can decrypt but not sign: B receives for this address but never answers with an MDN.
    let full = root.leaf().email(FULL).build().unwrap();
    let nurse = root.leaf().email(NURSE).build().unwrap();
    let silent = root
        .leaf()
        .email(SILENT)
        .usage(Usage::EncryptOnly)
        .build()
        .unwrap();

    let port = common::slapd::free_port();
    let zone = Zone::new();
    let mut content = ZoneContent::new();
    content.origin("hisp-a.example").unwrap();
    content.origin("hisp-b.example").unwrap();
    for (owner, cert) in [
        ("dr.smith.hisp-a.example", &smith),
        ("dr.who.hisp-a.example", &who),
        ("dr.jones.hisp-b.example", &jones),
        ("ghost.hisp-b.example", &ghost),
        ("stranger.hisp-b.example", &stranger),
        ("silent.hisp-b.example", &silent),
        ("full.hisp-b.example", &full),
        ("nurse.hisp-a.example", &nurse),
    ] {
        content.cert(owner, &cert.cert_der()).unwrap();
    }
    for (domain, mx, ip) in [
        ("hisp-a.example", "mx.hisp-a.example", A_IP),
        ("hisp-b.example", "mx.hisp-b.example", TAP_IP),
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
    a.user(WHO, &who);
    a.user(NURSE, &nurse);
    a.trust("hisp-a.example", &root);
    a.configure(port, dns.local_addr);
    let mut b = Gateway::new(backend, "hisp-b.example", B_IP).await;
    b.user(JONES, &jones);
    b.user(SILENT, &silent);
    b.user(FULL, &full);
    b.trust("hisp-b.example", &root);
    b.configure(port, dns.local_addr);
    // B's mailboxes hold at most 100 KiB; FULL's is already at the limit.
    let mut config = std::fs::read_to_string(&b.env.config).unwrap();
    config.push_str("[mailbox]\nquota = \"100KiB\"\n");
    std::fs::write(&b.env.config, config).unwrap();
    {
        let store = b.env.store().await;
        sqlx::query(
            "INSERT INTO mailbox (address_id, message_id, sender, subject, kind, size, raw, received_at)
             SELECT id, '<old@x>', 'x@x', 'old', 'message', 102400, $1, 0 FROM addresses WHERE address = $2",
        )
        .bind(vec![b'x'; 102_400])
        .bind(FULL)
        .execute(store.pool())
        .await
        .unwrap();
        store.close().await;
    }
    let tap = Tap::start(
        SocketAddr::new(IpAddr::V4(TAP_IP), port),
        SocketAddr::new(IpAddr::V4(B_IP), port),
    )
    .await;
    a.start(port).await;
    b.start(port).await;

    // The referral.
    let reply = submit(
        a.submission,
        SMITH,
        JONES,
        &referral(SMITH, JONES, "r1"),
        "250 2.0.0",
    )
    .await;
    assert!(
        reply.contains("<r1@hisp-a.example> queued: 1 recipient(s) signed and encrypted"),
        "{reply}"
    );
    let mut inbox = Vec::new();
    for _ in 0..300 {
        inbox = b.mailbox(JONES).await;
        if !inbox.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(inbox.len(), 1, "not delivered to B");
    let (kind, id, raw) = &inbox[0];
    assert_eq!(
        (kind.as_str(), id.as_str()),
        ("message", "<r1@hisp-a.example>")
    );
    // The same through the CLI: listed, and shown as the decrypted inner message.
    let listed = b.env.run(&["mailbox", "list", JONES, "--json"]).ok().json();
    assert_eq!(listed[0]["kind"], "message");
    assert_eq!(listed[0]["sender"], SMITH);
    let shown = b
        .env
        .run(&["mailbox", "show", &listed[0]["id"].to_string()])
        .ok();
    assert_eq!(shown.raw_stdout, *raw);
    b.env
        .run(&["mailbox", "show", "999999"])
        .fails(3, "no mailbox message 999999");
    let expected_pdf = openssl::base64::decode_block(PDF_B64).unwrap();
    assert_eq!(pdf_bytes(raw), expected_pdf, "attachment byte-identical");
    a.wait_status("<r1@hisp-a.example>", JONES, "dispatched")
        .await;
    let kinds: Vec<String> = a
        .mailbox(SMITH)
        .await
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(kinds, ["mdn"], "the dispatched MDN, not the processed one");

    // What crossed from A to B: enveloped data only, no plaintext.
    let wire = tap.text();
    assert!(
        wire.contains("Content-Type: application/pkcs7-mime; smime-type=enveloped-data"),
        "{wire}"
    );
    for secret in [
        "Referral: patient 4711",
        "Please see the attached summary",
        PDF_B64,
    ] {
        assert!(!wire.contains(secret), "plaintext {secret:?} on the wire");
    }

    // Replay: the exact bytes A sent, sent again straight to B, are acknowledged but not filed twice.
    let data_start = wire.find("\r\nDATA\r\n").map(|i| i + 8).unwrap();
    let data = &wire[data_start..];
    let data_end = data.find("\r\n.\r\n").unwrap() + 5;
    let mut c = Client::connect(SocketAddr::new(IpAddr::V4(B_IP), port)).await;
    assert!(c.reply().await.starts_with("220 "));
    c.cmd("EHLO replay.example", "250-").await;
    c.cmd(&format!("MAIL FROM:<{SMITH}>"), "250").await;
    c.cmd(&format!("RCPT TO:<{JONES}>"), "250").await;
    c.cmd("DATA", "354").await;
    c.send(&data[..data_end]).await;
    assert!(c.reply().await.starts_with("250 "));
    c.cmd("QUIT", "221").await;
    assert_eq!(
        b.mailbox(JONES).await.len(),
        1,
        "a replayed message is not stored twice"
    );

    // Tampered in transit: B refuses it in DATA, A tells the sender.
    tap.corrupt.store(true, Ordering::SeqCst);
    submit(
        a.submission,
        SMITH,
        JONES,
        &referral(SMITH, JONES, "r2"),
        "250 2.0.0",
    )
    .await;
    let rec = a.wait_status("<r2@hisp-a.example>", JONES, "failed").await;
    assert!(rec["reason"].as_str().unwrap().contains("554 5."), "{rec}");
    a.wait_dsn(SMITH, "r2@hisp-a.example").await;
    assert_eq!(b.mailbox(JONES).await.len(), 1);

    // Unknown recipient at B (its certificate is published, the mailbox doesn't exist).
    submit(
        a.submission,
        SMITH,
        GHOST,
        &referral(SMITH, GHOST, "r3"),
        "250 2.0.0",
    )
    .await;
    let rec = a.wait_status("<r3@hisp-a.example>", GHOST, "failed").await;
    assert!(rec["reason"].as_str().unwrap().contains("5.1.1"), "{rec}");
    a.wait_dsn(SMITH, GHOST).await;

    // No certificate at all: nobody is sent anything, the DSN says why.
    let nobody = "nobody@hisp-b.example";
    submit(
        a.submission,
        SMITH,
        nobody,
        &referral(SMITH, nobody, "r4"),
        "250 2.0.0",
    )
    .await;
    let dsn = a.wait_dsn(SMITH, nobody).await;
    assert!(dsn.contains("no certificate"), "{dsn}");

    // The recipient's certificate is not trusted by A.
    submit(
        a.submission,
        SMITH,
        STRANGER,
        &referral(SMITH, STRANGER, "r5"),
        "250 2.0.0",
    )
    .await;
    let dsn = a.wait_dsn(SMITH, STRANGER).await;
    assert!(dsn.contains("untrusted"), "{dsn}");

    // A's sender is not trusted by B: B refuses in DATA, A's DSN goes to Dr Who.
    submit(
        a.submission,
        WHO,
        JONES,
        &referral(WHO, JONES, "r6"),
        "250 2.0.0",
    )
    .await;
    let rec = a.wait_status("<r6@hisp-a.example>", JONES, "failed").await;
    assert!(
        rec["reason"].as_str().unwrap().contains("untrusted signer"),
        "{rec}"
    );
    a.wait_dsn(WHO, "r6@hisp-a.example").await;

    // B takes the message but never sends an MDN: A times out and tells the sender once.
    submit(
        a.submission,
        SMITH,
        SILENT,
        &referral(SMITH, SILENT, "r7"),
        "250 2.0.0",
    )
    .await;
    let rec = a
        .wait_status("<r7@hisp-a.example>", SILENT, "timed-out")
        .await;
    assert_eq!(rec["dsn_sent"], true, "{rec}");
    let dsn = a.wait_dsn(SMITH, "not confirmed").await;
    assert!(dsn.contains(SILENT), "{dsn}");
    assert_eq!(b.mailbox(SILENT).await.len(), 1);

    // B processes the message but can't deliver it (the mailbox is full): a failed MDN, the
    // sender's status says failed with B's reason, and the sender is told once.
    submit(
        a.submission,
        SMITH,
        FULL,
        &referral(SMITH, FULL, "r8"),
        "250 2.0.0",
    )
    .await;
    let rec = a.wait_status("<r8@hisp-a.example>", FULL, "failed").await;
    assert!(rec["reason"].as_str().unwrap().contains("is full"), "{rec}");
    assert_eq!(rec["dsn_sent"], true, "{rec}");
    let failed_mdn = a
        .mailbox(SMITH)
        .await
        .into_iter()
        .map(|(k, _, raw)| (k, String::from_utf8_lossy(&raw).into_owned()))
        .find(|(k, t)| k == "mdn" && t.contains("; failed"));
    assert!(
        failed_mdn.is_some(),
        "the failed MDN is in the sender's mailbox"
    );
    let dsn = a.wait_dsn(SMITH, "is full").await;
    assert!(dsn.contains(FULL), "{dsn}");
    assert_eq!(b.mailbox(FULL).await.len(), 1, "only the old message");

    // A partner's DSN (signed by its domain certificate, encrypted to Dr Smith) about a
    // message still waiting for its MDN fails that recipient's record.
    submit(
        a.submission,
        SMITH,
        SILENT,
        &referral(SMITH, SILENT, "r9"),
        "250 2.0.0",
    )
    .await;
    a.wait_status("<r9@hisp-a.example>", SILENT, "sent").await;
    let b_domain = root.leaf().dns("hisp-b.example").build().unwrap();
    let report = hisp::notify::dsn::build(&hisp::notify::dsn::Dsn {
        reporting_mta: "hisp-b.example",
        to: SMITH,
        message_id: "partner-dsn-1@hisp-b.example",
        boundary: "pd1",
        date: hisp::clock::now_secs(),
        envid: None,
        arrival_date: hisp::clock::now_secs(),
        recipients: &[hisp::notify::dsn::DsnRecipient {
            final_recipient: SILENT.into(),
            original_recipient: None,
            status: "5.2.1".into(),
            remote_mta: None,
            diagnostic: "mailbox disabled".into(),
            last_attempt: hisp::clock::now_secs(),
        }],
        original: b"Message-ID: <r9@hisp-a.example>\r\nSubject: x\r\n\r\n",
        return_full: false,
    });
    let signer = hisp::smime::LocalKey {
        cert: b_domain.cert.clone(),
        key: b_domain.key.clone(),
        chain: vec![],
    };
    let sealed = hisp::smime::seal(
        &report,
        &[signer],
        std::slice::from_ref(&smith.cert),
        &hisp::smime::SealOptions::from(&hisp::config::Security::default()),
    )
    .unwrap();
    let mut c = Client::connect(SocketAddr::new(IpAddr::V4(A_IP), port)).await;
    assert!(c.reply().await.starts_with("220 "));
    c.cmd("EHLO hisp-b.example", "250-").await;
    c.cmd("MAIL FROM:<MAILER-DAEMON@hisp-b.example>", "250")
        .await;
    c.cmd(&format!("RCPT TO:<{SMITH}>"), "250").await;
    c.cmd("DATA", "354").await;
    let mut data = String::from_utf8(sealed)
        .unwrap()
        .replace("\r\n.", "\r\n..");
    data.push_str(".\r\n");
    c.send(&data).await;
    let reply = c.reply().await;
    assert!(reply.starts_with("250 "), "{reply}");
    c.cmd("QUIT", "221").await;
    let rec = a.wait_status("<r9@hisp-a.example>", SILENT, "failed").await;
    assert!(
        rec["reason"].as_str().unwrap().contains("mailbox disabled"),
        "{rec}"
    );
    a.wait_dsn(SMITH, "mailbox disabled").await;

    // Between two local addresses: the same security path, through A's own MX.
    submit(
        a.submission,
        SMITH,
        NURSE,
        &referral(SMITH, NURSE, "r10"),
        "250 2.0.0",
    )
    .await;
    a.wait_status("<r10@hisp-a.example>", NURSE, "dispatched")
        .await;
    let nurse_box = a.mailbox(NURSE).await;
    assert_eq!(nurse_box.len(), 1);
    assert_eq!(pdf_bytes(&nurse_box[0].2), expected_pdf);
}

#[tokio::test(flavor = "multi_thread")]
async fn referral_and_failure_paths_on_every_backend() {
    for backend in backends() {
        end_to_end(backend).await;
    }
}

#[test]
fn demo_runs_every_step_with_no_setup() {
    let dir = common::TempDir::new("demo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hisp"))
        .arg("demo")
        .current_dir(dir.path())
        .env_remove("HISP_CONFIG")
        .env_remove("HISP_MASTER_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "discovers dr.jones@hisp-b.example's certificate",
        "valid: chains to trust anchor",
        "queued: 1 recipient(s) signed and encrypted",
        "signature verified, signer trusted, filed",
        "MDN 'processed' came back",
        "MDN 'dispatched'",
        "dr.jones@hisp-b.example: dispatched — complete",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Self-contained: nothing written where it ran.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bench_measures_end_to_end_and_the_rsa_ceiling() {
    let dir = common::TempDir::new("bench");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hisp"))
        .args([
            "bench",
            "--messages",
            "20",
            "--concurrency",
            "3",
            "--size",
            "4KB",
            "--json",
        ])
        .current_dir(dir.path())
        .env_remove("HISP_CONFIG")
        .env_remove("HISP_MASTER_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["messages"], 20);
    assert_eq!(r["concurrency"], 3);
    let size = r["size_bytes"].as_u64().unwrap();
    assert!((3900..=4000).contains(&size), "{size}");
    for key in [
        "messages_per_s",
        "cpu_s_per_message",
        "rsa2048_sign_ops_per_s",
        "ceiling_messages_per_s",
        "ratio",
    ] {
        assert!(r[key].as_f64().unwrap() > 0.0, "{key}: {r}");
    }
    let ceiling = r["rsa2048_sign_ops_per_s"].as_f64().unwrap() / 6.0;
    assert!((r["ceiling_messages_per_s"].as_f64().unwrap() - ceiling).abs() < 1e-6);
    let lat = &r["latency_ms"];
    assert!(lat["p50"].as_i64().unwrap() <= lat["p95"].as_i64().unwrap());
    assert!(lat["p95"].as_i64().unwrap() <= lat["p99"].as_i64().unwrap());
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > 0);
    // Self-contained: nothing written where it ran.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_hisp"))
        .args(["bench", "--size", "lots"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--size"));
}
