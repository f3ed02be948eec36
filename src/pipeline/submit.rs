//! The Direct outbound pipeline behind the submission listener (and later the HTTP API):
//! complete and check the message, find every recipient's certificates, sign with the
//! sender's key, encrypt per recipient domain, and queue — with tracking rows for the
//! recipients that can be reached and a DSN for those that can't — in one transaction, before
//! the `250` (SPEC A, C, E30; INTERFACE "SMTP behaviour").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openssl::x509::X509;

use super::keyring::Keyring;
use super::outbound::prepare;
use super::{Pipeline, Received, Verdict};
use crate::address::DirectAddress;
use crate::discovery::{Discovery, Report};
use crate::notify::dsn::DsnRecipient;
use crate::notify::mdn::final_delivery_requested;
use crate::queue::{DsnOriginal, local_dsn};
use crate::smime::{SealOptions, mime, seal};
use crate::smtp::reply::Reply;
use crate::store::Store;
use crate::store::queue::{NewMessage, NewRecipient, Origin, enqueue_in, file_dsn};
use crate::store::tracking::track;

pub struct DirectSubmission {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub discovery: Arc<Discovery>,
    pub hostname: String,
    pub seal: SealOptions,
    pub give_up_after: Duration,
    /// `[notifications] timeout`.
    pub notify_timeout: Duration,
}

fn temp(status: &str, text: impl Into<String>) -> Verdict {
    Verdict::Reject(Reply::new(451, status, text))
}

fn perm(code: u16, status: &str, text: impl Into<String>) -> Verdict {
    Verdict::Reject(Reply::new(code, status, text))
}

/// One sealed copy for the recipients of one domain.
struct Sealed {
    recipients: Vec<DirectAddress>,
    body: Vec<u8>,
}

impl Pipeline for DirectSubmission {
    async fn process(&self, m: Received) -> Verdict {
        let (peer, who) = (
            m.peer,
            m.authenticated
                .clone()
                .unwrap_or_else(|| m.mail_from.clone()),
        );
        let verdict = self.submit(m).await;
        super::record_verdict(
            &self.store,
            "out",
            &format!("submission:{}", peer.ip()),
            &who,
            &verdict,
        )
        .await;
        verdict
    }
}

impl DirectSubmission {
    async fn submit(&self, m: Received) -> Verdict {
        let sender_text = m
            .authenticated
            .clone()
            .unwrap_or_else(|| m.mail_from.clone());
        let Ok(sender) = DirectAddress::parse(&sender_text) else {
            return perm(
                550,
                "5.1.7",
                format!("sender {sender_text} is not a Direct address"),
            );
        };
        let mut recipients = Vec::new();
        for r in &m.recipients {
            match DirectAddress::parse(&r.address) {
                Ok(a) => recipients.push(a),
                Err(e) => return perm(550, "5.1.3", format!("recipient {}: {e}", r.address)),
            }
        }
        let now = crate::clock::now_secs();
        let prepared = match prepare(&m.body, &sender, &recipients, &self.hostname, now) {
            Ok(p) => p,
            Err(e) => {
                let (code, status) = e.reply();
                return perm(code, status, e.to_string());
            }
        };
        let snap = match self.keyring.snapshot().await {
            Ok(s) => s,
            Err(e) => return temp("4.3.0", format!("keys unavailable: {e}")),
        };
        let signers = snap.signing_keys(&sender, now);
        if signers.is_empty() {
            return perm(
                554,
                "5.7.0",
                format!(
                    "no usable signing certificate for {sender} or {}: an admin must import one (hisp cert import)",
                    sender.domain()
                ),
            );
        }
        let anchors = snap.outgoing_anchors(sender.domain());
        // Every recipient at once: the lookups are network round trips.
        let lookups = recipients.iter().map(|r| {
            let d = self.discovery.clone();
            let a = anchors.clone();
            let r = r.clone();
            async move { d.discover(&r, &a).await }
        });
        let reports: Vec<Arc<Report>> = futures_join_all(lookups).await;
        if let Some((r, rep)) = recipients
            .iter()
            .zip(&reports)
            .find(|(_, rep)| rep.temporary)
        {
            return temp(
                "4.4.3",
                format!(
                    "cannot look up the certificate of {r} right now ({}); try again later",
                    rep.failure_reason()
                ),
            );
        }
        let mut by_domain: BTreeMap<String, (Vec<DirectAddress>, Vec<X509>)> = BTreeMap::new();
        let mut unreachable: Vec<(DirectAddress, String)> = Vec::new();
        for (r, rep) in recipients.iter().zip(&reports) {
            let certs = rep.certificates();
            if certs.is_empty() {
                unreachable.push((r.clone(), rep.failure_reason()));
                continue;
            }
            let entry = by_domain.entry(r.domain().to_string()).or_default();
            entry.0.push(r.clone());
            entry.1.extend(certs);
        }
        // Which certificate was chosen for whom, and why the others got none: the audit
        // log's record of this security decision.
        let chosen: Vec<serde_json::Value> = recipients
            .iter()
            .zip(&reports)
            .map(|(r, rep)| {
                let sha: Vec<&str> = rep.selected.iter().map(|c| c.sha256.as_str()).collect();
                if sha.is_empty() {
                    serde_json::json!({"recipient": r.as_str(), "refused": rep.failure_reason()})
                } else {
                    serde_json::json!({"recipient": r.as_str(), "certificates": sha})
                }
            })
            .collect();
        let message = Arc::new(prepared.message);
        let mut sealed = Vec::new();
        for (_, (rcpts, certs)) in by_domain {
            let (msg, signers, options) = (message.clone(), signers.clone(), self.seal);
            let result = tokio::task::spawn_blocking(move || {
                super::bulk_cpu_work();
                let _t =
                    crate::metrics::Timer::start(crate::metrics::CRYPTO_SECONDS, ("op", "seal"));
                seal(&msg, &signers, &certs, &options)
            })
            .await;
            match result {
                Ok(Ok(body)) => sealed.push(Sealed {
                    recipients: rcpts,
                    body,
                }),
                Ok(Err(e)) => return perm(554, "5.7.0", format!("cannot secure the message: {e}")),
                Err(e) => {
                    return temp("4.3.0", format!("internal error securing the message: {e}"));
                }
            }
        }
        let header = mime::split(&message).header;
        let final_delivery = final_delivery_requested(header);
        match self
            .commit(
                &sender,
                &prepared.message_id,
                &sealed,
                &unreachable,
                final_delivery,
                &message,
                serde_json::Value::Array(chosen),
            )
            .await
        {
            Ok(()) => Verdict::Accept(format!(
                "{} queued: {} recipient(s) signed and encrypted{}",
                prepared.message_id,
                sealed.iter().map(|s| s.recipients.len()).sum::<usize>(),
                if unreachable.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} without a usable certificate (a DSN explains)",
                        unreachable.len()
                    )
                }
            )),
            Err(e) if e.is_disk_full() => {
                eprintln!("hisp: submission refused, the store is full: {e}");
                Verdict::Reject(Reply::new(
                    452,
                    "4.3.1",
                    "insufficient system storage: the message was not queued; try again later",
                ))
            }
            Err(e) => temp("4.3.0", format!("cannot store the message: {e}")),
        }
    }
}

impl DirectSubmission {
    /// Queues every sealed copy, starts tracking, files the DSN for unreachable recipients:
    /// all or nothing.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        sender: &DirectAddress,
        message_id: &str,
        sealed: &[Sealed],
        unreachable: &[(DirectAddress, String)],
        final_delivery: bool,
        original: &[u8],
        certificates: serde_json::Value,
    ) -> Result<(), crate::store::StoreError> {
        let now_ms = crate::clock::now_ms();
        let mut tx = self.store.begin_write().await?;
        crate::store::audit::append(
            &mut tx,
            self.store.backend(),
            &crate::store::audit::AuditEvent {
                actor: sender.as_str(),
                event: "message.submitted",
                subject: message_id,
                outcome: "accepted",
                detail: serde_json::json!({ "recipients": certificates }),
            },
        )
        .await?;
        for s in sealed {
            let rcpts: Vec<NewRecipient> = s
                .recipients
                .iter()
                .map(|r| NewRecipient {
                    address: r.to_string(),
                    domain: r.domain().to_string(),
                    notify: None,
                    orcpt: None,
                })
                .collect();
            enqueue_in(
                &mut tx,
                &NewMessage {
                    message_id,
                    origin: Origin::Submission,
                    envelope_from: sender.as_str(),
                    envid: None,
                    ret: None,
                    body: &s.body,
                    expires_at: now_ms + self.give_up_after.as_millis() as i64,
                },
                &rcpts,
            )
            .await?;
            let addrs: Vec<String> = s.recipients.iter().map(|r| r.to_string()).collect();
            track(
                &mut tx,
                message_id,
                sender.as_str(),
                &addrs,
                final_delivery,
                self.notify_timeout.as_millis() as i64,
            )
            .await?;
        }
        if !unreachable.is_empty() {
            let report: Vec<DsnRecipient> = unreachable
                .iter()
                .map(|(r, why)| DsnRecipient {
                    final_recipient: r.to_string(),
                    original_recipient: None,
                    status: "5.7.0".into(),
                    remote_mta: None,
                    diagnostic: why.clone(),
                    last_attempt: now_ms / 1000,
                })
                .collect();
            let dsn = local_dsn(
                &self.hostname,
                sender.as_str(),
                &report,
                &DsnOriginal {
                    message: original,
                    return_full: false,
                    envid: None,
                    arrival_secs: now_ms / 1000,
                },
                Some("no usable certificate"),
                now_ms / 1000,
            );
            file_dsn(&mut tx, &dsn, now_ms).await?;
        }
        tx.commit().await?;
        self.store.wake_workers();
        Ok(())
    }
}

/// Runs futures concurrently on this task and collects their outputs in order (a tiny
/// join_all, to avoid a dependency for one call).
pub(crate) async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}
