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

impl Store {
    pub async fn audit(&self, e: &AuditEvent<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // Serialise appenders across nodes; the key is arbitrary but fixed.
            tx.execute("SELECT pg_advisory_xact_lock(7243001)").await?;
        }
        let prev: String = sqlx::query("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>("hash"))
            .transpose()?
            .unwrap_or_else(|| GENESIS.to_string());
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn audit_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
            .fetch_one(self.pool())
            .await?
            .try_get("n")?)
    }
}
