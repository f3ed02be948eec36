//! `hisp demo`: with no setup at all, two Direct gateways on loopback — a development PKI,
//! hisp-a.example and hisp-b.example, a DNS server publishing their certificates — and one
//! referral with a PDF attachment from dr.smith@hisp-a.example to dr.jones@hisp-b.example,
//! every step shown as it happens, down to the dispatched MDN and the completed status.
//! Everything runs in this process on temporary SQLite stores that are removed at the end.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Row;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::CliResult;
use super::pair::{JONES, PASSWORD, Pair, SMITH, fail};
use crate::address::DirectAddress;
use crate::discovery::{Anchors, Discovery};
use crate::store::Store;

/// How long the demo waits for each step before saying which one did not happen.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn step(n: &mut u32, text: &str) {
    *n += 1;
    println!("[{n:>2}] {text}");
}

fn detail(text: &str) {
    println!("     {text}");
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

    let Pair {
        root,
        dns,
        published,
        a,
        b,
        ctx_a,
        ctx_b,
    } = Pair::build(dir, |_| {}).await?;
    step(
        &mut n,
        "Development PKI: a root CA and an address-bound certificate for each doctor",
    );
    detail(&format!("{SMITH}: sha256 {}", &a.cert.sha256_hex()[..16]));
    detail(&format!("{JONES}: sha256 {}", &b.cert.sha256_hex()[..16]));

    step(
        &mut n,
        "DNS: an authoritative server publishing both certificates as CERT records",
    );
    for (owner, len) in &published {
        detail(&format!("{owner}. IN CERT PKIX ({len} bytes)"));
    }
    detail(&format!("listening on {} (UDP and TCP)", dns.local_addr));

    step(
        &mut n,
        "Two gateways, each with its own SQLite store, keys and trust anchors",
    );
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
