//! SMTP replies with enhanced status codes (RFC 3463), as the session writes them.

use std::fmt;

/// One reply: a code, an enhanced status code, and a sentence for the human reading logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `x.y.z`; empty only for replies that carry none (greeting, 334 challenges).
    pub status: String,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, status: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: status.to_string(),
            text: text.into(),
        }
    }

    pub fn is_success(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// Closes the connection after being sent (421 and 221).
    pub fn closes(&self) -> bool {
        self.code == 421 || self.code == 221
    }

    /// The reply as wire bytes. Text that reached us from elsewhere (a pipeline's reason)
    /// is kept to one line of printable ASCII so it cannot forge extra reply lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect()
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = printable(&self.text);
        if self.status.is_empty() {
            write!(f, "{} {}\r\n", self.code, text)
        } else {
            write!(f, "{} {} {}\r\n", self.code, self.status, text)
        }
    }
}

/// A multi-line reply such as the EHLO response: `250-a`, `250-b`, `250 c`.
pub fn multiline(code: u16, lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}{}\r\n", printable(line)).as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        assert_eq!(
            Reply::new(550, "5.7.1", "no\r\n250 relay").to_string(),
            "550 5.7.1 no  250 relay\r\n"
        );
        assert_eq!(
            Reply::new(220, "", "h ESMTP").to_string(),
            "220 h ESMTP\r\n"
        );
        assert_eq!(
            multiline(250, &["h".into(), "SIZE 10".into()]),
            b"250-h\r\n250 SIZE 10\r\n"
        );
    }
}
