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
        "[smtp]\nlisten = [\"127.0.0.1:{inbound}\"]\nsubmission_listen = [\"127.0.0.1:{submission}\"]\n"
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

    let list = env.run(&["queue", "list", "--json"]).ok().json();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["recipient"], "bob@hisp-a.example");
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
