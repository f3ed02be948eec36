//! `hisp demo`: with no setup at all, two Direct gateways on loopback — a development PKI,
//! hisp-a.example and hisp-b.example, a DNS server publishing their certificates — and one
//! referral with a PDF attachment from dr.smith@hisp-a.example to dr.jones@hisp-b.example,
//! every step shown as it happens, down to the dispatched MDN and the completed status.
//! Everything runs in this process on temporary SQLite stores that are removed at the end.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Row;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{CliError, CliResult, Ctx};
use crate::address::DirectAddress;
use crate::certinfo::CertInfo;
use crate::config::{Config, Source};
use crate::devpki::{Ca, Issued};
use crate::discovery::{Anchors, Discovery};
use crate::dns_server::{DnsServer, Zone, ZoneContent};
use crate::keys::{KeySource, MasterKey, seal_private_key};
use crate::store::Store;
use crate::store::local_certs::NewLocalCert;

const SMITH: &str = "dr.smith@hisp-a.example";
const JONES: &str = "dr.jones@hisp-b.example";
const PASSWORD: &str = "demo-password";
/// How long the demo waits for each step before saying which one did not happen.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(anyhow::anyhow!("{e}"))
}

fn step(n: &mut u32, text: &str) {
    *n += 1;
    println!("[{n:>2}] {text}");
}

fn detail(text: &str) {
    println!("     {text}");
}

fn free_port() -> CliResult<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    Ok(l.local_addr().map_err(fail)?.port())
}

struct Side {
    domain: &'static str,
    user: &'static str,
    cert: Issued,
    dir: PathBuf,
    inbound: u16,
    submission: u16,
}

pub async fn run() -> CliResult {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("hisp-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let result = demo(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    if result.is_ok() {
        println!(
            "\nDone in {:.1} s. Nothing was left behind; `hisp serve` runs the same gateway for real.",
            started.elapsed().as_secs_f64()
        );
    }
    result
}

async fn demo(dir: &Path) -> CliResult {
    let mut n = 0;
    println!("hisp demo: two Direct gateways on this machine, one referral with its MDNs.\n");

    step(
        &mut n,
        "Development PKI: a root CA and an address-bound certificate for each doctor",
    );
    let root = Ca::root("hisp demo root CA").map_err(fail)?;
    let smith = root.leaf().email(SMITH).build().map_err(fail)?;
    let jones = root.leaf().email(JONES).build().map_err(fail)?;
    detail(&format!("{SMITH}: sha256 {}", &smith.sha256_hex()[..16]));
    detail(&format!("{JONES}: sha256 {}", &jones.sha256_hex()[..16]));

    step(
        &mut n,
        "DNS: an authoritative server publishing both certificates as CERT records",
    );
    let zone = Zone::new();
    let mut content = ZoneContent::new();
    for (domain, addr, cert) in [
        ("hisp-a.example", SMITH, &smith),
        ("hisp-b.example", JONES, &jones),
    ] {
        content.origin(domain).map_err(fail)?;
        let owner = DirectAddress::parse(addr).map_err(fail)?.cert_query_name();
        content.cert(&owner, &cert.cert_der()).map_err(fail)?;
        detail(&format!(
            "{owner}. IN CERT PKIX ({} bytes)",
            cert.cert_der().len()
        ));
    }
    zone.replace(content);
    let dns = DnsServer::start("127.0.0.1:0".parse().map_err(fail)?, zone)
        .await
        .map_err(fail)?;
    detail(&format!("listening on {} (UDP and TCP)", dns.local_addr));

    let a = Side {
        domain: "hisp-a.example",
        user: SMITH,
        cert: smith,
        dir: dir.join("hisp-a"),
        inbound: free_port()?,
        submission: free_port()?,
    };
    let b = Side {
        domain: "hisp-b.example",
        user: JONES,
        cert: jones,
        dir: dir.join("hisp-b"),
        inbound: free_port()?,
        submission: free_port()?,
    };
    step(
        &mut n,
        "Two gateways, each with its own SQLite store, keys and trust anchors",
    );
    let ctx_a = gateway(&a, &b, &root, dns.local_addr).await?;
    let ctx_b = gateway(&b, &a, &root, dns.local_addr).await?;
    let run_a = super::serve::start(&ctx_a).await?;
    let run_b = super::serve::start(&ctx_b).await?;
    for s in [&a, &b] {
        detail(&format!(
            "{}: inbound SMTP 127.0.0.1:{}, submission 127.0.0.1:{}",
            s.domain, s.inbound, s.submission
        ));
    }

    step(&mut n, &format!("hisp-a discovers {JONES}'s certificate"));
    let discovery = Discovery::new(&ctx_a.config).map_err(fail)?;
    let anchors = Arc::new(Anchors::new(vec![root.cert.clone()]));
    let report = discovery
        .discover(&DirectAddress::parse(JONES).map_err(fail)?, &anchors)
        .await;
    for s in &report.steps {
        for c in &s.certificates {
            detail(&format!(
                "{}: {} — {}: {}",
                s.source.as_str(),
                c.subject,
                c.verdict,
                c.reason
            ));
        }
    }
    if report.selected.is_empty() {
        return Err(fail(format!(
            "discovery failed: {}",
            report.failure_reason()
        )));
    }

    step(
        &mut n,
        &format!("The EHR submits a referral with a PDF over SMTP AUTH as {SMITH}"),
    );
    let reply = submit(a.submission).await?;
    detail(&format!("250 {reply}"));
    detail(
        "hisp-a wrapped it, signed it with Dr Smith's key (SHA-256), encrypted it to Dr Jones's certificate and queued it",
    );

    step(&mut n, "hisp-a delivers it to hisp-b over SMTP");
    let delivered = wait(|| async {
        let q = ctx_a.store.queue_list(true).await.ok()?;
        q.into_iter()
            .find(|e| e.recipient == JONES && e.state == "delivered")
            .map(|e| e.last_code.unwrap_or_default())
    })
    .await
    .ok_or_else(|| fail("hisp-a did not deliver the message to hisp-b in time"))?;
    detail(&format!(
        "hisp-b answered {delivered} after decrypting, verifying and filing it"
    ));

    step(
        &mut n,
        "hisp-b: decrypted with Dr Jones's key, signature verified, signer trusted, filed",
    );
    let filed = wait(|| async { mailbox(&ctx_b.store, JONES, "message").await })
        .await
        .ok_or_else(|| fail("the message did not reach Dr Jones's mailbox in time"))?;
    let text = String::from_utf8_lossy(&filed);
    let subject = text
        .lines()
        .find(|l| l.starts_with("Subject:"))
        .unwrap_or("Subject: ?");
    detail(&format!(
        "Dr Jones's mailbox: {subject} ({} bytes, summary.pdf attached)",
        filed.len()
    ));

    let message_id = "<demo-referral@hisp-a.example>";
    for (state, what) in [
        (
            "processed",
            "hisp-b's MDN 'processed' came back, signed and encrypted; hisp-a verified it",
        ),
        (
            "dispatched",
            "hisp-b's MDN 'dispatched' (final delivery) came back; the message is in the mailbox",
        ),
    ] {
        step(&mut n, what);
        wait(|| async {
            let recs = ctx_a.store.tracking(message_id).await.ok()?;
            let s = recs.first()?.state.clone();
            (s == state || (state == "processed" && s == "dispatched")).then_some(())
        })
        .await
        .ok_or_else(|| fail(format!("no '{state}' MDN arrived in time")))?;
    }
    let mdn = wait(|| async { mailbox(&ctx_a.store, SMITH, "mdn").await })
        .await
        .ok_or_else(|| fail("the dispatched MDN was not filed for Dr Smith"))?;
    detail(&format!(
        "Dr Smith's mailbox holds the dispatched MDN ({} bytes)",
        mdn.len()
    ));

    step(&mut n, &format!("hisp status {message_id} (on hisp-a)"));
    for r in ctx_a.store.tracking(message_id).await? {
        detail(&format!("{}: {} — complete", r.recipient, r.state));
    }
    run_a.stop().await;
    run_b.stop().await;
    dns.shutdown().await;
    ctx_a.store.close().await;
    ctx_b.store.close().await;
    Ok(())
}

/// A configured, populated gateway context for `me`, routing `other`'s domain to its port.
async fn gateway(me: &Side, other: &Side, root: &Ca, dns: SocketAddr) -> CliResult<Ctx> {
    std::fs::create_dir_all(&me.dir).map_err(fail)?;
    let mut config = Config {
        hostname: me.domain.to_string(),
        data_dir: me.dir.clone(),
        ..Config::default()
    };
    config.database.url = format!("sqlite://{}", me.dir.join("hisp.db").display());
    config.smtp.listen = vec![SocketAddr::from(([127, 0, 0, 1], me.inbound))];
    config.smtp.submission_listen = vec![SocketAddr::from(([127, 0, 0, 1], me.submission))];
    // Loopback only, and the demo has no TLS certificate for its listeners.
    config.smtp.require_tls_for_auth = false;
    // Two gateways in one process, and the demo needs no API: don't take port 8080.
    config.api.listen = None;
    config.delivery.routes.insert(
        other.domain.to_string(),
        format!("127.0.0.1:{}", other.inbound),
    );
    config.delivery.retry = vec![crate::config::Duration(Duration::from_secs(1))];
    config.dns.nameservers = vec![dns];
    config.discovery.ldap_timeout = crate::config::Duration(Duration::from_secs(1));
    let store = Store::open(&config.database.url, 4).await?;
    let mut raw = [0u8; 32];
    openssl::rand::rand_bytes(&mut raw).map_err(fail)?;
    let master = MasterKey::from_bytes(raw, KeySource::Env);
    store.add_domain(me.domain).await?;
    let hash = crate::auth::hash_password(PASSWORD).map_err(fail)?;
    let user = DirectAddress::parse(me.user).map_err(fail)?;
    store.add_address(&user, Some(&hash)).await?;
    let info = CertInfo::of(&me.cert.cert);
    let der = me.cert.cert_der();
    let sealed = seal_private_key(&master, &me.cert.key, &info.sha256);
    let chain = String::from_utf8_lossy(&root.cert.to_pem().map_err(fail)?).into_owned();
    store
        .add_local_cert(&NewLocalCert {
            subject: me.user,
            binding: "address",
            domain: me.domain,
            address: Some(me.user),
            info: &info,
            cert_der: &der,
            chain_pem: &chain,
            key_sealed: &sealed,
        })
        .await?;
    let root_der = root.cert.to_der().map_err(fail)?;
    store
        .add_anchors(
            me.domain,
            &[(CertInfo::of(&root.cert), root_der)],
            true,
            true,
        )
        .await?;
    Ok(Ctx {
        config,
        source: Source::Defaults,
        store,
        master: Arc::new(master),
        json: false,
    })
}

const REFERRAL: &str = "From: Dr Smith <dr.smith@hisp-a.example>\r\nTo: Dr Jones <dr.jones@hisp-b.example>\r\nSubject: Referral: patient 4711, cardiology consult\r\nMessage-ID: <demo-referral@hisp-a.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"demo-1\"\r\n\r\n--demo-1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDear Dr Jones, please see the attached summary.\r\n--demo-1\r\nContent-Type: application/pdf; name=\"summary.pdf\"\r\nContent-Disposition: attachment; filename=\"summary.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKMSAwIG9iago8PCAvVHlwZSAvQ2F0YWxvZyAvUGFnZXMgMiAwIFIgPj4KZW5kb2Jq\r\nCjIgMCBvYmoKPDwgL1R5cGUgL1BhZ2VzIC9LaWRzIFtdIC9Db3VudCAwID4+CmVuZG9iagp0cmFp\r\nbGVyCjw8IC9Sb290IDEgMCBSID4+CiUlRU9GCg==\r\n--demo-1--\r\n";

/// The EHR's side of the submission, with each command's reply checked.
async fn submit(port: u16) -> CliResult<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(fail)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut expect = async |want: &str| -> CliResult<String> {
        let last = loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.map_err(fail)? == 0 {
                return Err(fail("the submission server closed the connection"));
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                break line.trim_end().to_string();
            }
        };
        if !last.starts_with(want) {
            return Err(fail(format!("submission: expected {want}, got {last}")));
        }
        Ok(last)
    };
    expect("220").await?;
    let plain = openssl::base64::encode_block(format!("\0{SMITH}\0{PASSWORD}").as_bytes());
    for (cmd, want) in [
        ("EHLO ehr.hisp-a.example".to_string(), "250"),
        (format!("AUTH PLAIN {plain}"), "235"),
        (format!("MAIL FROM:<{SMITH}>"), "250"),
        (format!("RCPT TO:<{JONES}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .map_err(fail)?;
        expect(want).await?;
    }
    w.write_all(REFERRAL.as_bytes()).await.map_err(fail)?;
    w.write_all(b".\r\n").await.map_err(fail)?;
    let done = expect("250").await?;
    w.write_all(b"QUIT\r\n").await.map_err(fail)?;
    Ok(done.trim_start_matches("250 ").to_string())
}

async fn mailbox(store: &Store, address: &str, kind: &str) -> Option<Vec<u8>> {
    let row = sqlx::query(
        "SELECT m.raw FROM mailbox m JOIN addresses a ON a.id = m.address_id
         WHERE a.address = $1 AND m.kind = $2 ORDER BY m.id LIMIT 1",
    )
    .bind(address)
    .bind(kind)
    .fetch_optional(store.pool())
    .await
    .ok()??;
    row.try_get("raw").ok()
}

/// Polls `probe` until it yields a value or the step times out.
async fn wait<T, F, Fut>(probe: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
