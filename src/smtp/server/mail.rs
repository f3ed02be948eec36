//! MAIL FROM: starts a transaction. On submission the sender must be the authenticated
//! address, so an account can only send as itself.

use smtp_proto::{MAIL_RET_FULL, MAIL_RET_HDRS, MailFrom};

use super::session::{Flow, Session, Transaction};
use crate::address::DirectAddress;
use crate::pipeline::{Pipeline, Role};
use crate::smtp::reply::Reply;

impl<P: Pipeline> Session<P> {
    pub fn mail(&mut self, from: MailFrom<String>) -> Flow {
        if self.helo.is_none() {
            return self.reply(Reply::new(503, "5.5.1", "send EHLO or HELO first"));
        }
        if self.tx.is_some() {
            return self.reply(Reply::new(
                503,
                "5.5.1",
                "a transaction is already open; send RSET first",
            ));
        }
        if self.shared.role == Role::Submission && self.authenticated.is_none() {
            return self.reply(Reply::new(530, "5.7.0", "authentication required"));
        }
        let max = self.shared.config.max_message_size.bytes();
        if from.size as u64 > max {
            return self.reply(Reply::new(
                552,
                "5.3.4",
                format!("the message is larger than this server accepts ({max} bytes)"),
            ));
        }
        let sender = if from.address.is_empty() {
            String::new()
        } else {
            match DirectAddress::parse(&from.address) {
                Ok(a) => a.as_str().to_string(),
                Err(_) => {
                    return self.reply(Reply::new(501, "5.1.7", "the sender address is not valid"));
                }
            }
        };
        if let Some(user) = &self.authenticated
            && *user != sender
        {
            return self.reply(Reply::new(
                550,
                "5.7.1",
                format!("sender address rejected: you are authenticated as {user}"),
            ));
        }
        let ret = if from.flags & MAIL_RET_FULL != 0 {
            Some("FULL".to_string())
        } else if from.flags & MAIL_RET_HDRS != 0 {
            Some("HDRS".to_string())
        } else {
            None
        };
        self.tx = Some(Transaction {
            from: sender,
            envid: from.env_id,
            ret,
            recipients: Vec::new(),
        });
        self.reply(Reply::new(250, "2.1.0", "sender OK"))
    }
}
