//! One SMTP session: the command loop, the state every phase shares, and the commands that
//! belong to no phase (RSET, NOOP, QUIT, HELP, VRFY, ...). The phases live in their own
//! files: greeting (EHLO/HELO/STARTTLS), auth, mail, rcpt, data.

use std::net::SocketAddr;
use std::sync::Arc;

use smtp_proto::{Error as ParseError, Request};

use super::Shared;
use super::conn::{Conn, Line, ReadError};
use crate::pipeline::{Pipeline, Recipient};
use crate::smtp::reply::Reply;

/// Whether the session goes on after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

/// The mail transaction between MAIL and the end of DATA.
#[derive(Debug, Default)]
pub struct Transaction {
    pub from: String,
    pub envid: Option<String>,
    pub ret: Option<String>,
    pub recipients: Vec<Recipient>,
}

pub struct Session<P: Pipeline> {
    pub shared: Arc<Shared<P>>,
    pub conn: Conn,
    pub peer: SocketAddr,
    /// The name given in EHLO/HELO; None until then (and again after STARTTLS).
    pub helo: Option<String>,
    pub esmtp: bool,
    pub authenticated: Option<String>,
    pub auth_failures: u32,
    pub tx: Option<Transaction>,
    commands: u32,
}

impl<P: Pipeline> Session<P> {
    pub fn new(shared: Arc<Shared<P>>, conn: Conn, peer: SocketAddr) -> Session<P> {
        Session {
            shared,
            conn,
            peer,
            helo: None,
            esmtp: false,
            authenticated: None,
            auth_failures: 0,
            tx: None,
            commands: 0,
        }
    }

    /// Queues a reply; a 421 or 221 ends the session.
    pub fn reply(&mut self, r: Reply) -> Flow {
        self.conn.send(&r.to_bytes());
        if r.closes() {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    pub fn hostname(&self) -> &str {
        &self.shared.hostname
    }

    /// Waits for the next line, answering a timeout with 421 (RFC 5321 4.5.3.2): the line must
    /// be complete within `command_timeout` of the wait starting.
    pub async fn next_line(&mut self) -> Option<Line> {
        let limit = self.shared.config.max_line_length.bytes() as usize;
        // A deadline for the whole line, not for each read: a client trickling one byte every
        // few seconds (slowloris) must not hold its connection longer than one timeout.
        let deadline = tokio::time::Instant::now() + self.shared.config.command_timeout.std();
        loop {
            if let Some(line) = self.conn.take_line(limit) {
                return Some(line);
            }
            let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut stop = self.shared.shutdown.clone();
            let filled = tokio::select! {
                r = self.conn.fill(timeout) => r,
                _ = stop.wait_for(|stopping| *stopping) => {
                    let text = format!("{} shutting down; try again later", self.hostname());
                    self.reply(Reply::new(421, "4.3.2", text));
                    return None;
                }
            };
            match filled {
                Ok(()) => {}
                Err(ReadError::Closed) => return None,
                Err(ReadError::TimedOut) => {
                    let text =
                        format!("{} timeout waiting for a command; closing", self.hostname());
                    self.reply(Reply::new(421, "4.4.2", text));
                    return None;
                }
            }
        }
    }

    pub async fn run(mut self) {
        let greeting = Reply::new(220, "", format!("{} ESMTP hisp ready", self.hostname()));
        self.reply(greeting);
        while let Some(line) = self.next_line().await {
            self.commands += 1;
            let flow = if self.commands > self.shared.config.max_commands {
                self.reply(Reply::new(
                    421,
                    "4.7.0",
                    "too many commands in one session; closing",
                ))
            } else {
                match line {
                    Line::TooLong => self.reply(Reply::new(500, "5.5.2", "line too long")),
                    Line::Text(text) => self.command(&text).await,
                }
            };
            if flow == Flow::Close {
                break;
            }
        }
        self.conn.shutdown().await;
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => return self.reply(parse_error_reply(&e)),
        };
        match request {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::StartTls => self.starttls().await,
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => self.data().await,
            Request::Rset => {
                self.tx = None;
                self.reply(Reply::new(250, "2.0.0", "reset"))
            }
            Request::Noop { .. } => self.reply(Reply::new(250, "2.0.0", "OK")),
            Request::Quit => {
                let text = format!("{} closing connection", self.hostname());
                self.reply(Reply::new(221, "2.0.0", text))
            }
            Request::Help { .. } => self.reply(Reply::new(
                214,
                "2.0.0",
                "commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP QUIT",
            )),
            // RFC 5321 3.5.3: 252 when we will not verify but would accept.
            Request::Vrfy { .. } => self.reply(Reply::new(
                252,
                "2.5.0",
                "cannot verify the user, but will accept the message and attempt delivery",
            )),
            Request::Lhlo { .. }
            | Request::Bdat { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.reply(Reply::new(
                502,
                "5.5.1",
                "command not implemented on this server",
            )),
        }
    }
}

/// The reply to a line the parser refused.
pub fn parse_error_reply(e: &ParseError) -> Reply {
    match e {
        ParseError::UnknownCommand => Reply::new(500, "5.5.1", "command unrecognized"),
        ParseError::InvalidSenderAddress => {
            Reply::new(501, "5.1.7", "the sender address is not valid")
        }
        ParseError::InvalidRecipientAddress => {
            Reply::new(501, "5.1.3", "the recipient address is not valid")
        }
        ParseError::SyntaxError { syntax } => {
            Reply::new(501, "5.5.2", format!("syntax error, expected: {syntax}"))
        }
        ParseError::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("invalid value for parameter {param}"))
        }
        ParseError::UnsupportedParameter { param } => {
            Reply::new(555, "5.5.4", format!("parameter {param} is not supported"))
        }
        ParseError::ResponseTooLong => Reply::new(500, "5.5.2", "line too long"),
        ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => {
            Reply::new(500, "5.5.2", "syntax error")
        }
    }
}
