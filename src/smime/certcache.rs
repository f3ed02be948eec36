//! Parsed certificates by their DER. OpenSSL 3.0 spends ~100 µs decoding a certificate's
//! public key — a third of an RSA operation — and the same few partner certificates arrive on
//! every message, so signatures are verified against cached parses.

use openssl::error::ErrorStack;
use openssl::x509::X509;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Enough for every active partner certificate; when full the cache starts over rather than
/// tracking recency (a rare miss costs one parse).
const CAPACITY: usize = 4096;

fn cache() -> &'static Mutex<HashMap<Vec<u8>, X509>> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, X509>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The certificate encoded by `der` (exact DER), parsed at most once while cached.
pub fn parse(der: &[u8]) -> Result<X509, ErrorStack> {
    if let Some(hit) = cache().lock().ok().and_then(|c| c.get(der).cloned()) {
        return Ok(hit);
    }
    let cert = X509::from_der(der)?;
    // Only cache exact encodings: a BER or trailing-garbage variant must not alias a DER key.
    if cert.to_der().is_ok_and(|d| d == der)
        && let Ok(mut c) = cache().lock()
    {
        if c.len() >= CAPACITY {
            c.clear();
        }
        c.insert(der.to_vec(), cert.clone());
    }
    Ok(cert)
}
