//! The small part of MIME that S/MIME needs, on exact bytes: splitting an entity into header
//! and body, reading Content-Type, cutting multipart bodies at their boundaries, base64.
//!
//! Written by hand rather than through a general parser because signatures cover exact bytes:
//! the signed part of a multipart/signed is everything between the delimiter lines, and the
//! CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1).

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeError {
    #[error("malformed MIME: {0}")]
    Malformed(&'static str),
    #[error("invalid base64 content")]
    Base64,
    #[error("MIME structure nested deeper than {0} levels")]
    TooDeep(usize),
}

/// An entity's header block (including the final line break) and body.
#[derive(Debug, Clone, Copy)]
pub struct Entity<'a> {
    pub header: &'a [u8],
    pub body: &'a [u8],
}

/// Splits at the first empty line. An entity that starts with an empty line has no headers
/// (its type is then text/plain by default).
pub fn split(raw: &[u8]) -> Entity<'_> {
    for (skip, prefix) in [(2, &b"\r\n"[..]), (1, &b"\n"[..])] {
        if raw.starts_with(prefix) {
            return Entity {
                header: &[],
                body: &raw[skip..],
            };
        }
    }
    for nl in ::memchr::memchr_iter(b'\n', raw) {
        let next = &raw[nl + 1..];
        let skip = if next.starts_with(b"\r\n") {
            2
        } else if next.starts_with(b"\n") {
            1
        } else {
            continue;
        };
        return Entity {
            header: &raw[..nl + 1],
            body: &next[skip..],
        };
    }
    Entity {
        header: raw,
        body: &[],
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    ::memchr::memchr(needle, hay)
}

/// Raw header fields (name, the whole field including folded lines and line break).
pub fn fields(header: &[u8]) -> Vec<(&str, &[u8])> {
    let mut out: Vec<(&str, &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let end = memchr(b'\n', &header[i..]).map_or(header.len(), |p| i + p + 1);
        let continues = header.get(end).is_some_and(|&b| b == b' ' || b == b'\t');
        if !continues {
            let field = &header[start..end];
            if let Some(colon) = memchr(b':', field)
                && let Ok(name) = std::str::from_utf8(&field[..colon])
            {
                let name = name.trim();
                if !name.is_empty() && !name.contains(' ') {
                    out.push((name, field));
                }
            }
            start = end;
        }
        i = end;
    }
    out
}

/// The unfolded, trimmed value of the first field called `name` (case-insensitive).
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    fields(header)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, field)| {
            let colon = memchr(b':', field).unwrap_or(0);
            let value = String::from_utf8_lossy(&field[colon + 1..]);
            value
                .split(['\r', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
}

/// A parsed Content-Type: lower-case `type/subtype` and its parameters (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub mime_type: String,
    pub params: Vec<(String, String)>,
}

impl ContentType {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is(&self, mime_type: &str) -> bool {
        self.mime_type == mime_type
    }
}

/// The entity's Content-Type, defaulting to text/plain (RFC 2045 5.2).
pub fn content_type(header: &[u8]) -> ContentType {
    match header_value(header, "content-type") {
        Some(v) => parse_content_type(&v),
        None => ContentType {
            mime_type: "text/plain".into(),
            params: Vec::new(),
        },
    }
}

pub fn parse_content_type(value: &str) -> ContentType {
    let mut rest = value;
    let end = rest.find(';').unwrap_or(rest.len());
    let mime_type = rest[..end].trim().to_ascii_lowercase();
    rest = &rest[end..];
    let mut params = Vec::new();
    while let Some(r) = rest.strip_prefix(';') {
        let r = r.trim_start();
        let Some(eq) = r.find('=') else { break };
        let name = r[..eq].trim().to_ascii_lowercase();
        let after = r[eq + 1..].trim_start();
        let (val, remaining) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut close = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        close = i + 1;
                        break;
                    }
                    _ => v.push(c),
                }
            }
            (v, &q[close.min(q.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((name, val));
        rest = remaining.trim_start();
        if !rest.starts_with(';') {
            if let Some(p) = rest.find(';') {
                rest = &rest[p..];
            } else {
                break;
            }
        }
    }
    ContentType { mime_type, params }
}

/// The body parts of a multipart body, as exact bytes (headers included, the line break
/// before each delimiter excluded). Preamble and epilogue are dropped.
pub fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, MimeError> {
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(MimeError::Malformed(
            "missing or invalid multipart boundary",
        ));
    }
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    // Candidates come from a fast substring search; a delimiter must start a line and be
    // followed only by "--" (closing), spaces and the line break.
    for at in ::memchr::memmem::find_iter(body, delim) {
        if at > 0 && body[at - 1] != b'\n' {
            continue;
        }
        let line_end = memchr(b'\n', &body[at..]).map_or(body.len(), |p| at + p);
        let mut tail = &body[at + delim.len()..line_end];
        tail = tail.strip_suffix(b"\r").unwrap_or(tail);
        let closing = tail.starts_with(b"--");
        if closing {
            tail = &tail[2..];
        }
        if !tail.iter().all(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        if let Some(start) = part_start {
            // The line break before the delimiter belongs to the delimiter.
            let mut end = at;
            if end > start && body[end - 1] == b'\n' {
                end -= 1;
                if end > start && body[end - 1] == b'\r' {
                    end -= 1;
                }
            }
            if end < start {
                continue;
            }
            parts.push(&body[start..end]);
        }
        if closing {
            return Ok(parts);
        }
        part_start = Some((line_end + 1).min(body.len()));
    }
    Err(MimeError::Malformed(
        "multipart body has no closing boundary",
    ))
}

const B64_SKIP: u8 = 0xfe;
const B64_BAD: u8 = 0xff;

const fn base64_table() -> [u8; 256] {
    let mut t = [B64_BAD; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t[b' ' as usize] = B64_SKIP;
    t[b'\t' as usize] = B64_SKIP;
    t[b'\r' as usize] = B64_SKIP;
    t[b'\n' as usize] = B64_SKIP;
    t
}

static BASE64: [u8; 256] = base64_table();

/// Decodes base64 strictly (RFC 4648 alphabet, correct padding, nothing after it), ignoring
/// line breaks and spaces. Hand-rolled because it runs over every message body: a general
/// filter-then-decode costs more than the RSA operation for mid-size messages.
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, MimeError> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut n = 0; // sextets (including padding) in the current quantum
    let mut pads = 0;
    let mut finished = false;
    let mut i = 0;
    while i < text.len() {
        // Fast path: whole quanta of plain alphabet characters, four at a time.
        if n == 0 && !finished {
            while i + 4 <= text.len() {
                let q = [
                    BASE64[usize::from(text[i])],
                    BASE64[usize::from(text[i + 1])],
                    BASE64[usize::from(text[i + 2])],
                    BASE64[usize::from(text[i + 3])],
                ];
                // Any marker (0xfe/0xff) has the top bit set.
                if (q[0] | q[1] | q[2] | q[3]) & 0x80 != 0 {
                    break;
                }
                let v = u32::from(q[0]) << 18
                    | u32::from(q[1]) << 12
                    | u32::from(q[2]) << 6
                    | u32::from(q[3]);
                out.extend_from_slice(&v.to_be_bytes()[1..]);
                i += 4;
            }
            if i >= text.len() {
                break;
            }
        }
        let b = text[i];
        i += 1;
        match BASE64[usize::from(b)] {
            B64_SKIP => {}
            B64_BAD if b == b'=' => {
                if n < 2 || finished {
                    return Err(MimeError::Base64);
                }
                pads += 1;
                acc <<= 6;
                n += 1;
                if n == 4 {
                    let bytes = acc.to_be_bytes();
                    out.extend_from_slice(&bytes[1..4 - pads]);
                    finished = true;
                    n = 0;
                }
            }
            B64_BAD => return Err(MimeError::Base64),
            v => {
                if finished || pads > 0 {
                    return Err(MimeError::Base64);
                }
                acc = (acc << 6) | u32::from(v);
                n += 1;
                if n == 4 {
                    let bytes = acc.to_be_bytes();
                    out.extend_from_slice(&bytes[1..]);
                    acc = 0;
                    n = 0;
                }
            }
        }
    }
    if n != 0 || (out.is_empty() && !finished) {
        return Err(MimeError::Base64);
    }
    Ok(out)
}

/// Base64 in 76-character lines ending in CRLF (RFC 2045 6.8).
pub fn encode_base64_lines(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_base64_lines_into(&mut out, data);
    out
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Two base64 characters for every 12-bit value: half the table lookups per input triple,
/// and 8 KiB stays in L1.
static BASE64_PAIRS: [[u8; 2]; 4096] = {
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [ALPHABET[i >> 6], ALPHABET[i & 63]];
        i += 1;
    }
    t
};

/// Appends base64 lines of `data` to `out` (no intermediate copy for large bodies).
pub fn encode_base64_lines_into(out: &mut Vec<u8>, data: &[u8]) {
    let sextet = |v: u32, shift: u32| ALPHABET[((v >> shift) & 63) as usize];
    // Sized up front and filled by index: this runs over every outbound message body.
    let lines = data.len().div_ceil(57);
    let base = out.len();
    out.resize(base + data.len().div_ceil(3) * 4 + lines * 2, 0);
    // 57 input bytes make one 76-character line.
    let full = data.chunks_exact(57);
    let last = full.remainder();
    let full_out = (data.len() / 57) * 78;
    for (line, dst) in full.zip(out[base..base + full_out].chunks_exact_mut(78)) {
        for (c, d) in line.chunks_exact(3).zip(dst.chunks_exact_mut(4)) {
            let v = usize::from(c[0]) << 16 | usize::from(c[1]) << 8 | usize::from(c[2]);
            let (hi, lo) = (BASE64_PAIRS[v >> 12], BASE64_PAIRS[v & 0xfff]);
            d.copy_from_slice(&[hi[0], hi[1], lo[0], lo[1]]);
        }
        dst[76..].copy_from_slice(b"\r\n");
    }
    let mut o = base + full_out;
    if !last.is_empty() {
        let mut triples = last.chunks_exact(3);
        for (c, dst) in (&mut triples).zip(out[o..].chunks_exact_mut(4)) {
            let v = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
            dst.copy_from_slice(&[sextet(v, 18), sextet(v, 12), sextet(v, 6), sextet(v, 0)]);
        }
        o += last.len() / 3 * 4;
        let rest = triples.remainder();
        if !rest.is_empty() {
            let v = u32::from(rest[0]) << 16 | rest.get(1).map_or(0, |&b| u32::from(b) << 8);
            let third = if rest.len() == 2 { sextet(v, 6) } else { b'=' };
            out[o..o + 4].copy_from_slice(&[sextet(v, 18), sextet(v, 12), third, b'=']);
            o += 4;
        }
        out[o..o + 2].copy_from_slice(b"\r\n");
        o += 2;
    }
    out.truncate(o);
}

/// Lone LFs become CRLF (the canonical form S/MIME signs); CRLF stays.
pub fn to_crlf(data: &[u8]) -> Cow<'_, [u8]> {
    let lone = |nl: usize| nl == 0 || data[nl - 1] != b'\r';
    let Some(first) = ::memchr::memchr_iter(b'\n', data).find(|&nl| lone(nl)) else {
        return Cow::Borrowed(data);
    };
    let mut out = Vec::with_capacity(data.len() + data.len() / 40 + 2);
    out.extend_from_slice(&data[..first]);
    let mut from = first;
    for nl in ::memchr::memchr_iter(b'\n', &data[first..]).map(|p| p + first) {
        out.extend_from_slice(&data[from..nl]);
        if lone(nl) {
            out.push(b'\r');
        }
        from = nl;
    }
    out.extend_from_slice(&data[from..]);
    Cow::Owned(out)
}

/// The depth of multipart nesting, failing as soon as it passes `limit` (so hostile input
/// costs at most `limit` levels of work and stack).
pub fn check_depth(entity: &[u8], limit: usize) -> Result<(), MimeError> {
    fn walk(entity: &[u8], depth: usize, limit: usize) -> Result<(), MimeError> {
        if depth > limit {
            return Err(MimeError::TooDeep(limit));
        }
        let e = split(entity);
        let ct = content_type(e.header);
        if ct.mime_type.starts_with("multipart/") {
            let boundary = ct.param("boundary").unwrap_or_default();
            for part in multipart_parts(e.body, boundary)? {
                walk(part, depth + 1, limit)?;
            }
        } else if ct.is("message/rfc822") {
            walk(e.body, depth + 1, limit)?;
        }
        Ok(())
    }
    walk(entity, 0, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_header_and_body() {
        let e = split(b"A: 1\r\nB: 2\r\n\r\nbody\r\n");
        assert_eq!(e.header, b"A: 1\r\nB: 2\r\n");
        assert_eq!(e.body, b"body\r\n");
        let e = split(b"A: 1\n\nbody");
        assert_eq!((e.header, e.body), (&b"A: 1\n"[..], &b"body"[..]));
        let e = split(b"\r\nno headers");
        assert_eq!((e.header, e.body), (&b""[..], &b"no headers"[..]));
        let e = split(b"A: 1");
        assert_eq!((e.header, e.body), (&b"A: 1"[..], &b""[..]));
    }

    #[test]
    fn folded_fields_and_values() {
        let h = b"Subject: a\r\n  b\r\nTo: x@y.example,\r\n\tz@y.example\r\nbroken line\r\n";
        let f = fields(h);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].0, "To");
        assert_eq!(f[1].1, b"To: x@y.example,\r\n\tz@y.example\r\n");
        assert_eq!(header_value(h, "subject").as_deref(), Some("a b"));
        assert_eq!(
            header_value(h, "to").as_deref(),
            Some("x@y.example, z@y.example")
        );
        assert_eq!(header_value(h, "cc"), None);
    }

    #[test]
    fn content_types() {
        let ct = parse_content_type(
            "Multipart/Signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256;\r\n boundary=\"a\\\"b;c\"",
        );
        assert_eq!(ct.mime_type, "multipart/signed");
        assert_eq!(ct.param("protocol"), Some("application/pkcs7-signature"));
        assert_eq!(ct.param("micalg"), Some("sha-256"));
        assert_eq!(ct.param("boundary"), Some("a\"b;c"));
        assert_eq!(content_type(b"X: y\r\n").mime_type, "text/plain");
        let odd =
            parse_content_type("application/pkcs7-mime; name=smime.p7m; smime-type=enveloped-data");
        assert_eq!(odd.param("smime-type"), Some("enveloped-data"));
        assert_eq!(parse_content_type(";;;=").mime_type, "");
    }

    #[test]
    fn multipart_exact_bytes() {
        let body = b"preamble\r\n--B\r\nA: 1\r\n\r\none\r\n\r\n--B\r\n\r\ntwo\r\n--B--\r\nepilogue";
        let parts = multipart_parts(body, "B").unwrap();
        assert_eq!(parts, vec![&b"A: 1\r\n\r\none\r\n"[..], &b"\r\ntwo"[..]]);
        let lf = b"--B\nx\n--B\ny\n--B--\n";
        assert_eq!(
            multipart_parts(lf, "B").unwrap(),
            vec![&b"x"[..], &b"y"[..]]
        );
        assert!(
            multipart_parts(b"--B\r\nx\r\n", "B").is_err(),
            "no closing boundary"
        );
        assert!(multipart_parts(b"x", "").is_err());
        // A line that merely starts like the boundary is content.
        let tricky = b"--B\r\n--Bx\r\n--B--";
        assert_eq!(multipart_parts(tricky, "B").unwrap(), vec![&b"--Bx"[..]]);
    }

    #[test]
    fn base64_strict() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n").unwrap(), b"hello");
        assert_eq!(decode_base64(b"aGVsbG8"), Err(MimeError::Base64));
        assert_eq!(decode_base64(b"aGV*bG8="), Err(MimeError::Base64));
        assert_eq!(decode_base64(b""), Err(MimeError::Base64));
        assert_eq!(decode_base64(b"aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64(b"aA==").unwrap(), b"h");
        for bad in [
            &b"a==="[..],
            b"aGk=aGk=",
            b"aGk",
            b"=aGk",
            b"aG=k",
            b"aGk==",
            b"aGk=\r\nx",
        ] {
            assert_eq!(decode_base64(bad), Err(MimeError::Base64), "{bad:?}");
        }
        let mut all = vec![0u8; 1000];
        openssl::rand::rand_bytes(&mut all).unwrap();
        for len in [0, 1, 2, 3, 4, 5, 999, 1000] {
            let enc = openssl::base64::encode_block(&all[..len]);
            if len > 0 {
                assert_eq!(
                    decode_base64(enc.as_bytes()).unwrap(),
                    &all[..len],
                    "len {len}"
                );
            }
        }
        let long = vec![7u8; 200];
        let enc = encode_base64_lines(&long);
        assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= 77));
        assert_eq!(decode_base64(&enc).unwrap(), long);
        // Our encoder agrees with OpenSSL's for every remainder length, over full and partial
        // lines, with every byte value in every position of a triple.
        let varied: Vec<u8> = (0..400u32).map(|i| (i * 37 % 256) as u8).collect();
        for len in 0..varied.len() {
            let enc = encode_base64_lines(&varied[..len]);
            assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= 77));
            let ours = String::from_utf8(enc).unwrap().replace("\r\n", "");
            assert_eq!(
                ours,
                openssl::base64::encode_block(&varied[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn crlf_and_depth() {
        assert_eq!(&*to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(&*to_crlf(b"\n\nx"), b"\r\n\r\nx");
        assert_eq!(&*to_crlf(b"a\r\nb\nc"), b"a\r\nb\r\nc");
        assert!(matches!(to_crlf(b"a\r\n"), Cow::Borrowed(_)));
        let mut nested = b"Content-Type: text/plain\r\n\r\nleaf\r\n".to_vec();
        for i in 0..40 {
            let b = format!("b{i}");
            let mut outer = format!("Content-Type: multipart/mixed; boundary={b}\r\n\r\n--{b}\r\n")
                .into_bytes();
            outer.extend_from_slice(&nested);
            outer.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
            nested = outer;
        }
        assert_eq!(check_depth(&nested, 50), Ok(()));
        assert_eq!(check_depth(&nested, 30), Err(MimeError::TooDeep(30)));
    }
}
