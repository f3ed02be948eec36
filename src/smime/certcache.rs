//! Certificates parsed by their DER, and DER by certificate. OpenSSL 3.0 spends ~100 µs
//! decoding a certificate's public key — a third of an RSA operation — and tens of
//! microseconds re-encoding a certificate with `i2d_X509`, while the same few local and
//! partner certificates appear in every message: so both directions are cached.

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::x509::{X509, X509Ref};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Enough for every active partner certificate; when full the cache starts over rather than
/// tracking recency (a rare miss costs one parse).
const CAPACITY: usize = 4096;

fn cache() -> &'static Mutex<HashMap<Vec<u8>, X509>> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, X509>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// DER by the address of the certificate object. The entry holds a reference to the object,
/// so while it is cached the address can't be freed and reused by another certificate; and
/// certificates are never modified once built or parsed.
type DerCache = HashMap<usize, (X509, Arc<[u8]>)>;

fn der_cache() -> &'static Mutex<DerCache> {
    static CACHE: OnceLock<Mutex<DerCache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn remember_der(cert: &X509Ref, der: Arc<[u8]>) {
    if let Ok(mut c) = der_cache().lock() {
        if c.len() >= CAPACITY {
            c.clear();
        }
        c.insert(cert.as_ptr() as usize, (cert.to_owned(), der));
    }
}

/// The certificate encoded by `der` (exact DER), parsed at most once while cached.
pub fn parse(der: &[u8]) -> Result<X509, ErrorStack> {
    if let Some(hit) = cache().lock().ok().and_then(|c| c.get(der).cloned()) {
        return Ok(hit);
    }
    let cert = X509::from_der(der)?;
    // Only cache exact encodings: a BER or trailing-garbage variant must not alias a DER key.
    let encoded = cert.to_der()?;
    if encoded == der
        && let Ok(mut c) = cache().lock()
    {
        if c.len() >= CAPACITY {
            c.clear();
        }
        c.insert(der.to_vec(), cert.clone());
    }
    remember_der(&cert, encoded.into());
    Ok(cert)
}

/// The DER encoding of `cert`, encoded at most once while cached.
pub fn der(cert: &X509Ref) -> Result<Arc<[u8]>, ErrorStack> {
    let key = cert.as_ptr() as usize;
    if let Some((_, d)) = der_cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(d);
    }
    let der: Arc<[u8]> = cert.to_der()?.into();
    remember_der(cert, der.clone());
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_of_each_certificate_object() {
        let root = crate::devpki::Ca::root("cache root").unwrap();
        let a = root.leaf().email("a@x.example").build().unwrap();
        let b = root.leaf().email("b@x.example").build().unwrap();
        for _ in 0..2 {
            assert_eq!(&*der(&a.cert).unwrap(), a.cert.to_der().unwrap().as_slice());
            assert_eq!(&*der(&b.cert).unwrap(), b.cert.to_der().unwrap().as_slice());
        }
        let parsed = parse(&b.cert_der()).unwrap();
        assert_eq!(&*der(&parsed).unwrap(), b.cert_der().as_slice());
    }
}
