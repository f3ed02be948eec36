//! The Direct inbound pipeline behind the HISP-to-HISP listener, inline in DATA: decrypt,
//! verify, trust, envelope binding (`inbound::check`), then — in one transaction — file the
//! message in each recipient's mailbox and queue the signed, encrypted MDNs (processed, and
//! dispatched when asked for), and only then `250`. A notification about our own outbound
//! mail (MDN or DSN) updates its tracking instead and is never answered (SPEC E27-E30).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::inbound::{Accepted, Context, check};
use super::keyring::{Keyring, Snapshot};
use super::{Pipeline, Received, Verdict};
use crate::address::DirectAddress;
use crate::discovery::Discovery;
use crate::fetch::HttpFetcher;
use crate::notify::mdn::{self, Disposition, MdnSpec, NotificationKind};
use crate::notify::tracking::Event;
use crate::smime::{AlgorithmPolicy, Envelope, SealOptions, seal};
use crate::smtp::reply::Reply;
use crate::store::Store;
use crate::store::mailbox::{NewMailboxMessage, file_in};
use crate::store::queue::{NewMessage, NewRecipient, Origin, enqueue_in, file_dsn};
use crate::store::tracking::record_event;
use crate::trust::{CrlCache, Policy};

pub struct DirectInbound {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub discovery: Arc<Discovery>,
    pub hostname: String,
    pub seal: SealOptions,
    pub algorithms: AlgorithmPolicy,
    pub trust: Arc<Policy>,
    pub fetcher: Arc<HttpFetcher>,
    pub crl_cache: Arc<CrlCache>,
    pub give_up_after: Duration,
    /// `[notifications] deliver_processed_mdns`.
    pub deliver_processed: bool,
    /// `[mailbox] quota` in bytes; 0 is no limit.
    pub quota: u64,
}

/// An MDN ready to queue: sealed for the original sender.
struct OutgoingMdn {
    from: String,
    to: String,
    message_id: String,
    body: Vec<u8>,
}

impl Pipeline for DirectInbound {
    async fn process(&self, m: Received) -> Verdict {
        let (peer, from) = (m.peer, m.mail_from.clone());
        let verdict = self.receive(m).await;
        super::record_verdict(
            &self.store,
            "in",
            &format!("smtp:{}", peer.ip()),
            &from,
            &verdict,
        )
        .await;
        verdict
    }
}

impl DirectInbound {
    async fn receive(&self, m: Received) -> Verdict {
        let snap = match self.keyring.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                return Verdict::Reject(Reply::new(451, "4.3.0", format!("keys unavailable: {e}")));
            }
        };
        // Anchors are per recipient domain, so each domain's recipients are checked on their
        // own; the message must pass for all of them or it is refused whole.
        let mut by_domain: BTreeMap<String, Vec<DirectAddress>> = BTreeMap::new();
        for r in &m.recipients {
            match DirectAddress::parse(&r.address) {
                Ok(a) => by_domain.entry(a.domain().to_string()).or_default().push(a),
                Err(e) => {
                    return Verdict::Reject(Reply::new(
                        550,
                        "5.1.3",
                        format!("{}: {e}", r.address),
                    ));
                }
            }
        }
        let body = Arc::new(m.body);
        let mut accepted: Option<Accepted> = None;
        for (domain, rcpts) in &by_domain {
            match self
                .check(&snap, domain, rcpts, &m.mail_from, body.clone())
                .await
            {
                Ok(a) => accepted = Some(a),
                Err(v) => return v,
            }
        }
        let Some(accepted) = accepted else {
            return Verdict::Reject(Reply::new(554, "5.5.1", "no recipients"));
        };
        let recipients: Vec<DirectAddress> = by_domain.into_values().flatten().collect();
        let result = match accepted.notification {
            Some(kind) => self.notification(kind, &accepted, &recipients).await,
            None => self.deliver(&snap, &accepted, &recipients).await,
        };
        match result {
            Ok(text) => Verdict::Accept(text),
            Err(e)
                if e.chain().any(|c| {
                    c.downcast_ref::<crate::store::StoreError>()
                        .is_some_and(|s| s.is_disk_full())
                }) =>
            {
                Verdict::Reject(Reply::new(
                    452,
                    "4.3.1",
                    "insufficient system storage: not filed; try again later",
                ))
            }
            Err(e) => Verdict::Reject(Reply::new(
                451,
                "4.3.0",
                format!("cannot store the message: {e}"),
            )),
        }
    }
}

impl DirectInbound {
    async fn check(
        &self,
        snap: &Arc<Snapshot>,
        domain: &str,
        rcpts: &[DirectAddress],
        mail_from: &str,
        body: Arc<Vec<u8>>,
    ) -> Result<Accepted, Verdict> {
        let keys = snap.decryption_keys(rcpts);
        if keys.is_empty() {
            return Err(Verdict::Reject(Reply::new(
                554,
                "5.7.5",
                format!(
                    "cannot decrypt: no private key for {} is configured here",
                    rcpts[0]
                ),
            )));
        }
        let anchors = snap.incoming_anchors(domain);
        let envelope = Envelope {
            mail_from: mail_from.to_string(),
            rcpt_to: rcpts.iter().map(|r| r.to_string()).collect(),
        };
        let (algorithms, trust, fetcher, crl) = (
            self.algorithms,
            self.trust.clone(),
            self.fetcher.clone(),
            self.crl_cache.clone(),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            super::bulk_cpu_work();
            let ctx = Context {
                keys: &keys,
                algorithms: &algorithms,
                anchors: &anchors,
                trust: &trust,
                fetcher: fetcher.as_ref(),
                crl_cache: &crl,
                time: crate::clock::now_secs(),
            };
            let _t = crate::metrics::Timer::start(crate::metrics::CRYPTO_SECONDS, ("op", "open"));
            check(&body, &envelope, &ctx)
        })
        .await;
        match outcome {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(r)) => Err(Verdict::Reject(Reply::new(r.reply, r.status, r.text))),
            Err(e) => Err(Verdict::Reject(Reply::new(
                451,
                "4.3.0",
                format!("internal error: {e}"),
            ))),
        }
    }

    /// Files the message and queues its MDNs, all or nothing.
    async fn deliver(
        &self,
        snap: &Arc<Snapshot>,
        a: &Accepted,
        recipients: &[DirectAddress],
    ) -> Result<String, anyhow::Error> {
        let message_id = a
            .message_id
            .clone()
            .unwrap_or_else(|| format!("<{}>", crate::queue::new_message_id(&self.hostname)));
        // Processed but not deliverable (SPEC E29): a full mailbox. Checked before the
        // transaction so the MDNs can say so; a race with another delivery can only let one
        // message more in.
        let mut full = Vec::new();
        if self.quota > 0 {
            for r in recipients {
                let used = self.store.mailbox_usage(r.as_str()).await?;
                if used as u64 + a.message.len() as u64 > self.quota {
                    full.push(r.clone());
                }
            }
        }
        let mdns = self.mdns(snap, a, &message_id, recipients, &full).await;
        let mut tx = self.store.begin_write().await?;
        crate::store::audit::append(
            &mut tx,
            self.store.backend(),
            &crate::store::audit::AuditEvent {
                actor: a.sender.as_str(),
                event: "message.received",
                subject: &message_id,
                outcome: "accepted",
                detail: signed_by(
                    a,
                    serde_json::json!({
                        "recipients": recipients.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                        "over_quota": full.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    }),
                ),
            },
        )
        .await?;
        let mut filed = 0;
        for r in recipients {
            if full.contains(r) {
                // Not filed; its processed and failed MDNs are queued below. A retry of the
                // same message would find the mailbox still full and say so again.
                for mdn in mdns.iter().filter(|m| m.from == r.as_str()) {
                    self.queue_mdn(&mut tx, mdn).await?;
                }
                continue;
            }
            let new = file_in(
                &mut tx,
                r.as_str(),
                "message",
                &NewMailboxMessage {
                    message_id: &message_id,
                    sender: a.sender.as_str(),
                    subject: a.subject.as_deref().unwrap_or(""),
                    raw: &a.message,
                },
            )
            .await?;
            filed += new;
            if new == 0 {
                // Already here from the same sender: a retry after a lost 250. Acknowledge
                // it again without a second copy or second MDNs.
                continue;
            }
            for mdn in mdns.iter().filter(|m| m.from == r.as_str()) {
                self.queue_mdn(&mut tx, mdn).await?;
            }
        }
        tx.commit().await?;
        self.store.wake_workers();
        Ok(if full.is_empty() {
            format!(
                "{message_id} delivered to {filed} mailbox(es); signer {} trusted",
                a.sender
            )
        } else {
            format!(
                "{message_id} processed; delivered to {filed} mailbox(es), {} full (failed MDN sent)",
                full.len()
            )
        })
    }

    async fn queue_mdn(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        mdn: &OutgoingMdn,
    ) -> Result<(), crate::store::StoreError> {
        enqueue_in(
            tx,
            &NewMessage {
                message_id: &mdn.message_id,
                origin: Origin::Mdn,
                envelope_from: &mdn.from,
                envid: None,
                ret: None,
                body: &mdn.body,
                expires_at: crate::clock::now_ms() + self.give_up_after.as_millis() as i64,
            },
            &[NewRecipient {
                address: mdn.to.clone(),
                domain: mdn.to.rsplit('@').next().unwrap_or("").to_string(),
                notify: None,
                orcpt: None,
            }],
        )
        .await?;
        Ok(())
    }

    /// The processed (and, when asked for, dispatched) MDN of each recipient, signed with the
    /// recipient's key and encrypted to the original sender's certificates. A sender whose
    /// certificate can't be found gets no MDN; the message is still delivered.
    async fn mdns(
        &self,
        snap: &Arc<Snapshot>,
        a: &Accepted,
        message_id: &str,
        recipients: &[DirectAddress],
        full: &[DirectAddress],
    ) -> Vec<OutgoingMdn> {
        let mut out = Vec::new();
        for r in recipients {
            let signers = snap.signing_keys(r, crate::clock::now_secs());
            if signers.is_empty() {
                eprintln!(
                    "hisp: warning: no signing certificate for {r}: no MDN sent for {message_id}"
                );
                continue;
            }
            let report = self
                .discovery
                .discover(&a.sender, &snap.outgoing_anchors(r.domain()))
                .await;
            let certs = report.certificates();
            if certs.is_empty() {
                eprintln!(
                    "hisp: warning: no MDN for {message_id} to {}: {}",
                    a.sender,
                    report.failure_reason()
                );
                continue;
            }
            let mut dispositions = vec![Disposition::Processed];
            if full.contains(r) {
                dispositions.push(Disposition::Failed(format!(
                    "the mailbox of {r} is full; the message was not delivered"
                )));
            } else if a.final_delivery_requested {
                dispositions.push(Disposition::Dispatched);
            }
            for d in dispositions {
                let mdn_id = format!("<{}>", crate::queue::new_message_id(&self.hostname));
                let plain = mdn::build(&MdnSpec {
                    reporting_host: &self.hostname,
                    final_recipient: r.as_str(),
                    original_sender: a.sender.as_str(),
                    original_message_id: message_id,
                    original_subject: a.subject.as_deref(),
                    disposition: d,
                    final_delivery_requested: a.final_delivery_requested,
                    message_id: &mdn_id,
                    date: crate::clock::now_secs(),
                });
                let (signers, certs, options) = (signers.clone(), certs.clone(), self.seal);
                let sealed = tokio::task::spawn_blocking(move || {
                    super::bulk_cpu_work();
                    seal(&plain, &signers, &certs, &options)
                })
                .await;
                match sealed {
                    Ok(Ok(body)) => out.push(OutgoingMdn {
                        from: r.to_string(),
                        to: a.sender.to_string(),
                        message_id: mdn_id,
                        body,
                    }),
                    Ok(Err(e)) => {
                        eprintln!("hisp: warning: cannot secure the MDN to {}: {e}", a.sender)
                    }
                    Err(e) => {
                        eprintln!("hisp: warning: cannot secure the MDN to {}: {e}", a.sender)
                    }
                }
            }
        }
        out
    }

    /// A partner's DSN: each failed recipient fails its tracking record (one DSN of ours to
    /// the sender, from tracking), and the DSN itself goes to the sender's mailbox.
    async fn partner_dsn(
        &self,
        original_id: &str,
        failed: &[(String, String)],
        a: &Accepted,
        recipients: &[DirectAddress],
    ) -> Result<String, anyhow::Error> {
        let mut tx = self.store.begin_write().await?;
        let mut moved = 0;
        for (rcpt, why) in failed {
            let event = Event::DeliveryFailed(format!("the recipient's HISP reported: {why}"));
            if record_event(&mut tx, original_id, rcpt, &event, false)
                .await?
                .is_some()
            {
                moved += 1;
                // The partner's DSN already tells the sender; ours would say it twice.
                crate::store::tracking::mark_dsn_sent(&mut tx, original_id, rcpt).await?;
            }
        }
        let mut filed = 0;
        if moved > 0 {
            filed = self
                .file_notification(&mut tx, "dsn", a, recipients)
                .await?;
        }
        let reported: Vec<&str> = failed.iter().map(|(r, _)| r.as_str()).collect();
        self.audit_notification(
            &mut tx,
            "dsn",
            a,
            original_id,
            serde_json::json!({ "failed": reported, "tracking_failed": moved, "filed": filed }),
        )
        .await?;
        tx.commit().await?;
        Ok(format!(
            "DSN for {original_id}: {moved} recipient(s) now failed"
        ))
    }

    /// Files a received notification in the mailboxes of the local addresses it was sent to
    /// (the original senders).
    async fn file_notification(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        kind: &str,
        a: &Accepted,
        recipients: &[DirectAddress],
    ) -> Result<u64, crate::store::StoreError> {
        let id = a
            .message_id
            .clone()
            .unwrap_or_else(|| format!("<{}>", crate::queue::new_message_id(&self.hostname)));
        let mut filed = 0;
        for r in recipients {
            filed += file_in(
                tx,
                r.as_str(),
                kind,
                &NewMailboxMessage {
                    message_id: &id,
                    sender: a.sender.as_str(),
                    subject: a.subject.as_deref().unwrap_or(""),
                    raw: &a.message,
                },
            )
            .await?;
        }
        Ok(filed)
    }

    /// Audits an accepted notification inside `tx`, the transaction that applies it: who
    /// signed it, and in `detail` what it reported and what tracking made of it.
    async fn audit_notification(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        kind: &str,
        a: &Accepted,
        original_id: &str,
        mut detail: serde_json::Value,
    ) -> Result<(), crate::store::StoreError> {
        detail["kind"] = kind.into();
        crate::store::audit::append(
            tx,
            self.store.backend(),
            &crate::store::audit::AuditEvent {
                actor: a.sender.as_str(),
                event: "notification.received",
                subject: original_id,
                outcome: "accepted",
                detail: signed_by(a, detail),
            },
        )
        .await
    }

    /// A notification that was signed and trusted but that tracking can't use: accepted
    /// (refusing it would only make the partner retry), audited with the reason.
    async fn unread_notification(
        &self,
        kind: &str,
        a: &Accepted,
        why: String,
    ) -> Result<String, anyhow::Error> {
        let subject = a.message_id.clone().unwrap_or_default();
        let mut tx = self.store.begin_write().await?;
        self.audit_notification(
            &mut tx,
            kind,
            a,
            &subject,
            serde_json::json!({ "unused": why }),
        )
        .await?;
        tx.commit().await?;
        Ok(format!("notification accepted but not used: {why}"))
    }

    /// An MDN or DSN about one of our messages: move its tracking and, when the state machine
    /// says so, file it in the original sender's mailbox. Never answered.
    async fn notification(
        &self,
        kind: NotificationKind,
        a: &Accepted,
        recipients: &[DirectAddress],
    ) -> Result<String, anyhow::Error> {
        let (original_id, reporter, event) = match kind {
            NotificationKind::Mdn => match mdn::parse(&a.message) {
                Ok(p) => (
                    p.original_message_id,
                    p.final_recipient,
                    Event::Mdn(p.disposition),
                ),
                Err(e) => return self.unread_notification("mdn", a, e.to_string()).await,
            },
            // A partner's DSN about our message: the recipients it reports as failed.
            NotificationKind::Dsn => {
                let parsed = match crate::notify::dsn::parse(&a.message) {
                    Ok(p) => p,
                    Err(e) => return self.unread_notification("dsn", a, e.to_string()).await,
                };
                let Some(original) = parsed.original_message_id.clone() else {
                    return self
                        .unread_notification("dsn", a, "it names no message of ours".into())
                        .await;
                };
                let failed: Vec<(String, String)> = parsed
                    .recipients
                    .iter()
                    .filter(|r| r.action == "failed")
                    .map(|r| {
                        let why = match &r.diagnostic {
                            Some(d) => format!("{} {d}", r.status),
                            None => r.status.clone(),
                        };
                        (r.final_recipient.clone(), why)
                    })
                    .collect();
                return self.partner_dsn(&original, &failed, a, recipients).await;
            }
        };
        let mut tx = self.store.begin_write().await?;
        let t = record_event(
            &mut tx,
            &original_id,
            &reporter,
            &event,
            self.deliver_processed,
        )
        .await?;
        if let Some(why) = t.as_ref().and_then(|t| t.dsn.as_ref())
            && let Some(rec) =
                crate::store::tracking::record_in(&mut tx, &original_id, &reporter).await?
        {
            let dsn = super::timeouts::tracking_dsn(
                &self.hostname,
                &rec,
                "5.0.0",
                why,
                "reported by the recipient's HISP",
            );
            file_dsn(&mut tx, &dsn, crate::clock::now_ms()).await?;
        }
        let kind_name = match kind {
            NotificationKind::Mdn => "mdn",
            NotificationKind::Dsn => "dsn",
        };
        let mut filed = 0;
        if t.as_ref().is_some_and(|t| t.deliver_notification) {
            filed = self
                .file_notification(&mut tx, kind_name, a, recipients)
                .await?;
        }
        let tracking = t.as_ref().map(|t| t.next.as_str());
        self.audit_notification(
            &mut tx,
            kind_name,
            a,
            &original_id,
            serde_json::json!({ "reporter": reporter, "tracking": tracking, "filed": filed }),
        )
        .await?;
        tx.commit().await?;
        Ok(match t {
            Some(t) => format!(
                "notification for {original_id} from {reporter}: now {}{}",
                t.next.as_str(),
                if filed > 0 { ", filed" } else { "" }
            ),
            None => format!("notification for {original_id} from {reporter}: nothing new"),
        })
    }
}

/// `detail` with the signer of `a` (certificate hash and subject), as every audit entry
/// of a received message records it.
fn signed_by(a: &Accepted, mut detail: serde_json::Value) -> serde_json::Value {
    let signer = crate::certinfo::CertInfo::of(&a.signer);
    detail["signer"] = signer.sha256.into();
    detail["signer_subject"] = signer.subject.into();
    detail
}
