//! A stored message as an integrator wants it: header fields, the text body, and a list of
//! attachments with their sizes (pure; the bytes of an attachment are fetched separately).

use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;

use crate::smime::mime;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AttachmentInfo {
    pub index: usize,
    pub filename: Option<String>,
    pub content_type: String,
    pub size: usize,
}

#[derive(Debug, Serialize)]
pub struct View {
    pub headers: Vec<Header>,
    /// The decoded subject (encoded words resolved).
    pub subject: Option<String>,
    pub text: Option<String>,
    pub attachments: Vec<AttachmentInfo>,
}

/// Header fields in order, unfolded; values that are not UTF-8 are shown lossily.
fn headers(raw: &[u8]) -> Vec<Header> {
    let header = mime::split(raw).header;
    mime::fields(header)
        .into_iter()
        .map(|(name, field)| {
            let value = &field[name.len()..];
            let value = String::from_utf8_lossy(value);
            let value = value.trim_start().trim_start_matches(':');
            let unfolded: String = value
                .split(['\r', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            Header {
                name: name.to_string(),
                value: unfolded,
            }
        })
        .collect()
}

fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "application/octet-stream".into(),
    }
}

pub fn view(raw: &[u8]) -> View {
    let parsed = MessageParser::default().parse(raw);
    let (subject, text, attachments) = match &parsed {
        Some(m) => (
            m.subject().map(str::to_string),
            m.body_text(0).map(|t| t.into_owned()),
            m.attachments()
                .enumerate()
                .map(|(index, a)| AttachmentInfo {
                    index,
                    filename: a.attachment_name().map(str::to_string),
                    content_type: content_type(a),
                    size: a.contents().len(),
                })
                .collect(),
        ),
        None => (None, None, Vec::new()),
    };
    View {
        headers: headers(raw),
        subject,
        text,
        attachments,
    }
}

/// Attachment `index` (as numbered by [`view`]): its type, name and decoded bytes.
pub fn attachment(raw: &[u8], index: usize) -> Option<(String, Option<String>, Vec<u8>)> {
    let parsed = MessageParser::default().parse(raw)?;
    let a = parsed.attachments().nth(index)?;
    Some((
        content_type(a),
        a.attachment_name().map(str::to_string),
        a.contents().to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"From: a@a.example\r\nTo: b@b.example\r\nSubject: =?utf-8?B?w5xiZXJ3ZWlzdW5n?=\r\n\
X-Long: one\r\n two\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nPlease see the referral.\r\n\
--b\r\nContent-Type: application/xml\r\nContent-Disposition: attachment; filename=\"ccd.xml\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nPENsaW5pY2FsRG9jdW1lbnQvPg==\r\n--b--\r\n";

    #[test]
    fn headers_text_and_attachments() {
        let v = view(MSG);
        assert_eq!(v.subject.as_deref(), Some("Überweisung"));
        assert_eq!(v.text.as_deref(), Some("Please see the referral."));
        assert_eq!(
            v.headers[3],
            Header {
                name: "X-Long".into(),
                value: "one two".into()
            }
        );
        assert_eq!(
            v.attachments,
            vec![AttachmentInfo {
                index: 0,
                filename: Some("ccd.xml".into()),
                content_type: "application/xml".into(),
                size: 19
            }]
        );
        let (ct, name, bytes) = attachment(MSG, 0).unwrap();
        assert_eq!(
            (ct.as_str(), name.as_deref()),
            ("application/xml", Some("ccd.xml"))
        );
        assert_eq!(bytes, b"<ClinicalDocument/>");
        assert!(attachment(MSG, 1).is_none());
    }

    #[test]
    fn garbage_does_not_panic() {
        let v = view(b"\xff\xfe not a message");
        assert!(v.attachments.is_empty());
        let _ = view(b"");
        assert!(attachment(b"", 0).is_none());
    }
}
