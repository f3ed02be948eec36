//! Delivery through the SMTP client to a real SMTP peer (a hisp listener started by the
//! test): per-recipient results, 4xx then success on retry, 5xx and give-up DSNs in the
//! sender's mailbox, STARTTLS, and DSN parameters passed on.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, TempDir, backends, fresh_database};
use hisp::address::DirectAddress;
use hisp::pipeline::{Pipeline, Received, Role, Verdict};
use hisp::queue::{Envelope, Policy, Worker, enqueue};
use hisp::smtp::client::{ClientConfig, NoMx, SmtpClient};
use hisp::smtp::reply::Reply;
use hisp::smtp::server::{Limits, Listener, Shared};
use hisp::store::Store;
use hisp::store::queue::{NewRecipient, Origin};
use sqlx::Row;
use tokio::sync::watch;

/// The peer's pipeline: answers from a script (then accepts), and keeps what it accepted.
#[derive(Clone, Default)]
struct Peer {
    script: Arc<Mutex<Vec<Verdict>>>,
    accepted: Arc<Mutex<Vec<Received>>>,
}

impl Pipeline for Peer {
    async fn process(&self, m: Received) -> Verdict {
        let next = {
            let mut s = self.script.lock().unwrap();
            if s.is_empty() {
                None
            } else {
                Some(s.remove(0))
            }
        };
        let v = next.unwrap_or_else(|| Verdict::Accept("ok".into()));
        if matches!(v, Verdict::Accept(_)) {
            self.accepted.lock().unwrap().push(m);
        }
        v
    }
}

struct PeerServer {
    addr: SocketAddr,
    peer: Peer,
    _stop: watch::Sender<bool>,
    _dir: TempDir,
}

async fn peer(tls: bool) -> PeerServer {
    let dir = TempDir::new("peer");
    let url = fresh_database(Backend::Sqlite, dir.path()).await;
    let store = Store::open(&url, 2).await.unwrap();
    store.add_domain("hisp-b.example").await.unwrap();
    for a in ["bob@hisp-b.example", "carol@hisp-b.example"] {
        store
            .add_address(&DirectAddress::parse(a).unwrap(), None)
            .await
            .unwrap();
    }
    let tls = tls.then(|| {
        let files = common::smtp::tls_files(dir.path());
        tokio_rustls::TlsAcceptor::from(
            hisp::smtp::tls::server_config(&files.cert, &files.key).unwrap(),
        )
    });
    let p = Peer::default();
    let (stop, rx) = watch::channel(false);
    let config = common::smtp::test_config();
    let shared = Arc::new(Shared {
        role: Role::Inbound,
        limits: Limits::new(config.max_connections, config.max_connections_per_ip),
        config,
        hostname: "mx.hisp-b.example".into(),
        store,
        pipeline: Arc::new(p.clone()),
        tls,
        shutdown: rx.clone(),
    });
    let l = Listener::bind("127.0.0.1:0".parse().unwrap(), shared)
        .await
        .unwrap();
    let addr = l.local_addr();
    tokio::spawn(l.serve(rx));
    PeerServer {
        addr,
        peer: p,
        _stop: stop,
        _dir: dir,
    }
}

fn client(route: &str, require_tls: bool) -> SmtpClient<NoMx> {
    let mut routes = BTreeMap::new();
    routes.insert("hisp-b.example".to_string(), route.to_string());
    SmtpClient::new(
        ClientConfig {
            hostname: "hisp-a.example".into(),
            routes,
            require_tls,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            port: 25,
        },
        NoMx,
    )
    .unwrap()
}

fn policy() -> Policy {
    Policy {
        retry: vec![Duration::from_millis(50)],
        give_up_after: Duration::from_secs(3600),
        lease: Duration::from_secs(60),
    }
}

async fn sender_store(backend: Backend, dir: &TempDir) -> Store {
    let url = fresh_database(backend, dir.path()).await;
    let store = Store::open(&url, 4).await.unwrap();
    store.add_domain("hisp-a.example").await.unwrap();
    store
        .add_address(&DirectAddress::parse("alice@hisp-a.example").unwrap(), None)
        .await
        .unwrap();
    store
}

fn rcpt(a: &str) -> NewRecipient {
    NewRecipient {
        address: a.into(),
        domain: a.rsplit('@').next().unwrap().into(),
        notify: None,
        orcpt: None,
    }
}

const BODY: &[u8] =
    b"Message-ID: <d1@hisp-a.example>\r\nSubject: referral\r\n\r\n.dotted line\r\nend\r\n";

async fn states(store: &Store) -> Vec<(String, String, i64)> {
    sqlx::query("SELECT recipient, state, attempts FROM queue_recipients ORDER BY recipient")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("recipient"), r.get("state"), r.get("attempts")))
        .collect()
}

async fn dsns(store: &Store) -> Vec<String> {
    sqlx::query("SELECT raw FROM mailbox WHERE kind = 'dsn' ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8(r.get::<Vec<u8>, _>("raw")).unwrap())
        .collect()
}

async fn mixed_results_then_retry(backend: Backend) {
    let p = peer(true).await;
    // The first DATA is refused temporarily; the retry is accepted.
    p.peer
        .script
        .lock()
        .unwrap()
        .push(Verdict::Reject(Reply::new(451, "4.3.0", "busy, try later")));
    let dir = TempDir::new("sender");
    let store = sender_store(backend, &dir).await;
    let mut env = Envelope {
        origin: Origin::Submission,
        from: "alice@hisp-a.example".into(),
        envid: Some("ENV 7".into()),
        ret: Some("HDRS".into()),
        recipients: vec![
            rcpt("bob@hisp-b.example"),
            rcpt("carol@hisp-b.example"),
            rcpt("nobody@hisp-b.example"),
        ],
    };
    env.recipients[0].notify = Some("FAILURE,DELAY".into());
    env.recipients[0].orcpt = Some("rfc822;bob@hisp-b.example".into());
    enqueue(
        &store,
        "hisp-a.example",
        Duration::from_secs(3600),
        &env,
        BODY,
    )
    .await
    .unwrap();
    let w = Worker::new(
        store.clone(),
        "hisp-a.example",
        policy(),
        client(&p.addr.to_string(), true),
    );
    assert_eq!(w.run_once().await.unwrap(), 3);
    assert_eq!(
        states(&store).await,
        vec![
            ("bob@hisp-b.example".into(), "pending".into(), 1),
            ("carol@hisp-b.example".into(), "pending".into(), 1),
            ("nobody@hisp-b.example".into(), "failed".into(), 1),
        ]
    );
    let reports = dsns(&store).await;
    assert_eq!(reports.len(), 1, "one DSN, for the unknown recipient");
    assert!(
        reports[0].contains(
            "Final-Recipient: rfc822; nobody@hisp-b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{}",
        reports[0]
    );
    assert!(reports[0].contains(&format!("Remote-MTA: dns; {}\r\n", p.addr)));
    assert!(reports[0].contains("Original-Envelope-Id: ENV 7\r\n"));
    assert!(p.peer.accepted.lock().unwrap().is_empty());

    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(w.run_once().await.unwrap(), 2);
    let s = states(&store).await;
    assert_eq!(s[0], ("bob@hisp-b.example".into(), "delivered".into(), 2));
    assert_eq!(s[1], ("carol@hisp-b.example".into(), "delivered".into(), 2));
    assert_eq!(dsns(&store).await.len(), 1);

    let accepted = p.peer.accepted.lock().unwrap();
    assert_eq!(accepted.len(), 1, "delivered once");
    let m = &accepted[0];
    assert!(m.tls, "STARTTLS was used");
    assert_eq!(m.mail_from, "alice@hisp-a.example");
    assert_eq!(
        m.envid.as_deref(),
        Some("ENV 7"),
        "ENVID passed on (xtext on the wire)"
    );
    assert_eq!(m.ret.as_deref(), Some("HDRS"));
    let rcpts: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["bob@hisp-b.example", "carol@hisp-b.example"]);
    assert_eq!(m.recipients[0].notify.as_deref(), Some("FAILURE,DELAY"));
    assert_eq!(
        m.recipients[0].orcpt.as_deref(),
        Some("rfc822;bob@hisp-b.example")
    );
    let body = String::from_utf8_lossy(&m.body);
    assert!(body.ends_with("\r\n\r\n.dotted line\r\nend\r\n"), "{body}");
}

#[tokio::test]
async fn mixed_results_then_retry_on_every_backend() {
    for b in backends() {
        mixed_results_then_retry(b).await;
    }
}

#[tokio::test]
async fn permanent_refusal_of_the_message_fails_all_with_one_dsn() {
    let p = peer(false).await;
    p.peer
        .script
        .lock()
        .unwrap()
        .push(Verdict::Reject(Reply::new(554, "5.7.1", "bad signature")));
    let dir = TempDir::new("sender");
    let store = sender_store(Backend::Sqlite, &dir).await;
    let env = Envelope {
        origin: Origin::Submission,
        from: "alice@hisp-a.example".into(),
        envid: None,
        ret: None,
        recipients: vec![rcpt("bob@hisp-b.example"), rcpt("carol@hisp-b.example")],
    };
    enqueue(
        &store,
        "hisp-a.example",
        Duration::from_secs(3600),
        &env,
        BODY,
    )
    .await
    .unwrap();
    let w = Worker::new(
        store.clone(),
        "hisp-a.example",
        policy(),
        client(&p.addr.to_string(), false),
    );
    w.run_once().await.unwrap();
    let s = states(&store).await;
    assert!(s.iter().all(|(_, st, _)| st == "failed"), "{s:?}");
    let reports = dsns(&store).await;
    assert_eq!(reports.len(), 1);
    assert!(reports[0].contains("Diagnostic-Code: smtp; 554 5.7.1 bad signature\r\n"));
    assert_eq!(reports[0].matches("Final-Recipient:").count(), 2);
}

#[tokio::test]
async fn unreachable_or_untls_hop_is_retried_then_given_up() {
    // Nothing listens here.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let plain_peer = peer(false).await;
    for (route, require_tls, why) in [
        (dead.clone(), false, "no usable host for hisp-b.example"),
        (plain_peer.addr.to_string(), true, "does not offer STARTTLS"),
    ] {
        let dir = TempDir::new("sender");
        let store = sender_store(Backend::Sqlite, &dir).await;
        let env = Envelope {
            origin: Origin::Submission,
            from: "alice@hisp-a.example".into(),
            envid: None,
            ret: None,
            recipients: vec![rcpt("bob@hisp-b.example")],
        };
        enqueue(
            &store,
            "hisp-a.example",
            Duration::from_secs(3600),
            &env,
            BODY,
        )
        .await
        .unwrap();
        let w = Worker::new(
            store.clone(),
            "hisp-a.example",
            policy(),
            client(&route, require_tls),
        );
        w.run_once().await.unwrap();
        let err: String = sqlx::query("SELECT last_error FROM queue_recipients")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get("last_error");
        assert!(err.contains(why), "{err}");
        assert_eq!(states(&store).await[0].1, "pending");
        // Expired: the next temporary failure gives up with a DSN.
        sqlx::query("UPDATE queue_messages SET expires_at = 0")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE queue_recipients SET next_attempt_at = 0")
            .execute(store.pool())
            .await
            .unwrap();
        w.run_once().await.unwrap();
        assert_eq!(states(&store).await[0].1, "failed");
        let reports = dsns(&store).await;
        assert_eq!(reports.len(), 1);
        assert!(reports[0].contains("Status: 4.4.7\r\n"), "{}", reports[0]);
    }
    assert!(plain_peer.peer.accepted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_connection_is_reused_for_the_next_message() {
    let p = peer(true).await;
    let dir = TempDir::new("sender");
    let store = sender_store(Backend::Sqlite, &dir).await;
    let w = Worker::new(
        store.clone(),
        "hisp-a.example",
        policy(),
        client(&p.addr.to_string(), false),
    );
    for n in 0..3 {
        let env = Envelope {
            origin: Origin::Submission,
            from: "alice@hisp-a.example".into(),
            envid: None,
            ret: None,
            recipients: vec![rcpt("bob@hisp-b.example")],
        };
        let body = format!("Message-ID: <r{n}@hisp-a.example>\r\n\r\nx\r\n");
        enqueue(
            &store,
            "hisp-a.example",
            Duration::from_secs(3600),
            &env,
            body.as_bytes(),
        )
        .await
        .unwrap();
        // One message per run: each delivery finds the previous connection parked.
        assert_eq!(w.run_once().await.unwrap(), 1);
    }
    let accepted = p.peer.accepted.lock().unwrap();
    assert_eq!(accepted.len(), 3);
    let sources: std::collections::HashSet<SocketAddr> = accepted.iter().map(|m| m.peer).collect();
    assert_eq!(
        sources.len(),
        1,
        "three messages, one connection: {sources:?}"
    );
    // RFC 3207: the reused connection is still the TLS one.
    assert!(accepted.iter().all(|m| m.tls));
}
