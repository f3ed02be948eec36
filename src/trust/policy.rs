//! The certificatePolicies extension (RFC 5280 4.2.1.4): which policy OIDs a certificate asserts.
//!
//! The openssl crate has no accessor for it, so the extension value is read raw and walked here.
//! Only the policy identifiers matter for the DirectTrust filters (SPEC D25); qualifiers are
//! skipped without being decoded.

use openssl::nid::Nid;
use openssl::x509::X509Ref;

use super::ffi;
use crate::certinfo::first_reason;

const SEQUENCE: u8 = 0x30;
const OBJECT_IDENTIFIER: u8 = 0x06;

/// Dotted policy OIDs of `cert`; empty when it has no certificatePolicies extension.
pub(super) fn asserted(cert: &X509Ref) -> Result<Vec<String>, String> {
    let value = ffi::extension_value(cert, Nid::CERTIFICATE_POLICIES)
        .map_err(|e| format!("certificatePolicies unreadable: {}", first_reason(&e)))?;
    match value {
        None => Ok(Vec::new()),
        Some(der) => policy_ids(&der)
            .map_err(|why| format!("certificatePolicies extension is malformed: {why}")),
    }
}

/// `SEQUENCE OF SEQUENCE { policyIdentifier OID, qualifiers ANY OPTIONAL }`
fn policy_ids(der: &[u8]) -> Result<Vec<String>, &'static str> {
    let (mut infos, trailing) = element(der, SEQUENCE)?;
    if !trailing.is_empty() {
        return Err("data after the policy list");
    }
    let mut ids = Vec::new();
    while !infos.is_empty() {
        let (info, rest) = element(infos, SEQUENCE)?;
        let (oid, _qualifiers) = element(info, OBJECT_IDENTIFIER)?;
        ids.push(dotted(oid)?);
        infos = rest;
    }
    Ok(ids)
}

/// Splits one DER element with the expected tag off `input`: (contents, remainder).
fn element(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), &'static str> {
    let [found, first_len, rest @ ..] = input else {
        return Err("truncated");
    };
    if *found != tag {
        return Err("unexpected tag");
    }
    let (len, rest) = if *first_len < 0x80 {
        (usize::from(*first_len), rest)
    } else {
        let count = usize::from(first_len & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err("bad length");
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return Err("truncated");
    }
    Ok(rest.split_at(len))
}

/// Base-128 arcs to dotted text; the first byte group packs the first two arcs (40 * a + b).
fn dotted(oid: &[u8]) -> Result<String, &'static str> {
    let mut arcs: Vec<u128> = Vec::new();
    let mut value: u128 = 0;
    for (i, byte) in oid.iter().enumerate() {
        value = value.checked_mul(128).ok_or("OID arc too large")? | u128::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        } else if i + 1 == oid.len() {
            return Err("truncated OID");
        }
    }
    let (&first, rest) = arcs.split_first().ok_or("empty OID")?;
    let (a, b) = match first {
        0..40 => (0, first),
        40..80 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut text = format!("{a}.{b}");
    for arc in rest {
        text.push('.');
        text.push_str(&arc.to_string());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use openssl::asn1::Asn1Object;

    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let len = u8::try_from(content.len()).unwrap();
        assert!(len < 0x80);
        [&[tag, len][..], content].concat()
    }

    fn oid(text: &str) -> Vec<u8> {
        tlv(
            OBJECT_IDENTIFIER,
            Asn1Object::from_str(text).unwrap().as_slice(),
        )
    }

    #[test]
    fn reads_identifiers_and_skips_qualifiers() {
        let cps_qualifier = tlv(
            SEQUENCE,
            &[oid("1.3.6.1.5.5.7.2.1"), tlv(0x16, b"x")].concat(),
        );
        let direct = [
            oid("1.3.6.1.4.1.41179.0.1.2"),
            tlv(SEQUENCE, &cps_qualifier),
        ]
        .concat();
        let any = oid("2.5.29.32.0");
        let der = tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &direct), tlv(SEQUENCE, &any)].concat(),
        );
        assert_eq!(
            policy_ids(&der).unwrap(),
            ["1.3.6.1.4.1.41179.0.1.2", "2.5.29.32.0"]
        );
        assert_eq!(
            policy_ids(&tlv(SEQUENCE, &[])).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn dotted_matches_openssl_encoding() {
        for text in [
            "1.2.840.113549.1.1.11",
            "2.999.1",
            "0.9.2342",
            "1.3.6.1.4.1.41179.2.4",
        ] {
            let der = Asn1Object::from_str(text).unwrap();
            assert_eq!(dotted(der.as_slice()).unwrap(), text);
        }
    }

    #[test]
    fn rejects_broken_encodings() {
        assert_eq!(policy_ids(&[]), Err("truncated"));
        assert_eq!(policy_ids(&[0x31, 0x00]), Err("unexpected tag"));
        assert_eq!(policy_ids(&[0x30, 0x05, 0x30]), Err("truncated"));
        assert_eq!(
            policy_ids(&[0x30, 0x00, 0x00]),
            Err("data after the policy list")
        );
        let unfinished = [0x30, 0x05, 0x30, 0x03, 0x06, 0x01, 0x81];
        assert_eq!(policy_ids(&unfinished), Err("truncated OID"));
        assert_eq!(policy_ids(&[0x30, 0x80]), Err("bad length"));
    }

    #[test]
    fn odd_arcs() {
        assert_eq!(dotted(&[0x00]).unwrap(), "0.0");
        assert_eq!(dotted(&[0x88, 0x37]).unwrap(), "2.999");
        assert_eq!(dotted(&[]), Err("empty OID"));
        assert_eq!(dotted(&[0xff; 20]), Err("OID arc too large"));
    }
}
