//! Delivery queue rows: one `queue_messages` row per message, one `queue_recipients` row per
//! recipient, which is the unit a worker claims, leases and settles.
//!
//! Claiming is one atomic statement per backend. On PostgreSQL the due rows are locked with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers on several nodes split the work instead of
//! waiting for or duplicating each other. On SQLite the claim runs inside `BEGIN IMMEDIATE`,
//! which serialises writers, so the select-and-update cannot interleave with another claim.

use super::{Backend, Result, Store, StoreError, now_ms, opt_text};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Submission,
    Mdn,
    Dsn,
    Relay,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Submission => "submission",
            Origin::Mdn => "mdn",
            Origin::Dsn => "dsn",
            Origin::Relay => "relay",
        }
    }
}

/// A message to put on the queue.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub message_id: &'a str,
    pub origin: Origin,
    /// Empty for the null reverse-path (`MAIL FROM:<>`).
    pub envelope_from: &'a str,
    pub envid: Option<&'a str>,
    /// DSN `RET=` (`FULL` or `HDRS`).
    pub ret: Option<&'a str>,
    pub body: &'a [u8],
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewRecipient {
    pub address: String,
    pub domain: String,
    /// DSN `NOTIFY=` as given (e.g. `FAILURE,DELAY`).
    pub notify: Option<String>,
    pub orcpt: Option<String>,
}

/// A recipient row a worker now holds the lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub message: i64,
    pub recipient: String,
    pub domain: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub notify: Option<String>,
    pub orcpt: Option<String>,
}

/// A queued message with its body, as a worker needs it.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    pub id: i64,
    pub message_id: String,
    pub origin: String,
    pub envelope_from: String,
    pub envid: Option<String>,
    pub ret: Option<String>,
    pub body: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// How one claimed recipient ends this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Delivered {
        code: String,
    },
    /// Try again at `next_attempt_at`.
    Retry {
        next_attempt_at: i64,
        code: String,
        error: String,
    },
    /// No more attempts (permanent failure or given up).
    Failed {
        code: String,
        error: String,
    },
}

/// A delivery status notification to file in a local sender's mailbox.
#[derive(Debug, Clone)]
pub struct DsnDelivery {
    pub to_address: String,
    pub message_id: String,
    pub sender: String,
    pub subject: String,
    pub raw: Vec<u8>,
}

/// One line of `hisp queue list`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueEntry {
    /// The queue message id that `queue retry` and `queue drop` take.
    pub id: i64,
    pub message_id: String,
    pub from: String,
    pub recipient: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_code: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

const CLAIM_COLUMNS: &str = "id, queue_message_id, recipient, domain, attempts, notify, orcpt";

fn claimed_from_row(r: &sqlx::any::AnyRow) -> Result<Claimed> {
    Ok(Claimed {
        id: r.try_get("id")?,
        message: r.try_get("queue_message_id")?,
        recipient: r.try_get("recipient")?,
        domain: r.try_get("domain")?,
        attempts: r.try_get("attempts")?,
        notify: opt_text(r, "notify")?,
        orcpt: opt_text(r, "orcpt")?,
    })
}

impl Store {
    /// Stores the message and all its recipients in one transaction; returns the queue id.
    /// Once this returns, the message survives a crash: only then may SMTP say `250`.
    ///
    /// Concurrent callers share transactions (group commit): one writer task takes whatever
    /// is waiting, up to [`GROUP_MAX`] messages, inserts them in one transaction and answers
    /// each caller after the commit. With one fsync and one BEGIN/COMMIT round trip per group
    /// instead of per message, many SMTP sessions committing at once cost far less.
    pub async fn enqueue(&self, msg: &NewMessage<'_>, rcpts: &[NewRecipient]) -> Result<i64> {
        if rcpts.is_empty() {
            return Err(StoreError::Conflict(
                "a queued message needs at least one recipient".into(),
            ));
        }
        // Checked before grouping: a statement that fails would fail its whole group.
        for (i, r) in rcpts.iter().enumerate() {
            if rcpts[..i].iter().any(|o| o.address == r.address) {
                return Err(StoreError::Conflict(format!(
                    "recipient {} given twice",
                    r.address
                )));
            }
        }
        let group = self.group.get_or_init(|| GroupCommit::start(self.clone()));
        let (done, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            message_id: msg.message_id.to_string(),
            origin: msg.origin,
            envelope_from: msg.envelope_from.to_string(),
            envid: msg.envid.map(str::to_string),
            ret: msg.ret.map(str::to_string),
            body: msg.body.to_vec(),
            expires_at: msg.expires_at,
            rcpts: rcpts.to_vec(),
            done,
        };
        if group.jobs.send(job).await.is_err() {
            return Err(StoreError::Conflict("the queue writer has stopped".into()));
        }
        answer
            .await
            .map_err(|_| StoreError::Conflict("the queue writer has stopped".into()))?
    }

    /// Leases up to `limit` due recipients to `owner` until `now + lease_ms`. A recipient is
    /// due when pending, its retry time has come, and nobody holds a live lease on it (so a
    /// dead worker's items come back once their lease runs out).
    pub async fn claim_due(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>> {
        let due = "state = 'pending' AND next_attempt_at <= $3
                   AND (lease_until IS NULL OR lease_until <= $3)";
        let rows = match self.backend() {
            Backend::Postgres => {
                let sql = format!(
                    "WITH due AS (
                        SELECT id FROM queue_recipients WHERE {due}
                        ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)
                     UPDATE queue_recipients q SET lease_owner = $1, lease_until = $2, updated_at = $3
                     FROM due WHERE q.id = due.id
                     RETURNING q.id, q.queue_message_id, q.recipient, q.domain, q.attempts, q.notify, q.orcpt"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(owner)
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?
            }
            Backend::Sqlite => {
                let sql = format!(
                    "UPDATE queue_recipients SET lease_owner = $1, lease_until = $2, updated_at = $3
                     WHERE id IN (SELECT id FROM queue_recipients WHERE {due}
                                  ORDER BY next_attempt_at, id LIMIT $4)
                     RETURNING {CLAIM_COLUMNS}"
                );
                let mut tx = self.begin_write().await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(owner)
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows
            }
        };
        let mut claimed = rows
            .iter()
            .map(claimed_from_row)
            .collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|c| (c.message, c.id));
        Ok(claimed)
    }

    pub async fn queued_message(&self, id: i64) -> Result<QueuedMessage> {
        let r = sqlx::query(
            "SELECT id, message_id, origin, envelope_from, envid, ret, body, created_at, expires_at
             FROM queue_messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("queue message {id} does not exist")))?;
        Ok(QueuedMessage {
            id: r.try_get("id")?,
            message_id: r.try_get("message_id")?,
            origin: r.try_get("origin")?,
            envelope_from: r.try_get("envelope_from")?,
            envid: opt_text(&r, "envid")?,
            ret: opt_text(&r, "ret")?,
            body: r.try_get("body")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    }

    /// Records the outcome of one attempt for recipients `owner` holds, and files `dsn` in the
    /// same transaction, so a failure is never recorded without its notification or the
    /// other way round. Rows whose lease `owner` no longer holds are left alone; returns how
    /// many rows were settled. The DSN is filed only if at least one row was.
    pub async fn settle(
        &self,
        owner: &str,
        outcomes: &[(i64, Settle)],
        dsn: Option<&DsnDelivery>,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let settled = settle_in(&mut tx, owner, outcomes, dsn).await?;
        tx.commit().await?;
        Ok(settled)
    }

    /// Extends `owner`'s leases on `ids` to `until`, but only where the lease is still held
    /// and not yet run out at `now`; returns the ids still held. A worker calls this before
    /// each message of its batch and while a delivery runs, so a slow batch never works on
    /// a recipient another node has meanwhile taken over.
    pub async fn renew_leases(
        &self,
        owner: &str,
        ids: &[i64],
        now: i64,
        until: i64,
    ) -> Result<Vec<i64>> {
        let mut tx = self.begin_write().await?;
        let mut held = Vec::with_capacity(ids.len());
        for &id in ids {
            let n = sqlx::query(
                "UPDATE queue_recipients SET lease_until = $1
                 WHERE id = $2 AND lease_owner = $3 AND lease_until > $4 AND state = 'pending'",
            )
            .bind(until)
            .bind(id)
            .bind(owner)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                held.push(id);
            }
        }
        tx.commit().await?;
        Ok(held)
    }

    /// Gives back leases without recording an attempt (shutdown, or work not started).
    pub async fn release(&self, owner: &str, ids: &[i64]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for id in ids {
            sqlx::query(
                "UPDATE queue_recipients SET lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Recipients, newest message first; only pending ones unless `all`.
    pub async fn queue_list(&self, all: bool) -> Result<Vec<QueueEntry>> {
        let filter = if all { "" } else { "WHERE r.state = 'pending'" };
        let sql = format!(
            "SELECT m.id, m.message_id, m.envelope_from, r.recipient, r.state, r.attempts,
                    r.next_attempt_at, r.last_code, r.last_error, m.created_at, m.expires_at
             FROM queue_recipients r JOIN queue_messages m ON m.id = r.queue_message_id
             {filter} ORDER BY m.id DESC, r.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(QueueEntry {
                    id: r.try_get("id")?,
                    message_id: r.try_get("message_id")?,
                    from: r.try_get("envelope_from")?,
                    recipient: r.try_get("recipient")?,
                    state: r.try_get("state")?,
                    attempts: r.try_get("attempts")?,
                    next_attempt_at: r.try_get("next_attempt_at")?,
                    last_code: opt_text(r, "last_code")?,
                    last_error: opt_text(r, "last_error")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Makes the pending recipients of queue message `id` due now; returns how many.
    /// Pending recipients and the creation time (Unix ms) of the oldest, for metrics.
    pub async fn queue_stats(&self) -> Result<(i64, Option<i64>)> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS depth, MIN(m.created_at) AS oldest
             FROM queue_recipients r JOIN queue_messages m ON m.id = r.queue_message_id
             WHERE r.state = 'pending'",
        )
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("depth")?, row.try_get("oldest")?))
    }

    pub async fn queue_retry(&self, id: i64) -> Result<u64> {
        self.require_queue_message(id).await?;
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE queue_recipients SET next_attempt_at = $1, updated_at = $1
             WHERE queue_message_id = $2 AND state = 'pending'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.audit_change(
            &mut tx,
            "queue.retry",
            &id.to_string(),
            serde_json::json!({"recipients": n}),
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Stops delivery of the pending recipients of queue message `id` (no DSN: an admin
    /// decided); returns how many. A delivery already under way is not interrupted.
    pub async fn queue_drop(&self, id: i64) -> Result<u64> {
        self.require_queue_message(id).await?;
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE queue_recipients SET state = 'dropped', lease_owner = NULL, lease_until = NULL,
                last_error = 'dropped by an administrator', updated_at = $1
             WHERE queue_message_id = $2 AND state = 'pending'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.audit_change(
            &mut tx,
            "queue.dropped",
            &id.to_string(),
            serde_json::json!({"recipients": n}),
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn require_queue_message(&self, id: i64) -> Result<()> {
        sqlx::query("SELECT id FROM queue_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|_| ())
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "queue message {id} does not exist (see `hisp queue list --all`)"
                ))
            })
    }
}

/// [`Store::enqueue`] inside the caller's transaction, so a pipeline can queue a message
/// together with what belongs to it (tracking rows, a DSN, a mailbox copy) or not at all.
pub async fn enqueue_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    msg: &NewMessage<'_>,
    rcpts: &[NewRecipient],
) -> Result<i64> {
    if rcpts.is_empty() {
        return Err(StoreError::Conflict(
            "a queued message needs at least one recipient".into(),
        ));
    }
    let now = now_ms();
    let row = sqlx::query(
        "INSERT INTO queue_messages (message_id, origin, envelope_from, envid, ret, body, size, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(msg.message_id)
    .bind(msg.origin.as_str())
    .bind(msg.envelope_from)
    .bind(msg.envid)
    .bind(msg.ret)
    .bind(msg.body)
    .bind(msg.body.len() as i64)
    .bind(now)
    .bind(msg.expires_at)
    .fetch_one(&mut **tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    for r in rcpts {
        super::on_duplicate(
            sqlx::query(
                "INSERT INTO queue_recipients (queue_message_id, recipient, domain, state, next_attempt_at, notify, orcpt, updated_at)
                 VALUES ($1, $2, $3, 'pending', $4, $5, $6, $4)",
            )
            .bind(id)
            .bind(&r.address)
            .bind(&r.domain)
            .bind(now)
            .bind(r.notify.as_deref())
            .bind(r.orcpt.as_deref())
            .execute(&mut **tx)
            .await,
            || format!("recipient {} given twice", r.address),
        )?;
    }
    Ok(id)
}

/// Files a notification (DSN or MDN) for a local address inside the caller's transaction.
pub async fn file_dsn(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    d: &DsnDelivery,
    now: i64,
) -> Result<()> {
    // The sender may have been removed since it queued the message; then there is no
    // mailbox to file into, and the failure stays visible in `hisp queue list --all`.
    sqlx::query(
        "INSERT INTO mailbox (address_id, message_id, sender, subject, kind, size, raw, received_at)
         SELECT id, $1, $2, $3, 'dsn', $4, $5, $6 FROM addresses WHERE address = $7",
    )
    .bind(&d.message_id)
    .bind(&d.sender)
    .bind(&d.subject)
    .bind(d.raw.len() as i64)
    .bind(d.raw.as_slice())
    .bind(now)
    .bind(&d.to_address)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Most messages committed in one group.
pub const GROUP_MAX: usize = 64;

#[derive(Debug)]
struct Job {
    message_id: String,
    origin: Origin,
    envelope_from: String,
    envid: Option<String>,
    ret: Option<String>,
    body: Vec<u8>,
    expires_at: i64,
    rcpts: Vec<NewRecipient>,
    done: tokio::sync::oneshot::Sender<Result<i64>>,
}

/// The writer task behind [`Store::enqueue`].
#[derive(Debug)]
pub struct GroupCommit {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

impl GroupCommit {
    fn start(store: Store) -> GroupCommit {
        let (jobs, mut rx) = tokio::sync::mpsc::channel::<Job>(1024);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                while group.len() < GROUP_MAX {
                    match rx.try_recv() {
                        Ok(j) => group.push(j),
                        Err(_) => break,
                    }
                }
                let outcome = commit_group(&store, &group).await;
                match outcome {
                    Ok(ids) => {
                        store.wake_workers();
                        for (job, id) in group.into_iter().zip(ids) {
                            let _ = job.done.send(Ok(id));
                        }
                    }
                    Err(e) => {
                        let text = e.to_string();
                        let full = e.is_disk_full();
                        for job in group {
                            let err = if full {
                                StoreError::DiskFull(text.clone())
                            } else {
                                StoreError::Conflict(format!("not queued: {text}"))
                            };
                            let _ = job.done.send(Err(err));
                        }
                    }
                }
            }
        });
        GroupCommit { jobs }
    }
}

/// Settles `owner`'s claimed recipients inside `tx` (and files the DSN, if any, when at least
/// one was still held); the caller commits, so tracking can change in the same transaction.
pub(crate) async fn settle_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: &str,
    outcomes: &[(i64, Settle)],
    dsn: Option<&DsnDelivery>,
) -> Result<u64> {
    let now = now_ms();
    let mut settled = 0;
    for (id, outcome) in outcomes {
        let (state, next, code, error) = match outcome {
            Settle::Delivered { code } => ("delivered", None, code.as_str(), None),
            Settle::Retry {
                next_attempt_at,
                code,
                error,
            } => (
                "pending",
                Some(*next_attempt_at),
                code.as_str(),
                Some(error.as_str()),
            ),
            Settle::Failed { code, error } => ("failed", None, code.as_str(), Some(error.as_str())),
        };
        settled += sqlx::query(
            "UPDATE queue_recipients SET state = $1,
                    next_attempt_at = COALESCE($2, next_attempt_at), attempts = attempts + 1,
                    lease_owner = NULL, lease_until = NULL, last_code = $3, last_error = $4,
                    updated_at = $5
                 WHERE id = $6 AND lease_owner = $7 AND state = 'pending'",
        )
        .bind(state)
        .bind(next)
        .bind(code)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    if settled > 0
        && let Some(d) = dsn
    {
        file_dsn(tx, d, now).await?;
    }
    Ok(settled)
}

async fn commit_group(store: &Store, group: &[Job]) -> Result<Vec<i64>> {
    let mut tx = store.begin_write().await?;
    let mut ids = Vec::with_capacity(group.len());
    for j in group {
        let msg = NewMessage {
            message_id: &j.message_id,
            origin: j.origin,
            envelope_from: &j.envelope_from,
            envid: j.envid.as_deref(),
            ret: j.ret.as_deref(),
            body: &j.body,
            expires_at: j.expires_at,
        };
        ids.push(enqueue_in(&mut tx, &msg, &j.rcpts).await?);
    }
    tx.commit().await?;
    Ok(ids)
}
