//! The durable delivery queue on SQLite and PostgreSQL: atomic enqueue, claims that never
//! overlap, lease expiry, retries, give-up, and DSNs filed in the sender's mailbox.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, TempDir, backends, fresh_database};
use hisp::address::DirectAddress;
use hisp::queue::{Attempt, Envelope, Policy, Transport, Worker, enqueue};
use hisp::store::Store;
use hisp::store::queue::{Claimed, NewRecipient, Origin, QueuedMessage, Settle};
use sqlx::Row;

async fn store(backend: Backend, dir: &TempDir) -> (Store, String) {
    let url = fresh_database(backend, dir.path()).await;
    (Store::open(&url, 4).await.unwrap(), url)
}

fn rcpt(address: &str) -> NewRecipient {
    NewRecipient {
        address: address.into(),
        domain: address.rsplit('@').next().unwrap().into(),
        notify: None,
        orcpt: None,
    }
}

fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope {
        origin: Origin::Submission,
        from: from.into(),
        envid: None,
        ret: None,
        recipients: to.iter().map(|a| rcpt(a)).collect(),
    }
}

const BODY: &[u8] = b"Message-ID: <m1@hisp-a.example>\r\nSubject: hello\r\n\r\nbody\r\n";

fn policy() -> Policy {
    Policy {
        retry: vec![Duration::from_secs(60)],
        give_up_after: Duration::from_secs(3600),
        lease: Duration::from_secs(60),
    }
}

/// A transport that answers from a script, per recipient, and records what it was asked.
#[derive(Clone, Default)]
struct Scripted {
    answers: Arc<Mutex<Vec<(String, Attempt)>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn answer(&self, rcpt: &str, a: Attempt) {
        self.answers.lock().unwrap().push((rcpt.into(), a));
    }
}

impl Transport for Scripted {
    async fn deliver(&self, _m: &QueuedMessage, rcpts: &[Claimed]) -> Vec<Attempt> {
        let answers = self.answers.lock().unwrap();
        rcpts
            .iter()
            .map(|r| {
                self.seen.lock().unwrap().push(r.recipient.clone());
                answers
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == r.recipient)
                    .map(|(_, x)| x.clone())
                    .unwrap_or(Attempt::Delivered {
                        reply: "250 2.0.0 ok".into(),
                    })
            })
            .collect()
    }
}

async fn states(store: &Store) -> Vec<(String, String, i64)> {
    sqlx::query("SELECT recipient, state, attempts FROM queue_recipients ORDER BY recipient")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("recipient"), r.get("state"), r.get("attempts")))
        .collect()
}

async fn dsns(store: &Store, address: &str) -> Vec<Vec<u8>> {
    sqlx::query(
        "SELECT m.raw FROM mailbox m JOIN addresses a ON a.id = m.address_id
         WHERE a.address = $1 AND m.kind = 'dsn' ORDER BY m.id",
    )
    .bind(address)
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get("raw"))
    .collect()
}

async fn local_sender(store: &Store) {
    store.add_domain("hisp-a.example").await.unwrap();
    store
        .add_address(&DirectAddress::parse("alice@hisp-a.example").unwrap(), None)
        .await
        .unwrap();
}

async fn mixed_results_retry_and_dsn(backend: Backend) {
    let dir = TempDir::new("queue");
    let (store, _) = store(backend, &dir).await;
    local_sender(&store).await;
    let env = envelope(
        "alice@hisp-a.example",
        &["ok@b.example", "later@b.example", "nobody@b.example"],
    );
    enqueue(
        &store,
        "hisp-a.example",
        Duration::from_secs(3600),
        &env,
        BODY,
    )
    .await
    .unwrap();
    let t = Scripted::default();
    t.answer(
        "later@b.example",
        Attempt::Temporary {
            status: "4.2.1".into(),
            reply: "451 4.2.1 try later".into(),
            remote_mta: Some("mx.b.example".into()),
        },
    );
    t.answer(
        "nobody@b.example",
        Attempt::Permanent {
            status: "5.1.1".into(),
            reply: "550 5.1.1 no such user".into(),
            remote_mta: Some("mx.b.example".into()),
        },
    );
    let w = Worker::new(store.clone(), "hisp-a.example", policy(), t.clone());
    assert_eq!(w.run_once().await.unwrap(), 3);
    assert_eq!(
        states(&store).await,
        vec![
            ("later@b.example".into(), "pending".into(), 1),
            ("nobody@b.example".into(), "failed".into(), 1),
            ("ok@b.example".into(), "delivered".into(), 1),
        ]
    );
    // The retry is a minute away: nothing is due now.
    assert_eq!(w.run_once().await.unwrap(), 0);
    let reports = dsns(&store, "alice@hisp-a.example").await;
    assert_eq!(reports.len(), 1);
    let text = String::from_utf8(reports[0].clone()).unwrap();
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; nobody@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.b.example\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"), "{text}");
    assert!(!text.contains("later@b.example"), "{text}");
    assert!(text.contains("Subject: hello\r\n"), "{text}");
    assert!(
        !text.contains("body\r\n--"),
        "headers only by default: {text}"
    );

    // `queue retry` makes it due now; this time it works.
    let id: i64 = sqlx::query("SELECT id FROM queue_messages")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("id");
    t.answer(
        "later@b.example",
        Attempt::Delivered {
            reply: "250 ok".into(),
        },
    );
    assert_eq!(store.queue_retry(id).await.unwrap(), 1);
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(
        states(&store).await[0],
        ("later@b.example".into(), "delivered".into(), 2)
    );
    assert_eq!(dsns(&store, "alice@hisp-a.example").await.len(), 1);
}

async fn gives_up_after_expiry_with_a_dsn(backend: Backend) {
    let dir = TempDir::new("queue");
    let (store, _) = store(backend, &dir).await;
    local_sender(&store).await;
    let mut env = envelope(
        "alice@hisp-a.example",
        &["slow@b.example", "quiet@b.example"],
    );
    env.envid = Some("E-42".into());
    env.recipients[1].notify = Some("NEVER".into());
    // Expired on arrival: the first temporary failure is the last.
    enqueue(&store, "hisp-a.example", Duration::ZERO, &env, BODY)
        .await
        .unwrap();
    let t = Scripted::default();
    for r in ["slow@b.example", "quiet@b.example"] {
        t.answer(
            r,
            Attempt::Temporary {
                status: "4.4.1".into(),
                reply: "connection refused".into(),
                remote_mta: None,
            },
        );
    }
    let w = Worker::new(store.clone(), "hisp-a.example", policy(), t);
    assert_eq!(w.run_once().await.unwrap(), 2);
    let s = states(&store).await;
    assert!(s.iter().all(|(_, st, _)| st == "failed"), "{s:?}");
    let reports = dsns(&store, "alice@hisp-a.example").await;
    assert_eq!(reports.len(), 1);
    let text = String::from_utf8(reports[0].clone()).unwrap();
    assert!(text.contains("Original-Envelope-Id: E-42\r\n"), "{text}");
    assert!(text.contains("Status: 4.4.7\r\n"), "{text}");
    assert!(text.contains("gave up: connection refused"), "{text}");
    assert!(
        !text.contains("quiet@b.example"),
        "NOTIFY=NEVER honoured: {text}"
    );
}

async fn no_dsn_for_null_sender_or_remote_sender(backend: Backend) {
    let dir = TempDir::new("queue");
    let (store, _) = store(backend, &dir).await;
    local_sender(&store).await;
    enqueue(
        &store,
        "h",
        Duration::from_secs(60),
        &envelope("", &["x@b.example"]),
        BODY,
    )
    .await
    .unwrap();
    let t = Scripted::default();
    t.answer(
        "x@b.example",
        Attempt::Permanent {
            status: "5.7.1".into(),
            reply: "550 5.7.1 no".into(),
            remote_mta: None,
        },
    );
    Worker::new(store.clone(), "h", policy(), t)
        .run_once()
        .await
        .unwrap();
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM mailbox")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 0);
    assert_eq!(states(&store).await[0].1, "failed");
}

async fn enqueue_is_all_or_nothing(backend: Backend) {
    let dir = TempDir::new("queue");
    let (store, _) = store(backend, &dir).await;
    let env = envelope("a@a.example", &["x@b.example", "x@b.example"]);
    let err = enqueue(&store, "h", Duration::from_secs(60), &env, BODY)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM queue_messages")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 0, "no message without its recipients");
}

async fn concurrent_claimers_never_share(backend: Backend) {
    let dir = TempDir::new("queue");
    let (store, url) = store(backend, &dir).await;
    for i in 0..100 {
        let to: Vec<String> = (0..3).map(|j| format!("r{i}-{j}@b.example")).collect();
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        enqueue(
            &store,
            "h",
            Duration::from_secs(600),
            &envelope("a@a.example", &to),
            BODY,
        )
        .await
        .unwrap();
    }
    // Two pools stand in for two nodes; four claimers each.
    let other = Store::open(&url, 4).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let owner = format!("claimer-{i}");
            let mut mine = Vec::new();
            loop {
                let got = s
                    .claim_due(&owner, hisp::store::now_ms(), 60_000, 7)
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                let outcomes: Vec<(i64, Settle)> = got
                    .iter()
                    .map(|c| (c.id, Settle::Delivered { code: "250".into() }))
                    .collect();
                assert_eq!(
                    s.settle(&owner, &outcomes, None).await.unwrap(),
                    got.len() as u64
                );
                mine.extend(got.into_iter().map(|c| c.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "an item was claimed twice");
    assert_eq!(all.len(), 300);
    let s = states(&store).await;
    assert!(s.iter().all(|(_, st, n)| st == "delivered" && *n == 1));
}

async fn expired_lease_is_reclaimed(backend: Backend) {
    let dir = TempDir::new("queue");
    let (store, _) = store(backend, &dir).await;
    enqueue(
        &store,
        "h",
        Duration::from_secs(600),
        &envelope("a@a.example", &["x@b.example"]),
        BODY,
    )
    .await
    .unwrap();
    let now = hisp::store::now_ms();
    let dead = store.claim_due("dead", now, 1_000, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    // While the lease is live nobody else gets it.
    assert!(
        store
            .claim_due("live", now + 999, 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Once it has run out, another worker does.
    let live = store
        .claim_due("live", now + 1_000, 1_000, 10)
        .await
        .unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, dead[0].id);
    // The dead worker coming back cannot settle what it no longer holds.
    let failed = [(
        dead[0].id,
        Settle::Failed {
            code: "5.0.0".into(),
            error: "late".into(),
        },
    )];
    assert_eq!(store.settle("dead", &failed, None).await.unwrap(), 0);
    let ok = [(live[0].id, Settle::Delivered { code: "250".into() })];
    assert_eq!(store.settle("live", &ok, None).await.unwrap(), 1);
    assert_eq!(states(&store).await[0].1, "delivered");
    // Released leases are claimable at once.
    enqueue(
        &store,
        "h",
        Duration::from_secs(600),
        &envelope("a@a.example", &["y@b.example"]),
        BODY,
    )
    .await
    .unwrap();
    let got = store.claim_due("w", now + 2_000, 60_000, 10).await.unwrap();
    store.release("w", &[got[0].id]).await.unwrap();
    assert_eq!(
        store
            .claim_due("w2", now + 2_000, 60_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn drop_stops_delivery(backend: Backend) {
    let dir = TempDir::new("queue");
    let (store, _) = store(backend, &dir).await;
    let id = enqueue(
        &store,
        "h",
        Duration::from_secs(600),
        &envelope("a@a.example", &["x@b.example"]),
        BODY,
    )
    .await
    .unwrap();
    assert_eq!(store.queue_drop(id).await.unwrap(), 1);
    assert!(
        store
            .claim_due("w", hisp::store::now_ms(), 1000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.queue_drop(id + 1000).await.is_err());
}

#[tokio::test]
async fn queue_on_every_backend() {
    for b in backends() {
        mixed_results_retry_and_dsn(b).await;
        gives_up_after_expiry_with_a_dsn(b).await;
        no_dsn_for_null_sender_or_remote_sender(b).await;
        enqueue_is_all_or_nothing(b).await;
        expired_lease_is_reclaimed(b).await;
        drop_stops_delivery(b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_on_every_backend() {
    for b in backends() {
        concurrent_claimers_never_share(b).await;
    }
}

/// A transport that counts how often each recipient was delivered, slowly enough that the
/// workers overlap.
#[derive(Clone, Default)]
struct Counting {
    seen: Arc<Mutex<std::collections::HashMap<String, u32>>>,
}

impl Transport for Counting {
    async fn deliver(&self, _m: &QueuedMessage, rcpts: &[Claimed]) -> Vec<Attempt> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut seen = self.seen.lock().unwrap();
        rcpts
            .iter()
            .map(|r| {
                *seen.entry(r.recipient.clone()).or_default() += 1;
                Attempt::Delivered {
                    reply: "250 ok".into(),
                }
            })
            .collect()
    }
}

/// Two nodes (two pools on one database), four workers each, drain 2,000 recipients: every
/// one is delivered exactly once.
async fn two_nodes_drain_one_queue(backend: Backend) {
    let dir = TempDir::new("queue");
    let (node_a, url) = store(backend, &dir).await;
    let node_b = Store::open(&url, 4).await.unwrap();
    for i in 0..1000 {
        let to = [format!("a{i}@b.example"), format!("b{i}@c.example")];
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        enqueue(
            &node_a,
            "h",
            Duration::from_secs(600),
            &envelope("x@a.example", &to),
            BODY,
        )
        .await
        .unwrap();
    }
    let counting = Counting::default();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 {
            node_a.clone()
        } else {
            node_b.clone()
        };
        let w = Worker::new(s, &format!("node{}", i % 2), policy(), counting.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            loop {
                let got = w.run_once().await.unwrap();
                if got == 0 {
                    return n;
                }
                n += got;
            }
        }));
    }
    let mut settled = 0;
    for t in tasks {
        settled += t.await.unwrap();
    }
    assert_eq!(settled, 2000);
    let seen = counting.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2000);
    let doubles: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubles.is_empty(), "delivered more than once: {doubles:?}");
    let left: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM queue_recipients WHERE state <> 'delivered'")
            .fetch_one(node_a.pool())
            .await
            .unwrap()
            .get("n");
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_drain_one_queue_on_every_backend() {
    for b in backends() {
        two_nodes_drain_one_queue(b).await;
    }
}

/// A transport that takes its time, as a slow peer would.
#[derive(Clone)]
struct Slow(Duration, Counting);

impl Transport for Slow {
    async fn deliver(&self, m: &QueuedMessage, rcpts: &[Claimed]) -> Vec<Attempt> {
        tokio::time::sleep(self.0).await;
        self.1.deliver(m, rcpts).await
    }
}

/// A delivery that outlasts its lease keeps the lease (renewed while it runs), so another
/// node cannot take the same recipient meanwhile; a lease that did run out is not renewed.
async fn leases_are_renewed_during_slow_deliveries(backend: Backend) {
    let dir = TempDir::new("queue");
    let (store, url) = store(backend, &dir).await;
    let other = Store::open(&url, 2).await.unwrap();
    enqueue(
        &store,
        "h",
        Duration::from_secs(600),
        &envelope("a@a.example", &["slow@b.example"]),
        BODY,
    )
    .await
    .unwrap();
    let mut p = policy();
    p.lease = Duration::from_millis(300);
    let counting = Counting::default();
    let slow = Worker::new(
        store.clone(),
        "slow",
        p.clone(),
        Slow(Duration::from_millis(1200), counting.clone()),
    );
    let fast = Worker::new(other, "fast", p, counting.clone());
    let running = tokio::spawn(async move { slow.run_once().await.unwrap() });
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fast.run_once().await.unwrap(), 0, "took a leased recipient");
    }
    assert_eq!(running.await.unwrap(), 1);
    assert_eq!(
        counting.seen.lock().unwrap().get("slow@b.example"),
        Some(&1)
    );

    enqueue(
        &store,
        "h",
        Duration::from_secs(600),
        &envelope("a@a.example", &["late@b.example"]),
        BODY,
    )
    .await
    .unwrap();
    let now = hisp::store::now_ms();
    let got = store.claim_due("w", now, 1_000, 10).await.unwrap();
    let ids: Vec<i64> = got.iter().map(|c| c.id).collect();
    assert_eq!(
        store
            .renew_leases("w", &ids, now + 999, now + 5_000)
            .await
            .unwrap(),
        ids
    );
    assert!(
        store
            .renew_leases("other", &ids, now, now + 9_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .renew_leases("w", &ids, now + 5_000, now + 9_000)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_are_renewed_on_every_backend() {
    for b in backends() {
        leases_are_renewed_during_slow_deliveries(b).await;
    }
}

/// Many sessions enqueueing at once share group commits: every caller gets the id of its own
/// message, with its own recipients, and a bad message fails alone.
async fn group_commit_keeps_messages_apart(backend: Backend) {
    let dir = TempDir::new("group");
    let (store, _) = store(backend, &dir).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("<g{i}@hisp-a.example>");
            let body = format!("Message-ID: {id}\r\n\r\nbody {i}\r\n");
            let rcpts: Vec<NewRecipient> = (0..=(i % 3))
                .map(|k| rcpt(&format!("r{i}-{k}@hisp-b.example")))
                .collect();
            let msg = hisp::store::queue::NewMessage {
                message_id: &id,
                origin: Origin::Submission,
                envelope_from: "alice@hisp-a.example",
                envid: None,
                ret: None,
                body: body.as_bytes(),
                expires_at: i64::MAX,
            };
            (i, store.enqueue(&msg, &rcpts).await.unwrap())
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        let (i, qid) = t.await.unwrap();
        assert!(ids.insert(qid), "queue id {qid} given twice");
        let m = store.queued_message(qid).await.unwrap();
        assert_eq!(m.message_id, format!("<g{i}@hisp-a.example>"));
        assert_eq!(
            m.body,
            format!("Message-ID: <g{i}@hisp-a.example>\r\n\r\nbody {i}\r\n").as_bytes()
        );
        let rows = sqlx::query(
            "SELECT recipient FROM queue_recipients WHERE queue_message_id = $1 ORDER BY recipient",
        )
        .bind(qid)
        .fetch_all(store.pool())
        .await
        .unwrap();
        let got: Vec<String> = rows.iter().map(|r| r.get("recipient")).collect();
        let want: Vec<String> = (0..=(i % 3))
            .map(|k| format!("r{i}-{k}@hisp-b.example"))
            .collect();
        assert_eq!(got, want);
    }
    // A message naming one recipient twice is refused on its own, before any grouping.
    let dup = [rcpt("x@hisp-b.example"), rcpt("x@hisp-b.example")];
    let msg = hisp::store::queue::NewMessage {
        message_id: "<dup@x>",
        origin: Origin::Submission,
        envelope_from: "alice@hisp-a.example",
        envid: None,
        ret: None,
        body: b"x",
        expires_at: i64::MAX,
    };
    assert!(store.enqueue(&msg, &dup).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_on_every_backend() {
    for b in backends() {
        group_commit_keeps_messages_apart(b).await;
    }
}
