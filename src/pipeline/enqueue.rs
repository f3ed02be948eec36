//! The plain pipeline: commit the message to the delivery queue as it is.

use std::time::Duration;

use super::{Pipeline, Received, Role, Verdict};
use crate::queue::{self, Envelope};
use crate::smtp::reply::Reply;
use crate::store::Store;
use crate::store::queue::{NewRecipient, Origin};

pub struct Enqueue {
    pub store: Store,
    pub hostname: String,
    pub give_up_after: Duration,
}

impl Pipeline for Enqueue {
    async fn process(&self, m: Received) -> Verdict {
        let envelope = Envelope {
            origin: match m.role {
                Role::Submission => Origin::Submission,
                Role::Inbound => Origin::Relay,
            },
            from: m.mail_from,
            envid: m.envid,
            ret: m.ret,
            recipients: m
                .recipients
                .into_iter()
                .map(|r| NewRecipient {
                    address: r.address,
                    domain: r.domain,
                    notify: r.notify,
                    orcpt: r.orcpt,
                })
                .collect(),
        };
        match queue::enqueue(
            &self.store,
            &self.hostname,
            self.give_up_after,
            &envelope,
            &m.body,
        )
        .await
        {
            Ok(id) => Verdict::Accept(format!("queued as {id}")),
            Err(crate::queue::QueueError::Store(e)) if e.is_disk_full() => {
                eprintln!("hisp: cannot queue a message from {}: {e}", m.peer);
                Verdict::Reject(Reply::new(
                    452,
                    "4.3.1",
                    "insufficient system storage: the message was not queued; try again later",
                ))
            }
            Err(e) => {
                eprintln!("hisp: cannot queue a message from {}: {e}", m.peer);
                Verdict::Reject(Reply::new(
                    451,
                    "4.3.0",
                    "the message could not be stored; try again later",
                ))
            }
        }
    }
}
