//! Header protection (SPEC A1): the whole original message travels inside a message/rfc822
//! entity; only the routing headers are copied to the outside. And the reverse on receipt,
//! plus the envelope binding of AS 1.3 (SPEC A8).

use super::mime;

/// Headers copied from the original to the outer (encrypted) message. Subject is deliberately
/// absent: it can carry PHI and stays inside the encryption.
pub const ROUTING_HEADERS: [&str; 8] = [
    "From",
    "To",
    "Cc",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
];

/// What precedes the original message in the signed entity.
pub const WRAP_HEADER: &[u8] = b"Content-Type: message/rfc822\r\n\r\n";

/// The entity that gets signed: `Content-Type: message/rfc822` around the original message,
/// in canonical CRLF form.
pub fn wrap(original: &[u8]) -> Vec<u8> {
    let original = mime::to_crlf(original);
    let mut out = Vec::with_capacity(original.len() + WRAP_HEADER.len());
    out.extend_from_slice(WRAP_HEADER);
    out.extend_from_slice(&original);
    out
}

/// The routing header fields of the original, raw and in their original order, for the
/// outer message; adds `MIME-Version: 1.0` when the original had none.
pub fn routing_headers(original: &[u8]) -> Vec<u8> {
    let header = mime::to_crlf(mime::split(original).header);
    let entity = mime::Entity {
        header: &header,
        body: &[],
    };
    let mut out = Vec::new();
    let mut has_mime_version = false;
    for (name, field) in mime::fields(entity.header) {
        if ROUTING_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            has_mime_version |= name.eq_ignore_ascii_case("MIME-Version");
            out.extend_from_slice(field);
            if !field.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if !has_mime_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    out
}

/// The message inside a signed entity: the body of a message/rfc822 entity, or the entity
/// itself when the sender didn't wrap (accepted on receipt, SPEC A1). Returns (message, wrapped).
pub fn unwrap(signed_content: &[u8]) -> (&[u8], bool) {
    let entity = mime::split(signed_content);
    if mime::content_type(entity.header).is("message/rfc822") {
        (entity.body, true)
    } else {
        (signed_content, false)
    }
}

/// The SMTP envelope a message arrived with.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the protected message has no From header")]
    NoFrom,
    #[error("envelope sender {envelope} is not the protected From/Sender ({headers})")]
    SenderMismatch { envelope: String, headers: String },
    #[error("envelope recipient {0} is not in the protected To or Cc")]
    RecipientMismatch(String),
    #[error("the protected message has Bcc recipients, which Direct does not allow")]
    Bcc,
}

fn addresses(list: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    list.map(|a| {
        a.iter()
            .filter_map(|addr| addr.address())
            .map(|s| s.trim().to_ascii_lowercase())
            .collect()
    })
    .unwrap_or_default()
}

/// SPEC A8: MAIL FROM equals the inner From (or Sender); every RCPT TO is in the inner To or
/// Cc; no Bcc.
pub fn check_envelope(message: &[u8], envelope: &Envelope) -> Result<(), EnvelopeError> {
    let header_end = mime::split(message).header.len();
    let parsed = mail_parser::MessageParser::new()
        .parse_headers(&message[..header_end])
        .ok_or(EnvelopeError::NoFrom)?;
    let mut senders = addresses(parsed.from());
    if senders.is_empty() {
        return Err(EnvelopeError::NoFrom);
    }
    senders.extend(addresses(parsed.sender()));
    let mail_from = envelope.mail_from.trim().to_ascii_lowercase();
    if !senders.contains(&mail_from) {
        return Err(EnvelopeError::SenderMismatch {
            envelope: envelope.mail_from.clone(),
            headers: senders.join(", "),
        });
    }
    if !addresses(parsed.bcc()).is_empty() || parsed.header_raw("Bcc").is_some() {
        return Err(EnvelopeError::Bcc);
    }
    let mut recipients = addresses(parsed.to());
    recipients.extend(addresses(parsed.cc()));
    for rcpt in &envelope.rcpt_to {
        if !recipients.contains(&rcpt.trim().to_ascii_lowercase()) {
            return Err(EnvelopeError::RecipientMismatch(rcpt.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Dr A <a@hisp-a.example>\nTo: b@hisp-b.example,\n c@hisp-b.example\nSubject: referral\nMessage-ID: <1@hisp-a.example>\nX-Other: 1\n\nbody\n";

    #[test]
    fn wrap_and_unwrap() {
        let w = wrap(MSG);
        assert!(w.starts_with(b"Content-Type: message/rfc822\r\n\r\nFrom: Dr A"));
        assert!(
            !w.windows(2).any(|p| p[1] == b'\n' && p[0] != b'\r'),
            "not CRLF"
        );
        let (inner, wrapped) = unwrap(&w);
        assert!(wrapped);
        assert_eq!(inner, &*mime::to_crlf(MSG));
        let (same, wrapped) = unwrap(MSG);
        assert!(!wrapped);
        assert_eq!(same, MSG);
    }

    #[test]
    fn copies_only_routing_headers() {
        let h = String::from_utf8(routing_headers(MSG)).unwrap();
        assert_eq!(
            h,
            "From: Dr A <a@hisp-a.example>\r\nTo: b@hisp-b.example,\r\n c@hisp-b.example\r\nMessage-ID: <1@hisp-a.example>\r\nMIME-Version: 1.0\r\n"
        );
        assert!(!h.contains("Subject"));
    }

    #[test]
    fn envelope_binding() {
        let env = |from: &str, to: &[&str]| Envelope {
            mail_from: from.into(),
            rcpt_to: to.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            check_envelope(MSG, &env("A@hisp-a.example", &["c@hisp-b.example"])),
            Ok(())
        );
        assert!(matches!(
            check_envelope(MSG, &env("mallory@hisp-a.example", &["b@hisp-b.example"])),
            Err(EnvelopeError::SenderMismatch { .. })
        ));
        assert_eq!(
            check_envelope(MSG, &env("a@hisp-a.example", &["z@hisp-b.example"])),
            Err(EnvelopeError::RecipientMismatch("z@hisp-b.example".into()))
        );
        let bcc = b"From: a@x.example\r\nTo: b@y.example\r\nBcc: c@y.example\r\n\r\nx";
        assert_eq!(
            check_envelope(bcc, &env("a@x.example", &["b@y.example"])),
            Err(EnvelopeError::Bcc)
        );
        let sender = b"From: boss@x.example\r\nSender: a@x.example\r\nTo: b@y.example\r\n\r\nx";
        assert_eq!(
            check_envelope(sender, &env("a@x.example", &["b@y.example"])),
            Ok(())
        );
        assert_eq!(
            check_envelope(b"To: b@y.example\r\n\r\n", &env("a@x.example", &[])),
            Err(EnvelopeError::NoFrom)
        );
    }
}
