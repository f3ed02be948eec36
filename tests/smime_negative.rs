//! The negative corpus: every malformed, tampered or weak message is refused with its own
//! named error, and nothing panics.

mod common;

use common::{TempDir, tool};
use hisp::config::{ContentCipher, KeyTransport};
use hisp::devpki::{Ca, Issued, rsa_key};
use hisp::smime::{
    self, AlgorithmPolicy, Envelope, EnvelopeError, LocalKey, SealOptions, SmimeError, mime,
};

const ORIGINAL: &[u8] = b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nSubject: x\r\nMessage-ID: <n@hisp-a.example>\r\n\r\nbody text\r\n";

fn local(i: &Issued) -> LocalKey {
    LocalKey {
        cert: i.cert.clone(),
        key: i.key.clone(),
        chain: vec![],
    }
}

struct Fixture {
    alice: Issued,
    bob: Issued,
    dir: TempDir,
}

fn fixture() -> Fixture {
    let root = Ca::root("Negative Root").unwrap();
    Fixture {
        alice: root.leaf().email("alice@hisp-a.example").build().unwrap(),
        bob: root.leaf().email("bob@hisp-b.example").build().unwrap(),
        dir: TempDir::new("smime-neg"),
    }
}

fn opts() -> SealOptions {
    SealOptions {
        cipher: ContentCipher::Aes256Cbc,
        key_transport: KeyTransport::RsaOaep,
    }
}

fn strict() -> AlgorithmPolicy {
    AlgorithmPolicy::default()
}

/// Encrypts an already-signed entity for bob and frames it as a message.
fn envelope_for(f: &Fixture, signed: &[u8]) -> Vec<u8> {
    let (der, _) =
        smime::encrypt_entity(signed, std::slice::from_ref(&f.bob.cert), &opts()).unwrap();
    frame(&der)
}

fn frame(der: &[u8]) -> Vec<u8> {
    let mut m = b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    m.extend_from_slice(&mime::encode_base64_lines(der));
    m
}

fn open(f: &Fixture, msg: &[u8]) -> Result<smime::Opened, SmimeError> {
    smime::open(msg, &[local(&f.bob)], &strict())
}

fn file(f: &Fixture, name: &str, bytes: &[u8]) -> String {
    let p = f.dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// A multipart/signed entity made by the openssl CLI with the given signer and digest.
fn openssl_signed(f: &Fixture, signer: &Issued, md: &str) -> Vec<u8> {
    let content = file(f, "content", &smime::wrap::wrap(ORIGINAL));
    let cert = file(f, "signer.pem", &signer.cert_pem());
    let key = file(f, "signer.key", &signer.key_pem());
    tool(
        "openssl",
        &[
            "cms", "-sign", "-in", &content, "-signer", &cert, "-inkey", &key, "-md", md,
            "-binary", "-crlfeol",
        ],
    )
}

#[test]
fn tampered_signed_content_is_a_bad_signature() {
    let f = fixture();
    let mut signed = smime::sign_entity(&smime::wrap::wrap(ORIGINAL), &[local(&f.alice)]).unwrap();
    let pos = signed.windows(9).position(|w| w == b"body text").unwrap();
    signed[pos] = b'B';
    let e = open(&f, &envelope_for(&f, &signed)).unwrap_err();
    assert!(matches!(e, SmimeError::BadSignature(_)), "{e}");
    assert_eq!(e.code(), "bad-signature");
}

#[test]
fn tampered_signature_is_a_bad_signature() {
    let f = fixture();
    let signed = smime::sign_entity(&smime::wrap::wrap(ORIGINAL), &[local(&f.alice)]).unwrap();
    // Flip a bit in the RSA signature value: the last bytes of the base64 signature part.
    let text = String::from_utf8(signed).unwrap();
    let sig_start = text.find("filename=\"smime.p7s\"\r\n\r\n").unwrap() + 24;
    let sig_end = text[sig_start..].find("--").unwrap() + sig_start;
    let der = mime::decode_base64(&text.as_bytes()[sig_start..sig_end]).unwrap();
    let mut bent = der.clone();
    let n = bent.len();
    bent[n - 10] ^= 0x01;
    let rebuilt = format!(
        "{}{}{}",
        &text[..sig_start],
        String::from_utf8(mime::encode_base64_lines(&bent)).unwrap(),
        &text[sig_end..]
    );
    let e = open(&f, &envelope_for(&f, rebuilt.as_bytes())).unwrap_err();
    assert!(matches!(e, SmimeError::BadSignature(_)), "{e}");
}

#[test]
fn wrong_recipient_key_and_unknown_recipient() {
    let f = fixture();
    let sealed = smime::seal(
        ORIGINAL,
        &[local(&f.alice)],
        std::slice::from_ref(&f.bob.cert),
        &opts(),
    )
    .unwrap();
    let imposter = LocalKey {
        cert: f.bob.cert.clone(),
        key: rsa_key(2048).unwrap(),
        chain: vec![],
    };
    let e = smime::open(&sealed, &[imposter], &strict()).unwrap_err();
    assert!(matches!(e, SmimeError::DecryptFailed(_)), "{e}");
    let e = smime::open(&sealed, &[local(&f.alice)], &strict()).unwrap_err();
    assert!(matches!(e, SmimeError::CannotDecrypt(_)), "{e}");
}

#[test]
fn sha1_and_md5_signatures_follow_the_policy() {
    let f = fixture();
    let sha1 = envelope_for(&f, &openssl_signed(&f, &f.alice, "sha1"));
    let e = open(&f, &sha1).unwrap_err();
    assert_eq!(e, SmimeError::WeakDigest("sha-1".into()));
    let legacy = AlgorithmPolicy {
        allow_sha1: true,
        ..Default::default()
    };
    // With the switch on, SHA-1 is accepted (micalg says sha1, as openssl writes it).
    let opened = smime::open(&sha1, &[local(&f.bob)], &legacy).unwrap();
    assert_eq!(opened.digest, "sha-1");
    let md5 = envelope_for(&f, &openssl_signed(&f, &f.alice, "md5"));
    let all_legacy = AlgorithmPolicy {
        allow_sha1: true,
        allow_3des: true,
        allow_rc2: true,
    };
    assert_eq!(
        smime::open(&md5, &[local(&f.bob)], &all_legacy).unwrap_err(),
        SmimeError::Md5
    );
}

#[test]
fn triple_des_and_rc2_follow_the_policy() {
    let f = fixture();
    let signed = smime::sign_entity(&smime::wrap::wrap(ORIGINAL), &[local(&f.alice)]).unwrap();
    let input = file(&f, "signed", &signed);
    let bob = file(&f, "bob.pem", &f.bob.cert_pem());
    let der = tool(
        "openssl",
        &[
            "cms", "-encrypt", "-in", &input, "-binary", "-des3", "-outform", "DER", "-recip", &bob,
        ],
    );
    let msg = frame(&der);
    assert_eq!(
        open(&f, &msg).unwrap_err(),
        SmimeError::WeakCipher("des-ede3-cbc".into())
    );
    let legacy = AlgorithmPolicy {
        allow_3des: true,
        ..Default::default()
    };
    let opened = smime::open(&msg, &[local(&f.bob)], &legacy).unwrap();
    assert_eq!(opened.content_cipher, "des-ede3-cbc");
    assert_eq!(opened.message, ORIGINAL);
    // RC2 likewise (the openssl CLI needs its legacy provider to even write it).
    let der = tool(
        "openssl",
        &[
            "cms",
            "-encrypt",
            "-in",
            &input,
            "-binary",
            "-rc2",
            "-outform",
            "DER",
            "-recip",
            &bob,
            "-provider",
            "legacy",
            "-provider",
            "default",
        ],
    );
    let msg = frame(&der);
    assert_eq!(
        open(&f, &msg).unwrap_err(),
        SmimeError::WeakCipher("rc2-cbc".into())
    );
    assert_eq!(
        smime::open(&msg, &[local(&f.bob)], &legacy).unwrap_err(),
        SmimeError::WeakCipher("rc2-cbc".into()),
        "the 3DES switch must not let RC2 through"
    );
    let rc2_on = AlgorithmPolicy {
        allow_rc2: true,
        ..Default::default()
    };
    let opened = smime::open(&msg, &[local(&f.bob)], &rc2_on).unwrap();
    assert_eq!(opened.content_cipher, "rc2-cbc");
}

#[test]
fn weak_keys_are_refused_both_ways() {
    let f = fixture();
    let root = Ca::root("Weak Root").unwrap();
    let weak = root
        .leaf()
        .email("alice@hisp-a.example")
        .key_bits(1024)
        .build()
        .unwrap();
    // We refuse to encrypt to a 1024-bit recipient or sign with a 1024-bit key...
    let e = smime::seal(
        ORIGINAL,
        &[local(&f.alice)],
        std::slice::from_ref(&weak.cert),
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, SmimeError::WeakKey { bits: 1024, .. }), "{e}");
    let e = smime::seal(
        ORIGINAL,
        &[local(&weak)],
        std::slice::from_ref(&f.bob.cert),
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, SmimeError::WeakKey { bits: 1024, .. }), "{e}");
    // ...and refuse a message signed with one.
    let msg = envelope_for(&f, &openssl_signed(&f, &weak, "sha256"));
    let e = open(&f, &msg).unwrap_err();
    assert!(matches!(e, SmimeError::WeakKey { bits: 1024, .. }), "{e}");
}

#[test]
fn broken_encodings_and_structures() {
    let f = fixture();
    let sealed = smime::seal(
        ORIGINAL,
        &[local(&f.alice)],
        std::slice::from_ref(&f.bob.cert),
        &opts(),
    )
    .unwrap();
    let e = mime::split(&sealed);
    let der = mime::decode_base64(e.body).unwrap();
    // Truncated CMS (cut on a base64 quantum so only the CMS layer can notice).
    let e1 = open(&f, &frame(&der[..der.len() / 2])).unwrap_err();
    assert!(matches!(e1, SmimeError::MalformedCms(_)), "{e1}");
    // Garbage base64.
    let mut garbage = sealed.clone();
    let n = garbage.len();
    garbage[n - 20] = b'*';
    assert_eq!(
        open(&f, &garbage).unwrap_err(),
        SmimeError::Mime(mime::MimeError::Base64)
    );
    // DER that isn't CMS.
    let e2 = open(&f, &frame(&f.bob.cert_der())).unwrap_err();
    assert!(matches!(e2, SmimeError::MalformedCms(_)), "{e2}");
    // Not S/MIME at all, and signed but not encrypted.
    let e3 = open(&f, ORIGINAL).unwrap_err();
    assert_eq!(e3, SmimeError::NotSmime("text/plain".into()));
    let signed = smime::sign_entity(&smime::wrap::wrap(ORIGINAL), &[local(&f.alice)]).unwrap();
    let e4 = open(&f, &signed).unwrap_err();
    assert!(matches!(e4, SmimeError::NotEncrypted(_)), "{e4}");
    // Encrypted but not signed.
    let unsigned = envelope_for(&f, &smime::wrap::wrap(ORIGINAL));
    let e5 = open(&f, &unsigned).unwrap_err();
    assert!(matches!(e5, SmimeError::NotSigned(_)), "{e5}");
    // micalg that lies about the digest.
    let text = String::from_utf8(signed)
        .unwrap()
        .replacen("micalg=sha-256", "micalg=sha-512", 1);
    let e6 = open(&f, &envelope_for(&f, text.as_bytes())).unwrap_err();
    assert!(matches!(e6, SmimeError::MicalgMismatch { .. }), "{e6}");
    // Random bytes where the whole message should be.
    let mut noise = vec![0u8; 4096];
    openssl::rand::rand_bytes(&mut noise).unwrap();
    assert!(open(&f, &noise).is_err());
    for cut in [0, 1, 10, 100, sealed.len() / 3, sealed.len() - 3] {
        assert!(
            open(&f, &sealed[..cut]).is_err(),
            "truncated at {cut} accepted"
        );
    }
}

#[test]
fn deeply_nested_multiparts_are_refused() {
    let f = fixture();
    let mut nested = b"Content-Type: text/plain\r\n\r\nleaf\r\n".to_vec();
    for i in 0..2000 {
        let b = format!("n{i}");
        let mut outer =
            format!("Content-Type: multipart/mixed; boundary={b}\r\n\r\n--{b}\r\n").into_bytes();
        outer.extend_from_slice(&nested);
        outer.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        nested = outer;
    }
    let mut message =
        b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nMIME-Version: 1.0\r\n".to_vec();
    message.extend_from_slice(&nested);
    let sealed = smime::seal(
        &message,
        &[local(&f.alice)],
        std::slice::from_ref(&f.bob.cert),
        &opts(),
    )
    .unwrap();
    let e = open(&f, &sealed).unwrap_err();
    assert_eq!(
        e,
        SmimeError::Mime(mime::MimeError::TooDeep(smime::MAX_MIME_DEPTH))
    );
}

#[test]
fn thirty_megabyte_attachment_goes_through() {
    let f = fixture();
    let mut attachment = vec![0u8; 30 * 1024 * 1024];
    openssl::rand::rand_bytes(&mut attachment).unwrap();
    let mut message = b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=att\r\n\r\n--att\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--att\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    message.extend_from_slice(&mime::encode_base64_lines(&attachment));
    message.extend_from_slice(b"--att--\r\n");
    let sealed = smime::seal(
        &message,
        &[local(&f.alice)],
        std::slice::from_ref(&f.bob.cert),
        &opts(),
    )
    .unwrap();
    let opened = open(&f, &sealed).unwrap();
    assert_eq!(opened.message.len(), message.len());
    assert!(
        opened.message == message,
        "30 MB message changed in transit"
    );
}

#[test]
fn envelope_binding_mismatches() {
    let env = |from: &str, to: &[&str]| Envelope {
        mail_from: from.into(),
        rcpt_to: to.iter().map(|s| s.to_string()).collect(),
    };
    assert_eq!(
        smime::check_envelope(
            ORIGINAL,
            &env("alice@hisp-a.example", &["bob@hisp-b.example"])
        ),
        Ok(())
    );
    assert!(matches!(
        smime::check_envelope(
            ORIGINAL,
            &env("eve@hisp-a.example", &["bob@hisp-b.example"])
        ),
        Err(EnvelopeError::SenderMismatch { .. })
    ));
    assert_eq!(
        smime::check_envelope(
            ORIGINAL,
            &env("alice@hisp-a.example", &["mallory@hisp-b.example"])
        ),
        Err(EnvelopeError::RecipientMismatch(
            "mallory@hisp-b.example".into()
        ))
    );
    let err: SmimeError = EnvelopeError::RecipientMismatch("x".into()).into();
    assert_eq!(err.code(), "envelope-mismatch");
}
