//! Direct end to end: two `hisp serve` processes (separate configs and SQLite stores) and a DNS
//! server publishing both sides' certificates. A referral submitted over SMTP to gateway A is
//! discovered, signed, encrypted, delivered to B, decrypted, verified, filed; B's processed and
//! dispatched MDNs come back signed and encrypted; A's tracking completes. Bad input on B's
//! inbound port is refused with the cause and stores nothing.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use hisp::devpki::{Ca, Issued};
use hisp::dns_server::{DnsServer, Zone, ZoneContent};
use sqlx::Row;

use common::smtp::{Client, b64};
use common::{Backend, Env};

const SMITH: &str = "dr.smith@hisp-a.example";
const JONES: &str = "dr.jones@hisp-b.example";

fn free_port() -> u16 {
    common::slapd::free_port()
}

struct Gateway {
    env: Env,
    inbound: u16,
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

async fn gateway(
    domain: &str,
    user: &str,
    cert: &Issued,
    root: &Ca,
    dns: std::net::SocketAddr,
) -> Gateway {
    let env = Env::new(Backend::Sqlite).await;
    env.run(&["domain", "add", domain]).ok();
    env.run_env(
        &["address", "add", user, "--password-env", "PW"],
        &[("PW", "pw-secret")],
    )
    .ok();
    let c = env.write("me.pem", &cert.cert_pem());
    let k = env.write("me.key", &cert.key_pem());
    env.import_pem(&c, &k).ok();
    let anchor = env.write("root.pem", &root.cert.to_pem().unwrap());
    env.run(&[
        "anchor",
        "add",
        "--domain",
        domain,
        "--file",
        anchor.to_str().unwrap(),
    ])
    .ok();
    Gateway {
        env,
        inbound: free_port(),
        submission: free_port(),
        child: None,
    }
    .configure(dns)
}

impl Gateway {
    fn configure(self, dns: std::net::SocketAddr) -> Gateway {
        let mut config = std::fs::read_to_string(&self.env.config).unwrap();
        config.push_str(&format!(
            "[smtp]\nlisten = [\"127.0.0.1:{}\"]\nsubmission_listen = [\"127.0.0.1:{}\"]\nrequire_tls_for_auth = false\n[dns]\nnameservers = [\"{dns}\"]\ntimeout = \"3s\"\nattempts = 1\n[discovery]\nldap_timeout = \"1s\"\n",
            self.inbound, self.submission
        ));
        std::fs::write(&self.env.config, config).unwrap();
        self
    }

    fn route(&self, domain: &str, port: u16) {
        let mut config = std::fs::read_to_string(&self.env.config).unwrap();
        config.push_str(&format!(
            "[delivery]\nroutes = {{ \"{domain}\" = \"127.0.0.1:{port}\" }}\nretry = [\"1s\"]\n"
        ));
        std::fs::write(&self.env.config, config).unwrap();
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
        for port in [self.inbound, self.submission] {
            let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
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
}

const REFERRAL: &str = "From: Dr Smith <dr.smith@hisp-a.example>\r\nTo: dr.jones@hisp-b.example\r\nSubject: Referral: patient 4711\r\nMessage-ID: <referral-1@hisp-a.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nPlease see the attached summary.\r\n--b1\r\nContent-Type: application/pdf; name=\"summary.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n--b1--\r\n";

async fn submit(port: u16, user: &str, rcpt: &str, body: &str, expect: &str) -> String {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn referral_goes_through_with_processed_and_dispatched_mdns() {
    let root = Ca::root("Direct E2E Root").unwrap();
    let smith = root.leaf().email(SMITH).build().unwrap();
    let jones = root.leaf().email(JONES).build().unwrap();
    let zone = Zone::new();
    let mut content = ZoneContent::new();
    content.origin("hisp-a.example").unwrap();
    content.origin("hisp-b.example").unwrap();
    content
        .cert("dr.smith.hisp-a.example", &smith.cert_der())
        .unwrap();
    content
        .cert("dr.jones.hisp-b.example", &jones.cert_der())
        .unwrap();
    zone.replace(content);
    let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), zone)
        .await
        .unwrap();

    let mut a = gateway("hisp-a.example", SMITH, &smith, &root, dns.local_addr).await;
    let mut b = gateway("hisp-b.example", JONES, &jones, &root, dns.local_addr).await;
    a.route("hisp-b.example", b.inbound);
    b.route("hisp-a.example", a.inbound);
    a.start().await;
    b.start().await;

    let reply = submit(a.submission, SMITH, JONES, REFERRAL, "250 2.0.0").await;
    assert!(
        reply.contains("<referral-1@hisp-a.example> queued: 1 recipient(s) signed and encrypted"),
        "{reply}"
    );

    // B: the message arrives, decrypted and verified, exactly as written.
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
        ("message", "<referral-1@hisp-a.example>")
    );
    let text = String::from_utf8_lossy(raw);
    assert!(
        text.contains("Subject: Referral: patient 4711\r\n"),
        "{text}"
    );
    assert!(
        text.contains("JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK")
    );
    assert!(
        text.contains(
            "Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true"
        ),
        "{text}"
    );

    // A: tracking reaches dispatched; the dispatched MDN is in Dr Smith's mailbox, the
    // processed one (by default) is not.
    let mut state = String::new();
    for _ in 0..300 {
        let status = a
            .env
            .run(&["status", "<referral-1@hisp-a.example>", "--json"]);
        if status.code == 0 {
            state = status.json()["recipients"][0]["state"]
                .as_str()
                .unwrap()
                .to_string();
            if state == "dispatched" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "dispatched");
    let smith_box = a.mailbox(SMITH).await;
    let kinds: Vec<&str> = smith_box.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds, ["mdn"], "{kinds:?}");
    let mdn = String::from_utf8_lossy(&smith_box[0].2);
    assert!(
        mdn.contains("Disposition: automatic-action/MDN-sent-automatically; dispatched"),
        "{mdn}"
    );
    assert!(mdn.contains("X-DIRECT-FINAL-DESTINATION-DELIVERY"), "{mdn}");

    // The same message again (a retry after a lost 250) is acknowledged, not filed twice.
    submit(a.submission, SMITH, JONES, REFERRAL, "250 2.0.0").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(b.mailbox(JONES).await.len(), 1);

    // B's inbound port refuses what isn't Direct, saying why, and stores nothing.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", b.inbound).parse().unwrap();
    let mut c = Client::connect(addr).await;
    assert!(c.reply().await.starts_with("220 "));
    c.cmd("EHLO mallory.example", "250-").await;
    c.cmd(&format!("MAIL FROM:<{SMITH}>"), "250").await;
    c.cmd(&format!("RCPT TO:<{JONES}>"), "250").await;
    c.cmd("DATA", "354").await;
    let refused = c
        .cmd("From: dr.smith@hisp-a.example\r\nTo: dr.jones@hisp-b.example\r\nSubject: plain\r\n\r\nnot encrypted\r\n.", "554 5.7.1")
        .await;
    assert!(refused.contains("not encrypted"), "{refused}");
    c.cmd("RCPT TO:<someone@elsewhere.example>", "503").await;
    assert_eq!(b.mailbox(JONES).await.len(), 1);

    // A recipient without a certificate: accepted, and a DSN tells the sender why.
    let nobody = REFERRAL
        .replace(JONES, "nobody@hisp-b.example")
        .replace("referral-1", "referral-2");
    submit(
        a.submission,
        SMITH,
        "nobody@hisp-b.example",
        &nobody,
        "250 2.0.0",
    )
    .await;
    let smith_box = a.mailbox(SMITH).await;
    let dsn = smith_box
        .iter()
        .find(|(k, _, _)| k == "dsn")
        .expect("a DSN for the unreachable recipient");
    let dsn_text = String::from_utf8_lossy(&dsn.2);
    assert!(
        dsn_text.contains("nobody@hisp-b.example") && dsn_text.contains("no certificate"),
        "{dsn_text}"
    );
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
