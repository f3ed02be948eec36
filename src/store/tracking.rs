//! Rows of delivery tracking (SPEC E30), one per outbound Message-ID and recipient. The state
//! machine is `notify::tracking`; this file only stores its decisions.

use serde::Serialize;
use sqlx::{Any, Row, Transaction};

use super::{Result, Store, StoreError, flag, now_ms};
use crate::notify::tracking::{Event, State, Transition, apply};

#[derive(Debug, Clone, Serialize)]
pub struct TrackingRecord {
    pub message_id: String,
    pub sender: String,
    pub recipient: String,
    pub state: String,
    pub reason: Option<String>,
    pub final_delivery: bool,
    pub dsn_sent: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Unix ms after which a record that is not complete times out.
    pub deadline_at: i64,
}

const SELECT: &str = "SELECT message_id, sender, recipient, state, reason, final_delivery,
    dsn_sent, created_at, updated_at, deadline_at FROM tracking";

fn from_row(r: &sqlx::any::AnyRow) -> Result<TrackingRecord> {
    Ok(TrackingRecord {
        message_id: r.try_get("message_id")?,
        sender: r.try_get("sender")?,
        recipient: r.try_get("recipient")?,
        state: r.try_get("state")?,
        reason: r.try_get("reason")?,
        final_delivery: flag(r, "final_delivery")?,
        dsn_sent: flag(r, "dsn_sent")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        deadline_at: r.try_get("deadline_at")?,
    })
}

/// Starts tracking `message_id` for each recipient, inside the caller's transaction (the one
/// that queues the message, so a queued message is always tracked). Already tracked pairs are
/// left alone.
pub async fn track(
    tx: &mut Transaction<'static, Any>,
    message_id: &str,
    sender: &str,
    recipients: &[String],
    final_delivery: bool,
    timeout_ms: i64,
) -> Result<()> {
    let now = now_ms();
    for r in recipients {
        sqlx::query(
            "INSERT INTO tracking (message_id, sender, recipient, state, final_delivery,
                created_at, updated_at, deadline_at)
             VALUES ($1, $2, $3, 'queued', $4, $5, $5, $6)
             ON CONFLICT (message_id, recipient) DO NOTHING",
        )
        .bind(message_id)
        .bind(sender.to_ascii_lowercase())
        .bind(r.to_ascii_lowercase())
        .bind(i64::from(final_delivery))
        .bind(now)
        .bind(now + timeout_ms)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Applies `event` to one record inside the caller's transaction; returns the transition
/// taken, or None when there is no such record or the event is a duplicate. A DSN is asked
/// for at most once per record.
pub async fn record_event(
    tx: &mut Transaction<'static, Any>,
    message_id: &str,
    recipient: &str,
    event: &Event,
    deliver_processed: bool,
) -> Result<Option<Transition>> {
    let recipient = recipient.to_ascii_lowercase();
    // Compare-and-set on the old state. When another transaction changed the record between
    // our read and our write (PostgreSQL lets two notifications for one record race: the
    // processed and the dispatched MDN often arrive together), read it again and apply the
    // event to the new state: dropping it would leave the record stuck at `processed`.
    for _ in 0..5 {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE message_id = $1 AND recipient = $2"
        )))
        .bind(message_id)
        .bind(&recipient)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let rec = from_row(&row)?;
        let state = State::parse(&rec.state)
            .ok_or_else(|| StoreError::Corrupt(format!("tracking state {:?}", rec.state)))?;
        let Some(mut t) = apply(state, rec.final_delivery, event, deliver_processed) else {
            return Ok(None);
        };
        if rec.dsn_sent {
            t.dsn = None;
        }
        let updated = sqlx::query(
            "UPDATE tracking SET state = $1, reason = COALESCE($2, reason),
                dsn_sent = CASE WHEN $3 = 1 THEN 1 ELSE dsn_sent END, updated_at = $4
             WHERE message_id = $5 AND recipient = $6 AND state = $7",
        )
        .bind(t.next.as_str())
        .bind(t.reason.clone())
        .bind(i64::from(t.dsn.is_some()))
        .bind(now_ms())
        .bind(message_id)
        .bind(&recipient)
        .bind(state.as_str())
        .execute(&mut **tx)
        .await?;
        if updated.rows_affected() == 1 {
            return Ok(Some(t));
        }
    }
    Err(StoreError::Conflict(format!(
        "tracking record of {message_id} for {recipient} keeps changing under us; the notification will be retried"
    )))
}

/// One record, read inside the caller's transaction.
pub async fn record_in(
    tx: &mut Transaction<'static, Any>,
    message_id: &str,
    recipient: &str,
) -> Result<Option<TrackingRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE message_id = $1 AND recipient = $2"
    )))
    .bind(message_id)
    .bind(recipient.to_ascii_lowercase())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Records that a DSN for this record went out by another path (the queue's own).
pub async fn mark_dsn_sent(
    tx: &mut Transaction<'static, Any>,
    message_id: &str,
    recipient: &str,
) -> Result<()> {
    sqlx::query("UPDATE tracking SET dsn_sent = 1 WHERE message_id = $1 AND recipient = $2")
        .bind(message_id)
        .bind(recipient.to_ascii_lowercase())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Every recipient's record of `message_id`.
    pub async fn tracking(&self, message_id: &str) -> Result<Vec<TrackingRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE message_id = $1 ORDER BY recipient"
        )))
        .bind(message_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Records past their deadline that are not complete (`limit` at a time).
    /// How many tracking records are in each state, for metrics.
    pub async fn tracking_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT state, CAST(COUNT(*) AS BIGINT) AS n FROM tracking GROUP BY state")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }

    pub async fn tracking_overdue(&self, now_ms: i64, limit: i64) -> Result<Vec<TrackingRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE deadline_at <= $1
               AND (state IN ('queued', 'sent') OR (state = 'processed' AND final_delivery = 1))
             ORDER BY deadline_at LIMIT $2"
        )))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }
}
