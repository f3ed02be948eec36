//! Builds the outbound CMS structures (RFC 5652) directly around EVP calls: detached
//! SignedData and (Auth)EnvelopedData.
//!
//! Done by hand rather than through OpenSSL's CMS layer because that layer costs a third of an
//! RSA operation per message on top of the cryptography (BIO chains, re-encoding, realloc-and-
//! cleanse buffers) and needs the content in one contiguous buffer: here the content can be
//! several pieces (header, message, trailer) hashed and encrypted in place, so a large
//! message is never copied into intermediate entities. Every structure is checked by the
//! interop tests against openssl, gpgsm and NSS.

use openssl::cipher_ctx::CipherCtx;
use openssl::md_ctx::MdCtx;
use openssl::symm::Cipher;
use openssl::x509::X509;

use super::der::{self, NULL, OCTET_STRING, SEQUENCE, cons, tlv};
use super::{LocalKey, SmimeError};
use crate::certinfo::first_reason;
use crate::config::KeyTransport;

const ID_DATA: &str = "1.2.840.113549.1.7.1";
const ID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const ID_ENVELOPED_DATA: &str = "1.2.840.113549.1.7.3";
const ID_AUTH_ENVELOPED_DATA: &str = "1.2.840.113549.1.9.16.1.23";
const ID_CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
const ID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const ID_SIGNING_TIME: &str = "1.2.840.113549.1.9.5";
const ID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const ID_RSAES_OAEP: &str = "1.2.840.113549.1.1.7";
const ID_MGF1: &str = "1.2.840.113549.1.1.8";

fn openssl_err(what: &str) -> impl Fn(openssl::error::ErrorStack) -> SmimeError + '_ {
    move |e| SmimeError::Build(format!("{what}: {}", first_reason(&e)))
}

fn cert_der(cert: &X509) -> Result<std::sync::Arc<[u8]>, SmimeError> {
    super::certcache::der(cert).map_err(openssl_err("certificate"))
}

fn issuer_and_serial(cert_der: &[u8]) -> Result<Vec<u8>, SmimeError> {
    let (issuer, serial) = der::issuer_and_serial(cert_der)
        .ok_or_else(|| SmimeError::Build("certificate without issuer/serial".into()))?;
    Ok(cons(SEQUENCE, &[issuer, serial]))
}

/// UTCTime (RFC 5652 11.3: UTCTime until 2049) of a Unix time.
fn utc_time(secs: i64) -> Vec<u8> {
    let (y, m, d) = crate::certinfo::civil_date(secs);
    let t = secs.rem_euclid(86_400);
    let text = if (1950..2050).contains(&y) {
        format!(
            "{:02}{m:02}{d:02}{:02}{:02}{:02}Z",
            y % 100,
            t / 3600,
            t / 60 % 60,
            t % 60
        )
    } else {
        String::new()
    };
    if text.is_empty() {
        // GeneralizedTime outside the UTCTime range.
        let g = format!(
            "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
            t / 3600,
            t / 60 % 60,
            t % 60
        );
        return tlv(0x18, g.as_bytes());
    }
    tlv(0x17, text.as_bytes())
}

fn attribute(oid: &str, value: &[u8]) -> Vec<u8> {
    cons(SEQUENCE, &[&der::oid(oid), &cons(der::SET, &[value])])
}

/// Detached SignedData over the concatenation of `content` pieces, one SignerInfo per signer
/// (SHA-256, RSA PKCS#1 v1.5), carrying the signers' certificates and chains.
pub fn signed_data(
    content: &[&[u8]],
    signers: &[LocalKey],
    now: i64,
) -> Result<Vec<u8>, SmimeError> {
    let sha256_md = super::evp::sha256().map_err(openssl_err("SHA-256"))?;
    let mut hasher = MdCtx::new().map_err(openssl_err("SHA-256"))?;
    hasher
        .digest_init(sha256_md)
        .map_err(openssl_err("SHA-256"))?;
    for piece in content {
        hasher
            .digest_update(piece)
            .map_err(openssl_err("SHA-256"))?;
    }
    let mut digest = [0u8; 32];
    hasher
        .digest_final(&mut digest)
        .map_err(openssl_err("SHA-256"))?;
    let sha256 = der::algorithm(ID_SHA256, None);
    let rsa = der::algorithm(RSA_ENCRYPTION, Some(NULL));
    let signed_attrs = der::set_of(vec![
        attribute(ID_CONTENT_TYPE, &der::oid(ID_DATA)),
        attribute(ID_SIGNING_TIME, &utc_time(now)),
        attribute(ID_MESSAGE_DIGEST, &tlv(OCTET_STRING, &digest)),
    ]);
    let mut signer_infos = Vec::new();
    let mut certs: Vec<std::sync::Arc<[u8]>> = Vec::new();
    for s in signers {
        let der_cert = cert_der(&s.cert)?;
        // The signature covers the attributes DER-encoded as a SET (RFC 5652 5.4).
        let mut signer = MdCtx::new().map_err(openssl_err("signing"))?;
        signer
            .digest_sign_init(Some(sha256_md), &s.key)
            .map_err(openssl_err("signing"))?;
        let mut signature = Vec::new();
        signer
            .digest_sign_to_vec(&signed_attrs, &mut signature)
            .map_err(openssl_err("signing"))?;
        let mut attrs_implicit = signed_attrs.clone();
        attrs_implicit[0] = 0xa0;
        signer_infos.push(cons(
            SEQUENCE,
            &[
                &[0x02, 0x01, 0x01],
                &issuer_and_serial(&der_cert)?,
                &sha256,
                &attrs_implicit,
                &rsa,
                &tlv(OCTET_STRING, &signature),
            ],
        ));
        for c in std::iter::once(der_cert).chain(
            s.chain
                .iter()
                .map(cert_der)
                .collect::<Result<Vec<_>, _>>()?,
        ) {
            if !certs.contains(&c) {
                certs.push(c);
            }
        }
    }
    certs.sort();
    let cert_refs: Vec<&[u8]> = certs.iter().map(|c| &c[..]).collect();
    let signed_data = cons(
        SEQUENCE,
        &[
            &[0x02, 0x01, 0x01],
            &cons(der::SET, &[&sha256]),
            &cons(SEQUENCE, &[&der::oid(ID_DATA)]),
            // certificates [0] IMPLICIT: a SET OF, sorted like any DER SET OF.
            &cons(0xa0, &cert_refs),
            &der::set_of(signer_infos),
        ],
    );
    Ok(cons(
        SEQUENCE,
        &[&der::oid(ID_SIGNED_DATA), &cons(0xa0, &[&signed_data])],
    ))
}

fn key_transport_algorithm(transport: KeyTransport) -> Vec<u8> {
    match transport {
        KeyTransport::RsaPkcs1 => der::algorithm(RSA_ENCRYPTION, Some(NULL)),
        // RSA-OAEP is always sent with SHA-256 and MGF1-SHA-256 (SPEC A6).
        KeyTransport::RsaOaep => {
            // RSAES-OAEP-params (RFC 4055): SHA-256, MGF1 with SHA-256, default pSource.
            let sha256 = der::algorithm(ID_SHA256, None);
            let params = cons(
                SEQUENCE,
                &[
                    &cons(0xa0, &[&sha256]),
                    &cons(0xa1, &[&der::algorithm(ID_MGF1, Some(&sha256))]),
                ],
            );
            der::algorithm(ID_RSAES_OAEP, Some(&params))
        }
    }
}

fn wrap_key(cert: &X509, cek: &[u8], transport: KeyTransport) -> Result<Vec<u8>, SmimeError> {
    let key = cert.public_key().map_err(openssl_err("recipient key"))?;
    super::evp::wrap_key(&key, transport == KeyTransport::RsaOaep, cek)
        .map_err(openssl_err("key transport"))
}

/// Which content cipher, as OpenSSL cipher plus its OID.
#[derive(Clone, Copy)]
pub struct ContentCipher {
    pub cipher: Cipher,
    pub name: &'static str,
    pub oid: &'static str,
    pub gcm: bool,
}

impl From<crate::config::ContentCipher> for ContentCipher {
    fn from(c: crate::config::ContentCipher) -> Self {
        use crate::config::ContentCipher as C;
        let (cipher, name, oid, gcm) = match c {
            C::Aes128Cbc => (
                Cipher::aes_128_cbc(),
                "AES-128-CBC",
                "2.16.840.1.101.3.4.1.2",
                false,
            ),
            C::Aes256Cbc => (
                Cipher::aes_256_cbc(),
                "AES-256-CBC",
                "2.16.840.1.101.3.4.1.42",
                false,
            ),
            C::Aes128Gcm => (
                Cipher::aes_128_gcm(),
                "AES-128-GCM",
                "2.16.840.1.101.3.4.1.6",
                true,
            ),
            C::Aes256Gcm => (
                Cipher::aes_256_gcm(),
                "AES-256-GCM",
                "2.16.840.1.101.3.4.1.46",
                true,
            ),
        };
        ContentCipher {
            cipher,
            name,
            oid,
            gcm,
        }
    }
}

const GCM_TAG_LEN: usize = 16;

/// EnvelopedData (CBC) or AuthEnvelopedData (GCM, RFC 5083/5084) of the concatenated
/// `content` pieces for every recipient. The ciphertext is written straight into the output.
pub fn enveloped_data(
    content: &[&[u8]],
    recipients: &[X509],
    cipher: ContentCipher,
    transport: KeyTransport,
) -> Result<Vec<u8>, SmimeError> {
    let key_len = cipher.cipher.key_len();
    let iv_len = if cipher.gcm { 12 } else { 16 };
    // One call to the RNG for both: each call costs a DRBG lock and reseed check.
    let mut key_and_iv = vec![0u8; key_len + iv_len];
    openssl::rand::rand_bytes(&mut key_and_iv).map_err(openssl_err("random key"))?;
    let (cek, iv) = key_and_iv.split_at(key_len);
    let mut recipient_infos = Vec::with_capacity(recipients.len());
    for cert in recipients {
        let der_cert = cert_der(cert)?;
        let encrypted_key = wrap_key(cert, cek, transport)?;
        recipient_infos.push(cons(
            SEQUENCE,
            &[
                &[0x02, 0x01, 0x00],
                &issuer_and_serial(&der_cert)?,
                &key_transport_algorithm(transport),
                &tlv(OCTET_STRING, &encrypted_key),
            ],
        ));
    }
    let params = if cipher.gcm {
        // GCMParameters: nonce and ICV length.
        cons(
            SEQUENCE,
            &[&tlv(OCTET_STRING, iv), &[0x02, 0x01, GCM_TAG_LEN as u8]],
        )
    } else {
        tlv(OCTET_STRING, iv)
    };
    let plain_len: usize = content.iter().map(|p| p.len()).sum();
    let cipher_len = if cipher.gcm {
        plain_len
    } else {
        (plain_len / 16 + 1) * 16
    };
    let eci_head = cons(
        SEQUENCE,
        &[
            &der::oid(ID_DATA),
            &der::algorithm(cipher.oid, Some(&params)),
        ],
    );
    // The content-info SEQUENCE is its head's fields plus [0] IMPLICIT OCTET STRING.
    let mut content_header = Vec::new();
    der::write_header(&mut content_header, 0x80, cipher_len);
    let eci_fields_len = eci_head.len() - header_len(&eci_head) + content_header.len() + cipher_len;
    let ris = der::set_of(recipient_infos);
    let mac_len = if cipher.gcm { 2 + GCM_TAG_LEN } else { 0 };
    let mut eci_outer_header = Vec::new();
    der::write_header(&mut eci_outer_header, SEQUENCE, eci_fields_len);
    let body_len = 3 + ris.len() + eci_outer_header.len() + eci_fields_len + mac_len;
    let mut env_header = Vec::new();
    der::write_header(&mut env_header, SEQUENCE, body_len);
    let type_oid = der::oid(if cipher.gcm {
        ID_AUTH_ENVELOPED_DATA
    } else {
        ID_ENVELOPED_DATA
    });
    let mut explicit_header = Vec::new();
    der::write_header(&mut explicit_header, 0xa0, env_header.len() + body_len);
    let total_inner = type_oid.len() + explicit_header.len() + env_header.len() + body_len;
    let mut out = Vec::with_capacity(total_inner + 8);
    der::write_header(&mut out, SEQUENCE, total_inner);
    out.extend_from_slice(&type_oid);
    out.extend_from_slice(&explicit_header);
    out.extend_from_slice(&env_header);
    out.extend_from_slice(&[0x02, 0x01, 0x00]);
    out.extend_from_slice(&ris);
    out.extend_from_slice(&eci_outer_header);
    out.extend_from_slice(&eci_head[header_len(&eci_head)..]);
    out.extend_from_slice(&content_header);
    let start = out.len();
    out.resize(start + cipher_len + cipher.cipher.block_size(), 0);
    let mut crypter = CipherCtx::new().map_err(openssl_err("content encryption"))?;
    let evp_cipher = super::evp::aes(cipher.name).map_err(openssl_err("content encryption"))?;
    crypter
        .encrypt_init(Some(evp_cipher), Some(cek), Some(iv))
        .map_err(openssl_err("content encryption"))?;
    let mut at = start;
    for piece in content {
        at += crypter
            .cipher_update(piece, Some(&mut out[at..]))
            .map_err(openssl_err("content encryption"))?;
    }
    at += crypter
        .cipher_final(&mut out[at..])
        .map_err(openssl_err("content encryption"))?;
    if at != start + cipher_len {
        return Err(SmimeError::Build(format!(
            "cipher produced {} bytes, expected {cipher_len}",
            at - start
        )));
    }
    out.truncate(at);
    if cipher.gcm {
        let mut tag = [0u8; GCM_TAG_LEN];
        crypter.tag(&mut tag).map_err(openssl_err("GCM tag"))?;
        out.extend_from_slice(&tlv(OCTET_STRING, &tag));
    }
    // Don't leave the content key in freed memory.
    openssl_cleanse(&mut key_and_iv);
    Ok(out)
}

fn header_len(tlv_bytes: &[u8]) -> usize {
    match tlv_bytes.get(1) {
        Some(&l) if l < 0x80 => 2,
        Some(&l) => 2 + usize::from(l & 0x7f),
        None => 0,
    }
}

fn openssl_cleanse(buf: &mut [u8]) {
    use zeroize::Zeroize;
    buf.zeroize();
}
