//! Crash safety: `hisp serve` is killed with SIGKILL while clients submit 500 messages, then
//! restarted. Every message that got `250` reaches the recipient's mailbox exactly once, and
//! at most the few in flight at the kill (committed, but the `250` never sent) arrive besides.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::smtp::{Client, b64};
use common::{Backend, Env, TempDir, backends, fresh_database};
use hisp::address::DirectAddress;
use hisp::pipeline::local::LocalDelivery;
use hisp::pipeline::{Pipeline, Received, Role, Verdict};
use hisp::smtp::server::{Limits, Listener, Shared};
use hisp::store::Store;
use sqlx::Row;
use tokio::sync::watch;

const CLIENTS: usize = 4;
const PER_CLIENT: usize = 125;

/// The receiving HISP's plain inbound pipeline, counting what it accepts at the SMTP level.
struct Counting {
    inner: LocalDelivery,
    accepted: Arc<Mutex<HashMap<String, u32>>>,
}

impl Pipeline for Counting {
    async fn process(&self, m: Received) -> Verdict {
        let id = hisp::headers::message_id(&m.body).unwrap_or_default();
        let v = self.inner.process(m).await;
        if matches!(v, Verdict::Accept(_)) {
            *self.accepted.lock().unwrap().entry(id).or_default() += 1;
        }
        v
    }
}

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

/// Submits until the server goes away; returns the Message-IDs answered with 250.
async fn submitter(
    addr: std::net::SocketAddr,
    client: usize,
    progress: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut c = Client::connect(addr).await;
    if !c.reply().await.starts_with("220") {
        return acked;
    }
    let auth = format!("AUTH PLAIN {}", b64("\0alice@hisp-a.example\0pw-alice"));
    for (line, expect) in [("EHLO ehr.example", "250"), (auth.as_str(), "235")] {
        c.send(&format!("{line}\r\n")).await;
        if !c.reply().await.starts_with(expect) {
            return acked;
        }
    }
    for n in 0..PER_CLIENT {
        let id = format!("c{client}-{n}@crash.example");
        let script = [
            ("MAIL FROM:<alice@hisp-a.example>\r\n".to_string(), "250"),
            ("RCPT TO:<bob@hisp-b.example>\r\n".to_string(), "250"),
            ("DATA\r\n".to_string(), "354"),
            (
                format!("Message-ID: <{id}>\r\nSubject: crash {n}\r\n\r\nbody\r\n.\r\n"),
                "250",
            ),
        ];
        for (line, expect) in script {
            c.send_bytes(line.as_bytes()).await;
            if !c.reply().await.starts_with(expect) {
                return acked;
            }
        }
        acked.push(id);
        progress.fetch_add(1, Ordering::SeqCst);
    }
    acked
}

async fn mailbox_ids(store: &Store) -> Vec<String> {
    sqlx::query("SELECT message_id FROM mailbox ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("message_id"))
        .collect()
}

async fn killed_and_restarted(backend: Backend) {
    // The receiving side: a hisp listener filing into its own store.
    let peer_dir = TempDir::new("peer");
    let peer_url = fresh_database(Backend::Sqlite, peer_dir.path()).await;
    let peer_store = Store::open(&peer_url, 4).await.unwrap();
    peer_store.add_domain("hisp-b.example").await.unwrap();
    peer_store
        .add_address(&DirectAddress::parse("bob@hisp-b.example").unwrap(), None)
        .await
        .unwrap();
    let accepted = Arc::new(Mutex::new(HashMap::new()));
    let (_stop, rx) = watch::channel(false);
    let config = common::smtp::test_config();
    let shared = Arc::new(Shared {
        role: Role::Inbound,
        limits: Limits::new(config.max_connections, config.max_connections_per_ip),
        config,
        hostname: "mx.hisp-b.example".into(),
        store: peer_store.clone(),
        pipeline: Arc::new(Counting {
            inner: LocalDelivery {
                store: peer_store.clone(),
                hostname: "mx.hisp-b.example".into(),
            },
            accepted: Arc::clone(&accepted),
        }),
        tls: None,
        shutdown: rx.clone(),
    });
    let peer = Listener::bind("127.0.0.1:0".parse().unwrap(), shared)
        .await
        .unwrap();
    let peer_addr = peer.local_addr();
    tokio::spawn(peer.serve(rx));

    // The gateway under test, as a process.
    let env = Env::new(backend).await;
    env.run(&["domain", "add", "hisp-a.example"]).ok();
    env.run_env(
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
    let (inbound, submission) = (free_port(), free_port());
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str(&format!(
        "[smtp]\npipelines = \"plain\"\nlisten = [\"127.0.0.1:{inbound}\"]\nsubmission_listen = [\"127.0.0.1:{submission}\"]\nrequire_tls_for_auth = false\n\
         [delivery]\nroutes = {{ \"hisp-b.example\" = \"{peer_addr}\" }}\nlease = \"2s\"\nretry = [\"1s\"]\nworkers = 2\n"
    ));
    std::fs::write(&env.config, text).unwrap();
    let spawn = || {
        env.command(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let server = spawn();
    let sub: std::net::SocketAddr = format!("127.0.0.1:{submission}").parse().unwrap();
    wait_for_listener(sub).await;

    let progress = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let progress = Arc::clone(&progress);
        clients.push(tokio::spawn(submitter(sub, i, progress)));
    }
    // Kill in the middle of the submissions, with the workers delivering.
    let pid = server.id();
    for _ in 0..3000 {
        if progress.load(Ordering::SeqCst) >= CLIENTS * PER_CLIENT / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = tokio::task::spawn_blocking(move || server.wait_with_output())
        .await
        .unwrap();
    let mut acked = HashSet::new();
    for c in clients {
        acked.extend(c.await.unwrap());
    }
    assert!(
        !acked.is_empty() && acked.len() < CLIENTS * PER_CLIENT,
        "the kill came too early or too late: {} acked",
        acked.len()
    );

    // Restart: the queue survived; leases of the killed workers run out and it drains.
    let mut server = spawn();
    let mut pending = usize::MAX;
    for _ in 0..600 {
        let list = env.run(&["queue", "list", "--json"]).ok().json();
        pending = list.as_array().unwrap().len();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0, "the queue did not drain after the restart");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();

    let filed = mailbox_ids(&peer_store).await;
    let unique: HashSet<String> = filed.iter().cloned().collect();
    assert_eq!(unique.len(), filed.len(), "a message was filed twice");
    let missing: Vec<&String> = acked.difference(&unique).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );
    let extra: Vec<&String> = unique.difference(&acked).collect();
    assert!(
        extra.len() <= CLIENTS,
        "more unacknowledged messages delivered than were in flight: {extra:?}"
    );
    let all = env.run(&["queue", "list", "--all", "--json"]).ok().json();
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "delivered"),
        "{all}"
    );
    eprintln!(
        "crash test ({backend:?}): {} acknowledged, {} filed, {} unacknowledged but committed, {} SMTP re-deliveries absorbed by the mailbox",
        acked.len(),
        unique.len(),
        extra.len(),
        accepted
            .lock()
            .unwrap()
            .values()
            .map(|n| n - 1)
            .sum::<u32>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_submission_loses_and_duplicates_nothing() {
    for b in backends() {
        killed_and_restarted(b).await;
    }
}
