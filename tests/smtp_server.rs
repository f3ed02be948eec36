//! Byte-level SMTP session tests over real sockets: raw lines in, exact reply codes out.

mod common;

use std::time::Duration;

use common::smtp::{ALICE, BOB, Client, queued, start, test_config};
use common::{Backend, backends};
use hisp::config::Size;
use hisp::pipeline::Role;

const EHLO_INBOUND: &str = "250-hisp-a.example greets client.example\r\n\
250-PIPELINING\r\n\
250-SIZE 52428800\r\n\
250-8BITMIME\r\n\
250-ENHANCEDSTATUSCODES\r\n\
250 DSN\r\n";

async fn inbound_transaction(backend: Backend) {
    let s = start(backend, Role::Inbound, false, test_config()).await;
    let mut c = Client::greeted(s.addr).await;
    assert_eq!(c.cmd("EHLO client.example", "250-").await, EHLO_INBOUND);
    c.cmd(
        "MAIL FROM:<sender@remote.example> BODY=8BITMIME",
        "250 2.1.0",
    )
    .await;
    c.cmd(&format!("RCPT TO:<{BOB}>"), "250 2.1.5").await;
    c.cmd(
        "RCPT TO:<Alice@HISP-A.example> NOTIFY=FAILURE ORCPT=rfc822;alice@hisp-a.example",
        "250 2.1.5",
    )
    .await;
    // Never a relay: not a local domain.
    c.cmd("RCPT TO:<someone@elsewhere.example>", "550 5.7.1")
        .await;
    // A local domain, but nobody by that name.
    c.cmd("RCPT TO:<nobody@hisp-a.example>", "550 5.1.1").await;
    c.cmd("DATA", "354 ").await;
    c.send("Subject: test\r\n\r\n..leading dot\r\nline.\r\n.\r\n")
        .await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 queued as "), "{r}");
    c.cmd("QUIT", "221 2.0.0").await;
    assert!(c.closed().await);

    let q = queued(&s.store).await;
    assert_eq!(q.len(), 1);
    let (from, body, rcpts) = &q[0];
    assert_eq!(from, "sender@remote.example");
    assert_eq!(rcpts, &vec![BOB.to_string(), ALICE.to_string()]);
    let body = String::from_utf8(body.clone()).unwrap();
    assert!(
        body.starts_with(
            "Received: from client.example (127.0.0.1)\r\n\tby hisp-a.example with ESMTP; "
        ),
        "{body}"
    );
    assert!(
        body.ends_with("\r\nSubject: test\r\n\r\n.leading dot\r\nline.\r\n"),
        "{body:?}"
    );
}

#[tokio::test]
async fn inbound_transaction_on_every_backend() {
    for b in backends() {
        inbound_transaction(b).await;
    }
}

#[tokio::test]
async fn every_other_verb() {
    let s = start(Backend::Sqlite, Role::Inbound, false, test_config()).await;
    let mut c = Client::greeted(s.addr).await;
    c.cmd("NOOP", "250 2.0.0").await;
    c.cmd("HELP", "214 2.0.0").await;
    c.cmd("VRFY bob", "252 2.5.0").await;
    c.cmd("EXPN staff", "502 5.5.1").await;
    c.cmd("ETRN hisp-a.example", "502 5.5.1").await;
    c.cmd("BDAT 10 LAST", "502 5.5.1").await;
    c.cmd("RSET", "250 2.0.0").await;
    // HELO: one line, no extensions.
    assert_eq!(
        c.cmd("HELO old.example", "250 ").await,
        "250 hisp-a.example greets old.example\r\n"
    );
    c.cmd("MAIL FROM:<>", "250 2.1.0").await;
    c.cmd("RSET", "250 2.0.0").await;
    // RSET ended the transaction.
    c.cmd(&format!("RCPT TO:<{BOB}>"), "503 5.5.1").await;
    // No TLS configured: no STARTTLS; AUTH only on submission.
    c.cmd("STARTTLS", "502 5.5.1").await;
    c.cmd("AUTH PLAIN", "502 5.5.1").await;
    c.cmd("QUIT", "221 2.0.0").await;
    assert!(c.closed().await);
}

#[tokio::test]
async fn bad_syntax_and_wrong_order() {
    let s = start(Backend::Sqlite, Role::Inbound, false, test_config()).await;
    let mut c = Client::greeted(s.addr).await;
    c.cmd("MAIL FROM:<a@remote.example>", "503 5.5.1").await;
    c.cmd("XYZZY", "500 5.5.1").await;
    c.cmd("EHLO", "501 5.5.2").await;
    c.cmd("EHLO client.example", "250-").await;
    c.cmd("RCPT TO:<bob@hisp-a.example>", "503 5.5.1").await;
    c.cmd("DATA", "503 5.5.1").await;
    c.cmd("MAIL FROM:a@remote.example", "501 5.5.2").await;
    c.cmd("MAIL FROM:<not an address>", "501 ").await;
    c.cmd("MAIL FROM:<a@remote.example> FROB=1", "555 5.5.4")
        .await;
    c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0").await;
    c.cmd("MAIL FROM:<a@remote.example>", "503 5.5.1").await;
    c.cmd("RCPT TO:<no-at-sign>", "501 5.1.3").await;
    // Only refused recipients so far: DATA is out of order.
    c.cmd("RCPT TO:<x@elsewhere.example>", "550 5.7.1").await;
    c.cmd("DATA", "503 5.5.1").await;
    // An over-long line is refused and the session goes on.
    let long = format!("NOOP {}", "x".repeat(9000));
    c.cmd(&long, "500 5.5.2").await;
    c.cmd("NOOP", "250 2.0.0").await;
    // Bytes that are not text at all.
    c.send_bytes(b"\xff\xfe\x00\x01\r\n").await;
    assert!(c.reply().await.starts_with("500 5.5."));
    c.cmd("NOOP", "250 2.0.0").await;
    assert!(queued(&s.store).await.is_empty());
}

#[tokio::test]
async fn pipelined_commands_get_replies_in_order() {
    let s = start(Backend::Sqlite, Role::Inbound, false, test_config()).await;
    let mut c = Client::greeted(s.addr).await;
    c.send(&format!(
        "EHLO p.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<{BOB}>\r\nRCPT TO:<x@other.example>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n"
    ))
    .await;
    assert!(c.reply().await.starts_with("250-hisp-a.example"));
    for expect in ["250 2.1.0", "250 2.1.5", "550 5.7.1", "250 2.1.5", "354 "] {
        let r = c.reply().await;
        assert!(r.starts_with(expect), "expected {expect}, got {r}");
    }
    // The body, the dot and the next transaction in one write too.
    c.send(&format!(
        "Subject: one\r\n\r\nx\r\n.\r\nMAIL FROM:<b@remote.example>\r\nRCPT TO:<{BOB}>\r\nDATA\r\nSubject: two\r\n\r\ny\r\n.\r\nQUIT\r\n"
    ))
    .await;
    for expect in [
        "250 2.0.0",
        "250 2.1.0",
        "250 2.1.5",
        "354 ",
        "250 2.0.0",
        "221 2.0.0",
    ] {
        let r = c.reply().await;
        assert!(r.starts_with(expect), "expected {expect}, got {r}");
    }
    let q = queued(&s.store).await;
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].2, vec![BOB.to_string(), ALICE.to_string()]);
    assert!(q[1].1.ends_with(b"Subject: two\r\n\r\ny\r\n"));
}

#[tokio::test]
async fn size_limits() {
    let mut config = test_config();
    config.max_message_size = Size(1000);
    let s = start(Backend::Sqlite, Role::Inbound, false, config).await;
    let mut c = Client::greeted(s.addr).await;
    assert!(
        c.cmd("EHLO c.example", "250-")
            .await
            .contains("250-SIZE 1000\r\n")
    );
    c.cmd("MAIL FROM:<a@remote.example> SIZE=1001", "552 5.3.4")
        .await;
    c.cmd("MAIL FROM:<a@remote.example> SIZE=900", "250 2.1.0")
        .await;
    c.cmd(&format!("RCPT TO:<{BOB}>"), "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    // The body is read to its end before the refusal, so the session stays in step.
    let line = format!("{}\r\n", "a".repeat(98));
    for _ in 0..20 {
        c.send(&line).await;
    }
    c.send(".\r\n").await;
    assert!(c.reply().await.starts_with("552 5.3.4"));
    c.cmd("NOOP", "250 2.0.0").await;
    // A message that fits is still accepted afterwards.
    c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0").await;
    c.cmd(&format!("RCPT TO:<{BOB}>"), "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    c.cmd("Subject: small\r\n\r\nok\r\n.", "250 2.0.0").await;
    assert_eq!(queued(&s.store).await.len(), 1);
}

#[tokio::test]
async fn too_many_recipients() {
    let mut config = test_config();
    config.max_recipients = 2;
    let s = start(Backend::Sqlite, Role::Inbound, false, config).await;
    let mut c = Client::greeted(s.addr).await;
    c.cmd("EHLO c.example", "250-").await;
    c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0").await;
    c.cmd(&format!("RCPT TO:<{BOB}>"), "250 2.1.5").await;
    c.cmd(&format!("RCPT TO:<{ALICE}>"), "250 2.1.5").await;
    c.cmd("RCPT TO:<carol@hisp-a.example>", "452 4.5.3").await;
}

#[tokio::test]
async fn command_and_data_timeouts() {
    let mut config = test_config();
    config.command_timeout = hisp::config::Duration(Duration::from_millis(300));
    config.data_timeout = hisp::config::Duration(Duration::from_millis(300));
    let s = start(Backend::Sqlite, Role::Inbound, false, config).await;
    let mut c = Client::greeted(s.addr).await;
    assert!(c.reply().await.starts_with("421 4.4.2"));
    assert!(c.closed().await);

    let mut c = Client::greeted(s.addr).await;
    c.cmd("EHLO c.example", "250-").await;
    c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0").await;
    c.cmd(&format!("RCPT TO:<{BOB}>"), "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    c.send("Subject: stalled\r\n").await;
    assert!(c.reply().await.starts_with("421 4.4.2"));
    assert!(c.closed().await);
    assert!(queued(&s.store).await.is_empty());
}

/// `data_timeout` applies per read; a client that keeps sending a byte just often enough is
/// still cut off once DATA has taken `data_timeout` plus a second per 500 bytes.
#[tokio::test]
async fn trickled_data_is_cut_off_at_the_minimum_rate() {
    let mut config = test_config();
    config.data_timeout = hisp::config::Duration(Duration::from_secs(1));
    let s = start(Backend::Sqlite, Role::Inbound, false, config).await;
    let mut c = Client::greeted(s.addr).await;
    c.cmd("EHLO c.example", "250-").await;
    c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0").await;
    c.cmd(&format!("RCPT TO:<{BOB}>"), "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    let started = std::time::Instant::now();
    // Every read arrives well within the 1 s per-read timeout.
    for b in ["S", "u", "b", "j"] {
        c.send(b).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = c.reply().await;
    assert!(
        r.starts_with("421 4.4.2") && r.contains("too slowly"),
        "{r}"
    );
    // 1 s plus 4 bytes at 500 bytes/s, not the per-read timeout after the last byte (1.8 s).
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert!(c.closed().await);
    assert!(queued(&s.store).await.is_empty());
}

#[tokio::test]
async fn disconnect_in_data_stores_nothing() {
    let s = start(Backend::Sqlite, Role::Inbound, false, test_config()).await;
    let mut c = Client::greeted(s.addr).await;
    c.cmd("EHLO c.example", "250-").await;
    c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0").await;
    c.cmd(&format!("RCPT TO:<{BOB}>"), "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    // Everything but the final dot's line end.
    c.send("Subject: cut\r\n\r\nbody\r\n.").await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(queued(&s.store).await.is_empty());
    // The server is still fine.
    let mut c = Client::greeted(s.addr).await;
    c.cmd("NOOP", "250 2.0.0").await;
}

#[tokio::test]
async fn command_and_connection_limits() {
    let mut config = test_config();
    config.max_commands = 3;
    config.max_connections_per_ip = 2;
    let s = start(Backend::Sqlite, Role::Inbound, false, config).await;
    let mut c = Client::greeted(s.addr).await;
    c.cmd("NOOP", "250").await;
    c.cmd("NOOP", "250").await;
    c.cmd("NOOP", "250").await;
    c.cmd("NOOP", "421 4.7.0").await;
    assert!(c.closed().await);

    let _a = Client::greeted(s.addr).await;
    let _b = Client::greeted(s.addr).await;
    let mut third = Client::connect(s.addr).await;
    assert!(
        third
            .reply()
            .await
            .starts_with("421 4.7.0 too many connections from 127.0.0.1")
    );
    assert!(third.closed().await);
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Client::greeted(s.addr).await;
}
