//! The audit log: append-only and hash-chained so an edited or deleted row is detectable.
//! Callers must never put message bodies, passwords, tokens or keys in it.

use super::{Backend, Result, Store, now_ms};
use openssl::hash::{MessageDigest, hash};
use serde::Serialize;
use sqlx::{Executor, Row};

use crate::certinfo::hex;

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent<'a> {
    pub actor: &'a str,
    pub event: &'a str,
    pub subject: &'a str,
    pub outcome: &'a str,
    pub detail: serde_json::Value,
}

/// SHA-256 over the previous hash and the row's fields, in a fixed JSON encoding.
pub fn chain_hash(prev_hash: &str, at: i64, e: &AuditEvent<'_>) -> String {
    let canonical = serde_json::json!([
        prev_hash,
        at,
        e.actor,
        e.event,
        e.subject,
        e.outcome,
        e.detail.to_string()
    ]);
    hex(
        &hash(MessageDigest::sha256(), canonical.to_string().as_bytes())
            .expect("SHA-256 is always available"),
    )
}

/// The meta key holding `<entries>:<hash of the last entry>`, written with every append, so
/// deleting the newest entries (which leaves a valid chain behind) is detected too.
const HEAD_KEY: &str = "audit_head";

/// Appends `e` inside the caller's transaction, so the change and its audit entry commit
/// together or not at all.
pub async fn append(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    e: &AuditEvent<'_>,
) -> Result<()> {
    if backend == Backend::Postgres {
        // Serialise appenders across nodes; the key is arbitrary but fixed.
        (&mut **tx)
            .execute("SELECT pg_advisory_xact_lock(7243001)")
            .await?;
    }
    let prev: String = sqlx::query("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get::<String, _>("hash"))
        .transpose()?
        .unwrap_or_else(|| GENESIS.to_string());
    // The number of entries written so far is in the head record. Counting the table
    // instead made every append scan the whole log: ~1.6 ms of CPU per audited MDN after a
    // few thousand messages, and more with every entry. Taking it from the head also keeps
    // a deletion of the newest entries visible after later appends (a recount would have
    // written a consistent head over the evidence). A log without a head record (empty, or
    // the head itself deleted) is counted once.
    let head = super::meta::meta_value(&mut **tx, HEAD_KEY).await?;
    let written = head
        .as_deref()
        .and_then(|h| h.split_once(':'))
        .and_then(|(n, _)| n.parse::<i64>().ok());
    let count = match written {
        Some(n) => n,
        None => sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
            .fetch_one(&mut **tx)
            .await?
            .try_get("n")?,
    };
    let at = now_ms();
    let h = chain_hash(&prev, at, e);
    sqlx::query(
        "INSERT INTO audit_log (at, actor, event, subject, outcome, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(at)
    .bind(e.actor)
    .bind(e.event)
    .bind(e.subject)
    .bind(e.outcome)
    .bind(e.detail.to_string())
    .bind(&prev)
    .bind(&h)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(HEAD_KEY)
    .bind(format!("{}:{h}", count + 1))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One stored audit entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub event: String,
    pub subject: String,
    pub outcome: String,
    pub detail: serde_json::Value,
    #[serde(skip)]
    pub detail_text: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    pub entries: i64,
    pub head: String,
    /// None when intact; else the first problem found.
    pub problem: Option<String>,
}

fn entry(r: &sqlx::any::AnyRow) -> Result<AuditEntry> {
    let detail_text: String = r.try_get("detail")?;
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        event: r.try_get("event")?,
        subject: r.try_get("subject")?,
        outcome: r.try_get("outcome")?,
        detail: serde_json::from_str(&detail_text).unwrap_or(serde_json::Value::Null),
        detail_text,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

const SELECT: &str =
    "SELECT id, at, actor, event, subject, outcome, detail, prev_hash, hash FROM audit_log";

impl Store {
    pub async fn audit(&self, e: &AuditEvent<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        append(&mut tx, self.backend(), e).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn audit_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
            .fetch_one(self.pool())
            .await?
            .try_get("n")?)
    }

    /// Entries at or after `since_ms`, oldest first, at most `limit`.
    pub async fn audit_list(&self, since_ms: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE at >= $1 ORDER BY id LIMIT $2"
        )))
        .bind(since_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry).collect()
    }

    /// Recomputes every hash and link, and compares the end with the recorded head: an
    /// edited, inserted, reordered or deleted entry (first, middle or last) is reported.
    pub async fn audit_verify(&self) -> Result<ChainCheck> {
        let mut prev = GENESIS.to_string();
        let mut entries = 0i64;
        let mut last_id = 0i64;
        let mut problem = None;
        // Pages keep memory flat on a long log.
        'pages: loop {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{SELECT} WHERE id > $1 ORDER BY id LIMIT 1000"
            )))
            .bind(last_id)
            .fetch_all(self.pool())
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let e = entry(r)?;
                last_id = e.id;
                entries += 1;
                if e.prev_hash != prev {
                    problem = Some(format!(
                        "entry {} does not follow the one before it (an entry before it was deleted, inserted or edited)",
                        e.id
                    ));
                    break 'pages;
                }
                let event = AuditEvent {
                    actor: &e.actor,
                    event: &e.event,
                    subject: &e.subject,
                    outcome: &e.outcome,
                    detail: serde_json::from_str(&e.detail_text)
                        .unwrap_or(serde_json::Value::String(e.detail_text.clone())),
                };
                let expect = chain_hash(&prev, e.at, &event);
                if expect != e.hash {
                    problem = Some(format!(
                        "entry {} ({} {} at {}) was edited: its content no longer matches its hash",
                        e.id, e.event, e.subject, e.at
                    ));
                    break 'pages;
                }
                prev = e.hash;
            }
        }
        if problem.is_none() {
            let recorded = self.meta_get(HEAD_KEY).await?;
            let actual = format!("{entries}:{prev}");
            match recorded {
                Some(head) if head != actual => {
                    let n = head.split(':').next().unwrap_or("?");
                    problem = Some(format!(
                        "the log ends after {entries} entries but {n} were written: the newest entries were deleted or the head record edited"
                    ));
                }
                None if entries > 0 => {
                    problem = Some("the head record is missing".to_string());
                }
                _ => {}
            }
        }
        Ok(ChainCheck {
            entries,
            head: prev,
            problem,
        })
    }
}
