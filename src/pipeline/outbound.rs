//! The pure first half of the outbound pipeline: what a submitted message must look like
//! before it is signed and encrypted (SPEC A8-A9, E28). Missing Message-ID, Date and
//! MIME-Version are added; the request for processed and dispatched MDNs is added unless the
//! sender made their own; and the envelope is checked now, as the receiving HISP will check it,
//! so a message that would be refused there is refused here with a clear reason instead.

use crate::address::DirectAddress;
use crate::notify::mdn::FINAL_DELIVERY_OPTION;
use crate::smime::mime::{self, header_value};
use crate::smime::{Envelope, EnvelopeError, check_envelope};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("the message has no header")]
    NoHeader,
    #[error(
        "{0}; Direct receivers refuse such messages (put every recipient in To or Cc, send as yourself)"
    )]
    Envelope(#[from] EnvelopeError),
}

impl OutboundError {
    /// The SMTP reply to DATA on the submission listener.
    pub fn reply(&self) -> (u16, &'static str) {
        (550, "5.7.1")
    }
}

/// A submitted message ready to be secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// CRLF line ends, with the added header fields first.
    pub message: Vec<u8>,
    pub message_id: String,
}

/// A fresh `<random@host>` Message-ID.
pub fn new_message_id(hostname: &str) -> String {
    let mut raw = [0u8; 16];
    openssl::rand::rand_bytes(&mut raw).expect("OpenSSL RNG failure");
    format!("<{}@{hostname}>", crate::certinfo::hex(&raw))
}

/// Completes and checks `message` submitted by `sender` for `recipients`.
pub fn prepare(
    message: &[u8],
    sender: &DirectAddress,
    recipients: &[DirectAddress],
    hostname: &str,
    now: i64,
) -> Result<Prepared, OutboundError> {
    let message = mime::to_crlf(message);
    let header = mime::split(&message).header;
    if header.is_empty() {
        return Err(OutboundError::NoHeader);
    }
    let mut added = String::new();
    let message_id = match header_value(header, "Message-ID") {
        Some(id) if !id.is_empty() => id,
        _ => {
            let id = new_message_id(hostname);
            added.push_str(&format!("Message-ID: {id}\r\n"));
            id
        }
    };
    if header_value(header, "Date").is_none() {
        added.push_str(&format!("Date: {}\r\n", crate::clock::rfc5322_date(now)));
    }
    if header_value(header, "From").is_none() {
        added.push_str(&format!("From: {sender}\r\n"));
    }
    if header_value(header, "MIME-Version").is_none() {
        added.push_str("MIME-Version: 1.0\r\n");
    }
    // A sender who chose their own notification options keeps them (INTERFACE.md).
    if header_value(header, "Disposition-Notification-Options").is_none() {
        added.push_str(&format!(
            "Disposition-Notification-Options: {FINAL_DELIVERY_OPTION}\r\n"
        ));
    }
    if header_value(header, "Disposition-Notification-To").is_none() {
        added.push_str(&format!("Disposition-Notification-To: {sender}\r\n"));
    }
    let mut out = Vec::with_capacity(added.len() + message.len());
    out.extend_from_slice(added.as_bytes());
    out.extend_from_slice(&message);
    let envelope = Envelope {
        mail_from: sender.to_string(),
        rcpt_to: recipients.iter().map(|r| r.to_string()).collect(),
    };
    check_envelope(&out, &envelope)?;
    Ok(Prepared {
        message: out,
        message_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> DirectAddress {
        DirectAddress::parse(s).unwrap()
    }

    #[test]
    fn completes_a_bare_message() {
        let msg = b"From: dr.smith@hisp-a.example\nTo: dr.jones@hisp-b.example\nSubject: Referral\n\nHello\n";
        let p = prepare(
            msg,
            &a("dr.smith@hisp-a.example"),
            &[a("dr.jones@hisp-b.example")],
            "hisp-a.example",
            1_796_080_238,
        )
        .unwrap();
        assert!(p.message_id.starts_with('<') && p.message_id.ends_with("@hisp-a.example>"));
        let expected = format!(
            "Message-ID: {}\r\nDate: Mon, 30 Nov 2026 23:10:38 +0000\r\nMIME-Version: 1.0\r\nDisposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\nDisposition-Notification-To: dr.smith@hisp-a.example\r\nFrom: dr.smith@hisp-a.example\r\nTo: dr.jones@hisp-b.example\r\nSubject: Referral\r\n\r\nHello\r\n",
            p.message_id
        );
        assert_eq!(String::from_utf8(p.message).unwrap(), expected);
    }

    #[test]
    fn keeps_what_the_sender_set() {
        let msg = b"From: dr.smith@hisp-a.example\r\nTo: dr.jones@hisp-b.example\r\nMessage-ID: <mine@x>\r\nDate: Mon, 30 Nov 2026 23:10:38 +0000\r\nMIME-Version: 1.0\r\nDisposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,false\r\nDisposition-Notification-To: desk@hisp-a.example\r\n\r\nx";
        let p = prepare(
            msg,
            &a("dr.smith@hisp-a.example"),
            &[a("dr.jones@hisp-b.example")],
            "h",
            0,
        )
        .unwrap();
        assert_eq!(p.message, msg);
        assert_eq!(p.message_id, "<mine@x>");
    }

    #[test]
    fn refuses_what_the_receiver_would_refuse() {
        let msg = b"From: dr.smith@hisp-a.example\r\nTo: dr.jones@hisp-b.example\r\nBcc: x@hisp-b.example\r\n\r\nx";
        let err = prepare(
            msg,
            &a("dr.smith@hisp-a.example"),
            &[a("dr.jones@hisp-b.example")],
            "h",
            0,
        )
        .unwrap_err();
        assert_eq!(err, OutboundError::Envelope(EnvelopeError::Bcc));
        let msg = b"From: dr.smith@hisp-a.example\r\nTo: dr.jones@hisp-b.example\r\n\r\nx";
        let err = prepare(
            msg,
            &a("dr.smith@hisp-a.example"),
            &[a("other@hisp-b.example")],
            "h",
            0,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            OutboundError::Envelope(EnvelopeError::RecipientMismatch(_))
        ));
        let err = prepare(
            msg,
            &a("mallory@hisp-a.example"),
            &[a("dr.jones@hisp-b.example")],
            "h",
            0,
        )
        .unwrap_err();
        assert!(err.to_string().contains("send as yourself"), "{err}");
        assert_eq!(
            prepare(b"\r\nbody", &a("a@b.example"), &[], "h", 0),
            Err(OutboundError::NoHeader)
        );
    }
}
