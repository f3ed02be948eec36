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

/// SQLite serves mailbox pages and token look-ups from connections read on the calling
/// thread, and falls back to sqlx when they are all in use; both must answer exactly alike
/// (and PostgreSQL, which has only the sqlx path, the same again).
#[tokio::test]
async fn inline_reads_answer_as_the_sqlx_path_does() {
    use hisp::address::DirectAddress;
    use hisp::store::mailbox::NewMailboxMessage;
    for backend in backends() {
        let dir = TempDir::new("inline");
        let url = fresh_database(backend, dir.path()).await;
        let s = Store::open(&url, 2).await.unwrap();
        assert_eq!(
            s.has_inline_reads(),
            backend == Backend::Sqlite,
            "{backend:?}"
        );
        s.add_domain("a.example").await.unwrap();
        for who in ["ann", "bob"] {
            let addr = DirectAddress::parse(&format!("{who}@a.example")).unwrap();
            s.add_address(&addr, None).await.unwrap();
        }
        for n in 0..7 {
            let to = if n % 3 == 2 {
                "bob@a.example"
            } else {
                "ann@a.example"
            };
            s.deliver_local(
                &[to.to_string()],
                &NewMailboxMessage {
                    message_id: &format!("<{n}@b.example>"),
                    sender: "x@b.example",
                    subject: &format!("Überweisung {n} \"quoted\""),
                    raw: format!("Subject: {n}\r\n\r\nbody {n}\r\n").as_bytes(),
                },
            )
            .await
            .unwrap();
        }
        let t = hisp::auth::new_token();
        s.add_token(&t.hash, &t.prefix, Some("ann@a.example"))
            .await
            .unwrap();
        let plain = s.without_inline_reads();
        for (after, limit) in [(0, 50), (0, 2), (2, 2), (1_000, 5)] {
            let a = s.mailbox_list("ann@a.example", after, limit).await.unwrap();
            let b = plain
                .mailbox_list("ann@a.example", after, limit)
                .await
                .unwrap();
            assert_eq!(a, b, "{backend:?} after={after} limit={limit}");
        }
        let page = s.mailbox_list("ann@a.example", 0, 50).await.unwrap();
        assert_eq!(page.len(), 5, "{backend:?}");
        assert!(page.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
        assert_eq!(page[0].subject, "Überweisung 0 \"quoted\"");
        assert!(
            s.mailbox_list("nobody@a.example", 0, 50)
                .await
                .unwrap()
                .is_empty()
        );

        let (tok, hash) = s.token_by_hash(&t.hash).await.unwrap().unwrap();
        let (tok2, hash2) = plain.token_by_hash(&t.hash).await.unwrap().unwrap();
        assert_eq!(hash, hash2);
        assert_eq!(
            serde_json::to_value(&tok).unwrap(),
            serde_json::to_value(&tok2).unwrap()
        );
        assert_eq!(tok.address.as_deref(), Some("ann@a.example"));
        assert!(!tok.admin);
        assert!(s.token_by_hash("0000").await.unwrap().is_none());
        s.revoke_token(tok.id).await.unwrap();
        assert!(
            s.token_by_hash(&t.hash).await.unwrap().is_none(),
            "an inline read sees a commit made through the pool at once"
        );
        s.close().await;
    }
}
