//! DirectTrust trust bundles (SPEC D26), pure: bytes in, anchor certificates out.
//!
//! A bundle is a certs-only PKCS#7/CMS SignedData (.p7b), DER or PEM. A signed bundle carries
//! that .p7b as the encapsulated content of a second SignedData whose signer must be exactly the
//! certificate the admin configured: it is pinned, not chained, so neither a CA nor the bundle
//! itself can vouch for a substitute. Some distributions put the .p7b inside an XML metadata
//! document; the embedded bundle is read from it.

use std::borrow::Cow;

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::hash::{Hasher, MessageDigest};
use openssl::stack::Stack;
use openssl::x509::{X509, X509Ref};

use super::ffi;
use super::path::parse_certificates;
use crate::certinfo::{dn_string, first_reason, hex, sha256_hex};

/// Most certificates accepted in one bundle; DirectTrust's hold a few hundred.
pub const MAX_CERTIFICATES: usize = 10_000;

/// PEM labels a .p7b (or a signed bundle) is armoured with.
const PEM_LABELS: [&str; 3] = ["PKCS7", "CMS", "PKCS #7 SIGNED DATA"];

/// Shortest base64 text in an XML document taken for an embedded bundle (a single
/// certificate is already several hundred characters).
const MIN_EMBEDDED_BASE64: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle is empty; check the URL or file")]
    Empty,
    #[error(
        "the document is XML but holds no embedded bundle (base64 or PEM .p7b); point the bundle at the .p7b itself"
    )]
    XmlWithoutBundle,
    #[error("not a trust bundle ({0}); expected a .p7b (PKCS#7 certificates), DER or PEM")]
    Malformed(String),
    #[error("the bundle holds no certificates")]
    NoCertificates,
    #[error("the bundle holds {0} certificates, more than the {MAX_CERTIFICATES} accepted")]
    TooMany(usize),
    #[error(
        "the bundle is not signed, but a signing certificate is configured for it; check that the URL or file is the signed bundle, or add the bundle without --signer"
    )]
    Unsigned,
    #[error(
        "the bundle is signed but no signing certificate is configured; add the bundle with --signer CERT (the publisher's bundle-signing certificate) so the signature can be checked"
    )]
    SignerNotConfigured,
    #[error(
        "the bundle is signed by {found}, not by the configured signer {expected}; if the publisher changed its signing certificate, verify the new one out of band and add the bundle again with it"
    )]
    WrongSigner { expected: String, found: String },
    #[error(
        "the signature of {signer} over the bundle does not verify ({reason}): the bundle was altered after signing or is damaged"
    )]
    BadSignature { signer: String, reason: String },
    #[error("the signed bundle does not contain a .p7b: {0}")]
    BadContent(String),
}

/// The anchors a bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// DER of each certificate, sorted, without duplicates.
    pub certificates: Vec<Vec<u8>>,
    /// Hex SHA-256 over the sorted certificates: equal exactly when the certificate set is,
    /// whatever the order, encoding or signature around it.
    pub content_sha256: String,
    /// True when the configured signer's signature was checked.
    pub signed: bool,
}

/// Reads a bundle. With `signer`, only a bundle signed by exactly that certificate is
/// accepted; without, only an unsigned one (a signature nobody checks would be decoration).
pub fn parse(bytes: &[u8], signer: Option<&X509Ref>) -> Result<Bundle, BundleError> {
    let certs = match decode(bytes)? {
        Encoded::PemCertificates(text) => {
            if signer.is_some() {
                return Err(BundleError::Unsigned);
            }
            parse_certificates(text).map_err(BundleError::Malformed)?
        }
        Encoded::Der(der) => match CmsContentInfo::from_der(&der) {
            Ok(cms) if ffi::signer_info_count(&cms) == 0 => {
                if signer.is_some() {
                    return Err(BundleError::Unsigned);
                }
                crate::smime::ffi::certificates(&cms)
            }
            Ok(cms) => match signer {
                Some(expected) => verified_content(cms, expected)?,
                None => return Err(BundleError::SignerNotConfigured),
            },
            // A lone DER certificate is a bundle of one.
            Err(e) => match parse_certificates(&der) {
                Ok(_) if signer.is_some() => return Err(BundleError::Unsigned),
                Ok(certs) => certs,
                Err(_) => return Err(BundleError::Malformed(first_reason(&e))),
            },
        },
    };
    finish(&certs, signer.is_some())
}

enum Encoded<'a> {
    Der(Cow<'a, [u8]>),
    /// PEM CERTIFICATE blocks rather than a PKCS#7 structure.
    PemCertificates(&'a [u8]),
}

/// The DER of the outermost structure, from DER, PEM, or XML around either.
fn decode(bytes: &[u8]) -> Result<Encoded<'_>, BundleError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BundleError::Empty);
    }
    // DER is taken as it is: its last bytes may well look like whitespace.
    if bytes.first() == Some(&0x30) {
        return Ok(Encoded::Der(Cow::Borrowed(bytes)));
    }
    for label in PEM_LABELS {
        if let Some(der) = pem_block(bytes, label)? {
            return Ok(Encoded::Der(Cow::Owned(der)));
        }
    }
    if find(bytes, b"-----BEGIN CERTIFICATE-----").is_some() {
        return Ok(Encoded::PemCertificates(bytes));
    }
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if text.trim_ascii_start().first() == Some(&b'<') {
        return embedded_in_xml(text).map(|der| Encoded::Der(Cow::Owned(der)));
    }
    if find(bytes, b"-----BEGIN ").is_some() {
        return Err(BundleError::Malformed(
            "PEM, but no PKCS7, CMS or CERTIFICATE block".into(),
        ));
    }
    Err(BundleError::Malformed(format!(
        "neither DER, PEM nor XML: the first byte is 0x{:02x}",
        bytes.first().copied().unwrap_or_default()
    )))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The decoded body of the first `label` PEM block, if there is one.
fn pem_block(bytes: &[u8], label: &str) -> Result<Option<Vec<u8>>, BundleError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = find(bytes, begin.as_bytes()) else {
        return Ok(None);
    };
    let body = &bytes[start + begin.len()..];
    let Some(stop) = find(body, end.as_bytes()) else {
        return Err(BundleError::Malformed(format!(
            "PEM {label} block without its END line"
        )));
    };
    base64(&body[..stop])
        .map(Some)
        .ok_or_else(|| BundleError::Malformed(format!("PEM {label} block is not valid base64")))
}

/// Base64 with any whitespace (line breaks) in it.
fn base64(text: &[u8]) -> Option<Vec<u8>> {
    let compact: String = text
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|&b| char::from(b))
        .collect();
    if compact.is_empty() || !compact.is_ascii() {
        return None;
    }
    openssl::base64::decode_block(&compact).ok()
}

/// The bundle inside an XML metadata document: a PEM block anywhere, or the longest base64
/// text (element content or CDATA) that decodes to a DER structure.
fn embedded_in_xml(text: &[u8]) -> Result<Vec<u8>, BundleError> {
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    let mut runs: Vec<&[u8]> = text
        .split(|b| !(is_b64(b) || b.is_ascii_whitespace()))
        .filter(|run| run.iter().filter(|b| is_b64(b)).count() >= MIN_EMBEDDED_BASE64)
        .collect();
    runs.sort_by_key(|run| std::cmp::Reverse(run.len()));
    runs.into_iter()
        .filter_map(base64)
        .find(|der| der.first() == Some(&0x30))
        .ok_or(BundleError::XmlWithoutBundle)
}

/// Checks the signature of `expected` over a signed bundle and returns the certificates of
/// the .p7b inside.
fn verified_content(mut cms: CmsContentInfo, expected: &X509Ref) -> Result<Vec<X509>, BundleError> {
    let naming = ffi::signer_infos_naming(&cms, expected);
    if naming.iter().any(|names_expected| !names_expected) {
        return Err(BundleError::WrongSigner {
            expected: describe(expected),
            found: other_signer(&cms, expected),
        });
    }
    let mut pinned = Stack::new().map_err(|e| BundleError::Malformed(first_reason(&e)))?;
    pinned
        .push(expected.to_owned())
        .map_err(|e| BundleError::Malformed(first_reason(&e)))?;
    let mut content = Vec::new();
    // NOINTERN: the signer is looked up among the pinned certificate only, never among those
    // the bundle carries. NO_SIGNER_CERT_VERIFY: pinning replaces path validation.
    let flags = CMSOptions::NOINTERN | CMSOptions::NO_SIGNER_CERT_VERIFY | CMSOptions::BINARY;
    cms.verify(Some(&pinned), None, None, Some(&mut content), flags)
        .map_err(|e| BundleError::BadSignature {
            signer: describe(expected),
            reason: first_reason(&e),
        })?;
    match decode(&content) {
        Err(BundleError::Empty) => Err(BundleError::BadContent("the content is empty".into())),
        Err(e) => Err(BundleError::BadContent(e.to_string())),
        Ok(Encoded::PemCertificates(text)) => {
            parse_certificates(text).map_err(BundleError::BadContent)
        }
        Ok(Encoded::Der(der)) => {
            let inner = CmsContentInfo::from_der(&der)
                .map_err(|e| BundleError::BadContent(first_reason(&e)))?;
            if ffi::signer_info_count(&inner) > 0 {
                return Err(BundleError::BadContent(
                    "it is signed again; only one signature layer is read".into(),
                ));
            }
            Ok(crate::smime::ffi::certificates(&inner))
        }
    }
}

/// Who signed instead of `expected`, as far as the bundle tells.
fn other_signer(cms: &CmsContentInfo, expected: &X509Ref) -> String {
    let expected_der = expected.to_der().unwrap_or_default();
    crate::smime::ffi::certificates(cms)
        .into_iter()
        .filter(|c| c.to_der().unwrap_or_default() != expected_der)
        .find(|c| ffi::signer_infos_naming(cms, c).contains(&true))
        .map_or_else(
            || "a certificate the bundle does not carry".to_string(),
            |c| describe(&c),
        )
}

fn describe(cert: &X509Ref) -> String {
    format!(
        "{} (sha256 {})",
        dn_string(cert.subject_name()),
        sha256_hex(&cert.to_der().unwrap_or_default())
    )
}

fn finish(certs: &[X509], signed: bool) -> Result<Bundle, BundleError> {
    if certs.is_empty() {
        return Err(BundleError::NoCertificates);
    }
    if certs.len() > MAX_CERTIFICATES {
        return Err(BundleError::TooMany(certs.len()));
    }
    let mut ders = certs
        .iter()
        .map(|c| c.to_der())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BundleError::Malformed(first_reason(&e)))?;
    ders.sort();
    ders.dedup();
    Ok(Bundle {
        content_sha256: set_hash(&ders),
        certificates: ders,
        signed,
    })
}

/// SHA-256 over the sorted DERs, each length-prefixed so no two sets share an encoding.
fn set_hash(sorted: &[Vec<u8>]) -> String {
    let digest = (|| {
        let mut h = Hasher::new(MessageDigest::sha256())?;
        for der in sorted {
            h.update(&(der.len() as u64).to_be_bytes())?;
            h.update(der)?;
        }
        h.finish()
    })()
    .expect("SHA-256 is always available");
    hex(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devpki::{Ca, Issued, Usage, certs_only_p7b, signed_bundle};

    struct Pki {
        a: Ca,
        b: Ca,
        signer: Issued,
        impostor: Issued,
    }

    fn pki() -> Pki {
        let publisher = Ca::root("Bundle Publisher").unwrap();
        let signer = publisher
            .leaf()
            .common_name("Bundle Signer")
            .usage(Usage::SignOnly)
            .build()
            .unwrap();
        let impostor = publisher
            .leaf()
            .common_name("Bundle Signer")
            .usage(Usage::SignOnly)
            .build()
            .unwrap();
        Pki {
            a: Ca::root("Community A").unwrap(),
            b: Ca::root("Community B").unwrap(),
            signer,
            impostor,
        }
    }

    fn der(ca: &Ca) -> Vec<u8> {
        ca.cert.to_der().unwrap()
    }

    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        let body = openssl::base64::encode_block(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
        .into_bytes()
    }

    #[test]
    fn der_and_pem_give_the_same_set_in_any_order() {
        let p = pki();
        let ab = certs_only_p7b(&[&p.a.cert, &p.b.cert]).unwrap();
        let ba = certs_only_p7b(&[&p.b.cert, &p.a.cert, &p.a.cert]).unwrap();
        let from_der = parse(&ab, None).unwrap();
        let mut want = vec![der(&p.a), der(&p.b)];
        want.sort();
        assert_eq!(from_der.certificates, want);
        assert!(!from_der.signed);
        for other in [
            parse(&ba, None).unwrap(),
            parse(&pem("PKCS7", &ab), None).unwrap(),
            parse(&pem("CMS", &ba), None).unwrap(),
        ] {
            assert_eq!(other, from_der);
        }
        let only_a = parse(&certs_only_p7b(&[&p.a.cert]).unwrap(), None).unwrap();
        assert_ne!(only_a.content_sha256, from_der.content_sha256);
    }

    #[test]
    fn signed_by_the_configured_signer_is_accepted() {
        let p = pki();
        let inner = certs_only_p7b(&[&p.a.cert, &p.b.cert]).unwrap();
        let signed = signed_bundle(&p.signer, &inner).unwrap();
        let bundle = parse(&signed, Some(&p.signer.cert)).unwrap();
        assert!(bundle.signed);
        assert_eq!(
            bundle.content_sha256,
            parse(&inner, None).unwrap().content_sha256
        );
        // The signer's own certificate, carried in the outer layer, is not an anchor.
        assert!(!bundle.certificates.contains(&p.signer.cert_der()));
        let armoured = parse(&pem("PKCS7", &signed), Some(&p.signer.cert)).unwrap();
        assert_eq!(armoured.certificates, bundle.certificates);
        // A PEM .p7b inside the signature is read too.
        let pem_inside = signed_bundle(&p.signer, &pem("PKCS7", &inner)).unwrap();
        assert_eq!(
            parse(&pem_inside, Some(&p.signer.cert))
                .unwrap()
                .certificates,
            bundle.certificates
        );
    }

    #[test]
    fn signed_by_another_key_is_rejected() {
        let p = pki();
        let inner = certs_only_p7b(&[&p.a.cert]).unwrap();
        let other = p.a.leaf().common_name("Mallory").build().unwrap();
        let err = parse(
            &signed_bundle(&other, &inner).unwrap(),
            Some(&p.signer.cert),
        )
        .unwrap_err();
        assert!(
            matches!(&err, BundleError::WrongSigner { found, .. } if found.contains("CN=Mallory")),
            "{err}"
        );
        // Same name and issuer as the real signer, different certificate and key.
        let err = parse(
            &signed_bundle(&p.impostor, &inner).unwrap(),
            Some(&p.signer.cert),
        )
        .unwrap_err();
        assert!(matches!(err, BundleError::WrongSigner { .. }), "{err}");
    }

    #[test]
    fn tampered_content_is_rejected() {
        let p = pki();
        let inner = certs_only_p7b(&[&p.a.cert]).unwrap();
        let mut signed = signed_bundle(&p.signer, &inner).unwrap();
        let cert = der(&p.a);
        let at = find(&signed, &cert).unwrap() + cert.len() - 1;
        signed[at] ^= 0x01;
        let err = parse(&signed, Some(&p.signer.cert)).unwrap_err();
        assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains("altered"), "{err}");
    }

    #[test]
    fn signature_and_signer_must_go_together() {
        let p = pki();
        let inner = certs_only_p7b(&[&p.a.cert]).unwrap();
        assert_eq!(
            parse(&inner, Some(&p.signer.cert)),
            Err(BundleError::Unsigned)
        );
        assert_eq!(
            parse(&p.a.cert.to_pem().unwrap(), Some(&p.signer.cert)),
            Err(BundleError::Unsigned)
        );
        let signed = signed_bundle(&p.signer, &inner).unwrap();
        assert_eq!(parse(&signed, None), Err(BundleError::SignerNotConfigured));
        // A signature around a signature is not a bundle.
        let twice = signed_bundle(&p.signer, &signed).unwrap();
        let err = parse(&twice, Some(&p.signer.cert)).unwrap_err();
        assert!(matches!(err, BundleError::BadContent(_)), "{err}");
    }

    #[test]
    fn empty_garbage_and_certificate_less_input() {
        assert_eq!(parse(b"", None), Err(BundleError::Empty));
        assert_eq!(parse(b" \r\n\t", None), Err(BundleError::Empty));
        for garbage in [
            &b"hello world"[..],
            b"\x30\x82\xff\xff\x01",
            b"\x30",
            b"\x00\x01",
        ] {
            let err = parse(garbage, None).unwrap_err();
            assert!(matches!(err, BundleError::Malformed(_)), "{err}");
        }
        let none = certs_only_p7b(&[]).unwrap();
        assert_eq!(parse(&none, None), Err(BundleError::NoCertificates));
        let p = pki();
        let good = certs_only_p7b(&[&p.a.cert]).unwrap();
        for cut in [1, good.len() / 2, good.len() - 1] {
            assert!(parse(&good[..cut], None).is_err());
        }
        let err = parse(b"-----BEGIN PKCS7-----\nMIIB\n", None).unwrap_err();
        assert!(err.to_string().contains("END"), "{err}");
        let err = parse(
            b"-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n",
            None,
        );
        assert!(err.unwrap_err().to_string().contains("no PKCS7"));
        let err = parse(b"garbage\n", None).unwrap_err();
        assert!(err.to_string().contains("first byte is 0x67"), "{err}");
    }

    #[test]
    fn lone_certificates_are_a_bundle_of_their_own() {
        let p = pki();
        let one = parse(&der(&p.a), None).unwrap();
        assert_eq!(one.certificates, vec![der(&p.a)]);
        let mut pems = p.a.cert.to_pem().unwrap();
        pems.extend(p.b.cert.to_pem().unwrap());
        assert_eq!(parse(&pems, None).unwrap().certificates.len(), 2);
    }

    #[test]
    fn xml_metadata_around_the_bundle() {
        let p = pki();
        let p7b = certs_only_p7b(&[&p.a.cert, &p.b.cert]).unwrap();
        let want = parse(&p7b, None).unwrap();
        let b64 = openssl::base64::encode_block(&p7b);
        let wrapped = format!(
            "\u{feff}<?xml version=\"1.0\"?>\n<TrustBundle>\n  <Name>Community</Name>\n  <Description>A bundle of anchors for testing purposes only, padded to be long enough to look like base64 text</Description>\n  <Bundle><![CDATA[{b64}]]></Bundle>\n</TrustBundle>\n"
        );
        assert_eq!(parse(wrapped.as_bytes(), None).unwrap(), want);
        let lines = String::from_utf8(pem("PKCS7", &p7b)).unwrap();
        let wrapped = format!("<bundle><p7b>\n{lines}</p7b></bundle>");
        assert_eq!(parse(wrapped.as_bytes(), None).unwrap(), want);
        let bare = "<TrustBundle><Url>https://bundles.example/a.p7b</Url></TrustBundle>";
        assert_eq!(
            parse(bare.as_bytes(), None),
            Err(BundleError::XmlWithoutBundle)
        );
    }
}
