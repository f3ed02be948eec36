//! The durable delivery queue: enqueue, claim with a lease, deliver through a [`Transport`],
//! settle each recipient (delivered, retry later, failed), and report failures with a DSN in
//! the sender's local mailbox.
//!
//! The retry and give-up decisions are pure functions of the attempt and the clock; the worker
//! only moves rows and bytes.

use std::future::Future;
use std::time::Duration;

use crate::config::Delivery;
use crate::notify::dsn::{self, DsnRecipient};
use crate::notify::tracking::Event;
use crate::store::queue::Settle;
use crate::store::queue::{Claimed, DsnDelivery, NewMessage, NewRecipient, Origin, QueuedMessage};
use crate::store::{Store, StoreError, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue store: {0}")]
    Store(#[from] StoreError),
}

/// The result of trying one recipient once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        reply: String,
    },
    /// 4xx or a connection problem: try again later.
    Temporary {
        status: String,
        reply: String,
        remote_mta: Option<String>,
    },
    /// 5xx or a local refusal: do not try again.
    Permanent {
        status: String,
        reply: String,
        remote_mta: Option<String>,
    },
}

/// Something that carries a message to its recipients' next hop (the SMTP client, or a fake
/// in tests). It returns one [`Attempt`] per recipient, in the order given.
pub trait Transport: Send + Sync + 'static {
    fn deliver(
        &self,
        message: &QueuedMessage,
        recipients: &[Claimed],
    ) -> impl Future<Output = Vec<Attempt>> + Send;
}

/// Retry schedule and limits, from `[delivery]`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub retry: Vec<Duration>,
    pub give_up_after: Duration,
    pub lease: Duration,
}

impl Policy {
    pub fn from_config(d: &Delivery) -> Policy {
        Policy {
            retry: d.retry.iter().map(|r| r.std()).collect(),
            give_up_after: d.give_up_after.std(),
            lease: d.lease.std(),
        }
    }
}

/// What becomes of a recipient after an attempt, and whether it needs a failure report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub settle: Settle,
    /// Present when the recipient failed for good: the DSN line for it.
    pub report: Option<(String, String)>,
}

/// Decides the fate of one recipient. `prior_attempts` counts attempts before this one. A
/// temporary failure is retried after `retry[prior_attempts]` (the last interval repeats),
/// but never later than the expiry time, and once that has passed the recipient fails with
/// 4.4.7 (delivery time expired).
pub fn decide(
    attempt: &Attempt,
    prior_attempts: i64,
    now: i64,
    expires_at: i64,
    policy: &Policy,
) -> Decision {
    match attempt {
        Attempt::Delivered { reply } => Decision {
            settle: Settle::Delivered {
                code: reply_code(reply),
            },
            report: None,
        },
        Attempt::Permanent { status, reply, .. } => Decision {
            settle: Settle::Failed {
                code: status.clone(),
                error: reply.clone(),
            },
            report: Some((status.clone(), reply.clone())),
        },
        Attempt::Temporary { status, reply, .. } => {
            if now >= expires_at {
                let why = format!("gave up: {reply}");
                return Decision {
                    settle: Settle::Failed {
                        code: "4.4.7".into(),
                        error: why.clone(),
                    },
                    report: Some(("4.4.7".into(), why)),
                };
            }
            let step = usize::try_from(prior_attempts)
                .unwrap_or(0)
                .min(policy.retry.len().saturating_sub(1));
            let delay = policy
                .retry
                .get(step)
                .map_or(60_000, |d| d.as_millis() as i64);
            Decision {
                settle: Settle::Retry {
                    next_attempt_at: (now + delay).min(expires_at),
                    code: status.clone(),
                    error: reply.clone(),
                },
                report: None,
            }
        }
    }
}

/// `250` of `250 2.0.0 ok`.
fn reply_code(reply: &str) -> String {
    reply.split_whitespace().next().unwrap_or("").to_string()
}

/// Whether a recipient's DSN `NOTIFY=` asks to hear about failures (the default does).
fn wants_failure_report(notify: Option<&str>) -> bool {
    match notify {
        None => true,
        Some(n) => n
            .split(',')
            .any(|v| v.trim().eq_ignore_ascii_case("FAILURE")),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    // A failing RNG would only make ids less unique; fall back to the clock.
    if openssl::rand::rand_bytes(&mut raw).is_err() {
        return format!("{:x}", now_ms());
    }
    crate::certinfo::hex(&raw)
}

/// What a DSN says about the message it reports on.
pub struct DsnOriginal<'a> {
    /// The message, or just its header section when only that is known.
    pub message: &'a [u8],
    /// Return the whole message (DSN `RET=FULL`), else its header only.
    pub return_full: bool,
    pub envid: Option<&'a str>,
    pub arrival_secs: i64,
}

/// A DSN from us (`MAILER-DAEMON@hostname`) to the local sender `to`, ready to file in its
/// mailbox: the one way the queue, the submission pipeline and delivery tracking report a
/// failure. `summary` is added to the subject.
pub fn local_dsn(
    hostname: &str,
    to: &str,
    recipients: &[DsnRecipient],
    original: &DsnOriginal<'_>,
    summary: Option<&str>,
    now_secs: i64,
) -> DsnDelivery {
    let message_id = new_message_id(hostname);
    let boundary = format!("dsn-{}", random_hex(12));
    let raw = dsn::build(&dsn::Dsn {
        reporting_mta: hostname,
        to,
        message_id: &message_id,
        boundary: &boundary,
        date: now_secs,
        envid: original.envid,
        arrival_date: original.arrival_secs,
        recipients,
        original: original.message,
        return_full: original.return_full,
    });
    let subject = match summary {
        Some(s) => format!("Delivery Status Notification (Failure): {s}"),
        None => "Delivery Status Notification (Failure)".to_string(),
    };
    DsnDelivery {
        to_address: to.to_string(),
        message_id,
        sender: format!("MAILER-DAEMON@{hostname}"),
        subject,
        raw,
    }
}

/// A new Message-ID (without angle brackets) under our host name.
pub fn new_message_id(hostname: &str) -> String {
    format!("{}.{}@{hostname}", now_ms(), random_hex(8))
}

/// An envelope to queue: what an SMTP session or the API collected.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub origin: Origin,
    pub from: String,
    pub envid: Option<String>,
    pub ret: Option<String>,
    pub recipients: Vec<NewRecipient>,
}

/// Puts a message on the queue (durably: committed when this returns).
pub async fn enqueue(
    store: &Store,
    hostname: &str,
    give_up_after: Duration,
    envelope: &Envelope,
    body: &[u8],
) -> Result<i64, QueueError> {
    let message_id = crate::headers::message_id(body).unwrap_or_else(|| new_message_id(hostname));
    let msg = NewMessage {
        message_id: &message_id,
        origin: envelope.origin,
        envelope_from: &envelope.from,
        envid: envelope.envid.as_deref(),
        ret: envelope.ret.as_deref(),
        body,
        expires_at: now_ms() + give_up_after.as_millis() as i64,
    };
    Ok(store.enqueue(&msg, &envelope.recipients).await?)
}

/// How long after its claim a recipient is delivered without renewing (and re-checking) its
/// lease first: short, so that an admin's `queue drop` made after the claim is still seen by
/// every delivery that starts later than this.
const FRESH_CLAIM_MS: i64 = 1000;

/// One delivery worker: claims due recipients, hands each message to the transport, and
/// settles the results.
pub struct Worker<T: Transport> {
    pub store: Store,
    pub hostname: String,
    pub policy: Policy,
    /// Unique per worker and process, so leases say who holds them.
    pub owner: String,
    pub transport: T,
    pub batch: i64,
}

impl<T: Transport> Worker<T> {
    pub fn new(store: Store, hostname: &str, policy: Policy, transport: T) -> Worker<T> {
        Worker {
            store,
            hostname: hostname.to_string(),
            policy,
            owner: format!("{hostname}/{}/{}", std::process::id(), random_hex(6)),
            transport,
            batch: 50,
        }
    }

    /// Claims and works one batch; returns how many recipients it settled.
    pub async fn run_once(&self) -> Result<usize, QueueError> {
        self.run_batch(None).await
    }

    /// Like `run_once`, but once `stop` turns true the messages not yet started are handed
    /// back (their leases released) instead of waiting for the lease to run out.
    async fn run_batch(
        &self,
        stop: Option<&tokio::sync::watch::Receiver<bool>>,
    ) -> Result<usize, QueueError> {
        let now = now_ms();
        let lease = self.policy.lease.as_millis() as i64;
        let claimed = self
            .store
            .claim_due(&self.owner, now, lease, self.batch)
            .await?;
        let mut settled = 0;
        let mut rest = claimed.as_slice();
        while let Some(first) = rest.first() {
            if stop.is_some_and(|s| *s.borrow()) {
                let ids: Vec<i64> = rest.iter().map(|c| c.id).collect();
                self.store.release(&self.owner, &ids).await?;
                break;
            }
            let n = rest
                .iter()
                .take_while(|c| c.message == first.message)
                .count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            settled += self.work_message(group, now).await?;
        }
        Ok(settled)
    }

    async fn work_message(&self, group: &[Claimed], claimed_at: i64) -> Result<usize, QueueError> {
        // Earlier messages of the batch may have taken longer than the lease: keep only the
        // recipients still ours, and push their lease out for this delivery. Right after the
        // claim that is known without asking, and the write transaction it costs is one of
        // the few per message that dominate the store's share of the CPU (BENCHMARKS.md):
        // within FRESH_CLAIM of the claim most of the lease is left, and the timer below
        // renews it while the delivery runs.
        let lease = self.policy.lease.as_millis() as i64;
        let ids: Vec<i64> = group.iter().map(|c| c.id).collect();
        let now = now_ms();
        let held = if now - claimed_at < FRESH_CLAIM_MS.min(lease / 3) {
            ids
        } else {
            self.store
                .renew_leases(&self.owner, &ids, now, now + lease)
                .await?
        };
        let group: Vec<Claimed> = group
            .iter()
            .filter(|c| held.contains(&c.id))
            .cloned()
            .collect();
        let Some(first) = group.first() else {
            return Ok(0);
        };
        let message = match self.store.queued_message(first.message).await {
            Ok(m) => m,
            // Removed since the claim (e.g. by an admin): nothing left to do for these rows.
            Err(StoreError::NotFound(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let attempts = {
            let deliver = self.transport.deliver(&message, &group);
            tokio::pin!(deliver);
            // A delivery may outlast the lease (slow peers, long timeouts): renew it while
            // the delivery runs so no other node takes these recipients meanwhile.
            let every = std::time::Duration::from_millis((lease / 3).max(1) as u64);
            loop {
                tokio::select! {
                    a = &mut deliver => break a,
                    _ = tokio::time::sleep(every) => {
                        let now = now_ms();
                        if let Err(e) = self.store.renew_leases(&self.owner, &held, now, now + lease).await {
                            eprintln!("hisp: delivery worker {}: cannot renew leases: {e}", self.owner);
                        }
                    }
                }
            }
        };
        let group = group.as_slice();
        let now = now_ms();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut tracked = Vec::new();
        let mut report = Vec::new();
        for (i, rcpt) in group.iter().enumerate() {
            let attempt = attempts.get(i).cloned().unwrap_or(Attempt::Temporary {
                status: "4.3.0".into(),
                reply: "the transport gave no result for this recipient".into(),
                remote_mta: None,
            });
            let d = decide(
                &attempt,
                rcpt.attempts,
                now,
                message.expires_at,
                &self.policy,
            );
            if let Some((status, diagnostic)) = d.report
                && wants_failure_report(rcpt.notify.as_deref())
            {
                let remote_mta = match &attempt {
                    Attempt::Temporary { remote_mta, .. }
                    | Attempt::Permanent { remote_mta, .. } => remote_mta.clone(),
                    Attempt::Delivered { .. } => None,
                };
                report.push(DsnRecipient {
                    final_recipient: rcpt.recipient.clone(),
                    original_recipient: rcpt.orcpt.clone(),
                    status,
                    remote_mta,
                    diagnostic,
                    last_attempt: now / 1000,
                });
            }
            match (&attempt, &d.settle) {
                (Attempt::Delivered { .. }, _) => {
                    tracked.push((rcpt.recipient.clone(), Event::Sent));
                }
                (_, Settle::Failed { code, error }) => tracked.push((
                    rcpt.recipient.clone(),
                    Event::DeliveryFailed(format!("{code} {error}")),
                )),
                _ => {}
            }
            outcomes.push((rcpt.id, d.settle));
        }
        let dsn = self.failure_report(&message, &report, now);
        // One transaction for the queue rows, the DSN and delivery tracking (SPEC E30): a
        // commit (and its fsync) fewer per message, and no crash window in which a message
        // is settled as sent but its tracking record still waits for a timeout.
        let mut tx = self.store.begin_write().await?;
        let n =
            crate::store::queue::settle_in(&mut tx, &self.owner, &outcomes, dsn.as_ref()).await?;
        // The queue files its own DSN for failures, so tracking's is not sent again.
        if message.origin == "submission" && n > 0 {
            for (rcpt, event) in &tracked {
                if let Some(t) = crate::store::tracking::record_event(
                    &mut tx,
                    &message.message_id,
                    rcpt,
                    event,
                    false,
                )
                .await?
                    && t.dsn.is_some()
                {
                    crate::store::tracking::mark_dsn_sent(&mut tx, &message.message_id, rcpt)
                        .await?;
                }
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(n as usize)
    }

    /// The DSN for recipients that failed for good, unless nobody should get one: the null
    /// sender, and notifications themselves (a report about a report could loop).
    fn failure_report(
        &self,
        message: &QueuedMessage,
        failed: &[DsnRecipient],
        now: i64,
    ) -> Option<DsnDelivery> {
        if failed.is_empty()
            || message.envelope_from.is_empty()
            || matches!(message.origin.as_str(), "dsn" | "mdn")
        {
            return None;
        }
        Some(local_dsn(
            &self.hostname,
            &message.envelope_from,
            failed,
            &DsnOriginal {
                message: &message.body,
                return_full: message
                    .ret
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case("FULL")),
                envid: message.envid.as_deref(),
                arrival_secs: message.created_at / 1000,
            },
            None,
            now / 1000,
        ))
    }

    /// Works the queue until `shutdown` turns true, polling every `idle` when there is
    /// nothing due. A store error is logged and retried, because a database restart must
    /// not stop delivery for good.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>, idle: Duration) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let worked = match self.run_batch(Some(&shutdown)).await {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("hisp: delivery worker {}: {e}", self.owner);
                    0
                }
            };
            if worked == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = self.store.queued() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            retry: vec![Duration::from_secs(60), Duration::from_secs(300)],
            give_up_after: Duration::from_secs(3600),
            lease: Duration::from_secs(30),
        }
    }

    fn temp() -> Attempt {
        Attempt::Temporary {
            status: "4.3.0".into(),
            reply: "451 4.3.0 busy".into(),
            remote_mta: None,
        }
    }

    #[test]
    fn retry_schedule_steps_then_repeats_the_last_interval() {
        let next = |prior| match decide(&temp(), prior, 1_000, 10_000_000, &policy()).settle {
            Settle::Retry {
                next_attempt_at, ..
            } => next_attempt_at,
            other => panic!("{other:?}"),
        };
        assert_eq!(next(0), 61_000);
        assert_eq!(next(1), 301_000);
        assert_eq!(next(7), 301_000);
    }

    #[test]
    fn last_retry_is_at_expiry_then_gives_up() {
        let d = decide(&temp(), 0, 1_000, 30_000, &policy());
        assert!(matches!(
            d.settle,
            Settle::Retry {
                next_attempt_at: 30_000,
                ..
            }
        ));
        assert_eq!(d.report, None);
        let d = decide(&temp(), 1, 30_000, 30_000, &policy());
        assert!(matches!(&d.settle, Settle::Failed { code, .. } if code == "4.4.7"));
        assert_eq!(
            d.report,
            Some(("4.4.7".into(), "gave up: 451 4.3.0 busy".into()))
        );
    }

    #[test]
    fn permanent_fails_at_once_and_delivered_reports_nothing() {
        let p = Attempt::Permanent {
            status: "5.1.1".into(),
            reply: "550 5.1.1 unknown".into(),
            remote_mta: Some("mx".into()),
        };
        let d = decide(&p, 0, 0, 1_000_000, &policy());
        assert!(matches!(&d.settle, Settle::Failed { code, .. } if code == "5.1.1"));
        assert!(d.report.is_some());
        let ok = Attempt::Delivered {
            reply: "250 2.0.0 ok".into(),
        };
        let d = decide(&ok, 0, 0, 1_000_000, &policy());
        assert_eq!(d.settle, Settle::Delivered { code: "250".into() });
    }

    #[test]
    fn notify_values() {
        assert!(wants_failure_report(None));
        assert!(wants_failure_report(Some("SUCCESS,FAILURE")));
        assert!(!wants_failure_report(Some("NEVER")));
        assert!(!wants_failure_report(Some("DELAY")));
    }
}
