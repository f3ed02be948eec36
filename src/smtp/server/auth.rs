//! AUTH PLAIN and LOGIN (RFC 4954) on the submission listener, with the failed-attempt
//! limit and the per-IP back-off.

use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};

use super::conn::Line;
use super::session::{Flow, Session};
use crate::pipeline::{Pipeline, Role};
use crate::smime::mime::decode_base64;
use crate::smtp::reply::Reply;

enum Answer {
    Text(String),
    Cancelled,
    Invalid,
    Gone,
}

impl<P: Pipeline> Session<P> {
    pub async fn auth(&mut self, mechanism: u64, initial: String) -> Flow {
        if self.shared.role != Role::Submission {
            return self.reply(Reply::new(
                502,
                "5.5.1",
                "AUTH is not offered on this port; use the submission port",
            ));
        }
        if self.helo.is_none() || !self.esmtp {
            return self.reply(Reply::new(503, "5.5.1", "send EHLO first"));
        }
        if self.authenticated.is_some() {
            return self.reply(Reply::new(503, "5.5.1", "already authenticated"));
        }
        if self.tx.is_some() {
            return self.reply(Reply::new(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
            ));
        }
        if !self.auth_allowed() {
            return self.reply(Reply::new(
                538,
                "5.7.11",
                "encryption required: issue STARTTLS before AUTH",
            ));
        }
        let credentials = if mechanism == AUTH_PLAIN {
            self.plain(initial).await
        } else if mechanism == AUTH_LOGIN {
            self.login(initial).await
        } else {
            return self.reply(Reply::new(
                504,
                "5.5.4",
                "unsupported mechanism; use PLAIN or LOGIN",
            ));
        };
        let (user, password) = match credentials {
            Ok(c) => c,
            Err(flow_or_reply) => return flow_or_reply,
        };
        match self.verify(&user, password).await {
            Some(address) => {
                self.authenticated = Some(address);
                self.auth_failures = 0;
                self.reply(Reply::new(235, "2.7.0", "authentication successful"))
            }
            None => self.auth_failed(),
        }
    }

    fn auth_failed(&mut self) -> Flow {
        self.auth_failures += 1;
        if self.auth_failures >= self.shared.config.max_auth_failures {
            self.shared.limits.lock_out(
                self.peer.ip(),
                self.shared.config.auth_failure_backoff.std(),
            );
            return self.reply(Reply::new(
                421,
                "4.7.0",
                "too many failed authentication attempts; closing",
            ));
        }
        self.reply(Reply::new(
            535,
            "5.7.8",
            "authentication credentials invalid",
        ))
    }

    /// Reads one client response to a 334 challenge.
    async fn answer(&mut self, challenge: &str) -> Answer {
        self.conn.send(format!("334 {challenge}\r\n").as_bytes());
        match self.next_line().await {
            None => Answer::Gone,
            Some(Line::TooLong) => Answer::Invalid,
            Some(Line::Text(t)) => {
                let t = String::from_utf8_lossy(&t).trim_end().to_string();
                if t == "*" {
                    Answer::Cancelled
                } else {
                    Answer::Text(t)
                }
            }
        }
    }

    /// Turns a base64 response into text, or the flow to return.
    async fn response(&mut self, initial: String, challenge: &str) -> Result<String, Flow> {
        let text = if initial.is_empty() {
            match self.answer(challenge).await {
                Answer::Text(t) => t,
                Answer::Gone => return Err(Flow::Close),
                Answer::Cancelled => {
                    return Err(self.reply(Reply::new(501, "5.7.0", "authentication cancelled")));
                }
                Answer::Invalid => {
                    return Err(self.reply(Reply::new(501, "5.5.2", "response line too long")));
                }
            }
        } else if initial == "=" {
            String::new()
        } else {
            initial
        };
        match decode_base64(text.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        {
            Some(s) => Ok(s),
            None => Err(self.reply(Reply::new(
                501,
                "5.5.2",
                "the response is not valid base64 UTF-8",
            ))),
        }
    }

    async fn plain(&mut self, initial: String) -> Result<(String, String), Flow> {
        let decoded = self.response(initial, "").await?;
        // authzid NUL authcid NUL password; we accept no authorization identity other than
        // the authenticated one.
        let mut parts = decoded.split('\0');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(authz), Some(user), Some(password), None)
                if authz.is_empty() || authz.eq_ignore_ascii_case(user) =>
            {
                Ok((user.to_string(), password.to_string()))
            }
            _ => Err(self.auth_failed()),
        }
    }

    async fn login(&mut self, initial: String) -> Result<(String, String), Flow> {
        let user = self.response(initial, "VXNlcm5hbWU6").await?;
        let password = self.response(String::new(), "UGFzc3dvcmQ6").await?;
        Ok((user, password))
    }

    /// The normalised address if the password is right; each outcome is audited.
    async fn verify(&self, user: &str, password: String) -> Option<String> {
        let who = crate::login::check_password(&self.shared.store, user, password).await;
        let actor = format!("smtp:{}", self.peer.ip());
        crate::login::audit(&self.shared.store, &actor, user, who.is_some(), "smtp").await;
        who
    }
}
