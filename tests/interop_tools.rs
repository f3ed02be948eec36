//! Exercises the interop harness in `tests/common/interop.rs` against the openssl CLI, and
//! pins the capability matrix documented there: when a tool upgrade changes what it can do,
//! one of these tests fails and the matrix must be updated, instead of coverage shifting
//! silently. Inputs come from the openssl CLI and hisp's devpki, never from hisp's S/MIME code.

mod common;

use common::interop::*;
use hisp::devpki::Ca;

struct Pki {
    root: Ca,
    alice: Identity,
    bob: Identity,
}

fn pki() -> Pki {
    let root = Ca::root("Interop Root").unwrap();
    let alice = root
        .leaf()
        .email("alice@direct.example.org")
        .build()
        .unwrap();
    let bob = root.leaf().email("bob@direct.example.org").build().unwrap();
    Pki {
        alice: Identity::from_devpki(&alice, &root),
        bob: Identity::from_devpki(&bob, &root),
        root,
    }
}

/// The root of an unrelated PKI, for "signed by someone we do not trust".
fn other_root_pem() -> Vec<u8> {
    Ca::root("Stranger Root").unwrap().cert.to_pem().unwrap()
}

fn message() -> Vec<u8> {
    b"From: alice@direct.example.org\r\nTo: bob@direct.example.org\r\nSubject: interop\r\n\
      Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <interop-1@direct.example.org>\r\n\
      MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
      Referral for patient 42.\r\n"
        .to_vec()
}

/// What gets signed in a Direct message.
fn entity() -> Vec<u8> {
    direct_wrap(&message())
}

/// The same bytes with one character of the message body changed (and nothing else, so a
/// failure cannot come from a mangled boundary or signature).
fn tampered(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert_eq!(text.matches("patient 42").count(), 1);
    text.replace("patient 42", "patient 43").into_bytes()
}

fn outer_headers() -> &'static str {
    "From: alice@direct.example.org\r\nTo: bob@direct.example.org\r\n\
     Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <interop-outer-1@direct.example.org>\r\n"
}

/// A certs-only SignedData: structurally a signature, but nobody signed anything.
fn certs_only(cert_pem: &[u8]) -> Vec<u8> {
    let dir = common::TempDir::new("certs-only");
    let path = dir.path().join("c.pem");
    std::fs::write(&path, cert_pem).unwrap();
    let path = path.to_str().unwrap();
    common::tool(
        "openssl",
        &["crl2pkcs7", "-nocrl", "-certfile", path, "-outform", "DER"],
    )
}

/// A signature that carries its own content (`-nodetach`), to be offered as if detached.
fn attached_signature(signer: &Identity, content: &[u8]) -> Vec<u8> {
    openssl_signature(signer, content, &["-nodetach"])
}

/// A detached signature that also carries the signer's root, so the verifier knows the issuer
/// and has to refuse on trust alone.
fn signature_with_root(signer: &Identity, content: &[u8]) -> Vec<u8> {
    let dir = common::TempDir::new("with-root");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &signer.ca_pem).unwrap();
    openssl_signature(signer, content, &["-certfile", ca.to_str().unwrap()])
}

fn openssl_signature(signer: &Identity, content: &[u8], extra: &[&str]) -> Vec<u8> {
    let dir = common::TempDir::new("ossl-signature");
    let p = |n: &str, b: &[u8]| {
        let p = dir.path().join(n);
        std::fs::write(&p, b).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (c, k, i) = (
        p("c.pem", &signer.cert_pem),
        p("k.pem", &signer.key_pem),
        p("in", content),
    );
    let mut args = vec![
        "cms", "-sign", "-binary", "-md", "sha256", "-outform", "DER",
    ];
    args.extend(["-signer", &c, "-inkey", &k, "-in", &i]);
    args.extend(extra);
    common::tool("openssl", &args)
}

/// Encrypts to both identities and returns (the one whose RecipientInfo is encoded second,
/// the one encoded first). RecipientInfos is a DER SET OF, so the encoder's sort decides.
fn two_recipient_envelope<'a>(
    a: &'a Identity,
    b: &'a Identity,
    content: &[u8],
) -> (Vec<u8>, &'a Identity, &'a Identity) {
    let der = openssl_encrypt(
        &[&a.cert_pem, &b.cert_pem],
        content,
        Cipher::Aes128Cbc,
        KeyTransport::Pkcs1v15,
    );
    let serials = cms_info(&der).recipient_serials;
    assert_eq!(serials.len(), 2, "{serials:?}");
    if serials[1] == a.serial_hex() {
        (der, a, b)
    } else {
        assert_eq!(serials[1], b.serial_hex());
        (der, b, a)
    }
}

#[track_caller]
fn assert_err_contains(result: Result<impl std::fmt::Debug, String>, needles: &[&str]) {
    let err = match result {
        Ok(v) => panic!("expected a failure mentioning {needles:?}, got Ok({v:?})"),
        Err(e) => e,
    };
    for n in needles {
        assert!(err.contains(n), "error lacks {n:?}:\n{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// openssl against itself: the inputs handed to the other tools are what we claim they are.

#[test]
fn openssl_direct_message_every_cipher_and_key_transport() {
    let p = pki();
    for cipher in [
        Cipher::Aes128Cbc,
        Cipher::Aes256Cbc,
        Cipher::Aes128Gcm,
        Cipher::Aes256Gcm,
    ] {
        for kt in [KeyTransport::Pkcs1v15, KeyTransport::OaepSha256] {
            let what = format!("{cipher:?}/{kt:?}");
            let smime = openssl_sign_encrypt(&p.alice, &[&p.bob.cert_pem], &entity(), cipher, kt);
            assert!(
                !smime.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
                "{what}: bare LF"
            );
            let message = prepend_headers(outer_headers(), &smime);

            let info = cms_info(&pkcs7_mime_der(&message).unwrap());
            let gcm = matches!(cipher, Cipher::Aes128Gcm | Cipher::Aes256Gcm);
            let want_type = if gcm {
                "id-smime-ct-authEnvelopedData"
            } else {
                "pkcs7-envelopedData"
            };
            assert_eq!(info.content_type, want_type, "{what}");
            assert_eq!(
                info.content_cipher.as_deref(),
                Some(cipher.openssl_name()),
                "{what}"
            );
            assert_eq!(info.key_transport, [kt.openssl_name()], "{what}");
            if kt == KeyTransport::OaepSha256 {
                assert_eq!(
                    info.dump.matches("sha256").count(),
                    2,
                    "{what}: {}",
                    info.dump
                );
            }

            let signed = openssl_decrypt(&p.bob, &message);
            let (content, sig) = split_multipart_signed(&signed).unwrap();
            assert_eq!(content, entity(), "{what}");
            let sig_info = cms_info(&sig);
            assert_eq!(sig_info.digests, ["sha256"], "{what}");
            assert_eq!(sig_info.detached, Some(true), "{what}");
            assert_eq!(openssl_verify(&p.alice.ca_pem, &signed), entity(), "{what}");
            openssl_verify_detached(&p.alice.ca_pem, &sig, &content).unwrap();
        }
    }
}

#[test]
fn openssl_rejects_wrong_key_tampering_and_strangers() {
    let p = pki();
    let der = openssl_encrypt(
        &[&p.bob.cert_pem],
        &entity(),
        Cipher::Aes256Cbc,
        KeyTransport::Pkcs1v15,
    );
    assert_eq!(openssl_decrypt_der(&p.bob, &der).unwrap(), entity());
    assert_err_contains(openssl_decrypt_der(&p.alice, &der), &["decrypt"]);

    let sig = openssl_sign_detached(&p.alice, &entity());
    openssl_verify_detached(&p.alice.ca_pem, &sig, &entity()).unwrap();
    assert_err_contains(
        openssl_verify_detached(&p.alice.ca_pem, &sig, &tampered(&entity())),
        &["verification failure"],
    );
    assert_err_contains(
        openssl_verify_detached(&other_root_pem(), &sig, &entity()),
        &["unable to get local issuer certificate"],
    );

    let signed = openssl_sign_mime(&p.alice, &entity());
    assert!(openssl_try_verify(&p.alice.ca_pem, &tampered(&signed)).is_err());
    assert!(openssl_try_verify(&other_root_pem(), &signed).is_err());
}

#[test]
fn mime_helpers_round_trip_foreign_signatures() {
    let p = pki();
    let sig = openssl_sign_detached(&p.alice, &entity());
    let built = multipart_signed(&entity(), &sig);
    let (content, sig_back) = split_multipart_signed(&built).unwrap();
    assert_eq!(
        (content.as_slice(), sig_back.as_slice()),
        (entity().as_slice(), sig.as_slice())
    );
    // openssl's own S/MIME reader agrees with how the entity was built by hand.
    assert_eq!(openssl_verify(&p.alice.ca_pem, &built), entity());

    let der = openssl_encrypt(
        &[&p.bob.cert_pem],
        &built,
        Cipher::Aes128Cbc,
        KeyTransport::Pkcs1v15,
    );
    let mime = prepend_headers(outer_headers(), &pkcs7_mime(&der));
    assert_eq!(pkcs7_mime_der(&mime).unwrap(), der);
    assert_eq!(openssl_decrypt(&p.bob, &mime), built);
}

// ---------------------------------------------------------------------------------------------
// gpgsm

#[test]
fn gpgsm_decrypts_openssl_aes_cbc_with_pkcs1_v15() {
    let p = pki();
    for cipher in [Cipher::Aes128Cbc, Cipher::Aes256Cbc] {
        let der = openssl_encrypt(
            &[&p.bob.cert_pem],
            &entity(),
            cipher,
            KeyTransport::Pkcs1v15,
        );
        assert_eq!(gpgsm_decrypt(&p.bob, &der).unwrap(), entity(), "{cipher:?}");
    }
}

#[test]
fn gpgsm_cannot_decrypt_rsa_oaep() {
    let p = pki();
    for kt in [KeyTransport::OaepSha256, KeyTransport::OaepSha1] {
        let der = openssl_encrypt(&[&p.bob.cert_pem], &entity(), Cipher::Aes128Cbc, kt);
        assert_err_contains(
            gpgsm_decrypt(&p.bob, &der),
            &[
                "error getting encrypted session key",
                "No secret key",
                "DECRYPTION_FAILED",
            ],
        );
    }
}

#[test]
fn gpgsm_cannot_decrypt_auth_enveloped_gcm() {
    let p = pki();
    for cipher in [Cipher::Aes128Gcm, Cipher::Aes256Gcm] {
        let der = openssl_encrypt(
            &[&p.bob.cert_pem],
            &entity(),
            cipher,
            KeyTransport::Pkcs1v15,
        );
        assert_eq!(cms_info(&der).content_type, "id-smime-ct-authEnvelopedData");
        assert_err_contains(
            gpgsm_decrypt(&p.bob, &der),
            &["error getting IV: Buffer too short", "<KSBA>"],
        );
    }
}

#[test]
fn gpgsm_decrypts_second_recipient_info_but_exits_2() {
    let p = pki();
    let (der, second, first) = two_recipient_envelope(&p.alice, &p.bob, &entity());

    let run = gpgsm_decrypt_run(second, &der);
    assert_eq!(
        run.content.as_deref(),
        Some(entity().as_slice()),
        "{:?}",
        run.output
    );
    assert_eq!(
        run.output.code,
        Some(2),
        "gpgsm fixed its exit code? update the matrix"
    );
    assert!(
        run.output.stderr.contains("failed to find the certificate"),
        "{:?}",
        run.output
    );
    assert_eq!(gpgsm_decrypt(second, &der).unwrap(), entity());

    let run = gpgsm_decrypt_run(first, &der);
    assert_eq!(run.content.as_deref(), Some(entity().as_slice()));
    assert_eq!(run.output.code, Some(0), "{:?}", run.output);
}

#[test]
fn gpgsm_rejects_an_envelope_for_someone_else() {
    let p = pki();
    let der = openssl_encrypt(
        &[&p.alice.cert_pem],
        &entity(),
        Cipher::Aes128Cbc,
        KeyTransport::Pkcs1v15,
    );
    assert_err_contains(
        gpgsm_decrypt(&p.bob, &der),
        &["DECRYPTION_FAILED", "No secret key"],
    );
}

#[test]
fn gpgsm_verifies_openssl_detached_sha256_and_rejects_forgeries() {
    let p = pki();
    let sig = openssl_sign_detached(&p.alice, &entity());
    gpgsm_verify_detached(&p.alice.ca_pem, &sig, &entity()).unwrap();

    assert_err_contains(
        gpgsm_verify_detached(&p.alice.ca_pem, &sig, &tampered(&entity())),
        &["BADSIG", "message digest attribute does not match"],
    );
    assert_err_contains(
        gpgsm_verify_detached(&other_root_pem(), &sig, &entity()),
        &["TRUST_UNDEFINED", "Missing issuer certificate"],
    );
    let sig_with_root = signature_with_root(&p.alice, &entity());
    gpgsm_verify_detached(&p.alice.ca_pem, &sig_with_root, &entity()).unwrap();
    assert_err_contains(
        gpgsm_verify_detached(&other_root_pem(), &sig_with_root, &entity()),
        &[
            "TRUST_UNDEFINED",
            "root certificate is not marked trusted",
            "Not trusted",
        ],
    );
    // gpgsm exits 0 here; only the missing GOODSIG gives it away.
    assert_err_contains(
        gpgsm_verify_detached(&p.alice.ca_pem, &certs_only(&p.alice.cert_pem), &entity()),
        &["exit Some(0)"],
    );
    assert_err_contains(
        gpgsm_verify_detached(
            &p.alice.ca_pem,
            &attached_signature(&p.alice, &tampered(&entity())),
            &entity(),
        ),
        &["data given for a non-detached signature"],
    );
}

#[test]
fn gpgsm_signature_shape_and_others_accept_it() {
    let p = pki();
    let sig = gpgsm_sign_detached(&p.alice, &entity()).unwrap();
    let info = cms_info(&sig);
    assert_eq!(info.content_type, "pkcs7-signedData");
    assert_eq!(info.digests, ["sha256"], "{}", info.dump);
    assert_eq!(info.signature_algorithms, ["rsaEncryption"]);
    assert_eq!(info.detached, Some(true));
    for attr in [
        "contentType",
        "signingTime",
        "messageDigest",
        "S/MIME Capabilities",
    ] {
        assert!(
            info.has_signed_attribute(attr),
            "{attr}: {:?}",
            info.signed_attributes
        );
    }
    assert_eq!(info.certificates, 1, "signer only, root left out");
    assert!(info.indefinite_length, "gpgsm writes BER");

    openssl_verify_detached(&p.alice.ca_pem, &sig, &entity()).unwrap();
    assert!(openssl_verify_detached(&p.alice.ca_pem, &sig, &tampered(&entity())).is_err());
    cmsutil_verify_detached(&p.alice.ca_pem, &sig, &entity()).unwrap();
}

#[test]
fn gpgsm_refuses_to_sign_or_encrypt_under_an_untrusted_root() {
    let p = pki();
    let mut stranger = p.alice.clone();
    stranger.ca_pem = other_root_pem();
    assert_err_contains(gpgsm_sign_detached(&stranger, &entity()), &["INV_SGNR"]);
    assert_err_contains(
        gpgsm_encrypt(&[&p.bob.cert_pem], &other_root_pem(), &entity(), None),
        &["INV_RECP"],
    );
}

#[test]
fn gpgsm_encryption_shape_and_openssl_decrypts_it() {
    let p = pki();
    for (algo, want) in [
        (None, "aes-128-cbc"),
        (Some("AES128"), "aes-128-cbc"),
        (Some("AES256"), "aes-256-cbc"),
    ] {
        let recipients: [&[u8]; 2] = [&p.alice.cert_pem, &p.bob.cert_pem];
        let der =
            gpgsm_encrypt(&recipients, &p.root.cert.to_pem().unwrap(), &entity(), algo).unwrap();
        let info = cms_info(&der);
        assert_eq!(info.content_type, "pkcs7-envelopedData", "{algo:?}");
        assert_eq!(info.content_cipher.as_deref(), Some(want), "{algo:?}");
        assert_eq!(
            info.key_transport,
            ["rsaEncryption", "rsaEncryption"],
            "{algo:?}"
        );
        assert!(info.indefinite_length, "gpgsm writes BER");
        assert_eq!(openssl_decrypt_der(&p.alice, &der).unwrap(), entity());
        assert_eq!(openssl_decrypt_der(&p.bob, &der).unwrap(), entity());
    }
    let der = gpgsm_encrypt(&[&p.bob.cert_pem], &p.bob.ca_pem, &entity(), None).unwrap();
    assert!(openssl_decrypt_der(&p.alice, &der).is_err());
}

#[test]
fn gpgsm_cannot_produce_auth_enveloped_gcm() {
    let p = pki();
    for name in ["AES256-GCM", "AES256.GCM"] {
        assert_err_contains(
            gpgsm_encrypt(&[&p.bob.cert_pem], &p.bob.ca_pem, &entity(), Some(name)),
            &["selected cipher algorithm is invalid"],
        );
    }
    // The raw OID is accepted but lands in plain EnvelopedData, which nobody can read.
    let der = gpgsm_encrypt(
        &[&p.bob.cert_pem],
        &p.bob.ca_pem,
        &entity(),
        Some("2.16.840.1.101.3.4.1.46"),
    )
    .unwrap();
    let info = cms_info(&der);
    assert_eq!(info.content_type, "pkcs7-envelopedData");
    assert_eq!(info.content_cipher.as_deref(), Some("aes-256-gcm"));
    assert_err_contains(
        openssl_decrypt_der(&p.bob, &der),
        &["cipher parameter error"],
    );
}

#[test]
fn gpgsm_direct_message_both_ways() {
    let p = pki();
    // openssl → gpgsm
    for cipher in [Cipher::Aes128Cbc, Cipher::Aes256Cbc] {
        let smime = openssl_sign_encrypt(
            &p.alice,
            &[&p.bob.cert_pem],
            &entity(),
            cipher,
            KeyTransport::Pkcs1v15,
        );
        let message = prepend_headers(outer_headers(), &smime);
        let signed = gpgsm_decrypt(&p.bob, &pkcs7_mime_der(&message).unwrap()).unwrap();
        let (content, sig) = split_multipart_signed(&signed).unwrap();
        assert_eq!(content, entity());
        gpgsm_verify_detached(&p.alice.ca_pem, &sig, &content).unwrap();
    }

    // gpgsm → openssl
    let sig = gpgsm_sign_detached(&p.alice, &entity()).unwrap();
    let signed = multipart_signed(&entity(), &sig);
    let der = gpgsm_encrypt(&[&p.bob.cert_pem], &p.bob.ca_pem, &signed, Some("AES256")).unwrap();
    let message = prepend_headers(outer_headers(), &pkcs7_mime(&der));
    let decrypted = openssl_decrypt(&p.bob, &message);
    assert_eq!(decrypted, signed);
    assert_eq!(openssl_verify(&p.alice.ca_pem, &decrypted), entity());
}

#[test]
fn gpgsm_reads_only_legacy_pkcs12() {
    let root = Ca::root("P12 Root").unwrap();
    let leaf = root.leaf().email("p12@direct.example.org").build().unwrap();
    let chain = [root.cert.clone()];
    assert_err_contains(
        gpgsm_import_p12(&leaf.to_p12("", &chain).unwrap()),
        &[
            "encryptedData error at \"pkcs5PBES2-params\"",
            GPGSM_P12_REJECTED,
        ],
    );
    // A few fresh exports, because gpgsm also rejects an occasional legacy file (module notes).
    let imported = (0..5).any(|_| {
        let p12 = leaf.to_legacy_p12("", &chain).unwrap();
        match gpgsm_import_p12(&p12) {
            Ok(()) => true,
            Err(e) if e.contains(GPGSM_P12_REJECTED) && e.contains("trying charset") => false,
            Err(e) => panic!("{e}"),
        }
    });
    assert!(imported, "gpgsm rejected five fresh legacy PKCS#12 exports");
}

// ---------------------------------------------------------------------------------------------
// NSS cmsutil

#[test]
fn cmsutil_decrypts_openssl_aes_cbc_with_pkcs1_v15() {
    let p = pki();
    for cipher in [Cipher::Aes128Cbc, Cipher::Aes256Cbc] {
        let der = openssl_encrypt(
            &[&p.bob.cert_pem],
            &entity(),
            cipher,
            KeyTransport::Pkcs1v15,
        );
        assert_eq!(
            cmsutil_decrypt(&p.bob, &der).unwrap(),
            entity(),
            "{cipher:?}"
        );
    }
}

#[test]
fn cmsutil_cannot_decrypt_rsa_oaep() {
    let p = pki();
    for kt in [KeyTransport::OaepSha256, KeyTransport::OaepSha1] {
        let der = openssl_encrypt(&[&p.bob.cert_pem], &entity(), Cipher::Aes256Cbc, kt);
        assert_err_contains(
            cmsutil_decrypt(&p.bob, &der),
            &["SEC_ERROR_UNSUPPORTED_KEYALG", "exit Some(1)"],
        );
    }
}

#[test]
fn cmsutil_cannot_decrypt_auth_enveloped_gcm() {
    let p = pki();
    for cipher in [Cipher::Aes128Gcm, Cipher::Aes256Gcm] {
        let der = openssl_encrypt(
            &[&p.bob.cert_pem],
            &entity(),
            cipher,
            KeyTransport::Pkcs1v15,
        );
        assert_err_contains(
            cmsutil_decrypt(&p.bob, &der),
            &["SEC_ERROR_UNRECOGNIZED_OID", "exit Some(1)"],
        );
    }
}

#[test]
fn cmsutil_decrypts_either_recipient_info() {
    let p = pki();
    let (der, second, first) = two_recipient_envelope(&p.alice, &p.bob, &entity());
    assert_eq!(cmsutil_decrypt(second, &der).unwrap(), entity());
    assert_eq!(cmsutil_decrypt(first, &der).unwrap(), entity());
}

#[test]
fn cmsutil_rejects_an_envelope_for_someone_else() {
    let p = pki();
    let der = openssl_encrypt(
        &[&p.alice.cert_pem],
        &entity(),
        Cipher::Aes128Cbc,
        KeyTransport::Pkcs1v15,
    );
    assert_err_contains(
        cmsutil_decrypt(&p.bob, &der),
        &["SEC_ERROR_NOT_A_RECIPIENT"],
    );
    // cmsutil -D also "decrypts" a SignedData by handing back its content.
    let attached = attached_signature(&p.alice, &entity());
    assert_err_contains(cmsutil_decrypt(&p.bob, &attached), &["not enveloped"]);
}

#[test]
fn cmsutil_verifies_openssl_detached_sha256_and_rejects_forgeries() {
    let p = pki();
    let sig = openssl_sign_detached(&p.alice, &entity());
    cmsutil_verify_detached(&p.alice.ca_pem, &sig, &entity()).unwrap();

    assert_err_contains(
        cmsutil_verify_detached(&p.alice.ca_pem, &sig, &tampered(&entity())),
        &["DigestMismatch", "SEC_ERROR_PKCS7_BAD_SIGNATURE"],
    );
    assert_err_contains(
        cmsutil_verify_detached(&other_root_pem(), &sig, &entity()),
        &["SigningCertNotTrusted", "SEC_ERROR_UNKNOWN_ISSUER"],
    );
    let sig_with_root = signature_with_root(&p.alice, &entity());
    cmsutil_verify_detached(&p.alice.ca_pem, &sig_with_root, &entity()).unwrap();
    assert_err_contains(
        cmsutil_verify_detached(&other_root_pem(), &sig_with_root, &entity()),
        &["SigningCertNotTrusted"],
    );
    assert_err_contains(
        cmsutil_verify_detached(&p.alice.ca_pem, &certs_only(&p.alice.cert_pem), &entity()),
        &["nsigners=0"],
    );
    assert_err_contains(
        cmsutil_verify_detached(
            &p.alice.ca_pem,
            &attached_signature(&p.alice, &tampered(&entity())),
            &entity(),
        ),
        &["not detached"],
    );
}

/// Why `cmsutil_verify_detached` does not trust cmsutil's exit code: these all exit 0.
#[test]
fn cmsutil_exit_code_is_not_a_verdict() {
    let p = pki();
    let ca = &p.alice.ca_pem;
    let sig = openssl_sign_detached(&p.alice, &entity());
    let bad = tampered(&entity());

    let out = cmsutil_decode_raw(ca, &sig, Some(&bad), &["-n"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    let out = cmsutil_decode_raw(ca, &sig, Some(&bad), &["-n", "-h", "1"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout_text().contains("signer0.status=DigestMismatch"),
        "{out:?}"
    );

    let out = cmsutil_decode_raw(&other_root_pem(), &sig, Some(&entity()), &["-n", "-h", "1"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout_text().contains("SigningCertNotTrusted"),
        "{out:?}"
    );

    let out = cmsutil_decode_raw(ca, &certs_only(&p.alice.cert_pem), Some(&entity()), &["-n"]);
    assert_eq!(out.code, Some(0), "no signer at all: {out:?}");

    let attached = attached_signature(&p.alice, &entity());
    let out = cmsutil_decode_raw(ca, &attached, Some(&bad), &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        entity(),
        "-c is ignored for an attached signature"
    );
}

#[test]
fn cmsutil_signature_shape_and_others_accept_it() {
    let p = pki();
    let sig = cmsutil_sign_detached(&p.alice, &entity()).unwrap();
    let info = cms_info(&sig);
    assert_eq!(info.content_type, "pkcs7-signedData");
    assert_eq!(info.digests, ["sha256"], "{}", info.dump);
    assert_eq!(info.signature_algorithms, ["rsaEncryption"]);
    assert_eq!(info.detached, Some(true));
    for attr in [
        "contentType",
        "signingTime",
        "messageDigest",
        "S/MIME Capabilities",
        "id-smime-aa-encrypKeyPref",
    ] {
        assert!(
            info.has_signed_attribute(attr),
            "{attr}: {:?}",
            info.signed_attributes
        );
    }
    assert_eq!(info.certificates, 2, "signer and root");
    assert!(info.indefinite_length, "NSS writes BER");

    openssl_verify_detached(&p.alice.ca_pem, &sig, &entity()).unwrap();
    assert!(openssl_verify_detached(&p.alice.ca_pem, &sig, &tampered(&entity())).is_err());
    gpgsm_verify_detached(&p.alice.ca_pem, &sig, &entity()).unwrap();

    let plain = cmsutil_sign_detached_with(&p.alice, &entity(), &[]).unwrap();
    let info = cms_info(&plain);
    assert!(!info.has_signed_attribute("signingTime"));
    assert!(info.has_signed_attribute("messageDigest"));
}

#[test]
fn cmsutil_can_sign_without_any_signed_attributes() {
    let p = pki();
    let sig = cmsutil_sign_detached_with(&p.alice, &entity(), &["-Y", "NONE"]).unwrap();
    let info = cms_info(&sig);
    assert!(
        info.signed_attributes.is_empty(),
        "{:?}",
        info.signed_attributes
    );
    let after_label = info
        .dump
        .lines()
        .skip_while(|l| l.trim() != "signedAttrs:")
        .nth(1);
    assert_eq!(
        after_label.map(str::trim),
        Some("<ABSENT>"),
        "{}",
        info.dump
    );
    openssl_verify_detached(&p.alice.ca_pem, &sig, &entity()).unwrap();
    assert!(openssl_verify_detached(&p.alice.ca_pem, &sig, &tampered(&entity())).is_err());
}

#[test]
fn cmsutil_refuses_to_sign_under_an_untrusted_root() {
    let p = pki();
    let mut stranger = p.alice.clone();
    stranger.ca_pem = other_root_pem();
    assert_err_contains(
        cmsutil_sign_detached(&stranger, &entity()),
        &[
            "cannot add SMIMEEncKeyPrefs attribute",
            "SEC_ERROR_UNKNOWN_ISSUER",
        ],
    );
}

#[test]
fn cmsutil_encryption_shape_and_openssl_decrypts_it() {
    let p = pki();
    let der = cmsutil_encrypt(&[&p.alice.cert_pem, &p.bob.cert_pem], &entity()).unwrap();
    let info = cms_info(&der);
    assert_eq!(info.content_type, "pkcs7-envelopedData");
    assert_eq!(info.content_cipher.as_deref(), Some("aes-128-cbc"));
    assert_eq!(info.key_transport, ["rsaEncryption", "rsaEncryption"]);
    assert!(info.indefinite_length, "NSS writes BER");
    assert_eq!(openssl_decrypt_der(&p.alice, &der).unwrap(), entity());
    assert_eq!(openssl_decrypt_der(&p.bob, &der).unwrap(), entity());

    let der = cmsutil_encrypt(&[&p.bob.cert_pem], &entity()).unwrap();
    assert!(openssl_decrypt_der(&p.alice, &der).is_err());

    // AES-256 only when every recipient's RSA key is over 3072 bits.
    let big = p
        .root
        .leaf()
        .email("big@direct.example.org")
        .key_bits(4096)
        .build()
        .unwrap();
    let big = Identity::from_devpki(&big, &p.root);
    let der = cmsutil_encrypt(&[&big.cert_pem], &entity()).unwrap();
    assert_eq!(
        cms_info(&der).content_cipher.as_deref(),
        Some("aes-256-cbc")
    );
    assert_eq!(openssl_decrypt_der(&big, &der).unwrap(), entity());
    let der = cmsutil_encrypt(&[&big.cert_pem, &p.bob.cert_pem], &entity()).unwrap();
    assert_eq!(
        cms_info(&der).content_cipher.as_deref(),
        Some("aes-128-cbc")
    );
}

#[test]
fn cmsutil_addresses_domain_bound_recipients() {
    let p = pki();
    let org = p.root.leaf().dns("direct.example.org").build().unwrap();
    let org = Identity::from_devpki(&org, &p.root);
    let der = cmsutil_encrypt(&[&org.cert_pem], &entity()).unwrap();
    assert_eq!(openssl_decrypt_der(&org, &der).unwrap(), entity());
    let sig = cmsutil_sign_detached(&org, &entity()).unwrap();
    openssl_verify_detached(&org.ca_pem, &sig, &entity()).unwrap();
}

#[test]
fn cmsutil_direct_message_both_ways() {
    let p = pki();
    // openssl → cmsutil
    for cipher in [Cipher::Aes128Cbc, Cipher::Aes256Cbc] {
        let smime = openssl_sign_encrypt(
            &p.alice,
            &[&p.bob.cert_pem],
            &entity(),
            cipher,
            KeyTransport::Pkcs1v15,
        );
        let message = prepend_headers(outer_headers(), &smime);
        let signed = cmsutil_decrypt(&p.bob, &pkcs7_mime_der(&message).unwrap()).unwrap();
        let (content, sig) = split_multipart_signed(&signed).unwrap();
        assert_eq!(content, entity());
        cmsutil_verify_detached(&p.alice.ca_pem, &sig, &content).unwrap();
    }

    // cmsutil → openssl
    let sig = cmsutil_sign_detached(&p.alice, &entity()).unwrap();
    let signed = multipart_signed(&entity(), &sig);
    let der = cmsutil_encrypt(&[&p.bob.cert_pem], &signed).unwrap();
    let message = prepend_headers(outer_headers(), &pkcs7_mime(&der));
    let decrypted = openssl_decrypt(&p.bob, &message);
    assert_eq!(decrypted, signed);
    assert_eq!(openssl_verify(&p.alice.ca_pem, &decrypted), entity());
}

// ---------------------------------------------------------------------------------------------
// gpgsm and cmsutil with each other, so no openssl quirk can be what makes a pair work.

#[test]
fn gpgsm_and_cmsutil_read_each_other() {
    let p = pki();
    let der = cmsutil_encrypt(&[&p.bob.cert_pem], &entity()).unwrap();
    assert_eq!(gpgsm_decrypt(&p.bob, &der).unwrap(), entity());
    let der = gpgsm_encrypt(&[&p.bob.cert_pem], &p.bob.ca_pem, &entity(), Some("AES256")).unwrap();
    assert_eq!(cmsutil_decrypt(&p.bob, &der).unwrap(), entity());
}
