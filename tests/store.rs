//! Store behaviour that the CLI tests don't reach: concurrent appends to the audit hash
//! chain, on SQLite and PostgreSQL.

mod common;

use common::{Backend, TempDir, backends, fresh_database};
use hisp::store::Store;
use hisp::store::audit::{AuditEvent, GENESIS, chain_hash};
use sqlx::Row;

async fn audit_chain_survives_concurrency(backend: Backend) {
    let dir = TempDir::new("audit");
    let url = fresh_database(backend, dir.path()).await;
    // Two pools stand in for two gateway nodes sharing one database.
    let a = Store::open(&url, 4).await.unwrap();
    let b = Store::open(&url, 4).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for j in 0..10 {
                let subject = format!("task{i}-{j}");
                store
                    .audit(&AuditEvent {
                        actor: "test",
                        event: "test.event",
                        subject: &subject,
                        outcome: "ok",
                        detail: serde_json::json!({"i": i, "j": j}),
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = sqlx::query("SELECT at, actor, event, subject, outcome, detail, prev_hash, hash FROM audit_log ORDER BY id")
        .fetch_all(a.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 160);
    let mut prev = GENESIS.to_string();
    for (n, r) in rows.iter().enumerate() {
        let stored_prev: String = r.try_get("prev_hash").unwrap();
        assert_eq!(
            stored_prev, prev,
            "row {n} does not continue the chain ({backend:?})"
        );
        let detail: String = r.try_get("detail").unwrap();
        let actor: String = r.try_get("actor").unwrap();
        let event: String = r.try_get("event").unwrap();
        let subject: String = r.try_get("subject").unwrap();
        let outcome: String = r.try_get("outcome").unwrap();
        let e = AuditEvent {
            actor: &actor,
            event: &event,
            subject: &subject,
            outcome: &outcome,
            detail: serde_json::from_str(&detail).unwrap(),
        };
        let hash: String = r.try_get("hash").unwrap();
        assert_eq!(
            hash,
            chain_hash(&prev, r.try_get("at").unwrap(), &e),
            "row {n} hash"
        );
        prev = hash;
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_chain_is_consistent_under_concurrent_appends() {
    for b in backends() {
        audit_chain_survives_concurrency(b).await;
    }
}

#[tokio::test]
async fn reopening_runs_no_migration_twice_and_rejects_bad_urls() {
    for backend in backends() {
        let dir = TempDir::new("reopen");
        let url = fresh_database(backend, dir.path()).await;
        let s = Store::open(&url, 1).await.unwrap();
        s.add_domain("a.example").await.unwrap();
        s.close().await;
        let s = Store::open(&url, 1).await.unwrap();
        assert_eq!(s.list_domains().await.unwrap().len(), 1);
        let dup = s.add_domain("a.example").await.unwrap_err();
        assert!(dup.to_string().contains("already exists"), "{dup}");
        s.close().await;
    }
    let err = Store::open("mysql://x@y/z", 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported scheme"), "{err}");
    let err = Store::open("postgres://u:topsecret@127.0.0.1:1/db", 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot open database") && !err.contains("topsecret"),
        "{err}"
    );
}
