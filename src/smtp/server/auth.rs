//! AUTH PLAIN and LOGIN (RFC 4954) on the submission listener, with the failed-attempt
//! limit and the per-IP back-off.

use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};

use super::conn::Line;
use super::session::{Flow, Session};
use crate::address::DirectAddress;
use crate::pipeline::{Pipeline, Role};
use crate::smime::mime::decode_base64;
use crate::smtp::reply::Reply;

/// A syntactically valid argon2id hash of a random password, checked against when the user
/// does not exist so that unknown and known users take the same time.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        crate::auth::hash_password("decoy password that matches nothing").unwrap_or_default()
    })
}

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

    /// The normalised address if the password is right. The argon2 check runs off the
    /// reactor; unknown users are checked against a decoy so they take as long.
    async fn verify(&self, user: &str, password: String) -> Option<String> {
        let address = DirectAddress::parse(user).ok()?;
        let stored = match self.shared.store.address(address.as_str()).await {
            Ok(a) => a.and_then(|a| a.password_hash),
            Err(e) => {
                eprintln!("hisp: smtp auth: store lookup failed: {e}");
                None
            }
        };
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: PasswordJob = Box::new(move || {
            let ok = match stored {
                Some(hash) => crate::auth::verify_password(&password, &hash),
                None => {
                    crate::auth::verify_password(&password, decoy_hash());
                    false
                }
            };
            let _ = done.send(ok);
        });
        if password_threads().send(job).is_err() {
            eprintln!("hisp: smtp auth: no password-check thread is running");
            return None;
        }
        let ok = answer.await.unwrap_or(false);
        ok.then(|| address.as_str().to_string())
    }
}

type PasswordJob = Box<dyn FnOnce() + Send>;

/// Password checks run on a few threads of their own, one per core, not on tokio's blocking
/// pool: each argon2 check takes 19 MiB, and glibc keeps that memory in the arena of every
/// thread that ever ran one, so with the blocking pool's many threads the process grew by
/// 19 MiB per concurrent login (480 MiB with 64 clients in `hisp bench`). The checks are
/// CPU-bound, so more threads than cores would not make them faster anyway.
fn password_threads() -> &'static std::sync::mpsc::Sender<PasswordJob> {
    static JOBS: std::sync::OnceLock<std::sync::mpsc::Sender<PasswordJob>> =
        std::sync::OnceLock::new();
    JOBS.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<PasswordJob>();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..threads {
            let queue = std::sync::Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("hisp-auth-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is released before the job runs.
                        let next = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                eprintln!("hisp: cannot start a password-check thread: {e}");
            }
        }
        jobs
    })
}
