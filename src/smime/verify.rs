//! Verifies a detached SignedData of the usual S/MIME shape directly — one SHA-256 over the
//! content, one RSA verify over the signed attributes — instead of through OpenSSL's CMS layer,
//! whose parse, BIO chain and signer lookup cost more than the cryptography itself.
//!
//! This path only ever accepts. Anything it does not fully understand, and anything that does
//! not verify, goes back to the OpenSSL path (`cms::verify_in_place`), so every rejection and
//! every error stays exactly what it was. The shape accepted is therefore deliberately narrow
//! (what we, OpenSSL, gpgsm and NSS send) and at least as strict as OpenSSL's parser and
//! `CMS_verify`, so a message accepted here is one OpenSSL would accept too.

use openssl::hash::{MessageDigest, hash};
use openssl::pkey::Id;
use openssl::sign::Verifier;
use openssl::x509::X509;

use super::certcache;
use super::der::{self, INTEGER, OCTET_STRING, SEQUENCE, SET, Tlv};

pub(super) const OID_SIGNED_DATA: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02";
const OID_DATA: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01";
/// encapContentInfo of a detached signature: id-data and no content.
const ENCAP_DATA: &[u8] = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01";
pub(super) const OID_SHA256: &[u8] = b"\x60\x86\x48\x01\x65\x03\x04\x02\x01";
pub(super) const OID_RSA: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01";
const OID_SHA256_RSA: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b";
const OID_CONTENT_TYPE: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x03";
const OID_MESSAGE_DIGEST: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x04";
const OID_SIGNING_TIME: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x05";
const OID_SMIME_CAPABILITIES: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0f";

/// A signature that verified, and what the SignedData carried.
pub(super) struct Accepted {
    pub signer: X509,
    pub certificates: Vec<X509>,
}

/// Whether `alg` is the AlgorithmIdentifier `oid` with absent or NULL parameters: the only
/// parameters a digest or rsaEncryption may have, so anything else is left to OpenSSL.
pub(super) fn is_algorithm(alg: &Tlv<'_>, oid: &[u8]) -> bool {
    if alg.tag != SEQUENCE {
        return false;
    }
    let Some((o, params)) = der::read(alg.content) else {
        return false;
    };
    o.tag == der::OID && o.content == oid && (params.is_empty() || params == der::NULL)
}

/// One small INTEGER with exactly the given value (DER: a single content byte).
pub(super) fn is_small_int(t: &Tlv<'_>, allowed: &[u8]) -> bool {
    t.tag == INTEGER && t.content.len() == 1 && allowed.contains(&t.content[0])
}

/// A DER SignedData ContentInfo's SignedData fields, or `None` for anything else.
fn signed_data_fields(sig_der: &[u8]) -> Option<&[u8]> {
    let (ci, rest) = der::read(sig_der)?;
    if ci.tag != SEQUENCE || !rest.is_empty() {
        return None;
    }
    let [oid, explicit] = der::exactly::<2>(ci.content)?;
    if oid.tag != der::OID || oid.content != OID_SIGNED_DATA || explicit.tag != 0xa0 {
        return None;
    }
    let [sd] = der::exactly::<1>(explicit.content)?;
    (sd.tag == SEQUENCE).then_some(sd.content)
}

/// The signature over the detached `content`, if it is of the shape described above and
/// verifies. `None` means "ask OpenSSL", never "rejected".
pub(super) fn detached(sig_der: &[u8], content: &[u8]) -> Option<Accepted> {
    let mut fields = der::each(signed_data_fields(sig_der)?);
    let mut next = || fields.next().flatten();
    let (version, _) = next()?;
    let (digests, _) = next()?;
    let (encap, _) = next()?;
    if !is_small_int(&version, &[1, 3])
        || digests.tag != SET
        || encap.tag != SEQUENCE
        || encap.content != ENCAP_DATA
    {
        return None;
    }
    let mut digest_count = 0;
    for d in der::each(digests.content) {
        let (alg, _) = d?;
        if !is_algorithm(&alg, OID_SHA256) {
            return None;
        }
        digest_count += 1;
    }
    if digest_count == 0 {
        return None;
    }
    let (mut field, _) = next()?;
    let mut cert_ders = Vec::new();
    if field.tag == 0xa0 {
        for c in der::each(field.content) {
            let (cert, whole) = c?;
            if cert.tag != SEQUENCE {
                return None;
            }
            cert_ders.push(whole);
        }
        field = next()?.0;
    }
    // CRLs ([1]) and several signers are left to OpenSSL.
    if field.tag != SET || next().is_some() {
        return None;
    }
    let [signer_info] = der::exactly::<1>(field.content)?;
    if signer_info.tag != SEQUENCE {
        return None;
    }
    let [si_version, sid, digest_alg, attrs, sig_alg, signature] =
        der::exactly::<6>(signer_info.content)?;
    if !is_small_int(&si_version, &[1, 3])
        || !is_algorithm(&digest_alg, OID_SHA256)
        || !(is_algorithm(&sig_alg, OID_RSA) || is_algorithm(&sig_alg, OID_SHA256_RSA))
        || signature.tag != OCTET_STRING
        || attrs.tag != 0xa0
    {
        return None;
    }
    let attrs_der = signed_attributes(signer_info.content)?;
    let message_digest = checked_attributes(attrs.content)?;
    if hash(MessageDigest::sha256(), content).ok()?.as_ref() != message_digest {
        return None;
    }
    // The old path parses every carried certificate and fails on any: so does this one.
    let certificates = cert_ders
        .iter()
        .map(|d| certcache::parse(d).ok())
        .collect::<Option<Vec<_>>>()?;
    let signer = find_signer(&sid, &cert_ders, &certificates)?;
    let key = signer.public_key().ok()?;
    if key.id() != Id::RSA || key.bits() < crate::keys::MIN_RSA_BITS {
        return None;
    }
    let mut verifier = Verifier::new(MessageDigest::sha256(), &key).ok()?;
    // The signature covers the attributes with the SET OF tag instead of [0] (RFC 5652 5.4).
    verifier.update(&[SET]).ok()?;
    verifier.update(&attrs_der[1..]).ok()?;
    if !verifier.verify(signature.content).unwrap_or(false) {
        return None;
    }
    Some(Accepted {
        signer: signer.clone(),
        certificates,
    })
}

/// The whole `[0]` signed-attributes TLV of a SignerInfo (its fourth field), with a minimal
/// length: OpenSSL verifies over its own DER re-encoding of these bytes.
fn signed_attributes(signer_info: &[u8]) -> Option<&[u8]> {
    let mut rest = signer_info;
    for _ in 0..3 {
        rest = der::read(rest)?.1;
    }
    let (attrs, whole, _) = der::read_der(rest)?;
    (attrs.tag == 0xa0).then_some(whole)
}

/// Checks the signed attributes and returns the message-digest value. Accepted: each
/// attribute once, with one value, in DER; content-type id-data and a 32-byte message digest
/// (both required), and optionally signing-time and SMIMECapabilities. Anything else (other
/// attributes, several values, which OpenSSL would re-encode sorted, non-minimal lengths,
/// attributes out of DER order) goes to OpenSSL.
fn checked_attributes(attrs: &[u8]) -> Option<&[u8]> {
    let mut seen: [bool; 4] = [false; 4];
    let mut digest = None;
    let mut rest = attrs;
    let mut previous: &[u8] = &[];
    while !rest.is_empty() {
        let (attr, whole, next) = der::read_der(rest)?;
        rest = next;
        // DER order (X.690 11.6), which RFC 5652 requires: then the bytes verified here are
        // the same whether OpenSSL re-encodes the SET in received or in sorted order.
        if whole <= previous {
            return None;
        }
        previous = whole;
        let (oid, _, after_oid) = der::read_der(attr.content)?;
        let (values, _, after_values) = der::read_der(after_oid)?;
        let (value, _, after_value) = der::read_der(values.content)?;
        if attr.tag != SEQUENCE
            || oid.tag != der::OID
            || values.tag != SET
            || !after_values.is_empty()
            || !after_value.is_empty()
        {
            return None;
        }
        let index = [
            OID_CONTENT_TYPE,
            OID_MESSAGE_DIGEST,
            OID_SIGNING_TIME,
            OID_SMIME_CAPABILITIES,
        ]
        .iter()
        .position(|o| *o == oid.content)?;
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
        let ok = match index {
            0 => value.tag == der::OID && value.content == OID_DATA,
            1 => {
                digest = Some(value.content);
                value.tag == OCTET_STRING && value.content.len() == 32
            }
            2 => is_time(&value),
            // Stored and re-encoded by OpenSSL as raw bytes.
            _ => value.tag == SEQUENCE,
        };
        if !ok {
            return None;
        }
    }
    if !(seen[0] && seen[1]) {
        return None;
    }
    digest
}

fn is_time(t: &Tlv<'_>) -> bool {
    let digits = match t.tag {
        0x17 => 12,
        0x18 => 14,
        _ => return false,
    };
    t.content.len() == digits + 1
        && t.content[..digits].iter().all(u8::is_ascii_digit)
        && t.content[digits] == b'Z'
}

/// The carried certificate the SignerInfo names. OpenSSL takes the first certificate that
/// matches by its own comparison (canonical names); to be sure of picking the same one, the
/// match must be byte-exact and the only candidate.
fn find_signer<'c>(sid: &Tlv<'_>, ders: &[&[u8]], certs: &'c [X509]) -> Option<&'c X509> {
    let mut found = None;
    match sid.tag {
        SEQUENCE => {
            let [issuer, serial] = der::exactly::<2>(sid.content)?;
            if issuer.tag != SEQUENCE || serial.tag != INTEGER {
                return None;
            }
            for (d, cert) in ders.iter().zip(certs) {
                let (c_issuer, c_serial) = der::issuer_and_serial(d)?;
                let (c_issuer, c_serial) = (der::read(c_issuer)?.0, der::read(c_serial)?.0);
                // OpenSSL 3 refuses padded INTEGERs, so serials are equal iff their bytes are.
                if c_serial.content == serial.content {
                    if found.is_some() || c_issuer.content != issuer.content {
                        return None;
                    }
                    found = Some(cert);
                }
            }
        }
        0x80 => {
            for cert in certs {
                if cert.subject_key_id().map(|k| k.as_slice()) == Some(sid.content) {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(cert);
                }
            }
        }
        _ => return None,
    }
    found
}
