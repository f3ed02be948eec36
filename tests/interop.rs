//! hisp's S/MIME against three independent implementations, both ways: what we send is
//! decrypted and verified by `openssl cms`, GnuPG `gpgsm` and NSS `cmsutil`; what each of them
//! produces (signed, then encrypted to our certificate) is accepted by `smime::open`.
//!
//! gpgsm 2.2 and NSS 3.87 can neither decrypt nor produce RSA-OAEP or AES-GCM
//! (AuthEnvelopedData); see the capability matrix in tests/common/interop.rs. With them we
//! cover what they can do (PKCS#1 v1.5, AES-128/256-CBC); OAEP and GCM are covered with openssl
//! here and in tests/smime.rs.

mod common;

use common::interop::{
    self, Cipher as ToolCipher, Identity, KeyTransport as ToolTransport, cmsutil_decrypt,
    cmsutil_encrypt, cmsutil_sign_detached, cmsutil_verify_detached, gpgsm_decrypt, gpgsm_encrypt,
    gpgsm_sign_detached, gpgsm_verify_detached, openssl_decrypt, openssl_verify,
};
use hisp::config::{ContentCipher, KeyTransport};
use hisp::devpki::{Ca, Issued};
use hisp::smime::{self, AlgorithmPolicy, LocalKey, SealOptions};

const ORIGINAL: &[u8] = b"From: Dr Alice <alice@hisp-a.example>\r\n\
To: bob@hisp-b.example, carol@hisp-b.example\r\n\
Subject: Discharge summary\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <interop-1@hisp-a.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Patient discharged in good condition.\r\n";

struct World {
    root: Ca,
    alice: Issued,
    bob: Issued,
    carol: Issued,
}

fn world() -> World {
    let root = Ca::root("Interop Root").unwrap();
    World {
        alice: root.leaf().email("alice@hisp-a.example").build().unwrap(),
        bob: root.leaf().email("bob@hisp-b.example").build().unwrap(),
        carol: root.leaf().email("carol@hisp-b.example").build().unwrap(),
        root,
    }
}

fn local(i: &Issued) -> LocalKey {
    LocalKey {
        cert: i.cert.clone(),
        key: i.key.clone(),
        chain: vec![],
    }
}

fn wrapped() -> Vec<u8> {
    smime::wrap::wrap(ORIGINAL)
}

/// Seals from alice to bob and carol (carol first, so bob's RecipientInfo is not the first).
fn sealed(w: &World, cipher: ContentCipher, key_transport: KeyTransport) -> Vec<u8> {
    let options = SealOptions {
        cipher,
        key_transport,
    };
    smime::seal(
        ORIGINAL,
        &[local(&w.alice)],
        &[w.carol.cert.clone(), w.bob.cert.clone()],
        &options,
    )
    .unwrap()
}

/// The pieces a non-MIME tool needs: the enveloped DER.
fn enveloped_der(message: &[u8]) -> Vec<u8> {
    interop::pkcs7_mime_der(message).unwrap()
}

#[test]
fn openssl_reads_everything_we_send() {
    let w = world();
    let bob = Identity::from_devpki(&w.bob, &w.root);
    for (cipher, transport) in [
        (ContentCipher::Aes128Cbc, KeyTransport::RsaPkcs1),
        (ContentCipher::Aes256Cbc, KeyTransport::RsaOaep),
        (ContentCipher::Aes128Gcm, KeyTransport::RsaOaep),
        (ContentCipher::Aes256Gcm, KeyTransport::RsaPkcs1),
    ] {
        let msg = sealed(&w, cipher, transport);
        let signed = openssl_decrypt(&bob, &msg);
        let content = openssl_verify(&bob.ca_pem, &signed);
        assert_eq!(
            interop::to_crlf(&content),
            wrapped(),
            "{cipher:?} {transport:?}"
        );
    }
}

#[test]
fn gpgsm_reads_what_we_send_with_pkcs1_and_cbc() {
    let w = world();
    let bob = Identity::from_devpki(&w.bob, &w.root);
    for cipher in [ContentCipher::Aes128Cbc, ContentCipher::Aes256Cbc] {
        let msg = sealed(&w, cipher, KeyTransport::RsaPkcs1);
        let signed = gpgsm_decrypt(&bob, &enveloped_der(&msg)).unwrap();
        let (content, signature) = interop::split_multipart_signed(&signed).unwrap();
        assert_eq!(content, wrapped(), "{cipher:?}");
        gpgsm_verify_detached(&bob.ca_pem, &signature, &content).unwrap();
        // And gpgsm notices tampering with what we signed.
        let mut bent = content.clone();
        let n = bent.len();
        bent[n - 5] ^= 1;
        assert!(gpgsm_verify_detached(&bob.ca_pem, &signature, &bent).is_err());
    }
}

#[test]
fn cmsutil_reads_what_we_send_with_pkcs1_and_cbc() {
    let w = world();
    let bob = Identity::from_devpki(&w.bob, &w.root);
    for cipher in [ContentCipher::Aes128Cbc, ContentCipher::Aes256Cbc] {
        let msg = sealed(&w, cipher, KeyTransport::RsaPkcs1);
        let signed = cmsutil_decrypt(&bob, &enveloped_der(&msg)).unwrap();
        let (content, signature) = interop::split_multipart_signed(&signed).unwrap();
        assert_eq!(content, wrapped(), "{cipher:?}");
        cmsutil_verify_detached(&bob.ca_pem, &signature, &content).unwrap();
        let mut bent = content.clone();
        bent[40] ^= 1;
        assert!(cmsutil_verify_detached(&bob.ca_pem, &signature, &bent).is_err());
    }
}

/// A message signed and encrypted entirely by another implementation, framed as MIME.
fn foreign_message(signature: &[u8], encrypt: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let signed = interop::multipart_signed(&wrapped(), signature);
    let der = encrypt(&signed);
    interop::prepend_headers(
        "From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\n",
        &interop::pkcs7_mime(&der),
    )
}

fn open_as_bob(w: &World, message: &[u8]) -> smime::Opened {
    smime::open(message, &[local(&w.bob)], &AlgorithmPolicy::default()).unwrap()
}

#[test]
fn we_accept_what_gpgsm_sends() {
    let w = world();
    let alice = Identity::from_devpki(&w.alice, &w.root);
    let signature = gpgsm_sign_detached(&alice, &wrapped()).unwrap();
    for cipher_algo in [None, Some("AES256")] {
        let msg = foreign_message(&signature, |signed| {
            gpgsm_encrypt(
                &[&w.carol.cert_pem(), &w.bob.cert_pem()],
                &alice.ca_pem,
                signed,
                cipher_algo,
            )
            .unwrap()
        });
        let opened = open_as_bob(&w, &msg);
        assert_eq!(opened.message, ORIGINAL, "{cipher_algo:?}");
        assert_eq!(opened.signers[0].to_der().unwrap(), w.alice.cert_der());
        assert_eq!(opened.key_transport, "rsa-pkcs1");
        let want = if cipher_algo.is_some() {
            "aes-256-cbc"
        } else {
            "aes-128-cbc"
        };
        assert_eq!(opened.content_cipher, want);
    }
}

#[test]
fn we_accept_what_cmsutil_sends() {
    let w = world();
    let alice = Identity::from_devpki(&w.alice, &w.root);
    let signature = cmsutil_sign_detached(&alice, &wrapped()).unwrap();
    let msg = foreign_message(&signature, |signed| {
        cmsutil_encrypt(&[&w.carol.cert_pem(), &w.bob.cert_pem()], signed).unwrap()
    });
    let opened = open_as_bob(&w, &msg);
    assert_eq!(opened.message, ORIGINAL);
    assert_eq!(opened.signers[0].to_der().unwrap(), w.alice.cert_der());
    // Tampering after cmsutil signed is caught by us.
    let mut bent = wrapped();
    bent[60] ^= 1;
    let signed = interop::multipart_signed(&bent, &signature);
    let der = cmsutil_encrypt(&[&w.bob.cert_pem()], &signed).unwrap();
    let e = smime::open(
        &interop::pkcs7_mime(&der),
        &[local(&w.bob)],
        &AlgorithmPolicy::default(),
    )
    .unwrap_err();
    assert!(matches!(e, smime::SmimeError::BadSignature(_)), "{e}");
}

#[test]
fn we_accept_what_openssl_sends_in_every_combination() {
    let w = world();
    let alice = Identity::from_devpki(&w.alice, &w.root);
    for cipher in [
        ToolCipher::Aes128Cbc,
        ToolCipher::Aes256Cbc,
        ToolCipher::Aes128Gcm,
        ToolCipher::Aes256Gcm,
    ] {
        for transport in [ToolTransport::Pkcs1v15, ToolTransport::OaepSha256] {
            let msg = interop::openssl_sign_encrypt(
                &alice,
                &[&w.carol.cert_pem(), &w.bob.cert_pem()],
                &wrapped(),
                cipher,
                transport,
            );
            let opened = open_as_bob(&w, &msg);
            assert_eq!(opened.message, ORIGINAL, "{cipher:?} {transport:?}");
        }
    }
}
