//! EHLO/HELO and STARTTLS: what the session offers, and the switch to TLS.

use super::session::{Flow, Session};
use crate::pipeline::{Pipeline, Role};
use crate::smtp::reply::{Reply, multiline};

impl<P: Pipeline> Session<P> {
    /// Whether AUTH may be used now: submission only, and over TLS unless the admin said
    /// otherwise.
    pub fn auth_allowed(&self) -> bool {
        self.shared.role == Role::Submission
            && (self.conn.is_tls() || !self.shared.config.require_tls_for_auth)
    }

    pub fn ehlo(&mut self, host: String, esmtp: bool) -> Flow {
        // RFC 5321 4.1.4: EHLO in the middle of a transaction resets it.
        self.tx = None;
        self.helo = Some(host.clone());
        self.esmtp = esmtp;
        let greeting = format!("{} greets {host}", self.hostname());
        if !esmtp {
            return self.reply(Reply::new(250, "", greeting));
        }
        let mut lines = vec![
            greeting,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.shared.config.max_message_size.bytes()),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.shared.tls.is_some() && !self.conn.is_tls() {
            lines.push("STARTTLS".to_string());
        }
        lines.push("DSN".to_string());
        if self.auth_allowed() && self.authenticated.is_none() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        self.conn.send(&multiline(250, &lines));
        Flow::Continue
    }

    pub async fn starttls(&mut self) -> Flow {
        let Some(acceptor) = self.shared.tls.clone() else {
            return self.reply(Reply::new(
                502,
                "5.5.1",
                "STARTTLS is not available: no TLS certificate is configured",
            ));
        };
        if self.conn.is_tls() {
            return self.reply(Reply::new(503, "5.5.1", "TLS is already active"));
        }
        if self.helo.is_none() {
            return self.reply(Reply::new(503, "5.5.1", "send EHLO first"));
        }
        self.reply(Reply::new(220, "2.0.0", "ready to start TLS"));
        let timeout = self.shared.config.command_timeout.std();
        if self.conn.start_tls(&acceptor, timeout).await.is_err() {
            // The handshake failed: there is no channel left to send a reply on.
            return Flow::Close;
        }
        // RFC 3207 4.2: forget everything learnt before the handshake.
        self.helo = None;
        self.esmtp = false;
        self.authenticated = None;
        self.tx = None;
        Flow::Continue
    }
}
