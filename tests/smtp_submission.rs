//! Submission, STARTTLS and AUTH over real sockets, and the open-relay checks on both ports.

mod common;

use std::time::Duration;

use common::Backend;
use common::smtp::{ALICE, ALICE_PW, BOB, Client, b64, queued, start, test_config};
use hisp::pipeline::Role;

fn plain(user: &str, pw: &str) -> String {
    b64(&format!("\0{user}\0{pw}"))
}

#[tokio::test]
async fn starttls_then_auth_then_submit() {
    let s = start(Backend::Sqlite, Role::Submission, true, test_config()).await;
    let ca = s.tls.as_ref().unwrap().ca_der.clone();
    let mut c = Client::greeted(s.addr).await;
    let ehlo = c.cmd("EHLO ehr.example", "250-").await;
    assert!(ehlo.contains("250-STARTTLS\r\n"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo}");
    // AUTH in plaintext is refused even though the client tries.
    c.cmd(
        &format!("AUTH PLAIN {}", plain(ALICE, ALICE_PW)),
        "538 5.7.11",
    )
    .await;
    c.cmd("MAIL FROM:<alice@hisp-a.example>", "530 5.7.0").await;

    let mut c = c.starttls(&ca).await;
    // RFC 3207: the session starts over; EHLO is needed again.
    c.cmd("MAIL FROM:<alice@hisp-a.example>", "503 5.5.1").await;
    let ehlo = c.cmd("EHLO ehr.example", "250-").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(
        ehlo.ends_with("250-DSN\r\n250 AUTH PLAIN LOGIN\r\n"),
        "{ehlo}"
    );
    c.cmd("STARTTLS", "503 5.5.1").await;
    c.cmd(
        &format!("AUTH PLAIN {}", plain(ALICE, "wrong")),
        "535 5.7.8",
    )
    .await;
    c.cmd("AUTH CRAM-MD5", "504 5.5.4").await;
    c.cmd(
        &format!("AUTH PLAIN {}", plain(ALICE, ALICE_PW)),
        "235 2.7.0",
    )
    .await;
    c.cmd(
        &format!("AUTH PLAIN {}", plain(ALICE, ALICE_PW)),
        "503 5.5.1",
    )
    .await;
    // Spoofed sender: refused. The null sender too.
    c.cmd(&format!("MAIL FROM:<{BOB}>"), "550 5.7.1").await;
    c.cmd("MAIL FROM:<>", "550 5.7.1").await;
    c.cmd(
        "MAIL FROM:<Alice@Hisp-A.Example> RET=HDRS ENVID=e1",
        "250 2.1.0",
    )
    .await;
    // Submission may send anywhere.
    c.cmd(
        "RCPT TO:<doctor@hisp-b.example> NOTIFY=FAILURE,DELAY",
        "250 2.1.5",
    )
    .await;
    c.cmd("DATA", "354 ").await;
    c.cmd("Subject: referral\r\n\r\nhello\r\n.", "250 2.0.0")
        .await;
    c.cmd("QUIT", "221").await;
    let q = queued(&s.store).await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].0, ALICE);
    assert_eq!(q[0].2, vec!["doctor@hisp-b.example".to_string()]);
    assert!(String::from_utf8_lossy(&q[0].1).contains("with ESMTPSA;"));
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    let s = start(Backend::Sqlite, Role::Submission, true, test_config()).await;
    let ca = s.tls.as_ref().unwrap().ca_der.clone();
    let mut c = Client::greeted(s.addr).await;
    c.cmd("EHLO ehr.example", "250-").await;
    // An attacker's injected command rides along after STARTTLS.
    c.send("STARTTLS\r\nMAIL FROM:<alice@hisp-a.example>\r\n")
        .await;
    assert!(c.reply().await.starts_with("220 2.0.0"));
    let mut c = c.upgrade(&ca).await;
    // The first reply over TLS answers our NOOP, not the injected MAIL.
    c.cmd("NOOP", "250 2.0.0").await;
    c.cmd("EHLO ehr.example", "250-").await;
    c.cmd(&format!("RCPT TO:<{BOB}>"), "503 5.5.1").await;
}

#[tokio::test]
async fn auth_login_without_tls_when_allowed() {
    let mut config = test_config();
    config.require_tls_for_auth = false;
    let s = start(Backend::Sqlite, Role::Submission, false, config).await;
    let mut c = Client::greeted(s.addr).await;
    assert!(
        c.cmd("EHLO ehr.example", "250-")
            .await
            .contains("250 AUTH PLAIN LOGIN\r\n")
    );
    c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    c.cmd(&b64(ALICE), "334 UGFzc3dvcmQ6").await;
    c.cmd(&b64(ALICE_PW), "235 2.7.0").await;
    c.cmd("MAIL FROM:<alice@hisp-a.example>", "250 2.1.0").await;

    // PLAIN with the response on its own line, and cancelling.
    let mut c = Client::greeted(s.addr).await;
    c.cmd("EHLO ehr.example", "250-").await;
    c.cmd("AUTH PLAIN", "334 ").await;
    c.cmd("*", "501 5.7.0").await;
    c.cmd("AUTH PLAIN", "334 ").await;
    c.cmd("!!!not base64", "501 5.5.2").await;
    c.cmd("AUTH PLAIN", "334 ").await;
    c.cmd(&plain(ALICE, ALICE_PW), "235 2.7.0").await;
}

#[tokio::test]
async fn failed_logins_disconnect_and_back_off() {
    let mut config = test_config();
    config.require_tls_for_auth = false;
    config.max_auth_failures = 2;
    config.auth_failure_backoff = hisp::config::Duration(Duration::from_millis(1500));
    let s = start(Backend::Sqlite, Role::Submission, false, config).await;
    let mut c = Client::greeted(s.addr).await;
    c.cmd("EHLO ehr.example", "250-").await;
    c.cmd(&format!("AUTH PLAIN {}", plain(ALICE, "nope")), "535 5.7.8")
        .await;
    // An unknown user fails the same way.
    c.cmd(
        &format!("AUTH PLAIN {}", plain("ghost@hisp-a.example", "x")),
        "421 4.7.0",
    )
    .await;
    assert!(c.closed().await);
    // The address is locked out for a while, even with the right password.
    let mut c = Client::connect(s.addr).await;
    assert!(c.reply().await.starts_with("421 4.7.0"));
    assert!(c.closed().await);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let mut c = Client::greeted(s.addr).await;
    c.cmd("EHLO ehr.example", "250-").await;
    c.cmd(
        &format!("AUTH PLAIN {}", plain(ALICE, ALICE_PW)),
        "235 2.7.0",
    )
    .await;
}

/// Unauthenticated mail to a non-local domain is refused on both ports.
#[tokio::test]
async fn no_open_relay_on_either_port() {
    let inbound = start(Backend::Sqlite, Role::Inbound, true, test_config()).await;
    let mut c = Client::greeted(inbound.addr).await;
    c.cmd("EHLO spammer.example", "250-").await;
    c.cmd("MAIL FROM:<spam@spammer.example>", "250 2.1.0").await;
    c.cmd("RCPT TO:<victim@gmail.example>", "550 5.7.1").await;
    c.cmd("RCPT TO:<victim@hisp-a.example.evil>", "550 5.7.1")
        .await;
    c.cmd("DATA", "503 5.5.1").await;
    // Over TLS it is no different.
    let ca = inbound.tls.as_ref().unwrap().ca_der.clone();
    let mut c = c.starttls(&ca).await;
    c.cmd("EHLO spammer.example", "250-").await;
    c.cmd("MAIL FROM:<spam@spammer.example>", "250 2.1.0").await;
    c.cmd("RCPT TO:<victim@gmail.example>", "550 5.7.1").await;
    c.cmd("AUTH PLAIN", "502 5.5.1").await;

    let submission = start(Backend::Sqlite, Role::Submission, true, test_config()).await;
    let mut c = Client::greeted(submission.addr).await;
    c.cmd("EHLO spammer.example", "250-").await;
    c.cmd("MAIL FROM:<spam@spammer.example>", "530 5.7.0").await;
    c.cmd("RCPT TO:<victim@gmail.example>", "503 5.5.1").await;
    c.cmd("DATA", "503 5.5.1").await;
    assert!(queued(&inbound.store).await.is_empty());
    assert!(queued(&submission.store).await.is_empty());
}
