//! Inbound messages whose signature verifies but whose signer must not be trusted: each case
//! ends in its own verdict from the trust validator, the step the inbound pipeline runs after
//! `smime::open` (SPEC D21, B13).

mod common;

use hisp::address::DirectAddress;
use hisp::config::{ContentCipher, KeyTransport};
use hisp::devpki::{Ca, Issued};
use hisp::smime::{self, AlgorithmPolicy, LocalKey, SealOptions};
use hisp::store::now_secs;
use hisp::trust::{BindTo, CrlCache, Fetcher, Policy, Purpose, Validator, Verdict};
use std::collections::HashMap;

const ORIGINAL: &[u8] =
    b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nSubject: s\r\n\r\nhello\r\n";

/// URL → bytes, standing in for the HTTP fetcher the server supplies.
struct Served(HashMap<String, Vec<u8>>);

impl Fetcher for Served {
    fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        self.0.get(url).cloned().ok_or_else(|| format!("404 {url}"))
    }
}

fn local(i: &Issued) -> LocalKey {
    LocalKey {
        cert: i.cert.clone(),
        key: i.key.clone(),
        chain: vec![],
    }
}

/// Seals from `signer` to bob, opens as bob, and validates the signer against `anchors`.
fn verdict(signer: &Issued, anchors: &[&Ca], served: &Served) -> (Verdict, String) {
    let root = Ca::root("Recipient Root").unwrap();
    let bob = root.leaf().email("bob@hisp-b.example").build().unwrap();
    let options = SealOptions {
        cipher: ContentCipher::Aes128Gcm,
        key_transport: KeyTransport::RsaOaep,
    };
    let sealed = smime::seal(
        ORIGINAL,
        &[local(signer)],
        std::slice::from_ref(&bob.cert),
        &options,
    )
    .unwrap();
    let opened = smime::open(&sealed, &[local(&bob)], &AlgorithmPolicy::default()).unwrap();
    let anchors: Vec<_> = anchors.iter().map(|c| c.cert.clone()).collect();
    let policy = Policy::default();
    let cache = CrlCache::new();
    let validator = Validator {
        anchors: &anchors,
        policy: &policy,
        fetcher: served,
        crl_cache: &cache,
        time: now_secs(),
    };
    let from = DirectAddress::parse("alice@hisp-a.example").unwrap();
    let v = validator.validate(
        &opened.signers[0],
        &opened.certificates,
        Purpose::Signing,
        &BindTo::Address(from),
    );
    (v.verdict, v.reason)
}

#[test]
fn signer_verdicts() {
    let none = Served(HashMap::new());
    let mut ca = Ca::root("Sender Root").unwrap();
    let good = ca.leaf().email("alice@hisp-a.example").build().unwrap();
    assert_eq!(verdict(&good, &[&ca], &none).0, Verdict::Valid);

    // Not chaining to the recipient domain's anchors.
    let stranger = Ca::root("Stranger Root").unwrap();
    let (v, reason) = verdict(&good, &[&stranger], &none);
    assert_eq!(v, Verdict::Untrusted, "{reason}");

    // Expired signer.
    let expired = ca
        .leaf()
        .email("alice@hisp-a.example")
        .expired()
        .build()
        .unwrap();
    let (v, reason) = verdict(&expired, &[&ca], &none);
    assert_eq!(v, Verdict::Expired, "{reason}");

    // Bound to another address, and to another domain.
    let other = ca.leaf().email("mallory@hisp-a.example").build().unwrap();
    let (v, reason) = verdict(&other, &[&ca], &none);
    assert_eq!(v, Verdict::WrongBinding, "{reason}");
    let other_domain = ca.leaf().dns("elsewhere.example").build().unwrap();
    assert_eq!(
        verdict(&other_domain, &[&ca], &none).0,
        Verdict::WrongBinding
    );
    // A certificate bound to the sender's domain is fine (org-bound).
    let org = ca.leaf().dns("hisp-a.example").build().unwrap();
    assert_eq!(verdict(&org, &[&ca], &none).0, Verdict::Valid);

    // Revoked, per the CRL at its distribution point.
    let url = "http://crl.hisp-a.example/root.crl";
    let revoked = ca
        .leaf()
        .email("alice@hisp-a.example")
        .crl_distribution_point(url)
        .build()
        .unwrap();
    ca.revoke(&revoked.cert);
    let served = Served(HashMap::from([(
        url.to_string(),
        ca.crl_der(86_400).unwrap(),
    )]));
    let (v, reason) = verdict(&revoked, &[&ca], &served);
    assert_eq!(v, Verdict::Revoked, "{reason}");
    assert_eq!(v.as_str(), "revoked");
}
