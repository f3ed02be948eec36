//! `hisp audit verify|list` on SQLite and PostgreSQL: the chain detects an edited entry, a
//! deleted middle entry and deleted newest entries; listings never hold secrets.

mod common;

use common::{Backend, Env, backends};

async fn tamper(env: &Env, sql: &str) {
    let store = env.store().await;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
}

async fn run(backend: Backend) {
    let env = Env::new(backend).await;
    env.run(&["domain", "add", "hisp-a.example"]).ok();
    env.run_env(
        &[
            "address",
            "add",
            "dr.smith@hisp-a.example",
            "--password-env",
            "PW",
        ],
        &[("PW", "Sup3r-Secret-pw")],
    )
    .ok();
    env.run(&["address", "add", "nurse@hisp-a.example"]).ok();
    let token = env.run(&["token", "create", "--admin"]).ok().stdout;
    env.run(&["domain", "add", "hisp-c.example"]).ok();

    let ok = env.run(&["audit", "verify"]).ok();
    assert!(ok.stdout.starts_with("audit log intact: "), "{}", ok.stdout);
    let list = env.run(&["audit", "list", "--json"]).ok();
    let entries = list.json();
    let events: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"domain.added") && events.contains(&"address.added"),
        "{events:?}"
    );
    assert!(!list.stdout.contains("Sup3r-Secret-pw"));
    assert!(!list.stdout.contains(token.trim()));
    let n = entries.as_array().unwrap().len();
    assert!(n >= 5);
    let recent = env
        .run(&["audit", "list", "--since", "1h", "--json"])
        .ok()
        .json();
    assert_eq!(recent.as_array().unwrap().len(), n);
    let future = env
        .run(&["audit", "list", "--since", "2999-01-01", "--json"])
        .ok()
        .json();
    assert!(future.as_array().unwrap().is_empty());
    env.run(&["audit", "list", "--since", "someday"])
        .fails(2, "--since");

    // Edited content.
    tamper(
        &env,
        "UPDATE audit_log SET subject = 'hisp-x.example' WHERE id = 1",
    )
    .await;
    env.run(&["audit", "verify"]).fails(1, "entry 1");
    tamper(
        &env,
        "UPDATE audit_log SET subject = 'hisp-a.example' WHERE id = 1",
    )
    .await;
    env.run(&["audit", "verify"]).ok();

    // The newest entry deleted: the chain left behind is valid, the head record is not.
    tamper(
        &env,
        "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)",
    )
    .await;
    env.run(&["audit", "verify"])
        .fails(1, "newest entries were deleted");
    // ... and stays so after later appends: they continue the count, not a recount.
    env.run(&["domain", "add", "hisp-d.example"]).ok();
    env.run(&["audit", "verify"])
        .fails(1, "newest entries were deleted");

    // A middle entry deleted.
    tamper(&env, "DELETE FROM audit_log WHERE id = 2").await;
    env.run(&["audit", "verify"]).fails(1, "does not follow");
    let json = env.run(&["audit", "verify", "--json"]);
    assert_eq!(json.code, 1);
    assert!(json.json()["problem"].as_str().unwrap().contains("entry 3"));
}

/// An admin change and its audit entry commit together: when the entry cannot be written,
/// the change does not happen either.
async fn change_and_entry_are_one_transaction(backend: Backend) {
    let env = Env::new(backend).await;
    env.run(&["domain", "add", "hisp-a.example"]).ok();
    tamper(&env, "ALTER TABLE audit_log RENAME TO audit_log_away").await;
    let failed = env.run(&["domain", "add", "hisp-b.example"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(failed.stderr.contains("audit_log"), "{}", failed.stderr);
    env.run(&["address", "add", "nobody@hisp-a.example"])
        .fails(1, "audit_log");
    tamper(&env, "ALTER TABLE audit_log_away RENAME TO audit_log").await;
    let domains = env.run(&["domain", "list", "--json"]).ok().json();
    let names: Vec<&str> = domains
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["hisp-a.example"],
        "a change escaped its audit entry"
    );
    env.run(&["address", "list", "--json"]).ok();
    assert!(
        env.run(&["address", "list"])
            .ok()
            .stdout
            .lines()
            .all(|l| !l.contains("nobody"))
    );
    env.run(&["audit", "verify"]).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_changes_commit_with_their_audit_entry_on_every_backend() {
    for b in backends() {
        change_and_entry_are_one_transaction(b).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_chain_detects_tampering_on_every_backend() {
    for b in backends() {
        run(b).await;
    }
}
