//! The few libcrypto CMS calls the openssl crate does not bind: signing with an explicit
//! digest and several signers, RSA-OAEP key transport, and reading the signer certificates.
//! Each unsafe call is wrapped in a safe function; failures become the OpenSSL error stack.

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::cms::CmsContentInfo;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKeyRef, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::{X509, X509Ref};
use openssl_sys as sys;
use std::os::raw::{c_int, c_uint};

#[allow(non_camel_case_types)]
type CMS_SignerInfo = std::ffi::c_void;
#[allow(non_camel_case_types)]
type CMS_RecipientInfo = std::ffi::c_void;

unsafe extern "C" {
    fn CMS_add1_signer(
        cms: *mut sys::CMS_ContentInfo,
        signer: *mut sys::X509,
        pk: *mut sys::EVP_PKEY,
        md: *const sys::EVP_MD,
        flags: c_uint,
    ) -> *mut CMS_SignerInfo;
    fn CMS_add1_cert(cms: *mut sys::CMS_ContentInfo, cert: *mut sys::X509) -> c_int;
    fn CMS_final(
        cms: *mut sys::CMS_ContentInfo,
        data: *mut sys::BIO,
        dcont: *mut sys::BIO,
        flags: c_uint,
    ) -> c_int;
    fn CMS_add1_recipient_cert(
        cms: *mut sys::CMS_ContentInfo,
        recip: *mut sys::X509,
        flags: c_uint,
    ) -> *mut CMS_RecipientInfo;
    fn CMS_RecipientInfo_get0_pkey_ctx(ri: *mut CMS_RecipientInfo) -> *mut sys::EVP_PKEY_CTX;
    fn EVP_PKEY_CTX_set_rsa_oaep_md(ctx: *mut sys::EVP_PKEY_CTX, md: *const sys::EVP_MD) -> c_int;
    fn CMS_get0_signers(cms: *mut sys::CMS_ContentInfo) -> *mut sys::stack_st_X509;
    fn CMS_get1_certs(cms: *mut sys::CMS_ContentInfo) -> *mut sys::stack_st_X509;
    fn CMS_get0_RecipientInfos(cms: *mut sys::CMS_ContentInfo) -> *mut sys::OPENSSL_STACK;
    fn CMS_RecipientInfo_type(ri: *mut CMS_RecipientInfo) -> c_int;
    fn CMS_RecipientInfo_ktri_cert_cmp(ri: *mut CMS_RecipientInfo, cert: *mut sys::X509) -> c_int;
}

const CMS_RECIPINFO_TRANS: c_int = 0;

/// Whether a key-transport RecipientInfo names `cert` (by issuer+serial or key identifier).
/// OpenSSL's CMS_decrypt can't tell "not for us" from "wrong key": to blunt padding-oracle
/// attacks it fails both ways without an error, so the caller asks this first.
pub fn has_recipient(cms: &CmsContentInfo, cert: &X509Ref) -> bool {
    // SAFETY: the stack and its entries are owned by cms and only read here.
    unsafe {
        let ris = CMS_get0_RecipientInfos(cms.as_ptr());
        if ris.is_null() {
            return false;
        }
        let n = sys::OPENSSL_sk_num(ris);
        (0..n).any(|i| {
            let ri = sys::OPENSSL_sk_value(ris, i);
            !ri.is_null()
                && CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS
                && CMS_RecipientInfo_ktri_cert_cmp(ri, cert.as_ptr()) == 0
        })
    }
}

const RSA_PKCS1_OAEP_PADDING: c_int = 4;

fn check(ret: c_int) -> Result<(), ErrorStack> {
    if ret <= 0 {
        Err(ErrorStack::get())
    } else {
        Ok(())
    }
}

fn check_ptr<T>(ptr: *mut T) -> Result<*mut T, ErrorStack> {
    if ptr.is_null() {
        Err(ErrorStack::get())
    } else {
        Ok(ptr)
    }
}

/// A memory BIO reading `data`; freed on drop.
struct MemBio(*mut sys::BIO);

impl MemBio {
    fn new(data: &[u8]) -> Result<MemBio, ErrorStack> {
        let len = c_int::try_from(data.len()).map_err(|_| ErrorStack::get())?;
        // SAFETY: the BIO borrows `data`, which outlives it (the BIO is local to the caller).
        let bio = unsafe { sys::BIO_new_mem_buf(data.as_ptr().cast(), len) };
        check_ptr(bio).map(MemBio)
    }
}

impl Drop for MemBio {
    fn drop(&mut self) {
        // SAFETY: we own the BIO.
        unsafe { sys::BIO_free_all(self.0) };
    }
}

/// Owns a CMS_ContentInfo until it is handed to the openssl crate.
struct Cms(*mut sys::CMS_ContentInfo);

impl Cms {
    fn into_content_info(self) -> CmsContentInfo {
        let ptr = self.0;
        std::mem::forget(self);
        // SAFETY: ownership moves to the returned value, which frees it.
        unsafe { CmsContentInfo::from_ptr(ptr) }
    }
}

impl Drop for Cms {
    fn drop(&mut self) {
        // SAFETY: we own it and nobody else freed it.
        unsafe { sys::CMS_ContentInfo_free(self.0) };
    }
}

/// A private key with its certificate, for signing.
pub struct SignerKey<'a> {
    pub cert: &'a X509Ref,
    pub key: &'a PKeyRef<Private>,
}

/// Detached SignedData over `data` with one SignerInfo per signer, each using `digest`
/// (OpenSSL would otherwise pick the key's default), and `extra_certs` (chains) included.
pub fn sign_detached(
    signers: &[SignerKey<'_>],
    extra_certs: &[X509],
    data: &[u8],
    digest: MessageDigest,
) -> Result<CmsContentInfo, ErrorStack> {
    let flags = sys::CMS_PARTIAL | sys::CMS_DETACHED | sys::CMS_BINARY;
    // SAFETY: null signer/key/certs/data with CMS_PARTIAL creates an empty SignedData.
    let cms = Cms(check_ptr(unsafe {
        sys::CMS_sign(
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags,
        )
    })?);
    for s in signers {
        // SAFETY: pointers valid for the call; CMS_add1_signer takes its own references.
        let si = unsafe {
            CMS_add1_signer(
                cms.0,
                s.cert.as_ptr(),
                s.key.as_ptr(),
                digest.as_ptr(),
                sys::CMS_BINARY,
            )
        };
        check_ptr(si)?;
    }
    for c in extra_certs {
        // SAFETY: CMS_add1_cert takes its own reference; duplicates are ignored by OpenSSL.
        check(unsafe { CMS_add1_cert(cms.0, c.as_ptr()) })?;
    }
    let bio = MemBio::new(data)?;
    // SAFETY: cms and bio are valid; CMS_final reads the content from bio.
    check(unsafe { CMS_final(cms.0, bio.0, std::ptr::null_mut(), flags) })?;
    Ok(cms.into_content_info())
}

/// Which RSA key transport to put in each RecipientInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTransport {
    Pkcs1v15,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256.
    OaepSha256,
}

/// EnvelopedData (or AuthEnvelopedData for an AEAD cipher) of `data`, one RecipientInfo per
/// certificate.
pub fn encrypt(
    recipients: &[X509],
    data: &[u8],
    cipher: Cipher,
    transport: KeyTransport,
) -> Result<CmsContentInfo, ErrorStack> {
    let flags = sys::CMS_PARTIAL | sys::CMS_BINARY;
    // SAFETY: null certs/data with CMS_PARTIAL create an empty (Auth)EnvelopedData.
    let cms = Cms(check_ptr(unsafe {
        sys::CMS_encrypt(
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            cipher.as_ptr(),
            flags,
        )
    })?);
    for cert in recipients {
        let ri_flags = match transport {
            // KEY_PARAM defers key-transport setup so the padding can be changed first.
            KeyTransport::OaepSha256 => sys::CMS_KEY_PARAM,
            KeyTransport::Pkcs1v15 => 0,
        };
        // SAFETY: valid pointers; the RecipientInfo is owned by cms.
        let ri = check_ptr(unsafe { CMS_add1_recipient_cert(cms.0, cert.as_ptr(), ri_flags) })?;
        if transport == KeyTransport::OaepSha256 {
            // SAFETY: the ctx belongs to the RecipientInfo; we only set parameters on it.
            unsafe {
                let ctx = check_ptr(CMS_RecipientInfo_get0_pkey_ctx(ri))?;
                check(sys::EVP_PKEY_CTX_set_rsa_padding(
                    ctx,
                    RSA_PKCS1_OAEP_PADDING,
                ))?;
                check(EVP_PKEY_CTX_set_rsa_oaep_md(
                    ctx,
                    MessageDigest::sha256().as_ptr(),
                ))?;
                check(sys::EVP_PKEY_CTX_set_rsa_mgf1_md(
                    ctx,
                    MessageDigest::sha256().as_ptr(),
                ))?;
            }
        }
    }
    let bio = MemBio::new(data)?;
    // SAFETY: cms and bio valid.
    check(unsafe { CMS_final(cms.0, bio.0, std::ptr::null_mut(), flags) })?;
    Ok(cms.into_content_info())
}

/// The certificates that signed, in SignerInfo order. Only meaningful after a successful
/// `CmsContentInfo::verify`, which resolves them.
pub fn signers(cms: &CmsContentInfo) -> Vec<X509> {
    // SAFETY: CMS_get0_signers returns a new stack (ours to free) of certificates that stay
    // owned by the CMS structure: copy them (up-ref), then free only the stack.
    unsafe {
        let ptr = CMS_get0_signers(cms.as_ptr());
        if ptr.is_null() {
            return Vec::new();
        }
        let certs = openssl::stack::StackRef::<X509>::from_ptr(ptr)
            .iter()
            .map(|c| c.to_owned())
            .collect();
        sys::OPENSSL_sk_free(ptr.cast());
        certs
    }
}

/// Every certificate carried in a SignedData (signers, intermediates, extras).
pub fn certificates(cms: &CmsContentInfo) -> Vec<X509> {
    // SAFETY: get1 returns a new stack with up-referenced entries; the Stack wrapper frees both.
    unsafe {
        let ptr = CMS_get1_certs(cms.as_ptr());
        if ptr.is_null() {
            return Vec::new();
        }
        Stack::<X509>::from_ptr(ptr).into_iter().collect()
    }
}
