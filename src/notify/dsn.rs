//! Delivery status notifications (RFC 3464): a `multipart/report` with
//! `report-type=delivery-status`, built from plain values so the bytes are reproducible.
//! Pure: no clock, no randomness; the caller passes times, ids and the boundary.

use crate::clock::rfc5322_date;

/// One recipient the report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    pub final_recipient: String,
    /// ORCPT as received, `addr-type;address` (e.g. `rfc822;a@b.example`).
    pub original_recipient: Option<String>,
    /// Enhanced status code, e.g. `5.1.1` or `4.4.7`.
    pub status: String,
    /// The host that gave the answer, if one did.
    pub remote_mta: Option<String>,
    /// The reply or local reason, one line.
    pub diagnostic: String,
    pub last_attempt: i64,
}

/// What to report on, and how to address the report.
#[derive(Debug, Clone)]
pub struct Dsn<'a> {
    /// Our host name (Reporting-MTA, From domain).
    pub reporting_mta: &'a str,
    /// The original envelope sender, who gets the report.
    pub to: &'a str,
    pub message_id: &'a str,
    pub boundary: &'a str,
    pub date: i64,
    pub envid: Option<&'a str>,
    pub arrival_date: i64,
    pub recipients: &'a [DsnRecipient],
    pub original: &'a [u8],
    /// RET=FULL returns the whole message; anything else only its header.
    pub return_full: bool,
}

/// Keeps a value on one header line of printable ASCII, whatever a remote server sent.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The header section of a message (up to the first empty line), with CRLF line ends.
fn header_section(message: &[u8]) -> &[u8] {
    let end = memchr::memmem::find(message, b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| memchr::memmem::find(message, b"\n\n").map(|i| i + 1))
        .unwrap_or(message.len());
    &message[..end]
}

pub fn build(d: &Dsn<'_>) -> Vec<u8> {
    let b = d.boundary;
    let date = rfc5322_date(d.date);
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push_str("\r\n");
    };
    line(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{}>",
        d.reporting_mta
    ));
    line(&format!("To: <{}>", one_line(d.to)));
    line("Subject: Delivery Status Notification (Failure)");
    line(&format!("Date: {date}"));
    line(&format!("Message-ID: <{}>", d.message_id));
    line("Auto-Submitted: auto-replied");
    line("MIME-Version: 1.0");
    line(&format!(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"{b}\""
    ));
    line("");
    line("This is a MIME-encapsulated delivery status notification.");
    line("");
    line(&format!("--{b}"));
    line("Content-Type: text/plain; charset=us-ascii");
    line("");
    line("Your message could not be delivered to the following recipient(s):");
    line("");
    for r in d.recipients {
        line(&format!(
            "  <{}>: {}",
            one_line(&r.final_recipient),
            one_line(&r.diagnostic)
        ));
    }
    line("");
    line(&format!("--{b}"));
    line("Content-Type: message/delivery-status");
    line("");
    line(&format!("Reporting-MTA: dns; {}", d.reporting_mta));
    if let Some(envid) = d.envid {
        line(&format!("Original-Envelope-Id: {}", one_line(envid)));
    }
    line(&format!("Arrival-Date: {}", rfc5322_date(d.arrival_date)));
    for r in d.recipients {
        line("");
        line(&format!(
            "Final-Recipient: rfc822; {}",
            one_line(&r.final_recipient)
        ));
        if let Some(o) = &r.original_recipient {
            line(&format!("Original-Recipient: {}", one_line(o)));
        }
        line("Action: failed");
        line(&format!("Status: {}", one_line(&r.status)));
        if let Some(mta) = &r.remote_mta {
            line(&format!("Remote-MTA: dns; {}", one_line(mta)));
        }
        line(&format!(
            "Diagnostic-Code: smtp; {}",
            one_line(&r.diagnostic)
        ));
        line(&format!(
            "Last-Attempt-Date: {}",
            rfc5322_date(r.last_attempt)
        ));
    }
    line("");
    line(&format!("--{b}"));
    let mut bytes = out.into_bytes();
    if d.return_full {
        bytes.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        bytes.extend_from_slice(d.original);
    } else {
        bytes.extend_from_slice(b"Content-Type: text/rfc822-headers\r\n\r\n");
        bytes.extend_from_slice(header_section(d.original));
    }
    if !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    bytes
}

/// One recipient block of a received DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnReport {
    /// The address, without its `rfc822;` type.
    pub final_recipient: String,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: String,
    pub status: String,
    pub diagnostic: Option<String>,
}

/// A received DSN, reduced to what tracking needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDsn {
    /// The Message-ID of the message it reports on, from the returned message or headers.
    pub original_message_id: Option<String>,
    pub envid: Option<String>,
    pub recipients: Vec<DsnReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("not a DSN: Content-Type is {0}, not multipart/report; report-type=delivery-status")]
    NotADsn(String),
    #[error("DSN is malformed: {0}")]
    Malformed(String),
}

/// Reads a DSN (RFC 3464): its per-recipient fields and the returned message's Message-ID.
pub fn parse(message: &[u8]) -> Result<ParsedDsn, DsnError> {
    use crate::smime::mime::{content_type, header_value, split};
    let parts = super::report_parts(message, "delivery-status").map_err(|e| match e {
        None => DsnError::NotADsn(super::mime_type(message)),
        Some(why) => DsnError::Malformed(why),
    })?;
    let mut parsed = ParsedDsn {
        original_message_id: None,
        envid: None,
        recipients: Vec::new(),
    };
    let mut seen_status = false;
    for part in parts {
        let e = split(part);
        let ct = content_type(e.header);
        if ct.is("message/delivery-status") {
            seen_status = true;
            // Blocks of fields separated by blank lines: the first is per message, the rest
            // one per recipient.
            let text = String::from_utf8_lossy(e.body).replace("\r\n", "\n");
            for (n, block) in text
                .split("\n\n")
                .filter(|b| !b.trim().is_empty())
                .enumerate()
            {
                let block = format!("{block}\n");
                let get = |name: &str| header_value(block.as_bytes(), name);
                if n == 0 {
                    parsed.envid = get("Original-Envelope-Id");
                    if get("Final-Recipient").is_none() {
                        continue;
                    }
                }
                let Some(rcpt) = get("Final-Recipient") else {
                    continue;
                };
                let address = rcpt
                    .split_once(';')
                    .map(|(_, a)| a)
                    .unwrap_or(&rcpt)
                    .trim()
                    .trim_matches(['<', '>'])
                    .to_ascii_lowercase();
                parsed.recipients.push(DsnReport {
                    final_recipient: address,
                    action: get("Action").unwrap_or_default().to_ascii_lowercase(),
                    status: get("Status").unwrap_or_default(),
                    diagnostic: get("Diagnostic-Code"),
                });
            }
        } else if ct.is("message/rfc822") || ct.is("text/rfc822-headers") {
            let inner = split(e.body);
            let header = if inner.header.is_empty() {
                e.body
            } else {
                inner.header
            };
            parsed.original_message_id = header_value(header, "Message-ID");
        }
    }
    if !seen_status {
        return Err(DsnError::Malformed(
            "no message/delivery-status part".into(),
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_what_it_builds_and_refuses_other_reports() {
        let rcpts = [
            DsnRecipient {
                final_recipient: "Ghost@hisp-b.example".into(),
                original_recipient: None,
                status: "5.1.1".into(),
                remote_mta: Some("mx.hisp-b.example".into()),
                diagnostic: "550 5.1.1 no such user".into(),
                last_attempt: 0,
            },
            DsnRecipient {
                final_recipient: "other@hisp-b.example".into(),
                original_recipient: None,
                status: "4.4.7".into(),
                remote_mta: None,
                diagnostic: "gave up".into(),
                last_attempt: 0,
            },
        ];
        let raw = build(&Dsn {
            reporting_mta: "hisp-a.example",
            to: "alice@hisp-a.example",
            message_id: "dsn1@hisp-a.example",
            boundary: "b",
            date: 0,
            envid: Some("env-1"),
            arrival_date: 0,
            recipients: &rcpts,
            original: b"Message-ID: <orig@hisp-a.example>\r\nSubject: x\r\n\r\nbody",
            return_full: false,
        });
        let p = parse(&raw).unwrap();
        assert_eq!(
            p.original_message_id.as_deref(),
            Some("<orig@hisp-a.example>")
        );
        assert_eq!(p.envid.as_deref(), Some("env-1"));
        assert_eq!(p.recipients.len(), 2);
        assert_eq!(p.recipients[0].final_recipient, "ghost@hisp-b.example");
        assert_eq!(p.recipients[0].action, "failed");
        assert_eq!(p.recipients[0].status, "5.1.1");
        assert!(
            p.recipients[0]
                .diagnostic
                .as_deref()
                .unwrap()
                .contains("no such user")
        );
        assert!(matches!(parse(b"Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b--\r\n"), Err(DsnError::NotADsn(_))));
        assert!(matches!(parse(b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"), Err(DsnError::Malformed(_))));
        assert!(parse(b"").is_err());
    }

    use super::*;

    fn sample(return_full: bool) -> Vec<u8> {
        let rcpts = [
            DsnRecipient {
                final_recipient: "bob@hisp-b.example".into(),
                original_recipient: Some("rfc822;bob@hisp-b.example".into()),
                status: "5.1.1".into(),
                remote_mta: Some("mx.hisp-b.example".into()),
                diagnostic: "550 5.1.1 no such\r\nuser".into(),
                last_attempt: 1_796_083_509,
            },
            DsnRecipient {
                final_recipient: "carol@hisp-c.example".into(),
                original_recipient: None,
                status: "4.4.7".into(),
                remote_mta: None,
                diagnostic: "gave up after 3d: 451 4.3.0 busy".into(),
                last_attempt: 1_796_083_510,
            },
        ];
        build(&Dsn {
            reporting_mta: "hisp-a.example",
            to: "alice@hisp-a.example",
            message_id: "dsn.1@hisp-a.example",
            boundary: "b1",
            date: 1_796_083_511,
            envid: Some("ENV1"),
            arrival_date: 1_796_083_000,
            recipients: &rcpts,
            original: b"Subject: hi\r\nFrom: alice@hisp-a.example\r\n\r\nsecret body\r\n",
            return_full,
        })
    }

    #[test]
    fn headers_only_report_byte_for_byte() {
        let expected = "From: Mail Delivery System <MAILER-DAEMON@hisp-a.example>\r\n\
To: <alice@hisp-a.example>\r\n\
Subject: Delivery Status Notification (Failure)\r\n\
Date: Tue, 01 Dec 2026 00:05:11 +0000\r\n\
Message-ID: <dsn.1@hisp-a.example>\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\
\r\n\
This is a MIME-encapsulated delivery status notification.\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Your message could not be delivered to the following recipient(s):\r\n\
\r\n\
\x20 <bob@hisp-b.example>: 550 5.1.1 no such  user\r\n\
\x20 <carol@hisp-c.example>: gave up after 3d: 451 4.3.0 busy\r\n\
\r\n\
--b1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; hisp-a.example\r\n\
Original-Envelope-Id: ENV1\r\n\
Arrival-Date: Mon, 30 Nov 2026 23:56:40 +0000\r\n\
\r\n\
Final-Recipient: rfc822; bob@hisp-b.example\r\n\
Original-Recipient: rfc822;bob@hisp-b.example\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mx.hisp-b.example\r\n\
Diagnostic-Code: smtp; 550 5.1.1 no such  user\r\n\
Last-Attempt-Date: Tue, 01 Dec 2026 00:05:09 +0000\r\n\
\r\n\
Final-Recipient: rfc822; carol@hisp-c.example\r\n\
Action: failed\r\n\
Status: 4.4.7\r\n\
Diagnostic-Code: smtp; gave up after 3d: 451 4.3.0 busy\r\n\
Last-Attempt-Date: Tue, 01 Dec 2026 00:05:10 +0000\r\n\
\r\n\
--b1\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
Subject: hi\r\n\
From: alice@hisp-a.example\r\n\
--b1--\r\n";
        assert_eq!(String::from_utf8(sample(false)).unwrap(), expected);
    }

    #[test]
    fn full_return_carries_the_body() {
        let text = String::from_utf8(sample(true)).unwrap();
        assert!(text.ends_with(
            "--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: hi\r\nFrom: alice@hisp-a.example\r\n\r\nsecret body\r\n--b1--\r\n"
        ));
        assert!(
            !String::from_utf8(sample(false))
                .unwrap()
                .contains("secret body")
        );
    }

    #[test]
    fn header_section_without_body() {
        assert_eq!(header_section(b"A: b\r\n"), b"A: b\r\n");
        assert_eq!(header_section(b"A: b\n\nbody"), b"A: b\n");
    }
}
