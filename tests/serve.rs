//! `hisp serve` as a process: listens where configured, queues what it accepts, and on
//! SIGTERM stops accepting but finishes a message in DATA before exiting 0.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::smtp::Client;
use common::{Backend, Env, backends};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for_listener(addr: std::net::SocketAddr) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("hisp serve never listened on {addr}");
}

async fn sigterm_finishes_data(backend: Backend) {
    let env = Env::new(backend).await;
    env.run(&["domain", "add", "hisp-a.example"]).ok();
    env.run(&["address", "add", "bob@hisp-a.example"]).ok();
    let (inbound, submission) = (free_port(), free_port());
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "[smtp]\npipelines = \"plain\"\nlisten = [\"127.0.0.1:{inbound}\"]\nsubmission_listen = [\"127.0.0.1:{submission}\"]\n"
    ));
    std::fs::write(&env.config, config).unwrap();
    let server = env
        .command(&["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{inbound}").parse().unwrap();
    wait_for_listener(addr).await;
    wait_for_listener(format!("127.0.0.1:{submission}").parse().unwrap()).await;

    let mut c = Client::connect(addr).await;
    assert!(c.reply().await.starts_with("220 hisp-test.example "));
    c.cmd("EHLO c.example", "250-").await;
    c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0").await;
    c.cmd("RCPT TO:<bob@hisp-a.example>", "250 2.1.5").await;
    c.cmd("RCPT TO:<x@elsewhere.example>", "550 5.7.1").await;
    c.cmd("DATA", "354 ").await;
    c.send("Subject: in flight\r\n\r\nfirst half\r\n").await;
    // An idle session on the other port is closed politely.
    let mut idle = Client::connect(format!("127.0.0.1:{submission}").parse().unwrap()).await;
    assert!(idle.reply().await.starts_with("220 "));

    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(idle.reply().await.starts_with("421 4.3.2"));
    assert!(idle.closed().await);
    // New connections are no longer accepted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The message in DATA is finished and committed.
    c.send("second half\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    assert!(c.reply().await.starts_with("421 4.3.2"));
    assert!(c.closed().await);

    let code = tokio::task::spawn_blocking(move || server.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&code.stderr);
    assert_eq!(code.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("smtp inbound listening on 127.0.0.1:{inbound}")),
        "{stderr}"
    );

    // Inbound mail for a local address goes to its mailbox, not to the delivery queue.
    assert_eq!(mailbox(&env, "bob@hisp-a.example").await.len(), 1);
    let list = env.run(&["queue", "list", "--all", "--json"]).ok().json();
    assert_eq!(list, serde_json::json!([]));
}

async fn mailbox(env: &Env, address: &str) -> Vec<Vec<u8>> {
    let store = env.store().await;
    let rows = sqlx::query(
        "SELECT m.raw FROM mailbox m JOIN addresses a ON a.id = m.address_id WHERE a.address = $1",
    )
    .bind(address)
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| sqlx::Row::get::<Vec<u8>, _>(r, "raw"))
    .collect();
    store.close().await;
    rows
}

fn append_config(env: &Env, text: &str) {
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(text);
    std::fs::write(&env.config, config).unwrap();
}

/// Two gateways: a message submitted to A is delivered by A's worker to B's inbound port
/// and lands in B's mailbox.
async fn two_gateways(backend: Backend) {
    let a = Env::new(backend).await;
    let b = Env::new(backend).await;
    a.run(&["domain", "add", "hisp-a.example"]).ok();
    a.run_env(
        &[
            "address",
            "add",
            "alice@hisp-a.example",
            "--password-env",
            "PW",
        ],
        &[("PW", "pw-alice")],
    )
    .ok();
    b.run(&["domain", "add", "hisp-b.example"]).ok();
    b.run(&["address", "add", "bob@hisp-b.example"]).ok();
    let (a_in, a_sub, b_in, b_sub) = (free_port(), free_port(), free_port(), free_port());
    append_config(
        &a,
        &format!(
            "[smtp]\npipelines = \"plain\"\nlisten = [\"127.0.0.1:{a_in}\"]\nsubmission_listen = [\"127.0.0.1:{a_sub}\"]\nrequire_tls_for_auth = false\n[delivery]\nroutes = {{ \"hisp-b.example\" = \"127.0.0.1:{b_in}\" }}\nworkers = 2\n"
        ),
    );
    append_config(
        &b,
        &format!(
            "[smtp]\npipelines = \"plain\"\nlisten = [\"127.0.0.1:{b_in}\"]\nsubmission_listen = [\"127.0.0.1:{b_sub}\"]\n"
        ),
    );
    let spawn = |env: &Env| {
        env.command(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut server_a = spawn(&a);
    let mut server_b = spawn(&b);
    let sub: std::net::SocketAddr = format!("127.0.0.1:{a_sub}").parse().unwrap();
    wait_for_listener(sub).await;
    wait_for_listener(format!("127.0.0.1:{b_in}").parse().unwrap()).await;

    let mut c = Client::connect(sub).await;
    assert!(c.reply().await.starts_with("220 "));
    c.cmd("EHLO ehr.example", "250-").await;
    c.cmd(
        &format!(
            "AUTH PLAIN {}",
            common::smtp::b64("\0alice@hisp-a.example\0pw-alice")
        ),
        "235 2.7.0",
    )
    .await;
    c.cmd("MAIL FROM:<alice@hisp-a.example>", "250 2.1.0").await;
    c.cmd("RCPT TO:<bob@hisp-b.example>", "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    c.cmd(
        "Message-ID: <e2e@hisp-a.example>\r\nSubject: e2e\r\n\r\nhello bob\r\n.",
        "250 2.0.0",
    )
    .await;
    c.cmd("QUIT", "221").await;

    let mut delivered = Vec::new();
    for _ in 0..200 {
        delivered = mailbox(&b, "bob@hisp-b.example").await;
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered.len(), 1, "not delivered to B");
    let text = String::from_utf8_lossy(&delivered[0]);
    assert!(text.contains("Subject: e2e\r\n\r\nhello bob\r\n"), "{text}");
    let list = a.run(&["queue", "list", "--all", "--json"]).ok().json();
    assert_eq!(list[0]["state"], "delivered", "{list}");
    for s in [&mut server_a, &mut server_b] {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &s.id().to_string()])
            .status();
    }
    for s in [server_a, server_b] {
        let out = tokio::task::spawn_blocking(move || s.wait_with_output().unwrap())
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
    }
}

#[tokio::test]
async fn two_gateways_on_every_backend() {
    for b in backends() {
        two_gateways(b).await;
    }
}

#[tokio::test]
async fn sigterm_finishes_data_on_every_backend() {
    for b in backends() {
        sigterm_finishes_data(b).await;
    }
}

#[tokio::test]
async fn serve_refuses_a_port_in_use() {
    let env = Env::new(Backend::Sqlite).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "[smtp]\nlisten = [\"127.0.0.1:{port}\"]\nsubmission_listen = []\n"
    ));
    std::fs::write(&env.config, config).unwrap();
    env.run(&["serve"])
        .fails(1, &format!("cannot listen on 127.0.0.1:{port}"));
}
