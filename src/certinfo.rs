//! What a certificate says about itself: fingerprint, names, SAN bindings, usage, key size.
//! Pure; shared by the admin CLI, trust validation and discovery.

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::hash::{MessageDigest, hash};
use openssl::nid::Nid;
use openssl::pkey::Id;
use openssl::x509::{X509, X509KeyUsage, X509NameRef, X509Ref};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{what}: no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\" or DER)")]
    Empty { what: String },
    #[error("{what}: not a valid certificate ({detail})")]
    Malformed { what: String, detail: String },
}

/// Lower-case hex, used for fingerprints and tokens.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub fn sha256_hex(der: &[u8]) -> String {
    hex(&hash(MessageDigest::sha256(), der).expect("SHA-256 is always available"))
}

/// Reads one or more certificates from PEM (any number of CERTIFICATE blocks) or a DER blob.
/// `what` names the input in errors (usually the file name).
pub fn parse_certs(bytes: &[u8], what: &str) -> Result<Vec<X509>, CertError> {
    let looks_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if looks_pem {
        let certs = X509::stack_from_pem(bytes).map_err(|e| CertError::Malformed {
            what: what.to_string(),
            detail: first_reason(&e),
        })?;
        if certs.is_empty() {
            return Err(CertError::Empty {
                what: what.to_string(),
            });
        }
        return Ok(certs);
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(CertError::Empty {
            what: what.to_string(),
        });
    }
    X509::from_der(bytes)
        .map(|c| vec![c])
        .map_err(|e| CertError::Malformed {
            what: what.to_string(),
            detail: first_reason(&e),
        })
}

/// The first human-readable reason in an OpenSSL error stack.
pub fn first_reason(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .iter()
        .find_map(|err| err.reason().map(str::to_string))
        .unwrap_or_else(|| "unparseable data".to_string())
}

/// Unix seconds of an ASN.1 time.
pub fn unix_time(t: &Asn1TimeRef) -> i64 {
    let epoch = Asn1Time::from_unix(0).expect("epoch is representable");
    match epoch.diff(t) {
        Ok(d) => i64::from(d.days) * 86_400 + i64::from(d.secs),
        Err(_) => 0,
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds, for messages admins read.
pub fn iso_date(secs: i64) -> String {
    let (y, m, d) = civil_date(secs);
    format!("{y:04}-{m:02}-{d:02}")
}

/// (year, month, day) in UTC of a Unix time in seconds.
pub fn civil_date(secs: i64) -> (i64, i64, i64) {
    // Proleptic Gregorian calendar with days counted from 0000-03-01, so leap days fall at
    // the end of a counted year (Howard Hinnant's civil-from-days).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// One line `CN=..., O=...` rendering of a distinguished name.
pub fn dn_string(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_else(|_| "?".to_string());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    /// subjectAltName rfc822Name values, lower-cased (address bindings).
    pub emails: Vec<String>,
    /// subjectAltName dNSName values, lower-cased (domain bindings).
    pub dns_names: Vec<String>,
    pub can_sign: bool,
    pub can_encrypt: bool,
    pub is_ca: bool,
    pub key_algorithm: String,
    pub key_bits: u32,
}

impl CertInfo {
    pub fn of(cert: &X509Ref) -> CertInfo {
        let der = cert.to_der().unwrap_or_default();
        let mut emails = Vec::new();
        let mut dns_names = Vec::new();
        if let Some(sans) = cert.subject_alt_names() {
            for san in &sans {
                if let Some(e) = san.email() {
                    emails.push(e.trim().to_ascii_lowercase());
                }
                if let Some(d) = san.dnsname() {
                    dns_names.push(d.trim().trim_end_matches('.').to_ascii_lowercase());
                }
            }
        }
        // Absent keyUsage means unrestricted (RFC 5280 4.2.1.3).
        let usage = cert.key_usage();
        let allows = |bit: X509KeyUsage| usage.is_none_or(|u| u.contains(bit));
        let (key_algorithm, key_bits) = match cert.public_key() {
            Ok(k) => (
                match k.id() {
                    Id::RSA => "RSA".to_string(),
                    Id::EC => "EC".to_string(),
                    Id::ED25519 => "Ed25519".to_string(),
                    other => format!("{other:?}"),
                },
                k.bits(),
            ),
            Err(_) => ("unknown".to_string(), 0),
        };
        let serial = cert
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_ascii_lowercase()))
            .unwrap_or_default();
        CertInfo {
            sha256: sha256_hex(&der),
            subject: dn_string(cert.subject_name()),
            issuer: dn_string(cert.issuer_name()),
            serial,
            not_before: unix_time(cert.not_before()),
            not_after: unix_time(cert.not_after()),
            emails,
            dns_names,
            can_sign: allows(X509KeyUsage::DIGITAL_SIGNATURE),
            can_encrypt: allows(X509KeyUsage::KEY_ENCIPHERMENT),
            is_ca: cert.pathlen().is_some() || is_ca(cert),
            key_algorithm,
            key_bits,
        }
    }

    /// The common name, for short displays.
    pub fn common_name(cert: &X509Ref) -> Option<String> {
        cert.subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
    }
}

fn is_ca(cert: &X509Ref) -> bool {
    // EXFLAG_CA is set by OpenSSL when basicConstraints says cA=TRUE.
    const EXFLAG_CA: u32 = 0x10;
    // SAFETY: the pointer is valid for the borrow; the call only caches extension flags.
    let flags = unsafe { openssl_sys::X509_get_extension_flags(foreign_ptr(cert)) };
    flags & EXFLAG_CA != 0
}

fn foreign_ptr(cert: &X509Ref) -> *mut openssl_sys::X509 {
    use foreign_types::ForeignTypeRef;
    cert.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::iso_date;

    #[test]
    fn dates() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(951_782_400), "2000-02-29");
        assert_eq!(iso_date(1_767_225_599), "2025-12-31");
        assert_eq!(iso_date(1_795_459_713), "2026-11-23");
        assert_eq!(iso_date(-1), "1969-12-31");
    }
}
