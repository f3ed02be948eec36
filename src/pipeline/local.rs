//! The plain inbound pipeline: file the message in the local recipients' mailboxes as it is.
//! The Direct inbound pipeline (decrypt, verify, trust, then file) replaces it.

use super::{Pipeline, Received, Verdict};
use crate::smtp::reply::Reply;
use crate::store::Store;
use crate::store::mailbox::NewMailboxMessage;

pub struct LocalDelivery {
    pub store: Store,
    pub hostname: String,
}

impl Pipeline for LocalDelivery {
    async fn process(&self, m: Received) -> Verdict {
        let message_id = crate::headers::message_id(&m.body)
            .unwrap_or_else(|| crate::queue::new_message_id(&self.hostname));
        let subject = crate::headers::header_value(&m.body, "subject").unwrap_or_default();
        let addresses: Vec<String> = m.recipients.iter().map(|r| r.address.clone()).collect();
        let filed = self
            .store
            .deliver_local(
                &addresses,
                &NewMailboxMessage {
                    message_id: &message_id,
                    sender: &m.mail_from,
                    subject: &subject,
                    raw: &m.body,
                },
            )
            .await;
        match filed {
            Ok(_) => Verdict::Accept(format!("delivered <{message_id}>")),
            Err(e) => {
                eprintln!("hisp: cannot file a message from {}: {e}", m.peer);
                Verdict::Reject(Reply::new(
                    451,
                    "4.3.0",
                    "the message could not be stored; try again later",
                ))
            }
        }
    }
}
