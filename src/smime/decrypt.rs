//! Decrypts a DER (Auth)EnvelopedData of the usual S/MIME shape directly — unwrap the content
//! key with our RSA key, then one EVP cipher pass — instead of through OpenSSL's CMS layer.
//!
//! Only a narrow, fully understood shape is handled here (one key-transport RecipientInfo naming
//! one of our certificates byte for byte, AES-CBC or AES-GCM, nothing optional); for anything
//! else the caller uses OpenSSL's CMS path, so its errors stay exactly what they were. Every
//! field accepted here is one OpenSSL's parser accepts too.
//!
//! Bleichenbacher/MMA countermeasure, as OpenSSL's CMS does it (OpenSSL 3.0 has no implicit
//! rejection for PKCS#1 v1.5): when the key does not unwrap, or unwraps to the wrong length, a
//! random key of the right length is used instead, so that failure shows up only as the
//! content not decrypting — the same error, after the same work, as any wrong key.

use openssl::cipher_ctx::CipherCtx;
use openssl::md::Md;
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::Cipher;
use zeroize::Zeroize;

use super::LocalKey;
use super::der::{self, OCTET_STRING, SEQUENCE, SET, Tlv};
use super::verify::{OID_RSA, OID_SHA256, is_algorithm, is_small_int};

const OID_ENVELOPED: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03";
const OID_AUTH_ENVELOPED: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x01\x17";
const OID_OAEP: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x07";
const OID_MGF1: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x08";
const OID_DATA: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01";
const AES_ARC: &[u8] = b"\x60\x86\x48\x01\x65\x03\x04\x01";
const GCM_TAG_LEN: usize = 16;

/// What the direct path did with a message it understood.
pub(super) enum Outcome<'k> {
    /// The decrypted content, the key used, the cipher and key-transport names.
    Plain(Vec<u8>, &'k LocalKey, &'static str, &'static str),
    /// The message names this key but does not decrypt with it.
    Failed(&'k LocalKey),
}

#[derive(Clone, Copy)]
enum Transport {
    Pkcs1,
    OaepSha256,
}

/// `None` when the message is not of the shape handled here (the caller then asks OpenSSL).
pub(super) fn enveloped<'k>(der_bytes: &[u8], keys: &'k [LocalKey]) -> Option<Outcome<'k>> {
    let (ci, rest) = der::read(der_bytes)?;
    if ci.tag != SEQUENCE || !rest.is_empty() {
        return None;
    }
    let [oid, explicit] = der::exactly::<2>(ci.content)?;
    let auth = match oid.content {
        OID_ENVELOPED => false,
        OID_AUTH_ENVELOPED => true,
        _ => return None,
    };
    let [body] = der::exactly::<1>(explicit.content)?;
    if oid.tag != der::OID || explicit.tag != 0xa0 || body.tag != SEQUENCE {
        return None;
    }
    // EnvelopedData: version, recipientInfos, encryptedContentInfo.
    // AuthEnvelopedData: version, recipientInfos, authEncryptedContentInfo, mac.
    let (version, ris, eci, mac) = if auth {
        let [v, r, e, m] = der::exactly::<4>(body.content)?;
        let tag_ok = m.tag == OCTET_STRING && m.content.len() == GCM_TAG_LEN;
        (tag_ok && is_small_int(&v, &[0])).then_some((v, r, e, Some(m.content)))?
    } else {
        let [v, r, e] = der::exactly::<3>(body.content)?;
        (v, r, e, None)
    };
    let [ri] = der::exactly::<1>(ris.content)?;
    if !is_small_int(&version, &[0, 2]) || ris.tag != SET || ri.tag != SEQUENCE {
        return None;
    }
    let [ri_version, rid, key_alg, encrypted_key] = der::exactly::<4>(ri.content)?;
    if !is_small_int(&ri_version, &[0, 2]) || encrypted_key.tag != OCTET_STRING {
        return None;
    }
    let transport = key_transport(&key_alg)?;
    let [content_type, content_alg, ciphertext] = der::exactly::<3>(eci.content)?;
    if eci.tag != SEQUENCE
        || content_type.tag != der::OID
        || content_type.content != OID_DATA
        || ciphertext.tag != 0x80
    {
        return None;
    }
    let (cipher, name, iv) = content_cipher(&content_alg, auth)?;
    let key = our_key(&rid, keys)?;
    let transport_name = match transport {
        Transport::Pkcs1 => "rsa-pkcs1",
        Transport::OaepSha256 => "rsa-oaep",
    };
    let mut cek = unwrap_key(key, transport, encrypted_key.content, cipher.key_len());
    let plain = decrypt_content(name, &cek, iv, ciphertext.content, mac);
    cek.zeroize();
    Some(match plain {
        Some(p) => Outcome::Plain(p, key, name, transport_name),
        None => Outcome::Failed(key),
    })
}

/// rsaEncryption, or RSAES-OAEP with SHA-256 and MGF1-SHA-256 (what we send; SPEC A6).
fn key_transport(alg: &Tlv<'_>) -> Option<Transport> {
    if is_algorithm(alg, OID_RSA) {
        return Some(Transport::Pkcs1);
    }
    let [oid, params] = der::exactly::<2>(alg.content)?;
    if alg.tag != SEQUENCE || oid.tag != der::OID || oid.content != OID_OAEP {
        return None;
    }
    // RSAES-OAEP-params: [0] hash, [1] mask generation, no [2] label source.
    let [hash, mgf] = der::exactly::<2>(params.content)?;
    let [hash_alg] = der::exactly::<1>(hash.content)?;
    let [mgf_alg] = der::exactly::<1>(mgf.content)?;
    let [mgf_oid, mgf_hash] = der::exactly::<2>(mgf_alg.content)?;
    let ok = params.tag == SEQUENCE
        && hash.tag == 0xa0
        && mgf.tag == 0xa1
        && is_algorithm(&hash_alg, OID_SHA256)
        && mgf_alg.tag == SEQUENCE
        && mgf_oid.tag == der::OID
        && mgf_oid.content == OID_MGF1
        && is_algorithm(&mgf_hash, OID_SHA256);
    ok.then_some(Transport::OaepSha256)
}

/// AES-CBC (IV parameter) or, in AuthEnvelopedData, AES-GCM with a 12-byte nonce and a
/// 16-byte tag. Policy allows every AES variant, so no policy check is skipped here.
fn content_cipher<'a>(alg: &Tlv<'a>, auth: bool) -> Option<(Cipher, &'static str, &'a [u8])> {
    let [oid, params] = der::exactly::<2>(alg.content)?;
    if alg.tag != SEQUENCE || oid.tag != der::OID || oid.content.len() != AES_ARC.len() + 1 {
        return None;
    }
    let (arc, last) = oid.content.split_at(AES_ARC.len());
    if arc != AES_ARC {
        return None;
    }
    let (cipher, name) = match (last[0], auth) {
        (2, false) => (Cipher::aes_128_cbc(), "aes-128-cbc"),
        (22, false) => (Cipher::aes_192_cbc(), "aes-192-cbc"),
        (42, false) => (Cipher::aes_256_cbc(), "aes-256-cbc"),
        (6, true) => (Cipher::aes_128_gcm(), "aes-128-gcm"),
        (26, true) => (Cipher::aes_192_gcm(), "aes-192-gcm"),
        (46, true) => (Cipher::aes_256_gcm(), "aes-256-gcm"),
        _ => return None,
    };
    let iv = if auth {
        // GCMParameters: nonce, ICV length 16.
        let [nonce, icv_len] = der::exactly::<2>(params.content)?;
        let ok = params.tag == SEQUENCE
            && nonce.tag == OCTET_STRING
            && nonce.content.len() == 12
            && is_small_int(&icv_len, &[GCM_TAG_LEN as u8]);
        ok.then_some(nonce.content)?
    } else {
        (params.tag == OCTET_STRING && params.content.len() == 16).then_some(params.content)?
    };
    Some((cipher, name, iv))
}

/// The key the RecipientInfo names, chosen as OpenSSL's lookup would: the first key whose
/// certificate matches. Issuer and serial must match byte for byte (OpenSSL compares names
/// canonically; a merely equivalent encoding is left to it).
fn our_key<'k>(rid: &Tlv<'_>, keys: &'k [LocalKey]) -> Option<&'k LocalKey> {
    match rid.tag {
        SEQUENCE => {
            let [issuer, serial] = der::exactly::<2>(rid.content)?;
            if issuer.tag != SEQUENCE || serial.tag != der::INTEGER {
                return None;
            }
            for k in keys {
                let cert_der = super::certcache::der(&k.cert).ok()?;
                let (c_issuer, c_serial) = der::issuer_and_serial(&cert_der)?;
                let (c_issuer, c_serial) = (der::read(c_issuer)?.0, der::read(c_serial)?.0);
                // OpenSSL 3 refuses padded INTEGERs, so serials are equal iff their bytes are.
                if c_serial.content == serial.content {
                    return (c_issuer.content == issuer.content).then_some(k);
                }
            }
            None
        }
        0x80 => keys
            .iter()
            .find(|k| k.cert.subject_key_id().map(|s| s.as_slice()) == Some(rid.content)),
        _ => None,
    }
}

/// The unwrapped content key, or a random key of the same length when unwrapping fails (see
/// the module comment). Both outcomes cost the same: the random key is always drawn, and the
/// choice is made without a branch on the result.
fn unwrap_key(key: &LocalKey, transport: Transport, wrapped: &[u8], key_len: usize) -> Vec<u8> {
    let mut random = vec![0u8; key_len];
    // A failing RNG makes every decryption fail with the usual error, which is safe.
    let _ = openssl::rand::rand_bytes(&mut random);
    let mut buf = [0u8; 1024];
    let got = rsa_decrypt(key, transport, wrapped, &mut buf);
    let ok = got == Some(key_len);
    let mask = 0u8.wrapping_sub(u8::from(ok));
    let cek = buf[..key_len]
        .iter()
        .zip(&random)
        .map(|(u, r)| (u & mask) | (r & !mask))
        .collect();
    buf.zeroize();
    random.zeroize();
    cek
}

fn rsa_decrypt(
    key: &LocalKey,
    transport: Transport,
    wrapped: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let mut ctx = PkeyCtx::new(&key.key).ok()?;
    ctx.decrypt_init().ok()?;
    match transport {
        Transport::Pkcs1 => ctx.set_rsa_padding(Padding::PKCS1).ok()?,
        Transport::OaepSha256 => {
            ctx.set_rsa_padding(Padding::PKCS1_OAEP).ok()?;
            ctx.set_rsa_oaep_md(Md::sha256()).ok()?;
            ctx.set_rsa_mgf1_md(Md::sha256()).ok()?;
        }
    }
    if ctx.decrypt(wrapped, None).ok()? > out.len() {
        return None;
    }
    ctx.decrypt(wrapped, Some(out)).ok()
}

/// Decrypts; with GCM the tag is checked before anything is returned, and nothing
/// unauthenticated is left behind in memory.
fn decrypt_content(
    cipher: &str,
    cek: &[u8],
    iv: &[u8],
    ciphertext: &[u8],
    tag: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let mut crypter = CipherCtx::new().ok()?;
    crypter
        .decrypt_init(Some(super::evp::aes(cipher).ok()?), Some(cek), Some(iv))
        .ok()?;
    let mut out = vec![0u8; ciphertext.len() + crypter.block_size()];
    let mut run = || -> Result<usize, openssl::error::ErrorStack> {
        if let Some(tag) = tag {
            crypter.set_tag(tag)?;
        }
        let n = crypter.cipher_update(ciphertext, Some(&mut out))?;
        Ok(n + crypter.cipher_final(&mut out[n..])?)
    };
    match run() {
        Ok(n) => {
            out.truncate(n);
            Some(out)
        }
        Err(_) => {
            out.zeroize();
            None
        }
    }
}
