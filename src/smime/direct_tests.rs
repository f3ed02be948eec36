//! The direct verify and decrypt paths against OpenSSL's CMS path on the same input: the
//! same accepted result, or the same named error.

use openssl::hash::{MessageDigest, hash};
use openssl::sign::Signer;

use super::cms::DIRECT;
use super::der::{self, NULL, OCTET_STRING, SEQUENCE, SET, cons, tlv};
use super::{AlgorithmPolicy, LocalKey, SealOptions, SmimeError, mime};
use crate::config::{ContentCipher, KeyTransport};
use crate::devpki::{Ca, Issued};

const ENTITY: &[u8] = b"Content-Type: message/rfc822\r\n\r\nFrom: a@hisp-a.example\r\nTo: b@hisp-b.example\r\nSubject: s\r\n\r\nbody\r\n";

fn local(i: &Issued) -> LocalKey {
    LocalKey {
        cert: i.cert.clone(),
        key: i.key.clone(),
        chain: vec![],
    }
}

fn both<T>(f: impl Fn() -> T) -> (T, T) {
    let direct = f();
    DIRECT.with(|d| d.set(false));
    let openssl = f();
    DIRECT.with(|d| d.set(true));
    (direct, openssl)
}

/// Verifies `entity` both ways and checks the outcomes agree; returns the direct one.
fn verify_agrees(entity: &[u8]) -> Result<super::Verified, SmimeError> {
    let (d, o) = both(|| super::verify_entity(entity, &AlgorithmPolicy::default()));
    match (&d, &o) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.content, b.content);
            assert_eq!(a.digest, b.digest);
            let ders = |v: &[openssl::x509::X509]| {
                v.iter().map(|c| c.to_der().unwrap()).collect::<Vec<_>>()
            };
            assert_eq!(ders(&a.signers), ders(&b.signers));
            assert_eq!(ders(&a.certificates), ders(&b.certificates));
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("direct {d:?} but OpenSSL {o:?}"),
    }
    d
}

struct Pki {
    alice: Issued,
    bob: Issued,
    carol: Issued,
}

fn pki() -> Pki {
    let root = Ca::root("Direct Root").unwrap();
    Pki {
        alice: root.leaf().email("alice@hisp-a.example").build().unwrap(),
        bob: root.leaf().email("bob@hisp-b.example").build().unwrap(),
        carol: root.leaf().email("carol@hisp-b.example").build().unwrap(),
    }
}

fn attribute(oid: &str, value: &[u8]) -> Vec<u8> {
    cons(SEQUENCE, &[&der::oid(oid), &cons(SET, &[value])])
}

const CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
const MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const SIGNING_TIME: &str = "1.2.840.113549.1.9.5";
const ID_DATA: &str = "1.2.840.113549.1.7.1";

/// How the hand-made SignedData below is varied.
#[derive(Default)]
struct Variant {
    /// Keep the attributes in the given order instead of DER order.
    unsorted: bool,
    /// Signed attributes in place of the usual ones; `Some(vec![])` means none at all.
    attrs: Option<Vec<Vec<u8>>>,
    by_ski: bool,
    /// Flip a byte of the attributes after signing.
    tamper_attrs: bool,
}

/// A detached SignedData over `content` by `signer`, as a multipart/signed entity.
fn signed(content: &[u8], signer: &Issued, v: &Variant) -> Vec<u8> {
    let digest = hash(MessageDigest::sha256(), content).unwrap();
    let attrs = v.attrs.clone().unwrap_or_else(|| {
        vec![
            attribute(CONTENT_TYPE, &der::oid(ID_DATA)),
            attribute(SIGNING_TIME, &tlv(0x17, b"261130230000Z")),
            attribute(MESSAGE_DIGEST, &tlv(OCTET_STRING, &digest)),
        ]
    });
    let signed_attrs = if v.unsorted {
        let parts: Vec<&[u8]> = attrs.iter().map(Vec::as_slice).collect();
        cons(SET, &parts)
    } else {
        der::set_of(attrs.clone())
    };
    let mut s = Signer::new(MessageDigest::sha256(), &signer.key).unwrap();
    s.update(if attrs.is_empty() {
        content
    } else {
        &signed_attrs
    })
    .unwrap();
    let signature = s.sign_to_vec().unwrap();
    let cert_der = signer.cert_der();
    let (issuer, serial) = der::issuer_and_serial(&cert_der).unwrap();
    let (version, sid) = if v.by_ski {
        let ski = signer.cert.subject_key_id().unwrap().as_slice().to_vec();
        (3u8, tlv(0x80, &ski))
    } else {
        (1, cons(SEQUENCE, &[issuer, serial]))
    };
    let mut implicit = signed_attrs.clone();
    implicit[0] = 0xa0;
    if v.tamper_attrs {
        let last = implicit.len() - 1;
        implicit[last] ^= 1;
    }
    let sha256 = der::algorithm("2.16.840.1.101.3.4.2.1", None);
    let rsa = der::algorithm("1.2.840.113549.1.1.1", Some(NULL));
    let version_der = [0x02, 0x01, version];
    let mut si_fields: Vec<&[u8]> = vec![&version_der, &sid, &sha256];
    if !attrs.is_empty() {
        si_fields.push(&implicit);
    }
    let sig = tlv(OCTET_STRING, &signature);
    si_fields.extend([&rsa[..], &sig]);
    let signer_info = cons(SEQUENCE, &si_fields);
    let sd = cons(
        SEQUENCE,
        &[
            &version_der,
            &cons(SET, &[&sha256]),
            &cons(SEQUENCE, &[&der::oid(ID_DATA)]),
            &cons(0xa0, &[&cert_der]),
            &cons(SET, &[&signer_info]),
        ],
    );
    let ci = cons(
        SEQUENCE,
        &[&der::oid("1.2.840.113549.1.7.2"), &cons(0xa0, &[&sd])],
    );
    let mut e = b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"b\"\r\n\r\n--b\r\n".to_vec();
    e.extend_from_slice(content);
    e.extend_from_slice(b"\r\n--b\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    e.extend_from_slice(&mime::encode_base64_lines(&ci));
    e.extend_from_slice(b"--b--\r\n");
    e
}

fn direct_accepts(entity: &[u8]) -> bool {
    let e = mime::split(entity);
    let ct = mime::content_type(e.header);
    let parts = mime::multipart_parts(e.body, ct.param("boundary").unwrap()).unwrap();
    let sig = mime::decode_base64(mime::split(parts[1]).body).unwrap();
    super::verify::detached(&sig, parts[0]).is_some()
}

#[test]
fn our_own_and_hand_made_signatures_take_the_direct_path_and_agree() {
    let p = pki();
    let ours = super::sign_entity(ENTITY, &[local(&p.alice)]).unwrap();
    assert!(direct_accepts(&ours));
    verify_agrees(&ours).unwrap();
    let hand = signed(ENTITY, &p.alice, &Variant::default());
    assert!(direct_accepts(&hand));
    verify_agrees(&hand).unwrap();
}

#[test]
fn signer_named_by_subject_key_identifier() {
    let p = pki();
    let e = signed(
        ENTITY,
        &p.alice,
        &Variant {
            by_ski: true,
            ..Default::default()
        },
    );
    assert!(direct_accepts(&e));
    let v = verify_agrees(&e).unwrap();
    assert_eq!(v.signers[0].to_der().unwrap(), p.alice.cert_der());
}

#[test]
fn tampered_signed_attributes_are_the_same_bad_signature() {
    let p = pki();
    let e = signed(
        ENTITY,
        &p.alice,
        &Variant {
            tamper_attrs: true,
            ..Default::default()
        },
    );
    assert!(!direct_accepts(&e));
    assert!(matches!(
        verify_agrees(&e),
        Err(SmimeError::BadSignature(_))
    ));
}

#[test]
fn tampered_message_digest_attribute_is_the_same_bad_signature() {
    let p = pki();
    let mut wrong = hash(MessageDigest::sha256(), ENTITY).unwrap().to_vec();
    wrong[0] ^= 1;
    let e = signed(
        ENTITY,
        &p.alice,
        &Variant {
            attrs: Some(vec![
                attribute(CONTENT_TYPE, &der::oid(ID_DATA)),
                attribute(MESSAGE_DIGEST, &tlv(OCTET_STRING, &wrong)),
            ]),
            ..Default::default()
        },
    );
    assert!(!direct_accepts(&e));
    assert!(matches!(
        verify_agrees(&e),
        Err(SmimeError::BadSignature(_))
    ));
    // Tampered content: the same.
    let mut body = signed(ENTITY, &p.alice, &Variant::default());
    let at = body.windows(4).position(|w| w == b"body").unwrap();
    body[at] = b'B';
    assert!(!direct_accepts(&body));
    assert!(matches!(
        verify_agrees(&body),
        Err(SmimeError::BadSignature(_))
    ));
}

#[test]
fn unusual_attributes_are_left_to_openssl() {
    let p = pki();
    let digest = hash(MessageDigest::sha256(), ENTITY).unwrap();
    let md = attribute(MESSAGE_DIGEST, &tlv(OCTET_STRING, &digest));
    let cases = [
        // Wrong content type (id-signedData): whatever OpenSSL says, the same.
        vec![
            attribute(CONTENT_TYPE, &der::oid("1.2.840.113549.1.7.2")),
            md.clone(),
        ],
        // No content type.
        vec![md.clone()],
        // An attribute outside the accepted set.
        vec![
            attribute(CONTENT_TYPE, &der::oid(ID_DATA)),
            md.clone(),
            attribute("1.2.3.4", &tlv(OCTET_STRING, b"x")),
        ],
        // The message digest twice.
        vec![
            attribute(CONTENT_TYPE, &der::oid(ID_DATA)),
            md.clone(),
            md.clone(),
        ],
        // No signed attributes at all: the signature is over the content itself.
        vec![],
    ];
    for attrs in cases {
        let e = signed(
            ENTITY,
            &p.alice,
            &Variant {
                attrs: Some(attrs),
                ..Default::default()
            },
        );
        assert!(!direct_accepts(&e));
        let _ = verify_agrees(&e);
    }
    // Without signed attributes OpenSSL verifies the signature over the content.
    let e = signed(
        ENTITY,
        &p.alice,
        &Variant {
            attrs: Some(vec![]),
            ..Default::default()
        },
    );
    verify_agrees(&e).unwrap();
}

#[test]
fn openssl_cli_signatures_agree() {
    let dir = std::env::temp_dir().join(format!("hisp-direct-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = pki();
    let w = |n: &str, b: &[u8]| {
        let f = dir.join(n);
        std::fs::write(&f, b).unwrap();
        f.display().to_string()
    };
    let (content, cert, key) = (
        w("content", ENTITY),
        w("c.pem", &p.alice.cert_pem()),
        w("k.pem", &p.alice.key_pem()),
    );
    for extra in [&[][..], &["-keyid"], &["-nosmimecap"], &["-noattr"]] {
        let out = std::process::Command::new("openssl")
            .args(["cms", "-sign", "-binary", "-md", "sha256", "-in", &content])
            .args(["-signer", &cert, "-inkey", &key])
            .args(extra)
            .output()
            .expect("openssl CLI");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entity = mime::to_crlf(&out.stdout).into_owned();
        let e = mime::split(&entity);
        let v = verify_agrees(&[e.header, b"\r\n", e.body].concat()).unwrap();
        assert_eq!(v.signers.len(), 1, "{extra:?}");
        if extra.is_empty() || extra == ["-keyid"] {
            assert!(
                direct_accepts(&[e.header, b"\r\n", e.body].concat()),
                "{extra:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn sealed(p: &Pki, cipher: ContentCipher, key_transport: KeyTransport) -> Vec<u8> {
    super::seal(
        b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nSubject: x\r\n\r\nhello\r\n",
        &[local(&p.alice)],
        std::slice::from_ref(&p.bob.cert),
        &SealOptions {
            cipher,
            key_transport,
        },
    )
    .unwrap()
}

fn open_agrees(msg: &[u8], keys: &[LocalKey]) -> Result<super::Opened, SmimeError> {
    let (d, o) = both(|| super::open(msg, keys, &AlgorithmPolicy::default()));
    match (&d, &o) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.message, b.message);
            assert_eq!(
                (a.content_cipher, a.key_transport, a.digest),
                (b.content_cipher, b.key_transport, b.digest)
            );
            assert_eq!(
                a.decrypted_with.to_der().unwrap(),
                b.decrypted_with.to_der().unwrap()
            );
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("direct {d:?} but OpenSSL {o:?}"),
    }
    d
}

const CIPHERS: [ContentCipher; 4] = [
    ContentCipher::Aes128Cbc,
    ContentCipher::Aes256Cbc,
    ContentCipher::Aes128Gcm,
    ContentCipher::Aes256Gcm,
];

#[test]
fn decryption_agrees_for_every_cipher_and_transport() {
    let p = pki();
    for cipher in CIPHERS {
        for transport in [KeyTransport::RsaOaep, KeyTransport::RsaPkcs1] {
            let m = sealed(&p, cipher, transport);
            let der = mime::decode_base64(mime::split(&m).body).unwrap();
            assert!(super::decrypt::enveloped(&der, &[local(&p.bob)]).is_some());
            open_agrees(&m, &[local(&p.carol), local(&p.bob)]).unwrap();
        }
    }
}

#[test]
fn wrong_key_is_the_same_decrypt_failed() {
    let p = pki();
    // Bob's certificate with Carol's key: the RecipientInfo names it, the key can't unwrap.
    let wrong = LocalKey {
        cert: p.bob.cert.clone(),
        key: p.carol.key.clone(),
        chain: vec![],
    };
    for transport in [KeyTransport::RsaOaep, KeyTransport::RsaPkcs1] {
        for cipher in [ContentCipher::Aes128Gcm, ContentCipher::Aes256Gcm] {
            let m = sealed(&p, cipher, transport);
            let e = open_agrees(&m, std::slice::from_ref(&wrong)).unwrap_err();
            assert!(matches!(e, SmimeError::DecryptFailed(_)), "{e}");
        }
        // CBC: a random key passes the padding check once in ~256 tries, so only the error
        // class is asserted, and only on the direct path.
        let m = sealed(&p, ContentCipher::Aes256Cbc, transport);
        assert!(
            super::open(
                &m,
                std::slice::from_ref(&wrong),
                &AlgorithmPolicy::default()
            )
            .is_err()
        );
    }
    // Not for us at all: OpenSSL's path answers.
    let m = sealed(&p, ContentCipher::Aes256Cbc, KeyTransport::RsaOaep);
    let e = open_agrees(&m, &[local(&p.carol)]).unwrap_err();
    assert!(matches!(e, SmimeError::CannotDecrypt(_)), "{e}");
}

#[test]
fn tampered_gcm_content_is_the_same_decrypt_failed() {
    let p = pki();
    let m = sealed(&p, ContentCipher::Aes256Gcm, KeyTransport::RsaOaep);
    let mut der = mime::decode_base64(mime::split(&m).body).unwrap();
    // A byte of ciphertext (just before the 18-byte tag TLV).
    let at = der.len() - 20;
    der[at] ^= 1;
    let mut msg = b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    msg.extend_from_slice(&mime::encode_base64_lines(&der));
    let e = open_agrees(&msg, &[local(&p.bob)]).unwrap_err();
    assert!(matches!(e, SmimeError::DecryptFailed(_)), "{e}");
}

#[test]
fn non_minimal_lengths_in_signed_attributes_are_left_to_openssl() {
    let p = pki();
    let digest = hash(MessageDigest::sha256(), ENTITY).unwrap();
    // The signer signs a long-form length (BER); OpenSSL verifies over its DER re-encoding,
    // so this must not verify on either path.
    let long = [&[OCTET_STRING, 0x81, 0x20][..], &digest].concat();
    let e = signed(
        ENTITY,
        &p.alice,
        &Variant {
            attrs: Some(vec![
                attribute(CONTENT_TYPE, &der::oid(ID_DATA)),
                attribute(MESSAGE_DIGEST, &long),
            ]),
            ..Default::default()
        },
    );
    assert!(!direct_accepts(&e));
    assert!(matches!(
        verify_agrees(&e),
        Err(SmimeError::BadSignature(_))
    ));
    assert!(der::read_der(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).is_none());
    assert!(der::read_der(&[0x04, 0x82, 0x00, 0x90]).is_none());
    assert!(der::read_der(&[0x04, 0x05, 1, 2, 3, 4, 5]).is_some());
}

#[test]
fn attributes_out_of_der_order_are_left_to_openssl() {
    let p = pki();
    let digest = hash(MessageDigest::sha256(), ENTITY).unwrap();
    let mut attrs = vec![
        attribute(CONTENT_TYPE, &der::oid(ID_DATA)),
        attribute(MESSAGE_DIGEST, &tlv(OCTET_STRING, &digest)),
    ];
    attrs.sort();
    attrs.reverse();
    let e = signed(
        ENTITY,
        &p.alice,
        &Variant {
            attrs: Some(attrs),
            unsorted: true,
            ..Default::default()
        },
    );
    assert!(!direct_accepts(&e));
    let _ = verify_agrees(&e);
}
