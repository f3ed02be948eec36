//! Turning an API send request into an RFC 5322 message (pure: bytes and strings in, bytes
//! out). The JSON form is built here; the raw form gets only what the API must know before
//! the pipeline sees it — its recipients and its Message-ID — and loses its Bcc header.

use base64::Engine;
use serde::Deserialize;

use crate::smime::mime;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ComposeError {
    #[error("{field} contains a line break; header values must be one line")]
    LineBreak { field: &'static str },
    #[error("attachment {index} ({filename}): content_base64 is not valid base64")]
    BadBase64 { index: usize, filename: String },
    #[error("attachment {index}: content_type {value:?} is not type/subtype")]
    BadContentType { index: usize, value: String },
    #[error("attachment {index}: filename is empty")]
    NoFilename { index: usize },
    #[error("the message has no header; send a complete RFC 5322 message")]
    NoHeader,
    #[error("Message-ID {0:?} is not of the form <id@domain>; fix it or leave the header out")]
    BadMessageId(String),
}

/// One recipient list entry: a string, or a list of them.
#[derive(Debug, Deserialize, Default)]
#[serde(untagged)]
pub enum Addresses {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Addresses::None => Vec::new(),
            Addresses::One(a) => vec![a.clone()],
            Addresses::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub filename: String,
    #[serde(default)]
    pub content_type: Option<String>,
    pub content_base64: String,
}

/// The JSON body of `POST /api/v1/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Addresses,
    #[serde(default)]
    pub cc: Addresses,
    #[serde(default)]
    pub bcc: Addresses,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

fn one_line(field: &'static str, value: &str) -> Result<(), ComposeError> {
    if value.contains(['\r', '\n']) {
        return Err(ComposeError::LineBreak { field });
    }
    Ok(())
}

/// RFC 2047 encoded-word for a header text that is not plain ASCII.
fn header_text(value: &str) -> String {
    if value.is_ascii() {
        return value.to_string();
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    // Short encoded words (RFC 2047 limits them to 75 characters), cut on char boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?utf-8?B?{}?=", b64.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?utf-8?B?{}?=", b64.encode(&chunk)));
    }
    words.join("\r\n ")
}

/// A `filename` parameter: quoted ASCII, or RFC 2231 percent-encoded UTF-8.
fn filename_param(name: &str) -> String {
    if name.is_ascii() && !name.contains(['"', '\\']) {
        return format!("filename=\"{name}\"");
    }
    let mut enc = String::from("filename*=utf-8''");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    enc
}

fn text_part(out: &mut Vec<u8>, text: &str) {
    let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let plain = text.is_ascii() && text.split("\r\n").all(|l| l.len() <= 998);
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    if plain {
        out.extend_from_slice(b"Content-Transfer-Encoding: 7bit\r\n\r\n");
        out.extend_from_slice(text.as_bytes());
        if !text.ends_with("\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        mime::encode_base64_lines_into(out, text.as_bytes());
    }
}

/// What the caller chose, checked: who it is from and to, and the message.
pub struct Composed {
    pub recipients: Vec<String>,
    pub message: Vec<u8>,
}

/// Builds the message of a JSON send request. `from` is the checked sender; `message_id`,
/// `date` and `boundary` come from the caller so the output is reproducible in tests.
pub fn build(
    c: &Compose,
    from: &str,
    message_id: &str,
    date: &str,
    boundary: &str,
) -> Result<Composed, ComposeError> {
    let (to, cc, bcc) = (c.to.to_vec(), c.cc.to_vec(), c.bcc.to_vec());
    for a in to.iter().chain(&cc).chain(&bcc) {
        one_line("a recipient address", a)?;
    }
    one_line("subject", &c.subject)?;
    let mut out = Vec::with_capacity(c.text.len() + 1024);
    let mut header = format!("From: {from}\r\n");
    if !to.is_empty() {
        header.push_str(&format!("To: {}\r\n", to.join(", ")));
    }
    if !cc.is_empty() {
        header.push_str(&format!("Cc: {}\r\n", cc.join(", ")));
    }
    header.push_str(&format!(
        "Subject: {}\r\nDate: {date}\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n",
        header_text(&c.subject)
    ));
    out.extend_from_slice(header.as_bytes());
    if c.attachments.is_empty() {
        text_part(&mut out, &c.text);
    } else {
        out.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        text_part(&mut out, &c.text);
        let b64 = base64::engine::general_purpose::STANDARD;
        for (index, a) in c.attachments.iter().enumerate() {
            one_line("an attachment filename", &a.filename)?;
            if a.filename.trim().is_empty() {
                return Err(ComposeError::NoFilename { index });
            }
            let content_type = a
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into());
            let valid_type = content_type.split_once('/').is_some_and(|(t, s)| {
                let token = |x: &str| {
                    !x.is_empty()
                        && x.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
                };
                token(t) && token(s)
            });
            if !valid_type {
                return Err(ComposeError::BadContentType {
                    index,
                    value: content_type,
                });
            }
            let cleaned: String = a
                .content_base64
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let data = b64.decode(cleaned).map_err(|_| ComposeError::BadBase64 {
                index,
                filename: a.filename.clone(),
            })?;
            out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
            out.extend_from_slice(
                format!(
                    "Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; {}\r\n\r\n",
                    filename_param(&a.filename)
                )
                .as_bytes(),
            );
            mime::encode_base64_lines_into(&mut out, &data);
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    }
    Ok(Composed {
        recipients: to.into_iter().chain(cc).chain(bcc).collect(),
        message: out,
    })
}

/// A raw message as submitted: CRLF line ends, a Message-ID (`new_id` if it had none), no
/// Bcc header, and the recipients from To, Cc and Bcc.
pub struct Raw {
    pub message: Vec<u8>,
    pub message_id: String,
    pub recipients: Vec<String>,
    /// The From header's address, if it has one.
    pub from: Option<String>,
}

pub fn raw(message: &[u8], new_id: &str) -> Result<Raw, ComposeError> {
    let message = mime::to_crlf(message).into_owned();
    let entity = mime::split(&message);
    if entity.header.is_empty() || mime::fields(entity.header).is_empty() {
        return Err(ComposeError::NoHeader);
    }
    let parsed = mail_parser::MessageParser::default()
        .parse_headers(entity.header)
        .ok_or(ComposeError::NoHeader)?;
    let list = |a: Option<&mail_parser::Address<'_>>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|x| x.address.as_ref().map(|s| s.to_string()))
                .collect()
        })
        .unwrap_or_default()
    };
    let recipients: Vec<String> = list(parsed.to())
        .into_iter()
        .chain(list(parsed.cc()))
        .chain(list(parsed.bcc()))
        .collect();
    let from = list(parsed.from()).into_iter().next();
    let existing = match crate::headers::header_value(entity.header, "Message-ID") {
        Some(id) if id.len() > 2 && id.starts_with('<') && id.ends_with('>') => Some(id),
        // Adding a second Message-ID would leave two; the sender must fix theirs.
        Some(id) => return Err(ComposeError::BadMessageId(id)),
        None => None,
    };
    let mut header = Vec::with_capacity(entity.header.len() + 64);
    let message_id = match existing {
        Some(id) => id,
        None => {
            header.extend_from_slice(format!("Message-ID: {new_id}\r\n").as_bytes());
            new_id.to_string()
        }
    };
    // Drop Bcc (and its folded continuation lines): the other recipients must not see it.
    let mut skipping = false;
    for line in entity.header.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            header.extend_from_slice(line);
        }
    }
    let body_start = entity.header.len();
    let mut out = header;
    out.extend_from_slice(&message[body_start..]);
    Ok(Raw {
        message: out,
        message_id,
        recipients,
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compose(json: &str) -> Compose {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn text_only_message_byte_for_byte() {
        let c = compose(
            r#"{"to":"b@b.example","cc":["c@b.example"],"subject":"Referral","text":"Hello\nBob"}"#,
        );
        let m = build(
            &c,
            "a@a.example",
            "<1@a>",
            "Tue, 1 Dec 2026 00:00:00 +0000",
            "B",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(m.message).unwrap(),
            "From: a@a.example\r\nTo: b@b.example\r\nCc: c@b.example\r\nSubject: Referral\r\n\
Date: Tue, 1 Dec 2026 00:00:00 +0000\r\nMessage-ID: <1@a>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\nHello\r\nBob\r\n"
        );
        assert_eq!(m.recipients, vec!["b@b.example", "c@b.example"]);
    }

    #[test]
    fn attachments_are_base64_parts_that_parse_back() {
        let c = compose(
            r#"{"to":["b@b.example"],"bcc":["hidden@b.example"],"subject":"Überweisung","text":"see attached",
               "attachments":[{"filename":"ccd.xml","content_type":"application/xml","content_base64":"PENsaW5pY2FsRG9jdW1lbnQvPg=="},
                              {"filename":"bericht ä.pdf","content_base64":"JVBERi0xLjQK"}]}"#,
        );
        let m = build(
            &c,
            "a@a.example",
            "<2@a>",
            "Tue, 1 Dec 2026 00:00:00 +0000",
            "bnd",
        )
        .unwrap();
        assert_eq!(m.recipients.len(), 2);
        let text = String::from_utf8(m.message.clone()).unwrap();
        assert!(!text.contains("hidden@"), "Bcc must not be in the header");
        assert!(text.contains("Subject: =?utf-8?B?"));
        assert!(text.contains("filename*=utf-8''bericht%20%C3%A4.pdf"));
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.message)
            .unwrap();
        assert_eq!(parsed.subject(), Some("Überweisung"));
        let atts: Vec<_> = parsed.attachments().collect();
        assert_eq!(atts.len(), 2);
        assert_eq!(atts[0].contents(), b"<ClinicalDocument/>");
        assert_eq!(atts[1].contents(), b"%PDF-1.4\n");
    }

    #[test]
    fn header_injection_and_bad_attachments_are_refused() {
        let c = compose(r#"{"to":"b@b.example","subject":"x\r\nBcc: evil@x"}"#);
        assert_eq!(
            build(&c, "a@a", "<3@a>", "d", "b").err(),
            Some(ComposeError::LineBreak { field: "subject" })
        );
        let c = compose(
            r#"{"to":"b@b.example","attachments":[{"filename":"x","content_base64":"***"}]}"#,
        );
        assert!(matches!(
            build(&c, "a@a", "<3@a>", "d", "b"),
            Err(ComposeError::BadBase64 { index: 0, .. })
        ));
        let c = compose(
            r#"{"to":"b@b.example","attachments":[{"filename":"x","content_type":"text","content_base64":""}]}"#,
        );
        assert!(matches!(
            build(&c, "a@a", "<3@a>", "d", "b"),
            Err(ComposeError::BadContentType { index: 0, .. })
        ));
        assert!(serde_json::from_str::<Compose>(r#"{"to":"b@b","unknown":1}"#).is_err());
    }

    #[test]
    fn raw_gets_an_id_loses_bcc_and_names_recipients() {
        let raw_msg = b"From: a@a.example\nTo: b@b.example\nBcc: secret@c.example,\n  other@c.example\nSubject: s\n\nbody\n";
        let r = raw(raw_msg, "<new@a>").unwrap();
        assert_eq!(r.message_id, "<new@a>");
        assert_eq!(r.from.as_deref(), Some("a@a.example"));
        assert_eq!(
            r.recipients,
            vec!["b@b.example", "secret@c.example", "other@c.example"]
        );
        assert_eq!(
            String::from_utf8(r.message).unwrap(),
            "Message-ID: <new@a>\r\nFrom: a@a.example\r\nTo: b@b.example\r\nSubject: s\r\n\r\nbody\r\n"
        );
        let kept = raw(b"Message-ID: <x@y>\r\nTo: b@b\r\n\r\nhi\r\n", "<new@a>").unwrap();
        assert_eq!(kept.message_id, "<x@y>");
        assert_eq!(
            raw(b"no header at all", "<n@a>").err(),
            Some(ComposeError::NoHeader)
        );
        assert_eq!(
            raw(b"Message-ID: bare@id\r\nTo: b@b\r\n\r\nhi\r\n", "<n@a>").err(),
            Some(ComposeError::BadMessageId("bare@id".into()))
        );
    }
}
