//! The S/MIME agent against itself and against the openssl CLI, and the negative corpus.

mod common;

use common::{TempDir, tool};
use hisp::config::{ContentCipher, KeyTransport};
use hisp::devpki::{Ca, Issued};
use hisp::smime::{self, AlgorithmPolicy, LocalKey, SealOptions, SmimeError};

const ORIGINAL: &[u8] = b"From: Dr Alice <alice@hisp-a.example>\r\n\
To: bob@hisp-b.example\r\n\
Cc: carol@hisp-b.example\r\n\
Subject: Referral for patient 123\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <ref-1@hisp-a.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Please see the attached discharge summary.\r\n";

fn local(i: &Issued, chain: &[&Ca]) -> LocalKey {
    LocalKey {
        cert: i.cert.clone(),
        key: i.key.clone(),
        chain: chain.iter().map(|c| c.cert.clone()).collect(),
    }
}

struct Pki {
    root: Ca,
    alice: Issued,
    bob: Issued,
    carol: Issued,
}

fn pki() -> Pki {
    let root = Ca::root("S/MIME Test Root").unwrap();
    let alice = root.leaf().email("alice@hisp-a.example").build().unwrap();
    let bob = root.leaf().email("bob@hisp-b.example").build().unwrap();
    let carol = root.leaf().email("carol@hisp-b.example").build().unwrap();
    Pki {
        root,
        alice,
        bob,
        carol,
    }
}

const ALL_OPTIONS: [(ContentCipher, KeyTransport); 6] = [
    (ContentCipher::Aes128Cbc, KeyTransport::RsaOaep),
    (ContentCipher::Aes256Cbc, KeyTransport::RsaOaep),
    (ContentCipher::Aes256Cbc, KeyTransport::RsaPkcs1),
    (ContentCipher::Aes128Gcm, KeyTransport::RsaPkcs1),
    (ContentCipher::Aes256Gcm, KeyTransport::RsaOaep),
    (ContentCipher::Aes128Cbc, KeyTransport::RsaPkcs1),
];

fn opts(cipher: ContentCipher, key_transport: KeyTransport) -> SealOptions {
    SealOptions {
        cipher,
        key_transport,
    }
}

#[test]
fn round_trip_every_cipher_and_transport_to_several_recipients() {
    let p = pki();
    let policy = AlgorithmPolicy::default();
    for (cipher, transport) in ALL_OPTIONS {
        let sealed = smime::seal(
            ORIGINAL,
            &[local(&p.alice, &[])],
            &[p.bob.cert.clone(), p.carol.cert.clone()],
            &opts(cipher, transport),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&sealed);
        assert!(
            !text.contains("Referral"),
            "Subject or body leaked outside the encryption"
        );
        assert!(text.contains("Message-ID: <ref-1@hisp-a.example>"));
        assert!(text.contains("application/pkcs7-mime"));
        // Each recipient opens it with only its own key.
        for who in [&p.bob, &p.carol] {
            let opened = smime::open(&sealed, &[local(who, &[])], &policy).unwrap();
            assert_eq!(opened.message, ORIGINAL, "{cipher:?} {transport:?}");
            assert!(opened.wrapped);
            assert_eq!(opened.signers.len(), 1);
            assert_eq!(opened.signers[0].to_der().unwrap(), p.alice.cert_der());
            assert_eq!(opened.digest, "sha-256");
            let want_transport = match transport {
                KeyTransport::RsaOaep => "rsa-oaep",
                KeyTransport::RsaPkcs1 => "rsa-pkcs1",
            };
            assert_eq!(opened.key_transport, want_transport);
        }
        let e = smime::open(&sealed, &[local(&p.alice, &[])], &policy).unwrap_err();
        assert!(matches!(e, SmimeError::CannotDecrypt(_)), "{e}");
    }
}

#[test]
fn several_signers_and_chain_certificates() {
    let p = pki();
    let inter = p
        .root
        .intermediate("S/MIME Test Intermediate")
        .build()
        .unwrap();
    let alice2 = inter.leaf().email("alice@hisp-a.example").build().unwrap();
    let sealed = smime::seal(
        ORIGINAL,
        &[local(&p.alice, &[]), local(&alice2, &[&inter])],
        std::slice::from_ref(&p.bob.cert),
        &opts(ContentCipher::Aes256Cbc, KeyTransport::RsaOaep),
    )
    .unwrap();
    let opened = smime::open(&sealed, &[local(&p.bob, &[])], &AlgorithmPolicy::default()).unwrap();
    let signers: Vec<Vec<u8>> = opened.signers.iter().map(|c| c.to_der().unwrap()).collect();
    assert_eq!(signers, vec![p.alice.cert_der(), alice2.cert_der()]);
    let carried: Vec<Vec<u8>> = opened
        .certificates
        .iter()
        .map(|c| c.to_der().unwrap())
        .collect();
    assert!(
        carried.contains(&inter.cert.to_der().unwrap()),
        "intermediate not carried"
    );
}

/// Writes PEM files for the openssl CLI.
fn files(dir: &TempDir, name: &str, who: &Issued) -> (String, String) {
    let cert = dir.path().join(format!("{name}.pem"));
    let key = dir.path().join(format!("{name}.key"));
    std::fs::write(&cert, who.cert_pem()).unwrap();
    std::fs::write(&key, who.key_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn openssl_cli_decrypts_and_verifies_what_we_send() {
    let p = pki();
    let dir = TempDir::new("smime-openssl");
    let (bob_cert, bob_key) = files(&dir, "bob", &p.bob);
    let root = dir.path().join("root.pem");
    std::fs::write(&root, p.root.as_issued().cert_pem()).unwrap();
    for (cipher, transport) in ALL_OPTIONS {
        let sealed = smime::seal(
            ORIGINAL,
            &[local(&p.alice, &[])],
            &[p.carol.cert.clone(), p.bob.cert.clone()],
            &opts(cipher, transport),
        )
        .unwrap();
        let msg = dir.path().join("sealed.eml");
        std::fs::write(&msg, &sealed).unwrap();
        let decrypted = tool(
            "openssl",
            &[
                "cms",
                "-decrypt",
                "-in",
                msg.to_str().unwrap(),
                "-recip",
                &bob_cert,
                "-inkey",
                &bob_key,
            ],
        );
        assert!(
            decrypted.starts_with(b"Content-Type: multipart/signed"),
            "{cipher:?}"
        );
        let signed = dir.path().join("signed.eml");
        std::fs::write(&signed, &decrypted).unwrap();
        let content = tool(
            "openssl",
            &[
                "cms",
                "-verify",
                "-in",
                signed.to_str().unwrap(),
                "-CAfile",
                root.to_str().unwrap(),
                // Not -binary: in binary mode the openssl CLI keeps the CR of the line break
                // before the delimiter in the content, so CRLF messages never verify.
                "-purpose",
                "any",
            ],
        );
        let mut want = b"Content-Type: message/rfc822\r\n\r\n".to_vec();
        want.extend_from_slice(ORIGINAL);
        let lf = |b: &[u8]| String::from_utf8_lossy(b).replace("\r\n", "\n");
        assert_eq!(lf(&content), lf(&want), "{cipher:?} {transport:?}");
    }
}

#[test]
fn we_accept_what_the_openssl_cli_sends() {
    let p = pki();
    let dir = TempDir::new("smime-from-openssl");
    let (alice_cert, alice_key) = files(&dir, "alice", &p.alice);
    let (bob_cert, _) = files(&dir, "bob", &p.bob);
    let (carol_cert, _) = files(&dir, "carol", &p.carol);
    let mut entity = b"Content-Type: message/rfc822\r\n\r\n".to_vec();
    entity.extend_from_slice(ORIGINAL);
    let entity_file = dir.path().join("entity");
    std::fs::write(&entity_file, &entity).unwrap();
    let signed = tool(
        "openssl",
        &[
            "cms",
            "-sign",
            "-in",
            entity_file.to_str().unwrap(),
            "-signer",
            &alice_cert,
            "-inkey",
            &alice_key,
            "-md",
            "sha256",
            "-binary",
            "-crlfeol",
        ],
    );
    let signed_file = dir.path().join("signed");
    std::fs::write(&signed_file, &signed).unwrap();
    let variants: [(&str, &[&str]); 4] = [
        ("-aes-128-cbc", &[]),
        (
            "-aes-256-cbc",
            &[
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_mgf1_md:sha256",
            ],
        ),
        ("-aes-256-gcm", &[]),
        (
            "-aes-128-gcm",
            &[
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_mgf1_md:sha256",
            ],
        ),
    ];
    for (cipher, keyopts) in variants {
        // Carol's RecipientInfo first, Bob's second (keyopt applies to the -recip before it).
        let mut args: Vec<&str> = vec![
            "cms",
            "-encrypt",
            "-in",
            signed_file.to_str().unwrap(),
            "-binary",
            cipher,
        ];
        args.extend_from_slice(&["-recip", &carol_cert]);
        args.extend_from_slice(&["-recip", &bob_cert]);
        args.extend_from_slice(keyopts);
        let encrypted = tool("openssl", &args);
        let mut message = b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\n".to_vec();
        message.extend_from_slice(&encrypted);
        let opened = smime::open(&message, &[local(&p.bob, &[])], &AlgorithmPolicy::default())
            .unwrap_or_else(|e| panic!("{cipher} {keyopts:?}: {e}"));
        assert_eq!(opened.message, ORIGINAL, "{cipher}");
        assert_eq!(opened.signers[0].to_der().unwrap(), p.alice.cert_der());
    }
}

#[test]
fn unwrapped_messages_are_accepted_on_receipt() {
    // Older senders sign the message itself rather than a message/rfc822 wrapper (SPEC A1).
    let p = pki();
    let signed = smime::sign_entity(ORIGINAL, &[local(&p.alice, &[])]).unwrap();
    let (der, _) = smime::encrypt_entity(
        &signed,
        std::slice::from_ref(&p.bob.cert),
        &opts(ContentCipher::Aes128Cbc, KeyTransport::RsaPkcs1),
    )
    .unwrap();
    let mut msg = b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    msg.extend_from_slice(&smime::mime::encode_base64_lines(&der));
    let opened = smime::open(&msg, &[local(&p.bob, &[])], &AlgorithmPolicy::default()).unwrap();
    assert!(!opened.wrapped);
    assert_eq!(opened.message, ORIGINAL);
}

#[test]
fn our_cms_is_canonical_der() {
    // OpenSSL re-encodes what it parses as DER: our structures must come back byte for byte.
    let p = pki();
    for (cipher, transport) in ALL_OPTIONS {
        let sealed = smime::seal(
            ORIGINAL,
            &[local(&p.alice, &[&p.root]), local(&p.carol, &[])],
            &[p.bob.cert.clone(), p.carol.cert.clone()],
            &opts(cipher, transport),
        )
        .unwrap();
        let outer = smime::mime::split(&sealed);
        let enveloped = smime::mime::decode_base64(outer.body).unwrap();
        let reencoded = openssl::cms::CmsContentInfo::from_der(&enveloped)
            .unwrap()
            .to_der()
            .unwrap();
        assert!(reencoded == enveloped, "EnvelopedData not DER ({cipher:?})");
        let opened =
            smime::open(&sealed, &[local(&p.bob, &[])], &AlgorithmPolicy::default()).unwrap();
        assert_eq!(opened.signers.len(), 2);
    }
    let signed = smime::sign_entity(
        &smime::wrap::wrap(ORIGINAL),
        &[local(&p.alice, &[&p.root]), local(&p.carol, &[])],
    )
    .unwrap();
    let text = String::from_utf8(signed).unwrap();
    let start = text.find("filename=\"smime.p7s\"\r\n\r\n").unwrap() + 24;
    let end = start + text[start..].find("--").unwrap();
    let sig = smime::mime::decode_base64(&text.as_bytes()[start..end]).unwrap();
    let reencoded = openssl::cms::CmsContentInfo::from_der(&sig)
        .unwrap()
        .to_der()
        .unwrap();
    assert!(reencoded == sig, "SignedData not DER");
}
