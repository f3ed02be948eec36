//! The SMTP edge (issue 5): plain accept+commit of 10 KB messages from 50 concurrent clients,
//! and the memory of 1,000 idle sessions.
//!
//!   cargo bench --bench smtp
//!
//! Real loopback sockets and a real SQLite store (WAL, synchronous commit per message): each
//! `250` is sent only after the message and its recipient are committed to the queue. Client
//! and server share this process and the machine's two cores, so the rate is a floor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hisp::address::DirectAddress;
use hisp::config::Smtp;
use hisp::pipeline::Role;
use hisp::pipeline::enqueue::Enqueue;
use hisp::smtp::server::{Limits, Listener, Shared};
use hisp::store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

const CLIENTS: usize = 50;
const MESSAGE_SIZE: usize = 10 * 1024;
const IDLE: usize = 1_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let per_client = if quick { 2 } else { 100 };
    let idle = if quick { 20 } else { IDLE };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(per_client, idle));
}

async fn run(per_client: usize, idle: usize) {
    let dir = std::env::var_os("HISP_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("hisp-bench-smtp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("hisp.db").display());
    let store = Store::open(&url, 8).await.unwrap();
    store.add_domain("hisp-a.example").await.unwrap();
    store
        .add_address(&DirectAddress::parse("bob@hisp-a.example").unwrap(), None)
        .await
        .unwrap();
    let config = Smtp {
        max_connections: 5_000,
        max_connections_per_ip: 5_000,
        ..Smtp::default()
    };
    let (stop, rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        role: Role::Inbound,
        config: config.clone(),
        hostname: "hisp-a.example".into(),
        store: store.clone(),
        pipeline: Arc::new(Enqueue {
            store: store.clone(),
            hostname: "hisp-a.example".into(),
            give_up_after: Duration::from_secs(3600),
        }),
        tls: None,
        limits: Limits::new(config.max_connections, config.max_connections_per_ip),
        shutdown: rx.clone(),
    });
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), shared)
        .await
        .unwrap();
    let addr = listener.local_addr();
    tokio::spawn(listener.serve(rx));

    let mut body = String::from(
        "From: alice@hisp-b.example\r\nTo: bob@hisp-a.example\r\nSubject: bench\r\n\r\n",
    );
    while body.len() < MESSAGE_SIZE {
        body.push_str(
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456\r\n",
        );
    }
    let body = Arc::new(body);

    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let body = body.clone();
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            // As a real MTA does: otherwise Nagle holds the final ".\r\n" for the
            // server's delayed ACK, and the run measures TCP timers instead of hisp.
            stream.set_nodelay(true).unwrap();
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            let mut expect = async |r: &mut BufReader<_>, code: &str| {
                loop {
                    line.clear();
                    r.read_line(&mut line).await.unwrap();
                    assert!(line.starts_with(code), "expected {code}, got {line}");
                    if line.as_bytes().get(3) != Some(&b'-') {
                        break;
                    }
                }
            };
            expect(&mut r, "220").await;
            w.write_all(b"EHLO bench.example\r\n").await.unwrap();
            expect(&mut r, "250").await;
            for i in 0..per_client {
                // Pipelined envelope (RFC 2920), then the content.
                w.write_all(
                    b"MAIL FROM:<alice@hisp-b.example>\r\nRCPT TO:<bob@hisp-a.example>\r\nDATA\r\n",
                )
                .await
                .unwrap();
                expect(&mut r, "250").await;
                expect(&mut r, "250").await;
                expect(&mut r, "354").await;
                let msg = body.replace(
                    "Subject: bench",
                    &format!("Message-ID: <{c}.{i}@bench>\r\nSubject: bench"),
                );
                w.write_all(msg.as_bytes()).await.unwrap();
                w.write_all(b".\r\n").await.unwrap();
                expect(&mut r, "250").await;
            }
            w.write_all(b"QUIT\r\n").await.unwrap();
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = CLIENTS * per_client;
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue_messages")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(queued as usize, total, "every 250 is a committed message");
    println!(
        "smtp accept+commit: {total} messages of {} KiB from {CLIENTS} clients in {elapsed:.2?} = {:.0} messages/s (target >= 1500)",
        MESSAGE_SIZE / 1024,
        total as f64 / elapsed.as_secs_f64()
    );

    // Idle sessions: connected and greeted (EHLO), then silent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let mut sessions = Vec::new();
    for _ in 0..idle {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        r.get_mut()
            .write_all(b"EHLO idle.example\r\n")
            .await
            .unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).await.unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        sessions.push(r);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!(
        "{idle} idle sessions: process RSS {:.1} MiB (+{:.1} MiB, clients' sockets included; target < 100 MB)",
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0
    );
    drop(sessions);
    let _ = stop.send(true);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
