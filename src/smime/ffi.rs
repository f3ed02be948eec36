//! The few libcrypto CMS calls the openssl crate does not bind, for the inbound side: which
//! RecipientInfo names our certificate, which certificates signed, which ones were carried.
//! (The outbound structures are built in `build.rs` around plain EVP calls.) Each unsafe
//! call is wrapped in a safe function.

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::cms::CmsContentInfo;
use openssl::stack::Stack;
use openssl::x509::{X509, X509Ref};
use openssl_sys as sys;
use std::os::raw::c_int;

#[allow(non_camel_case_types)]
type CMS_RecipientInfo = std::ffi::c_void;

unsafe extern "C" {
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
