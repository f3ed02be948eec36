//! Reading a header field of an RFC 5322 message: enough to file and name a message
//! (Message-ID, Subject) without a full MIME parse.

/// The unfolded value of the first `name:` field in the header section, trimmed.
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let end = memchr::memmem::find(message, b"\r\n\r\n").unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..end]);
    let mut lines = head.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if !field.trim().eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = value.to_string();
        while let Some(next) = lines.peek()
            && next.starts_with([' ', '\t'])
        {
            value.push_str(next);
            lines.next();
        }
        return Some(value.trim().to_string());
    }
    None
}

/// A Message-ID as people paste it, with or without its angle brackets, in the bracketed form
/// it is stored under.
pub fn bracketed_message_id(id: &str) -> String {
    let id = id.trim();
    if id.starts_with('<') {
        id.to_string()
    } else {
        format!("<{id}>")
    }
}

/// The Message-ID without angle brackets, if the message has a non-empty one.
pub fn message_id(message: &[u8]) -> Option<String> {
    let v = header_value(message, "message-id")?;
    let id = v.trim_start_matches('<').trim_end_matches('>').trim();
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_and_missing_fields() {
        let m = b"Subject: a\r\n b\r\nMessage-ID:\r\n <abc@h.example>\r\n\r\nMessage-ID: <no>\r\n";
        assert_eq!(message_id(m).as_deref(), Some("abc@h.example"));
        assert_eq!(header_value(m, "subject").as_deref(), Some("a b"));
        assert_eq!(message_id(b"Subject: x\r\n\r\n"), None);
        assert_eq!(message_id(b"Message-ID: <>\r\n\r\n"), None);
    }
}
