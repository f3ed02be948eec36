//! Certificate trust validation (SPEC B11-B14, D20-D25): may this certificate be used for this
//! purpose, by this address or domain, under these trust anchors, at this time?
//!
//! [`Validator::validate`] runs the checks in a fixed order and reports the first failure, so the
//! reason shown to an admin is the most specific one: key strength, key usage, SAN binding,
//! validity dates, path to an anchor (fetching missing intermediates over AIA), revocation (CRLs,
//! cached in a [`CrlCache`]), and finally required certificate policies.
//!
//! The module is pure: it never opens a socket or a database. Everything that must come from the
//! network goes through a caller-supplied [`Fetcher`], and the CRL cache offers hooks so a caller
//! can persist it.

pub mod bundle;
mod crl;
mod ffi;
mod path;
mod policy;
mod validate;

#[cfg(test)]
mod testing;

pub use crl::CrlCache;
pub use path::parse_certificates;
pub use validate::{BindTo, Policy, Purpose, Validation, Validator, Verdict};

use openssl::asn1::Asn1TimeRef;

use crate::certinfo::{iso_date, unix_time};

/// Fetches a URL (AIA caIssuers, CRL distribution point). Implemented by callers with real HTTP
/// (with timeouts and size limits); tests use an in-memory map.
pub trait Fetcher: Send + Sync {
    fn fetch(&self, url: &str) -> Result<Vec<u8>, String>;
}

/// `YYYY-MM-DD` (UTC) of an ASN.1 time, for reasons admins read.
fn date(time: &Asn1TimeRef) -> String {
    iso_date(unix_time(time))
}
