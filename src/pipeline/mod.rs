//! What happens to a message once an SMTP session (or the API) has received it: the session
//! hands a [`Received`] message to a [`Pipeline`] and answers the client with its verdict.
//! The plain pipelines here queue a submitted message for delivery (`enqueue`) and file an
//! inbound one in the local mailboxes (`local`); the Direct pipelines (S/MIME outbound on
//! submission, decrypt-verify-file inbound) implement the same trait in their place.

pub mod enqueue;
pub mod inbound;
pub mod keyring;
pub mod local;
pub mod outbound;
pub mod receive;
pub mod submit;
pub mod timeouts;

use std::future::Future;
use std::net::SocketAddr;

use crate::smtp::reply::Reply;

/// Which listener a message came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HISP-to-HISP (port 25): no AUTH, local recipients only.
    Inbound,
    /// EHR/provider submission (port 587): AUTH required, any recipient.
    Submission,
}

/// One accepted recipient with its DSN parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Normalised (lower-case domain) address.
    pub address: String,
    pub domain: String,
    /// `NOTIFY=` as a comma list (`SUCCESS,FAILURE,DELAY` or `NEVER`), if given.
    pub notify: Option<String>,
    /// `ORCPT=` as `type;address` (`rfc822;bob@b.example`), decoded from xtext.
    pub orcpt: Option<String>,
}

/// A complete message as the session received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub role: Role,
    pub peer: SocketAddr,
    pub helo: String,
    /// The authenticated address (submission only).
    pub authenticated: Option<String>,
    pub tls: bool,
    /// Envelope sender; empty for the null reverse-path.
    pub mail_from: String,
    pub envid: Option<String>,
    /// DSN `RET=` (`FULL` or `HDRS`).
    pub ret: Option<String>,
    pub recipients: Vec<Recipient>,
    /// The message with our Received: header prepended, CRLF line ends, dot-unstuffed.
    pub body: Vec<u8>,
}

/// The pipeline's answer, sent to the client as the reply to the end of DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Committed durably: the session replies `250 2.0.0 <text>`.
    Accept(String),
    /// Refused: a 4xx or 5xx with its enhanced code and a sentence naming the cause.
    Reject(Reply),
}

/// Marks the calling (blocking-pool) thread as doing bulk CPU work: S/MIME sealing and
/// opening. Such work is throughput, while store transactions and SMTP replies are latency:
/// a store's single writer slot stays taken while its holder waits for a core, and every
/// other writer queues behind it. At a lower priority the crypto yields the core at once.
/// Linux lets any thread lower its own priority; once set it stays for the thread's life.
pub(crate) fn bulk_cpu_work() {
    thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    LOWERED.with(|lowered| {
        if !lowered.get() {
            lowered.set(true);
            #[cfg(target_os = "linux")]
            // SAFETY: one syscall, no memory passed. On Linux, `who = 0` is the calling
            // thread, not the whole process.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, BULK_NICE);
            }
        }
    });
}

/// The nice value of S/MIME threads; 5 is enough for the scheduler to favour the rest.
const BULK_NICE: libc::c_int = 5;

/// Processes a received message. Called once per message, after the final dot; the
/// session waits for the future (with the client waiting for its reply), so the future must
/// only resolve to `Accept` once the message is safe on disk. CPU-heavy work (S/MIME) belongs
/// in `spawn_blocking`, not on the reactor.
pub trait Pipeline: Send + Sync + 'static {
    fn process(&self, message: Received) -> impl Future<Output = Verdict> + Send;
}

/// Counts a pipeline's verdict and audits a refusal (acceptances are audited inside the
/// transaction that stores the message, so they can't be lost or invented).
pub(crate) async fn record_verdict(
    store: &crate::store::Store,
    direction: &'static str,
    actor: &str,
    subject: &str,
    verdict: &Verdict,
) {
    match verdict {
        Verdict::Accept(_) => crate::metrics::message(direction, "accepted", String::new()),
        Verdict::Reject(r) => {
            crate::metrics::message(direction, "rejected", r.status.clone());
            let event = crate::store::audit::AuditEvent {
                actor,
                event: if direction == "in" {
                    "message.received"
                } else {
                    "message.submitted"
                },
                subject,
                outcome: "rejected",
                detail: serde_json::json!({
                    "reply": r.code, "status": r.status, "reason": r.text,
                }),
            };
            if let Err(e) = store.audit(&event).await {
                eprintln!("hisp: warning: rejection not audited: {e}");
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    fn own_nice() -> i32 {
        // SAFETY: reads the calling thread's nice value; no memory is passed.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn bulk_work_lowers_only_its_own_thread_and_only_once() {
        let before = own_nice();
        let (worker, worker_again) = std::thread::spawn(|| {
            super::bulk_cpu_work();
            let first = own_nice();
            super::bulk_cpu_work();
            (first, own_nice())
        })
        .join()
        .unwrap();
        assert_eq!(worker, (before + super::BULK_NICE).min(19));
        assert_eq!(worker_again, worker, "not lowered again on the next call");
        assert_eq!(own_nice(), before, "other threads keep their priority");
    }
}
