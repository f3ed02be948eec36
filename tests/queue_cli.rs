//! `hisp queue list|retry|drop` against a store with queued mail, on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::{Backend, Env, backends};
use hisp::queue::{Envelope, enqueue};
use hisp::store::queue::{NewRecipient, Origin};

fn rcpt(a: &str) -> NewRecipient {
    NewRecipient {
        address: a.into(),
        domain: a.rsplit('@').next().unwrap().into(),
        notify: None,
        orcpt: None,
    }
}

async fn queue_commands(backend: Backend) {
    let env = Env::new(backend).await;
    let empty = env.run(&["queue", "list"]).ok();
    assert_eq!(empty.stdout.trim(), "nothing waiting for delivery");
    assert_eq!(
        env.run(&["queue", "list", "--json"]).ok().json(),
        serde_json::json!([])
    );

    let store = env.store().await;
    let envelope = Envelope {
        origin: Origin::Submission,
        from: "alice@hisp-a.example".into(),
        envid: None,
        ret: None,
        recipients: vec![rcpt("bob@hisp-b.example"), rcpt("carol@hisp-c.example")],
    };
    let body = b"Message-ID: <q1@hisp-a.example>\r\n\r\nhi\r\n";
    let first = enqueue(
        &store,
        "hisp-a.example",
        Duration::from_secs(3600),
        &envelope,
        body,
    )
    .await
    .unwrap();
    let second = enqueue(
        &store,
        "hisp-a.example",
        Duration::from_secs(3600),
        &envelope,
        body,
    )
    .await
    .unwrap();

    let list = env.run(&["queue", "list", "--json"]).ok().json();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["id"], second);
    assert_eq!(rows[0]["message_id"], "q1@hisp-a.example");
    assert_eq!(rows[0]["from"], "alice@hisp-a.example");
    assert_eq!(rows[0]["recipient"], "bob@hisp-b.example");
    assert_eq!(rows[0]["state"], "pending");
    assert_eq!(rows[0]["attempts"], 0);
    let table = env.run(&["queue", "list"]).ok().stdout;
    assert!(table.starts_with("ID  FROM"), "{table}");
    assert!(table.contains("carol@hisp-c.example  pending"), "{table}");

    let dropped = env
        .run(&["queue", "drop", &first.to_string(), "--json"])
        .ok()
        .json();
    assert_eq!(dropped, serde_json::json!({"id": first, "recipients": 2}));
    let list = env.run(&["queue", "list", "--json"]).ok().json();
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "dropped rows are not pending"
    );
    let all = env.run(&["queue", "list", "--all", "--json"]).ok().json();
    let states: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "pending", "dropped", "dropped"]);

    // Retry makes the pending recipients due now (they already are; the count says so).
    let out = env.run(&["queue", "retry", &second.to_string()]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!("queue message {second}: 2 pending recipient(s) due now")
    );
    // Dropped recipients stay dropped.
    let out = env
        .run(&["queue", "retry", &first.to_string(), "--json"])
        .ok();
    assert_eq!(out.json()["recipients"], 0);

    env.run(&["queue", "drop", "999999"])
        .fails(3, "queue message 999999 does not exist");
    env.run(&["queue", "retry", "999999"])
        .fails(3, "does not exist");
    env.run(&["queue", "drop", "abc"]).fails(2, "abc");
    store.close().await;
}

#[tokio::test]
async fn queue_commands_on_every_backend() {
    for b in backends() {
        queue_commands(b).await;
    }
}
