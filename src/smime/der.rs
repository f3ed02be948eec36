//! Just enough DER reading to learn which algorithms a CMS structure uses, so policy can
//! refuse weak ones: OpenSSL decrypts and verifies without telling which content cipher or
//! digest it met. Input is re-encoded DER from OpenSSL (definite lengths), but every read is
//! bounds-checked because it derives from network bytes.

/// One TLV: tag byte, and the content bytes.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
}

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const OID: u8 = 0x06;
pub const INTEGER: u8 = 0x02;

/// Reads one TLV from the front of `input`; returns it and the rest.
pub fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // Multi-byte tags never occur in the CMS structures we walk.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

/// Like `read`, but refuses lengths that DER would encode shorter, and also returns the whole
/// TLV. Bytes a signature covers after OpenSSL re-encodes them must be read this way: a
/// non-minimal length would verify here yet not there.
pub fn read_der(input: &[u8]) -> Option<(Tlv<'_>, &[u8], &[u8])> {
    let (tlv, rest) = read(input)?;
    let header = input.len() - rest.len() - tlv.content.len();
    let minimal = match header {
        2 => true,
        3 => tlv.content.len() >= 0x80,
        n => input[2] != 0 && tlv.content.len() >= 1 << (8 * (n - 3)),
    };
    minimal.then_some((tlv, &input[..input.len() - rest.len()], rest))
}

/// Reads exactly the TLVs of a constructed value's content, none missing, none extra.
pub fn exactly<const N: usize>(content: &[u8]) -> Option<[Tlv<'_>; N]> {
    let mut out = [Tlv {
        tag: 0,
        content: &[],
    }; N];
    let mut rest = content;
    for slot in &mut out {
        let (tlv, r) = read(rest)?;
        *slot = tlv;
        rest = r;
    }
    rest.is_empty().then_some(out)
}

/// Each TLV inside a constructed value with its whole encoding; `None` at the end, and
/// `Some(None)` where the content stops being well-formed.
pub fn each(content: &[u8]) -> impl Iterator<Item = Option<(Tlv<'_>, &[u8])>> {
    let mut rest = Some(content);
    std::iter::from_fn(move || {
        let cur = rest.filter(|r| !r.is_empty())?;
        match read(cur) {
            Some((tlv, next)) => {
                rest = Some(next);
                Some(Some((tlv, &cur[..cur.len() - next.len()])))
            }
            None => {
                rest = None;
                Some(None)
            }
        }
    })
}

/// All TLVs inside a constructed value, in order.
pub fn children(content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (tlv, r) = read(rest)?;
        out.push(tlv);
        rest = r;
    }
    Some(out)
}

/// Dotted text of an OBJECT IDENTIFIER's content bytes.
pub fn oid_text(content: &[u8]) -> Option<String> {
    let (&first, rest) = content.split_first()?;
    let mut parts = vec![u64::from(first / 40).min(2), 0];
    parts[1] = u64::from(first) - parts[0] * 40;
    let mut value: u64 = 0;
    for &b in rest {
        value = value.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(value);
            value = 0;
        }
    }
    if content.last()? & 0x80 != 0 {
        return None;
    }
    Some(
        parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// The OID of an AlgorithmIdentifier SEQUENCE { algorithm OID, parameters ANY OPTIONAL }.
pub fn algorithm_oid(alg: &Tlv<'_>) -> Option<String> {
    if alg.tag != SEQUENCE {
        return None;
    }
    let (oid, _) = read(alg.content)?;
    (oid.tag == OID).then(|| oid_text(oid.content))?
}

/// The algorithms found in a CMS ContentInfo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmsAlgorithms {
    /// Content type OID of the ContentInfo.
    pub content_type: String,
    /// EnvelopedData/AuthEnvelopedData content-encryption algorithm.
    pub content_cipher: Option<String>,
    /// Key transport algorithms of the KeyTransRecipientInfos.
    pub key_transports: Vec<String>,
    /// SignedData digest algorithms (top-level set and each SignerInfo's).
    pub digests: Vec<String>,
    /// SignedData SignerInfo signature algorithms.
    pub signatures: Vec<String>,
}

pub const ENVELOPED_DATA: &str = "1.2.840.113549.1.7.3";
pub const SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
pub const AUTH_ENVELOPED_DATA: &str = "1.2.840.113549.1.9.16.1.23";

/// Walks a DER ContentInfo; `None` when the structure isn't what CMS says it must be.
pub fn cms_algorithms(der: &[u8]) -> Option<CmsAlgorithms> {
    let (ci, _) = read(der)?;
    if ci.tag != SEQUENCE {
        return None;
    }
    let parts = children(ci.content)?;
    let content_type = (parts.first()?.tag == OID).then(|| oid_text(parts[0].content))??;
    let mut out = CmsAlgorithms {
        content_type: content_type.clone(),
        ..Default::default()
    };
    // content [0] EXPLICIT
    let explicit = parts.get(1).filter(|t| t.tag == 0xa0)?;
    let (body, _) = read(explicit.content)?;
    if body.tag != SEQUENCE {
        return None;
    }
    let fields = children(body.content)?;
    match content_type.as_str() {
        ENVELOPED_DATA | AUTH_ENVELOPED_DATA => {
            // version, [0] originatorInfo?, recipientInfos SET, encryptedContentInfo SEQ, ...
            let mut i = 1;
            if fields.get(i)?.tag == 0xa0 {
                i += 1;
            }
            let recipients = fields.get(i).filter(|t| t.tag == SET)?;
            for ri in children(recipients.content)? {
                // KeyTransRecipientInfo ::= SEQUENCE { version, rid, keyEncryptionAlgorithm, encryptedKey }
                if ri.tag == SEQUENCE {
                    let f = children(ri.content)?;
                    if let Some(alg) = f.get(2).and_then(algorithm_oid) {
                        out.key_transports.push(alg);
                    }
                }
            }
            let eci = fields.get(i + 1).filter(|t| t.tag == SEQUENCE)?;
            let eci_fields = children(eci.content)?;
            out.content_cipher = Some(algorithm_oid(eci_fields.get(1)?)?);
        }
        SIGNED_DATA => {
            // version, digestAlgorithms SET, encapContentInfo, [0] certs?, [1] crls?, signerInfos SET
            for alg in children(fields.get(1).filter(|t| t.tag == SET)?.content)? {
                out.digests.push(algorithm_oid(&alg)?);
            }
            let signer_infos = fields.iter().skip(3).rfind(|t| t.tag == SET)?;
            for si in children(signer_infos.content)? {
                let f = children(si.content)?;
                // version, sid, digestAlgorithm, [0] signedAttrs?, signatureAlgorithm, signature
                out.digests.push(algorithm_oid(f.get(2)?)?);
                let sig_index = if f.get(3)?.tag == 0xa0 { 4 } else { 3 };
                out.signatures.push(algorithm_oid(f.get(sig_index)?)?);
            }
        }
        _ => {}
    }
    Some(out)
}

/// Appends a TLV header (tag and DER length) for `len` content bytes.
pub fn write_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Splits a DER SignedData ContentInfo into the same structure without its certificates
/// field, and the certificates (each a whole DER TLV). `None` if the input isn't DER
/// SignedData (callers then parse it the ordinary way).
pub fn split_certificates(der: &[u8]) -> Option<(Vec<u8>, Vec<&[u8]>)> {
    let (ci, rest) = read(der)?;
    if ci.tag != SEQUENCE || !rest.is_empty() {
        return None;
    }
    let (oid, after_oid) = read(ci.content)?;
    if oid.tag != OID || oid_text(oid.content)? != SIGNED_DATA {
        return None;
    }
    let (explicit, _) = read(after_oid)?;
    let (sd, _) = read(explicit.content)?;
    if explicit.tag != 0xa0 || sd.tag != SEQUENCE {
        return None;
    }
    let mut fields = Vec::new();
    let mut certs = Vec::new();
    let mut cursor = sd.content;
    while !cursor.is_empty() {
        let (tlv, next) = read(cursor)?;
        let whole = &cursor[..cursor.len() - next.len()];
        if tlv.tag == 0xa0 {
            // [0] IMPLICIT CertificateSet: keep plain certificates, give up on anything else.
            let mut c = tlv.content;
            while !c.is_empty() {
                let (cert, n) = read(c)?;
                if cert.tag != SEQUENCE {
                    return None;
                }
                certs.push(&c[..c.len() - n.len()]);
                c = n;
            }
        } else {
            fields.push(whole);
        }
        cursor = next;
    }
    let body_len: usize = fields.iter().map(|f| f.len()).sum();
    let mut sd_out = Vec::with_capacity(body_len + 8);
    write_header(&mut sd_out, SEQUENCE, body_len);
    for f in fields {
        sd_out.extend_from_slice(f);
    }
    let mut explicit_out = Vec::with_capacity(sd_out.len() + 8);
    write_header(&mut explicit_out, 0xa0, sd_out.len());
    explicit_out.extend_from_slice(&sd_out);
    let oid_whole = &ci.content[..ci.content.len() - after_oid.len()];
    let mut out = Vec::with_capacity(explicit_out.len() + oid_whole.len() + 8);
    write_header(&mut out, SEQUENCE, oid_whole.len() + explicit_out.len());
    out.extend_from_slice(oid_whole);
    out.extend_from_slice(&explicit_out);
    Some((out, certs))
}

/// A whole TLV.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    write_header(&mut out, tag, content.len());
    out.extend_from_slice(content);
    out
}

/// A constructed TLV around the concatenation of `parts`.
pub fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    write_header(&mut out, tag, len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A DER SET OF: the elements sorted by their encodings (X.690 11.6).
pub fn set_of(mut elements: Vec<Vec<u8>>) -> Vec<u8> {
    elements.sort();
    let parts: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
    cons(SET, &parts)
}

/// DER of an OBJECT IDENTIFIER given in dotted form (a constant of this crate).
pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap_or(0)).collect();
    let mut body = Vec::with_capacity(arcs.len() + 4);
    let first = arcs.first().copied().unwrap_or(0) * 40 + arcs.get(1).copied().unwrap_or(0);
    for arc in std::iter::once(first).chain(arcs.iter().skip(2).copied()) {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            chunk.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        body.extend(chunk.iter().rev());
    }
    tlv(OID, &body)
}

/// AlgorithmIdentifier with absent parameters, or with the given DER parameters.
pub fn algorithm(dotted: &str, params: Option<&[u8]>) -> Vec<u8> {
    let o = oid(dotted);
    match params {
        Some(p) => cons(SEQUENCE, &[&o, p]),
        None => cons(SEQUENCE, &[&o]),
    }
}

pub const NULL: &[u8] = &[0x05, 0x00];
pub const OCTET_STRING: u8 = 0x04;

/// A certificate's issuer Name and serialNumber, as their exact DER TLVs (for
/// IssuerAndSerialNumber, which must match the certificate byte for byte).
pub fn issuer_and_serial(cert_der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (cert, _) = read(cert_der)?;
    let (tbs, _) = read(cert.content)?;
    let mut cursor = tbs.content;
    let mut fields: Vec<&[u8]> = Vec::new();
    while !cursor.is_empty() && fields.len() < 5 {
        let (_, next) = read(cursor)?;
        fields.push(&cursor[..cursor.len() - next.len()]);
        cursor = next;
    }
    // [0] version is optional (v1 certificates omit it).
    let skip = usize::from(fields.first()?.first() == Some(&0xa0));
    let serial = *fields.get(skip)?;
    let issuer = *fields.get(skip + 2)?;
    (serial.first() == Some(&INTEGER) && issuer.first() == Some(&SEQUENCE))
        .then_some((issuer, serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids() {
        // 2.16.840.1.101.3.4.1.42 (aes256-CBC)
        let aes = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
        assert_eq!(oid_text(&aes).as_deref(), Some("2.16.840.1.101.3.4.1.42"));
        assert_eq!(oid_text(&[0x2a, 0x86]), None, "truncated subidentifier");
        assert_eq!(oid_text(&[]), None);
    }

    #[test]
    fn writes_oids_and_sets() {
        assert_eq!(
            oid("2.16.840.1.101.3.4.1.42"),
            [
                0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a
            ]
        );
        assert_eq!(
            oid("1.2.840.113549.1.9.16.1.23"),
            [
                0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17
            ]
        );
        assert_eq!(
            oid_text(&oid("1.2.840.113549.1.1.7")[2..]).as_deref(),
            Some("1.2.840.113549.1.1.7")
        );
        let set = set_of(vec![vec![0x04, 0x01, 0x02], vec![0x04, 0x01, 0x01]]);
        assert_eq!(set, [0x31, 0x06, 0x04, 0x01, 0x01, 0x04, 0x01, 0x02]);
        let mut long = Vec::new();
        write_header(&mut long, 0x04, 300);
        assert_eq!(long, [0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn lengths_are_bounds_checked() {
        assert!(read(&[0x30, 0x05, 0x01]).is_none());
        assert!(read(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(
            read(&[0x30, 0x80]).is_none(),
            "indefinite length is not DER"
        );
        assert!(read(&[0x1f, 0x01, 0x00]).is_none());
        let (t, rest) = read(&[0x04, 0x81, 0x01, 0xaa, 0xbb]).unwrap();
        assert_eq!((t.tag, t.content, rest), (0x04, &[0xaa][..], &[0xbb][..]));
        assert!(cms_algorithms(&[0x30, 0x03, 0x06, 0x01, 0x2a]).is_none());
        assert!(cms_algorithms(b"garbage").is_none());
    }
}
