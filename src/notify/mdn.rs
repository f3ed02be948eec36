//! Message Disposition Notifications for Direct (SPEC E27-E29, RFC 8098, the Direct
//! Implementation Guide for Delivery Notification): building the `processed`, `dispatched`
//! and `failed` MDNs a receiving HISP sends, reading the ones partners send us, and the two
//! questions every inbound message raises — did the sender ask for final-delivery
//! notification, and is this itself a notification (which must never be answered)?
//!
//! Pure: bytes in, bytes or typed values out. Signing and encrypting the MDN is the outbound
//! pipeline's job, like for any Direct message.

use crate::smime::mime::{self, content_type, header_value, split};

/// The Disposition-Notification-Options value by which a sender asks for `dispatched`.
pub const FINAL_DELIVERY_OPTION: &str = "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true";
/// The extension field a `dispatched` MDN carries when (and only when) it was asked for.
pub const FINAL_DELIVERY_FIELD: &str = "X-DIRECT-FINAL-DESTINATION-DELIVERY";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MdnError {
    #[error(
        "not an MDN: Content-Type is {0}, not multipart/report; report-type=disposition-notification"
    )]
    NotAnMdn(String),
    #[error("MDN is malformed: {0}")]
    Malformed(String),
    #[error("MDN lacks the {0} field")]
    Missing(&'static str),
}

/// What happened to the message at the recipient's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Received, decrypted, trusted (E27).
    Processed,
    /// In the recipient's mailbox (E28).
    Dispatched,
    /// Processed but not deliverable (E29); the text goes in the Failure field.
    Failed(String),
    /// Refused by the recipient.
    Denied,
    /// Seen by a human (sent by mail clients, not by HISPs).
    Displayed,
    /// Anything else, verbatim.
    Other(String),
}

impl Disposition {
    pub fn type_name(&self) -> &str {
        match self {
            Disposition::Processed => "processed",
            Disposition::Dispatched => "dispatched",
            Disposition::Failed(_) => "failed",
            Disposition::Denied => "denied",
            Disposition::Displayed => "displayed",
            Disposition::Other(s) => s,
        }
    }

    fn subject_word(&self) -> &'static str {
        match self {
            Disposition::Processed => "Processed",
            Disposition::Dispatched => "Dispatched",
            Disposition::Failed(_) => "Failed",
            Disposition::Denied => "Denied",
            Disposition::Displayed => "Displayed",
            Disposition::Other(_) => "Disposition",
        }
    }
}

/// Everything an outgoing MDN says.
#[derive(Debug, Clone)]
pub struct MdnSpec<'a> {
    /// Our host name, for Reporting-UA and the Message-ID.
    pub reporting_host: &'a str,
    /// The recipient of the original message, who now reports on it (the MDN's From).
    pub final_recipient: &'a str,
    /// The original sender (the MDN's To).
    pub original_sender: &'a str,
    pub original_message_id: &'a str,
    pub original_subject: Option<&'a str>,
    pub disposition: Disposition,
    /// Whether the original asked for final-delivery notification (E28).
    pub final_delivery_requested: bool,
    /// `<unique@host>` for the MDN itself.
    pub message_id: &'a str,
    /// Unix seconds.
    pub date: i64,
}

/// Builds the MDN as an RFC 5322 message with CRLF line ends: a human-readable part and the
/// machine-readable message/disposition-notification part. No Disposition-Notification-To:
/// an MDN is never itself answered (E27).
pub fn build(spec: &MdnSpec<'_>) -> Vec<u8> {
    // Derived from the MDN's own Message-ID: unique per MDN, and the bytes stay reproducible.
    let boundary = format!(
        "mdn-{}",
        &crate::certinfo::sha256_hex(spec.message_id.as_bytes())[..24]
    );
    let subject = match spec.original_subject {
        Some(s) if !s.is_empty() => format!("{}: {}", spec.disposition.subject_word(), one_line(s)),
        _ => spec.disposition.subject_word().to_string(),
    };
    let human = match &spec.disposition {
        Disposition::Processed => format!(
            "The message {} to {} was received, decrypted and its sender verified.",
            spec.original_message_id, spec.final_recipient
        ),
        Disposition::Dispatched => format!(
            "The message {} was delivered to the mailbox of {}.",
            spec.original_message_id, spec.final_recipient
        ),
        Disposition::Failed(why) => format!(
            "The message {} could not be delivered to {}: {}",
            spec.original_message_id,
            spec.final_recipient,
            one_line(why)
        ),
        other => format!(
            "The message {} to {}: {}.",
            spec.original_message_id,
            spec.final_recipient,
            other.type_name()
        ),
    };
    let mut report = vec![
        format!(
            "Reporting-UA: {}; hisp {}",
            spec.reporting_host,
            env!("CARGO_PKG_VERSION")
        ),
        format!("Original-Recipient: rfc822;{}", spec.final_recipient),
        format!("Final-Recipient: rfc822;{}", spec.final_recipient),
        format!("Original-Message-ID: {}", spec.original_message_id),
        format!(
            "Disposition: automatic-action/MDN-sent-automatically; {}",
            spec.disposition.type_name()
        ),
    ];
    if let Disposition::Failed(why) = &spec.disposition {
        report.push(format!("Failure: {}", one_line(why)));
    }
    if spec.disposition == Disposition::Dispatched && spec.final_delivery_requested {
        report.push(format!("{FINAL_DELIVERY_FIELD}:"));
    }
    let mut out = String::new();
    for (name, value) in [
        ("From", spec.final_recipient.to_string()),
        ("To", spec.original_sender.to_string()),
        ("Date", crate::clock::rfc5322_date(spec.date)),
        ("Message-ID", spec.message_id.to_string()),
        ("Subject", subject),
        ("MIME-Version", "1.0".to_string()),
        (
            "Content-Type",
            format!(
                "multipart/report; report-type=disposition-notification;\r\n boundary=\"{boundary}\""
            ),
        ),
    ] {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{human}\r\n"
    ));
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: message/disposition-notification\r\n\r\n"
    ));
    for line in report {
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("\r\n--{boundary}--\r\n"));
    out.into_bytes()
}

/// Header values must not smuggle line breaks into the MDN.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An MDN we received, reduced to what tracking needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMdn {
    pub original_message_id: String,
    /// The address, without the `rfc822;` type.
    pub final_recipient: String,
    pub disposition: Disposition,
    /// `automatic-action/MDN-sent-automatically` etc.
    pub action_mode: String,
    pub final_delivery_field: bool,
    pub reporting_ua: Option<String>,
}

/// Reads an MDN (the decrypted, unwrapped inner message).
pub fn parse(message: &[u8]) -> Result<ParsedMdn, MdnError> {
    let parts = super::report_parts(message, "disposition-notification").map_err(|e| match e {
        None => MdnError::NotAnMdn(super::mime_type(message)),
        Some(why) => MdnError::Malformed(why),
    })?;
    let report = parts
        .iter()
        .map(|p| split(p))
        .find(|e| content_type(e.header).is("message/disposition-notification"))
        .ok_or_else(|| MdnError::Malformed("no message/disposition-notification part".into()))?;
    // The report body is itself a block of header-style fields; a trailing blank line and
    // anything after it are ignored.
    let fields = mime::split(report.body).header;
    let fields = if fields.is_empty() {
        report.body
    } else {
        fields
    };
    let get = |name: &str| header_value(fields, name);
    let original_message_id =
        get("Original-Message-ID").ok_or(MdnError::Missing("Original-Message-ID"))?;
    let final_recipient = get("Final-Recipient").ok_or(MdnError::Missing("Final-Recipient"))?;
    let final_recipient = match final_recipient.split_once(';') {
        Some((_, addr)) => addr.trim().to_string(),
        None => final_recipient,
    };
    let disposition = get("Disposition").ok_or(MdnError::Missing("Disposition"))?;
    let (mode, kind) = disposition
        .split_once(';')
        .ok_or_else(|| MdnError::Malformed(format!("Disposition {disposition:?} has no type")))?;
    // `type/modifier,...`: the type is what matters; RFC 3798's "processed/error" style
    // modifiers are kept out of it.
    let kind = kind.trim();
    let type_name = kind
        .split(['/', ' '])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let disposition = match type_name.as_str() {
        "processed" => Disposition::Processed,
        "dispatched" => Disposition::Dispatched,
        "failed" => {
            Disposition::Failed(get("Failure").or_else(|| get("Error")).unwrap_or_default())
        }
        "denied" => Disposition::Denied,
        "displayed" => Disposition::Displayed,
        "" => return Err(MdnError::Malformed("empty disposition type".into())),
        other => Disposition::Other(other.to_string()),
    };
    Ok(ParsedMdn {
        original_message_id,
        final_recipient: final_recipient.to_ascii_lowercase(),
        disposition,
        action_mode: mode.trim().to_string(),
        final_delivery_field: mime::fields(fields)
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(FINAL_DELIVERY_FIELD)),
        reporting_ua: get("Reporting-UA"),
    })
}

/// Did the sender ask for a `dispatched` MDN (E28)? Reads Disposition-Notification-Options
/// of the inner message's header.
pub fn final_delivery_requested(header: &[u8]) -> bool {
    mime::fields(header)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Disposition-Notification-Options"))
        .filter_map(|(_, f)| {
            let f = String::from_utf8_lossy(f);
            f.split_once(':').map(|(_, v)| v.to_string())
        })
        .any(|value| {
            value.split(';').any(|param| {
                let param: String = param.chars().filter(|c| !c.is_whitespace()).collect();
                param
                    .to_ascii_uppercase()
                    .starts_with("X-DIRECT-FINAL-DESTINATION-DELIVERY=")
                    && param.to_ascii_lowercase().ends_with(",true")
            })
        })
}

/// What kind of notification a message is, if any. MDNs and DSNs must never be answered with
/// an MDN (E27).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    Mdn,
    Dsn,
}

pub fn notification_kind(header: &[u8]) -> Option<NotificationKind> {
    let ct = content_type(header);
    if !ct.is("multipart/report") {
        return None;
    }
    match ct
        .param("report-type")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("disposition-notification") => Some(NotificationKind::Mdn),
        Some("delivery-status") => Some(NotificationKind::Dsn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(disposition: Disposition, requested: bool) -> MdnSpec<'static> {
        MdnSpec {
            reporting_host: "hisp-b.example",
            final_recipient: "dr.jones@hisp-b.example",
            original_sender: "dr.smith@hisp-a.example",
            original_message_id: "<ref-1@hisp-a.example>",
            original_subject: Some("Referral\r\nBcc: evil@x"),
            disposition,
            final_delivery_requested: requested,
            message_id: "<mdn-1@hisp-b.example>",
            date: 1_796_080_238,
        }
    }

    #[test]
    fn processed_mdn_bytes() {
        let text = String::from_utf8(build(&spec(Disposition::Processed, true))).unwrap();
        let boundary = text
            .split("boundary=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();
        let expected = format!(
            "From: dr.jones@hisp-b.example\r\n\
To: dr.smith@hisp-a.example\r\n\
Date: Mon, 30 Nov 2026 23:10:38 +0000\r\n\
Message-ID: <mdn-1@hisp-b.example>\r\n\
Subject: Processed: Referral Bcc: evil@x\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=disposition-notification;\r\n boundary=\"{boundary}\"\r\n\
\r\n\
--{boundary}\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
The message <ref-1@hisp-a.example> to dr.jones@hisp-b.example was received, decrypted and its sender verified.\r\n\
--{boundary}\r\n\
Content-Type: message/disposition-notification\r\n\
\r\n\
Reporting-UA: hisp-b.example; hisp {v}\r\n\
Original-Recipient: rfc822;dr.jones@hisp-b.example\r\n\
Final-Recipient: rfc822;dr.jones@hisp-b.example\r\n\
Original-Message-ID: <ref-1@hisp-a.example>\r\n\
Disposition: automatic-action/MDN-sent-automatically; processed\r\n\
\r\n\
--{boundary}--\r\n",
            v = env!("CARGO_PKG_VERSION")
        );
        assert_eq!(text, expected);
        assert!(!text.contains("Disposition-Notification-To"));
        assert!(
            !text.contains(FINAL_DELIVERY_FIELD),
            "only dispatched carries it"
        );
    }

    #[test]
    fn dispatched_carries_the_extension_only_when_requested() {
        let asked = build(&spec(Disposition::Dispatched, true));
        let not_asked = build(&spec(Disposition::Dispatched, false));
        let p = parse(&asked).unwrap();
        assert_eq!(p.disposition, Disposition::Dispatched);
        assert!(p.final_delivery_field);
        let p = parse(&not_asked).unwrap();
        assert!(!p.final_delivery_field);
    }

    #[test]
    fn round_trips_every_disposition() {
        for d in [
            Disposition::Processed,
            Disposition::Dispatched,
            Disposition::Failed("mailbox full".into()),
            Disposition::Denied,
        ] {
            let p = parse(&build(&spec(d.clone(), true))).unwrap();
            assert_eq!(p.disposition, d);
            assert_eq!(p.original_message_id, "<ref-1@hisp-a.example>");
            assert_eq!(p.final_recipient, "dr.jones@hisp-b.example");
            assert_eq!(p.action_mode, "automatic-action/MDN-sent-automatically");
        }
    }

    #[test]
    fn parses_other_implementations_and_refuses_garbage() {
        // LF line ends, folded fields, RFC 3798 modifiers, no human part.
        let foreign = b"Content-Type: multipart/report; report-type=\"disposition-notification\"; boundary=x\n\n--x\nContent-Type: message/disposition-notification\n\nFinal-Recipient: rfc822; Bob@B.example\nOriginal-Message-ID:\n <a@b>\nDisposition: automatic-action/MDN-sent-automatically;\n processed/error\n\n--x--\n";
        let p = parse(foreign).unwrap();
        assert_eq!(p.final_recipient, "bob@b.example");
        assert_eq!(p.original_message_id, "<a@b>");
        assert_eq!(p.disposition, Disposition::Processed);
        assert!(matches!(
            parse(b"Subject: hi\n\nbody"),
            Err(MdnError::NotAnMdn(_))
        ));
        let no_fields = b"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\n\n--x\nContent-Type: message/disposition-notification\n\nReporting-UA: a\n\n--x--\n";
        assert_eq!(
            parse(no_fields),
            Err(MdnError::Missing("Original-Message-ID"))
        );
        let no_part = b"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\n\n--x\nContent-Type: text/plain\n\nhi\n--x--\n";
        assert!(matches!(parse(no_part), Err(MdnError::Malformed(_))));
        assert!(parse(b"").is_err());
    }

    #[test]
    fn final_delivery_request_and_notification_kinds() {
        assert!(final_delivery_requested(
            b"To: b@x\r\nDisposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n"
        ));
        assert!(final_delivery_requested(
            b"Disposition-Notification-Options: x-direct-final-destination-delivery=optional, true\n"
        ));
        assert!(!final_delivery_requested(
            b"Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,false\n"
        ));
        assert!(!final_delivery_requested(b"To: b@x\n"));
        assert_eq!(
            notification_kind(
                b"Content-Type: multipart/report; report-type=delivery-status; boundary=a\n"
            ),
            Some(NotificationKind::Dsn)
        );
        assert_eq!(
            notification_kind(b"Content-Type: multipart/report; report-type=Disposition-Notification; boundary=a\n"),
            Some(NotificationKind::Mdn)
        );
        assert_eq!(
            notification_kind(b"Content-Type: multipart/mixed; boundary=a\n"),
            None
        );
    }
}
