//! Sign → encrypt on the way out, decrypt → verify on the way in (SPEC A1-A7).

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::stack::Stack;
use openssl::x509::X509;
use std::borrow::Cow;

use super::algorithms::{self, AlgorithmPolicy, check_cipher, check_digest};
use super::decrypt::Outcome;
use super::ffi;
use super::{LocalKey, MAX_MIME_DEPTH, SmimeError, build, certcache, der, mime, wrap};
use crate::certinfo::{CertInfo, first_reason};
use crate::config::{ContentCipher, KeyTransport};
use crate::keys::MIN_RSA_BITS;

/// How outbound messages are encrypted (from `[security]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealOptions {
    pub cipher: ContentCipher,
    pub key_transport: KeyTransport,
}

impl From<&crate::config::Security> for SealOptions {
    fn from(s: &crate::config::Security) -> Self {
        SealOptions {
            cipher: s.content_cipher,
            key_transport: s.key_transport,
        }
    }
}

fn check_key_size(cert: &X509) -> Result<(), SmimeError> {
    let (is_rsa, bits) = cert
        .public_key()
        .map(|k| (k.id() == openssl::pkey::Id::RSA, k.bits()))
        .unwrap_or((false, 0));
    if !is_rsa || bits < MIN_RSA_BITS {
        return Err(SmimeError::WeakKey {
            subject: crate::certinfo::dn_string(cert.subject_name()),
            bits,
        });
    }
    Ok(())
}

fn random_boundary() -> String {
    let mut raw = [0u8; 12];
    openssl::rand::rand_bytes(&mut raw).expect("OpenSSL RNG failure");
    format!("hisp-{}", crate::certinfo::hex(&raw))
}

/// The multipart/signed framing around signed content (given as pieces): the bytes before
/// the content and the bytes after it, signature included (SPEC A2).
fn signed_frame(content: &[&[u8]], signers: &[LocalKey]) -> Result<(Vec<u8>, Vec<u8>), SmimeError> {
    if signers.is_empty() {
        return Err(SmimeError::Build("no signing certificate".into()));
    }
    for s in signers {
        check_key_size(&s.cert)?;
    }
    let sig = build::signed_data(content, signers, crate::clock::now_secs())?;
    // 96 random bits chosen after the content was written: the content can't contain it
    // except by chance, so no search through a possibly large entity.
    let boundary = random_boundary();
    let head = format!(
        "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256;\r\n boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n"
    )
    .into_bytes();
    let mut tail = format!(
        "\r\n--{boundary}\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"
    )
    .into_bytes();
    mime::encode_base64_lines_into(&mut tail, &sig);
    tail.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok((head, tail))
}

/// `entity` as a multipart/signed entity with a detached SHA-256 signature from every signer
/// (SPEC A2). `entity` must already be in canonical CRLF form.
pub fn sign_entity(entity: &[u8], signers: &[LocalKey]) -> Result<Vec<u8>, SmimeError> {
    let (head, tail) = signed_frame(&[entity], signers)?;
    Ok([head.as_slice(), entity, &tail].concat())
}

fn envelope(
    content: &[&[u8]],
    recipients: &[X509],
    options: &SealOptions,
) -> Result<Vec<u8>, SmimeError> {
    if recipients.is_empty() {
        return Err(SmimeError::Build("no recipient certificate".into()));
    }
    for r in recipients {
        check_key_size(r)?;
    }
    build::enveloped_data(
        content,
        recipients,
        options.cipher.into(),
        options.key_transport,
    )
}

fn is_gcm(options: &SealOptions) -> bool {
    matches!(
        options.cipher,
        ContentCipher::Aes128Gcm | ContentCipher::Aes256Gcm
    )
}

/// CMS (Auth)EnvelopedData of `entity` for every recipient certificate (SPEC A3, A5, A6).
/// Returns the DER and whether it is AuthEnvelopedData (AES-GCM).
pub fn encrypt_entity(
    entity: &[u8],
    recipients: &[X509],
    options: &SealOptions,
) -> Result<(Vec<u8>, bool), SmimeError> {
    Ok((envelope(&[entity], recipients, options)?, is_gcm(options)))
}

/// The complete outbound message: the original wrapped (A1), signed (A2) and encrypted (A3),
/// with the routing headers outside. The message is hashed and encrypted in place: no
/// wrapped or signed copy of it is ever built.
pub fn seal(
    original: &[u8],
    signers: &[LocalKey],
    recipients: &[X509],
    options: &SealOptions,
) -> Result<Vec<u8>, SmimeError> {
    let original = mime::to_crlf(original);
    let wrap_head = wrap::WRAP_HEADER;
    let (head, tail) = signed_frame(&[wrap_head, &original], signers)?;
    let der = envelope(&[&head, wrap_head, &original, &tail], recipients, options)?;
    // RFC 8551 names AuthEnvelopedData "authEnveloped-data".
    let smime_type = if is_gcm(options) {
        "authEnveloped-data"
    } else {
        "enveloped-data"
    };
    let mut out = wrap::routing_headers(&original);
    out.reserve(der.len() / 57 * 78 + 300);
    out.extend_from_slice(
        format!(
            "Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n"
        )
        .as_bytes(),
    );
    mime::encode_base64_lines_into(&mut out, &der);
    Ok(out)
}

/// An accepted inbound message.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The protected RFC 5322 message.
    pub message: Vec<u8>,
    /// Whether the sender wrapped it in message/rfc822 (SPEC A1).
    pub wrapped: bool,
    /// The certificates whose signatures verified, in SignerInfo order.
    pub signers: Vec<X509>,
    /// Every certificate the signature carried (intermediates for path building).
    pub certificates: Vec<X509>,
    /// The local certificate whose key decrypted the message.
    pub decrypted_with: X509,
    pub content_cipher: &'static str,
    pub key_transport: &'static str,
    pub digest: &'static str,
}

/// The result of verifying a signed entity.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signed content (the bytes the signature covers).
    pub content: Vec<u8>,
    pub signers: Vec<X509>,
    pub certificates: Vec<X509>,
    pub digest: &'static str,
}

#[cfg(test)]
thread_local! {
    /// Lets tests compare the direct paths with OpenSSL's on the same input.
    pub(super) static DIRECT: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

fn direct_paths() -> bool {
    #[cfg(test)]
    return DIRECT.with(|d| d.get());
    #[cfg(not(test))]
    true
}

fn parse_cms(der_or_ber: &[u8]) -> Result<(CmsContentInfo, der::CmsAlgorithms), SmimeError> {
    let cms = CmsContentInfo::from_der(der_or_ber)
        .map_err(|e| SmimeError::MalformedCms(first_reason(&e)))?;
    // DER input is scanned as is; BER (indefinite lengths, as gpgsm and NSS write) is
    // scanned in OpenSSL's DER re-encoding, a copy that DER input doesn't need.
    if let Some(algs) = der::cms_algorithms(der_or_ber) {
        return Ok((cms, algs));
    }
    let der = cms
        .to_der()
        .map_err(|e| SmimeError::MalformedCms(first_reason(&e)))?;
    let algs = der::cms_algorithms(&der)
        .ok_or_else(|| SmimeError::MalformedCms("unexpected CMS structure".into()))?;
    Ok((cms, algs))
}

/// Decrypts an S/MIME message with whichever local key matches a RecipientInfo.
/// Returns the decrypted MIME entity, the key used, the cipher and key transport names.
pub fn decrypt<'k>(
    message: &[u8],
    keys: &'k [LocalKey],
    policy: &AlgorithmPolicy,
) -> Result<(Vec<u8>, &'k LocalKey, &'static str, &'static str), SmimeError> {
    let outer = mime::split(message);
    let ct = mime::content_type(outer.header);
    let is_pkcs7_mime = ct.is("application/pkcs7-mime") || ct.is("application/x-pkcs7-mime");
    if !is_pkcs7_mime {
        if ct.is("multipart/signed") {
            return Err(SmimeError::NotEncrypted("signed but not encrypted".into()));
        }
        return Err(SmimeError::NotSmime(ct.mime_type));
    }
    let smime_type = ct.param("smime-type").unwrap_or("").to_ascii_lowercase();
    if smime_type == "signed-data" || smime_type == "certs-only" {
        return Err(SmimeError::NotEncrypted(format!("smime-type={smime_type}")));
    }
    let cte = mime::header_value(outer.header, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let der = match cte.as_str() {
        "base64" => mime::decode_base64(outer.body)?,
        "binary" | "8bit" | "7bit" | "" => outer.body.to_vec(),
        other => {
            return Err(SmimeError::MalformedCms(format!(
                "unsupported Content-Transfer-Encoding {other}"
            )));
        }
    };
    if let Some(direct) = direct_paths()
        .then(|| super::decrypt::enveloped(&der, keys))
        .flatten()
    {
        return match direct {
            Outcome::Plain(plain, key, cipher, transport) => Ok((plain, key, cipher, transport)),
            Outcome::Failed(key) => Err(decrypt_failed(key)),
        };
    }
    let (cms, algs) = parse_cms(&der)?;
    if algs.content_type != der::ENVELOPED_DATA && algs.content_type != der::AUTH_ENVELOPED_DATA {
        return Err(SmimeError::NotEncrypted(format!(
            "CMS content type {}",
            algs.content_type
        )));
    }
    let cipher_oid = algs
        .content_cipher
        .as_deref()
        .ok_or_else(|| SmimeError::MalformedCms("no content encryption algorithm".into()))?;
    let cipher = check_cipher(cipher_oid, policy)?;
    if cipher == "rc2-cbc" {
        // Allowed by the admin's switch; OpenSSL 3 keeps RC2 in its legacy provider.
        crate::keys::load_legacy_provider().map_err(|e| {
            SmimeError::CannotDecrypt(format!(
                "RC2 needs OpenSSL's legacy provider: {}",
                first_reason(&e)
            ))
        })?;
    }
    let transport = algs
        .key_transports
        .first()
        .map(|o| algorithms::key_transport_name(o))
        .unwrap_or("other");
    let Some(key) = keys.iter().find(|k| ffi::has_recipient(&cms, &k.cert)) else {
        return Err(SmimeError::CannotDecrypt(format!(
            "no RecipientInfo is for any of our {} certificate(s)",
            keys.len()
        )));
    };
    match cms.decrypt(&key.key, &key.cert) {
        Ok(plain) => Ok((plain, key, cipher, transport)),
        Err(_) => Err(decrypt_failed(key)),
    }
}

fn decrypt_failed(key: &LocalKey) -> SmimeError {
    SmimeError::DecryptFailed(format!(
        "the message names our certificate {} but does not decrypt with its key (wrong key or damaged content)",
        CertInfo::of(&key.cert).sha256
    ))
}

/// Verifies a signed MIME entity (multipart/signed, or opaque pkcs7-mime signed-data) and
/// returns the signed content. Trust in the signers is the caller's job (`trust`).
pub fn verify_entity(entity: &[u8], policy: &AlgorithmPolicy) -> Result<Verified, SmimeError> {
    let v = verify_in_place(entity, policy)?;
    Ok(Verified {
        content: v.content.into_owned(),
        signers: v.signers,
        certificates: v.certificates,
        digest: v.digest,
    })
}

/// `Verified`, with the content borrowed from the entity when it is a multipart/signed
/// part (the common case), so a large message is not copied to be verified.
struct InPlace<'a> {
    content: Cow<'a, [u8]>,
    signers: Vec<X509>,
    certificates: Vec<X509>,
    digest: &'static str,
}

fn verify_in_place<'a>(
    entity: &'a [u8],
    policy: &AlgorithmPolicy,
) -> Result<InPlace<'a>, SmimeError> {
    let e = mime::split(entity);
    let ct = mime::content_type(e.header);
    if ct.is("multipart/signed") {
        let boundary = ct.param("boundary").unwrap_or_default();
        let parts = mime::multipart_parts(e.body, boundary)?;
        let [content, signature] = parts.as_slice() else {
            return Err(SmimeError::NotSigned(format!(
                "multipart/signed with {} parts instead of 2",
                parts.len()
            )));
        };
        let sig_entity = mime::split(signature);
        let sig_ct = mime::content_type(sig_entity.header);
        if !(sig_ct.is("application/pkcs7-signature") || sig_ct.is("application/x-pkcs7-signature"))
        {
            return Err(SmimeError::NotSigned(format!(
                "signature part is {}",
                sig_ct.mime_type
            )));
        }
        let cte = mime::header_value(sig_entity.header, "content-transfer-encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let sig_der = if cte == "base64" {
            mime::decode_base64(sig_entity.body)?
        } else {
            sig_entity.body.to_vec()
        };
        // SHA-256 is allowed by every policy, so the direct path skips no policy check.
        if direct_paths()
            && check_micalg(ct.param("micalg"), "sha-256").is_ok()
            && let Some(v) = super::verify::detached(&sig_der, content)
        {
            return Ok(InPlace {
                content: Cow::Borrowed(content),
                signers: vec![v.signer],
                certificates: v.certificates,
                digest: "sha-256",
            });
        }
        let (mut cms, algs, carried) = parse_signed(&sig_der)?;
        let digest = check_signed_algorithms(&algs, policy)?;
        check_micalg(ct.param("micalg"), digest)?;
        verify_detached(&mut cms, &carried, content)?;
        finish(cms, carried, Cow::Borrowed(content), digest)
    } else if (ct.is("application/pkcs7-mime") || ct.is("application/x-pkcs7-mime"))
        && ct
            .param("smime-type")
            .is_some_and(|t| t.eq_ignore_ascii_case("signed-data"))
    {
        let der = mime::decode_base64(e.body)?;
        let (mut cms, algs, carried) = parse_signed(&der)?;
        let digest = check_signed_algorithms(&algs, policy)?;
        let mut content = Vec::new();
        let stack = cert_stack(&carried)?;
        cms.verify(
            Some(&stack),
            None,
            None,
            Some(&mut content),
            CMSOptions::NOVERIFY | CMSOptions::BINARY,
        )
        .map_err(|e| SmimeError::BadSignature(first_reason(&e)))?;
        finish(cms, carried, Cow::Owned(content), digest)
    } else {
        Err(SmimeError::NotSigned(ct.mime_type))
    }
}

/// Parses SignedData, taking its certificates out first so known ones come from the cache
/// (see `certcache`); BER or unusual input takes the ordinary path.
fn parse_signed(
    der_or_ber: &[u8],
) -> Result<(CmsContentInfo, der::CmsAlgorithms, Vec<X509>), SmimeError> {
    if let Some((stripped, cert_ders)) = der::split_certificates(der_or_ber) {
        let certs = cert_ders
            .iter()
            .map(|d| certcache::parse(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SmimeError::MalformedCms(format!("certificate: {}", first_reason(&e))))?;
        let (cms, algs) = parse_cms(&stripped)?;
        return Ok((cms, algs, certs));
    }
    let (cms, algs) = parse_cms(der_or_ber)?;
    let certs = ffi::certificates(&cms);
    Ok((cms, algs, certs))
}

fn cert_stack(certs: &[X509]) -> Result<Stack<X509>, SmimeError> {
    let mut stack = Stack::new().map_err(|e| SmimeError::Build(first_reason(&e)))?;
    for c in certs {
        stack
            .push(c.clone())
            .map_err(|e| SmimeError::Build(first_reason(&e)))?;
    }
    Ok(stack)
}

fn check_signed_algorithms(
    algs: &der::CmsAlgorithms,
    policy: &AlgorithmPolicy,
) -> Result<&'static str, SmimeError> {
    if algs.content_type != der::SIGNED_DATA {
        return Err(SmimeError::NotSigned(format!(
            "CMS content type {}",
            algs.content_type
        )));
    }
    if algs.signatures.is_empty() {
        return Err(SmimeError::NotSigned("no SignerInfo".into()));
    }
    let mut digest = "";
    for oid in algs.digests.iter().chain(&algs.signatures) {
        let name = check_digest(oid, policy)?;
        if digest.is_empty() {
            digest = name;
        }
    }
    Ok(digest)
}

fn check_micalg(micalg: Option<&str>, digest: &str) -> Result<(), SmimeError> {
    let want = algorithms::normalize_digest_name(digest);
    let ok = micalg.is_some_and(|m| {
        m.split(',')
            .any(|v| algorithms::normalize_digest_name(v) == want)
    });
    if ok {
        Ok(())
    } else {
        Err(SmimeError::MicalgMismatch {
            micalg: micalg.unwrap_or("(none)").to_string(),
            digest: digest.to_string(),
        })
    }
}

/// Verifies over the exact bytes; if that fails and the content has bare LFs (a sender or
/// relay that didn't canonicalise), over the CRLF form S/MIME signers are meant to use.
fn verify_detached(
    cms: &mut CmsContentInfo,
    certs: &[X509],
    content: &[u8],
) -> Result<(), SmimeError> {
    let flags = CMSOptions::NOVERIFY | CMSOptions::BINARY;
    let stack = cert_stack(certs)?;
    let first = cms.verify(Some(&stack), None, Some(content), None, flags);
    let Err(e) = first else { return Ok(()) };
    let canonical = mime::to_crlf(content);
    if canonical.len() != content.len()
        && cms
            .verify(Some(&stack), None, Some(&canonical), None, flags)
            .is_ok()
    {
        return Ok(());
    }
    Err(SmimeError::BadSignature(first_reason(&e)))
}

fn finish<'a>(
    cms: CmsContentInfo,
    certificates: Vec<X509>,
    content: Cow<'a, [u8]>,
    digest: &'static str,
) -> Result<InPlace<'a>, SmimeError> {
    let signers = ffi::signers(&cms);
    if signers.is_empty() {
        return Err(SmimeError::BadSignature(
            "no signer certificate found".into(),
        ));
    }
    for s in &signers {
        check_key_size(s)?;
    }
    Ok(InPlace {
        content,
        certificates,
        signers,
        digest,
    })
}

/// Inbound: decrypt, verify, unwrap (SPEC A1-A7). Trust and envelope binding are separate
/// steps (`trust::Validator`, `check_envelope`).
pub fn open(
    message: &[u8],
    keys: &[LocalKey],
    policy: &AlgorithmPolicy,
) -> Result<Opened, SmimeError> {
    let (mut entity, key, content_cipher, key_transport) = decrypt(message, keys, policy)?;
    mime::check_depth(&entity, MAX_MIME_DEPTH)?;
    let InPlace {
        content,
        signers,
        certificates,
        digest,
    } = verify_in_place(&entity, policy)?;
    let (inner, wrapped) = wrap::unwrap(&content);
    // The message is usually a slice of the decrypted entity: keep it in that buffer (one
    // memmove) rather than copying it into a new one — for a large message a fresh buffer
    // costs more in page faults than the copy itself.
    let (span, copy) = match &content {
        Cow::Borrowed(_) => {
            let span = (inner.as_ptr() as usize)
                .checked_sub(entity.as_ptr() as usize)
                .map(|start| start..start + inner.len())
                .filter(|span| span.end <= entity.len());
            let copy = span.is_none().then(|| inner.to_vec());
            (span, copy)
        }
        Cow::Owned(_) => (None, Some(inner.to_vec())),
    };
    drop(content);
    let message = match (span, copy) {
        (Some(span), _) => {
            entity.truncate(span.end);
            entity.drain(..span.start);
            entity
        }
        (None, copy) => copy.unwrap_or_default(),
    };
    Ok(Opened {
        message,
        wrapped,
        signers,
        certificates,
        decrypted_with: key.cert.clone(),
        content_cipher,
        key_transport,
        digest,
    })
}
