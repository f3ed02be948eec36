//! RCPT TO: inbound accepts only existing addresses of local domains (never a relay);
//! submission accepts any valid address from its authenticated user.

use smtp_proto::{
    RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS, RcptTo,
};

use super::session::{Flow, Session};
use crate::address::DirectAddress;
use crate::pipeline::{Pipeline, Recipient, Role};
use crate::smtp::reply::Reply;

/// DSN `NOTIFY=` flags as the comma list stored with the recipient.
fn notify_text(flags: u64) -> Option<String> {
    if flags & RCPT_NOTIFY_NEVER != 0 {
        return Some("NEVER".into());
    }
    let names: Vec<&str> = [
        (RCPT_NOTIFY_SUCCESS, "SUCCESS"),
        (RCPT_NOTIFY_FAILURE, "FAILURE"),
        (RCPT_NOTIFY_DELAY, "DELAY"),
    ]
    .iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, n)| *n)
    .collect();
    (!names.is_empty()).then(|| names.join(","))
}

impl<P: Pipeline> Session<P> {
    pub async fn rcpt(&mut self, to: RcptTo<String>) -> Flow {
        let Some(count) = self.tx.as_ref().map(|t| t.recipients.len()) else {
            return self.reply(Reply::new(503, "5.5.1", "send MAIL first"));
        };
        if count >= self.shared.config.max_recipients as usize {
            return self.reply(Reply::new(
                452,
                "4.5.3",
                "too many recipients in this message",
            ));
        }
        let Ok(address) = DirectAddress::parse(&to.address) else {
            return self.reply(Reply::new(
                501,
                "5.1.3",
                "the recipient address is not valid",
            ));
        };
        if self.shared.role == Role::Inbound {
            match self.is_local(&address).await {
                Ok(Some(reply)) => {
                    // Relay attempts and unknown users: counted, not audited (a flood of
                    // them must not become a flood of audit writes).
                    metrics::counter!(crate::metrics::RCPT_REFUSED, "status" => reply.status.clone())
                        .increment(1);
                    return self.reply(reply);
                }
                Ok(None) => {}
                Err(reply) => return self.reply(reply),
            }
        }
        let recipient = Recipient {
            address: address.as_str().to_string(),
            domain: address.domain().to_string(),
            notify: notify_text(to.flags),
            // smtp-proto hands over the decoded address of an rfc822 ORCPT; keep the
            // `type;address` form the DSN's Original-Recipient field wants.
            orcpt: to.orcpt.map(|o| format!("rfc822;{o}")),
        };
        let Some(tx) = self.tx.as_mut() else {
            return self.reply(Reply::new(503, "5.5.1", "send MAIL first"));
        };
        if tx.recipients.iter().any(|r| r.address == recipient.address) {
            return self.reply(Reply::new(250, "2.1.5", "duplicate recipient ignored"));
        }
        tx.recipients.push(recipient);
        self.reply(Reply::new(250, "2.1.5", "recipient OK"))
    }

    /// None when `address` is a local mailbox, else the refusal. Addresses an admin adds
    /// take effect at once, removals within seconds (`Store::is_local_address`).
    async fn is_local(&self, address: &DirectAddress) -> Result<Option<Reply>, Reply> {
        let unavailable = |e: crate::store::StoreError| {
            eprintln!("hisp: smtp rcpt: store lookup failed: {e}");
            Reply::new(451, "4.3.0", "recipient lookup failed; try again later")
        };
        let store = &self.shared.store;
        // An address can only exist in a local domain, so one lookup settles the usual case.
        if store
            .is_local_address(address.as_str())
            .await
            .map_err(unavailable)?
        {
            return Ok(None);
        }
        if !store
            .is_local_domain(address.domain())
            .await
            .map_err(unavailable)?
        {
            return Ok(Some(Reply::new(
                550,
                "5.7.1",
                format!(
                    "relaying denied: {} is not a domain this server receives mail for",
                    address.domain()
                ),
            )));
        }
        Ok(Some(Reply::new(550, "5.1.1", "no such user here")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_lists() {
        assert_eq!(notify_text(0), None);
        assert_eq!(notify_text(RCPT_NOTIFY_NEVER).as_deref(), Some("NEVER"));
        assert_eq!(
            notify_text(RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY).as_deref(),
            Some("FAILURE,DELAY")
        );
    }
}
