//! Test helpers: an in-memory fetcher, a validator set-up with defaults, and the few certificate
//! shapes devpki does not make (policies, certs-only PKCS#7).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::extension::{KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509Builder, X509Extension, X509Name};

use super::{BindTo, CrlCache, Fetcher, Policy, Purpose, Validation, Validator};
use crate::address::DirectAddress;
use crate::devpki::{Ca, rsa_key};

/// URL → response body; anything else fails like a refused connection. Counts every call.
#[derive(Default)]
pub(super) struct MapFetcher {
    responses: HashMap<String, Vec<u8>>,
    calls: AtomicUsize,
}

impl MapFetcher {
    pub(super) fn serve(&mut self, url: &str, body: Vec<u8>) {
        self.responses.insert(url.to_owned(), body);
    }

    pub(super) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Fetcher for MapFetcher {
    fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.responses
            .get(url)
            .cloned()
            .ok_or_else(|| "connection refused".to_owned())
    }
}

/// Everything a [`Validator`] borrows, owned, with default policy and the current time.
pub(super) struct Env {
    pub anchors: Vec<X509>,
    pub policy: Policy,
    pub fetcher: MapFetcher,
    pub cache: CrlCache,
    pub time: i64,
}

impl Env {
    pub(super) fn new(anchors: &[&X509]) -> Env {
        Env {
            anchors: anchors.iter().map(|a| (*a).clone()).collect(),
            policy: Policy::default(),
            fetcher: MapFetcher::default(),
            cache: CrlCache::new(),
            time: now(),
        }
    }

    pub(super) fn validator(&self) -> Validator<'_> {
        Validator {
            anchors: &self.anchors,
            policy: &self.policy,
            fetcher: &self.fetcher,
            crl_cache: &self.cache,
            time: self.time,
        }
    }

    pub(super) fn validate(
        &self,
        cert: &X509,
        untrusted: &[X509],
        purpose: Purpose,
        bind: &BindTo,
    ) -> Validation {
        self.validator().validate(cert, untrusted, purpose, bind)
    }

    /// Signing use, no extra intermediates, no binding check.
    pub(super) fn check(&self, cert: &X509) -> Validation {
        self.validate(cert, &[], Purpose::Signing, &BindTo::Any)
    }
}

pub(super) use crate::clock::now_secs as now;

pub(super) fn address(text: &str) -> BindTo {
    BindTo::Address(DirectAddress::parse(text).unwrap())
}

/// One DER element, long-form length when needed.
pub(super) fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len().to_be_bytes();
    let significant = &len[len.iter().take_while(|b| **b == 0).count()..];
    let mut out = vec![tag];
    match significant {
        [] => out.push(0),
        [short] if *short < 0x80 => out.push(*short),
        long => {
            out.push(0x80 | u8::try_from(long.len()).unwrap());
            out.extend_from_slice(long);
        }
    }
    out.extend_from_slice(content);
    out
}

fn oid(text: &str) -> Vec<u8> {
    der(0x06, Asn1Object::from_str(text).unwrap().as_slice())
}

/// A PKCS#7 SignedData holding only certificates (what a .p7c/.p7b is).
pub(super) fn certs_only_p7(certs: &[&X509]) -> Vec<u8> {
    crate::devpki::certs_only_p7b(certs).unwrap()
}

/// An address-bound leaf issued by `ca` asserting the given certificate policies.
pub(super) fn leaf_with_policies(ca: &Ca, email: &str, policies: &[&str]) -> X509 {
    let key = rsa_key(2048).unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, email).unwrap();
    let name = name.build();
    let mut builder = X509Builder::new().unwrap();
    builder.set_version(2).unwrap();
    let serial = BigNum::from_u32(0x5eed).unwrap().to_asn1_integer().unwrap();
    builder.set_serial_number(&serial).unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(ca.cert.subject_name()).unwrap();
    builder.set_pubkey(&key).unwrap();
    let (from, until) = (now() - 86_400, now() + 30 * 86_400);
    builder
        .set_not_before(&Asn1Time::from_unix(from).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::from_unix(until).unwrap())
        .unwrap();
    let usage = KeyUsage::new()
        .digital_signature()
        .key_encipherment()
        .build()
        .unwrap();
    builder.append_extension(usage).unwrap();
    let san = SubjectAlternativeName::new()
        .email(email)
        .build(&builder.x509v3_context(Some(&ca.cert), None))
        .unwrap();
    builder.append_extension(san).unwrap();
    let infos: Vec<u8> = policies.iter().flat_map(|p| der(0x30, &oid(p))).collect();
    let value = Asn1OctetString::new_from_bytes(&der(0x30, &infos)).unwrap();
    let policies_oid = Asn1Object::from_str("2.5.29.32").unwrap();
    let ext = X509Extension::new_from_der(&policies_oid, false, &value).unwrap();
    builder.append_extension(ext).unwrap();
    builder.sign(&ca.key, MessageDigest::sha256()).unwrap();
    builder.build()
}
