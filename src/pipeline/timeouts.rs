//! The tracking timer (SPEC E30): outbound messages whose processed (or requested dispatched)
//! MDN has not come by `[notifications] timeout` are marked timed-out and their sender gets
//! one DSN in their mailbox. Safe with several nodes: the state change is compare-and-set.

use std::time::Duration;

use tokio::sync::watch;

use crate::notify::dsn::DsnRecipient;
use crate::notify::tracking::Event;
use crate::queue::{DsnOriginal, local_dsn};
use crate::store::queue::{DsnDelivery, file_dsn};
use crate::store::tracking::{TrackingRecord, record_event};
use crate::store::{Store, StoreError};

/// How often overdue records are looked for.
pub const TICK: Duration = Duration::from_secs(2);

pub struct Timeouts {
    pub store: Store,
    pub hostname: String,
}

impl Timeouts {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.run_once().await {
                eprintln!("hisp: warning: tracking timeouts: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Handles every overdue record now; returns how many timed out.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        loop {
            let overdue = self
                .store
                .tracking_overdue(crate::clock::now_ms(), 100)
                .await?;
            if overdue.is_empty() {
                return Ok(n);
            }
            let mut progressed = false;
            for rec in overdue {
                if self.time_out(&rec).await? {
                    n += 1;
                }
                progressed = true;
            }
            if !progressed {
                return Ok(n);
            }
        }
    }

    async fn time_out(&self, rec: &TrackingRecord) -> Result<bool, StoreError> {
        let mut tx = self.store.begin_write().await?;
        let Some(t) = record_event(
            &mut tx,
            &rec.message_id,
            &rec.recipient,
            &Event::Timeout,
            false,
        )
        .await?
        else {
            tx.rollback().await?;
            return Ok(false);
        };
        if let Some(why) = &t.dsn {
            let dsn = tracking_dsn(&self.hostname, rec, "5.4.7", why, "not confirmed in time");
            file_dsn(&mut tx, &dsn, crate::clock::now_ms()).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// The one DSN tracking sends its sender about `rec` (SPEC E30): for a timeout, or for a
/// failure a partner reported in an MDN.
pub(crate) fn tracking_dsn(
    hostname: &str,
    rec: &TrackingRecord,
    status: &str,
    why: &str,
    summary: &str,
) -> DsnDelivery {
    let now_secs = crate::clock::now_secs();
    // Tracking keeps no copy of the message; a header naming it is what the DSN returns.
    let header = format!(
        "Message-ID: {}\r\nTo: {}\r\nSubject: (message sent to {})\r\n",
        rec.message_id, rec.recipient, rec.recipient
    );
    local_dsn(
        hostname,
        &rec.sender,
        &[DsnRecipient {
            final_recipient: rec.recipient.clone(),
            original_recipient: None,
            status: status.into(),
            remote_mta: None,
            diagnostic: why.to_string(),
            last_attempt: now_secs,
        }],
        &DsnOriginal {
            message: header.as_bytes(),
            return_full: false,
            envid: None,
            arrival_secs: rec.created_at / 1000,
        },
        Some(summary),
        now_secs,
    )
}
