//! The few libcrypto calls the openssl crate does not wrap, each behind a safe function.

use std::os::raw::c_int;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::asn1::Asn1OctetStringRef;
use openssl::cms::CmsContentInfo;
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::x509::{X509Crl, X509CrlRef, X509Ref};
use openssl_sys as sys;

/// OpenSSL's cached extension flags (`EXFLAG_*`); computing them parses every extension it knows.
pub(super) fn extension_flags(cert: &X509Ref) -> u32 {
    // SAFETY: the pointer is valid for the borrow; the call only fills the certificate's cache,
    // which OpenSSL guards with its own lock.
    unsafe { sys::X509_get_extension_flags(cert.as_ptr()) }
}

/// True when some extension OpenSSL understands could not be decoded.
pub(super) fn has_invalid_extension(cert: &X509Ref) -> bool {
    extension_flags(cert) & sys::EXFLAG_INVALID != 0
}

/// The DER value (inside the OCTET STRING) of the first extension with `nid`, if present.
pub(super) fn extension_value(cert: &X509Ref, nid: Nid) -> Result<Option<Vec<u8>>, ErrorStack> {
    // SAFETY: read-only lookups on a certificate kept alive by the borrow; the returned
    // extension and its data belong to the certificate and are copied before the borrow ends.
    unsafe {
        let index = sys::X509_get_ext_by_NID(cert.as_ptr(), nid.as_raw(), -1);
        if index < 0 {
            return Ok(None);
        }
        let ext = sys::X509_get_ext(cert.as_ptr(), index);
        if ext.is_null() {
            return Err(ErrorStack::get());
        }
        let data = sys::X509_EXTENSION_get_data(ext);
        if data.is_null() {
            return Err(ErrorStack::get());
        }
        Ok(Some(Asn1OctetStringRef::from_ptr(data).as_slice().to_vec()))
    }
}

/// A second owning handle to the same CRL (X509Crl has no Clone).
pub(super) fn crl_clone(crl: &X509CrlRef) -> Result<X509Crl, ErrorStack> {
    // SAFETY: up_ref adds a reference that the new X509Crl releases on drop.
    unsafe {
        if sys::X509_CRL_up_ref(crl.as_ptr()) <= 0 {
            return Err(ErrorStack::get());
        }
        Ok(X509Crl::from_ptr(crl.as_ptr()))
    }
}

unsafe extern "C" {
    fn CMS_get0_SignerInfos(cms: *mut sys::CMS_ContentInfo) -> *mut sys::OPENSSL_STACK;
    fn CMS_SignerInfo_cert_cmp(si: *mut std::ffi::c_void, cert: *mut sys::X509) -> c_int;
}

/// How many SignerInfos a CMS SignedData carries (0 for a certs-only bundle or another type).
pub(super) fn signer_info_count(cms: &CmsContentInfo) -> usize {
    // SAFETY: the stack belongs to cms and is only counted.
    unsafe {
        let infos = CMS_get0_SignerInfos(cms.as_ptr());
        if infos.is_null() {
            // Not a SignedData: OpenSSL queued an error saying so, which must not surface as
            // the reason of some later, unrelated failure on this thread.
            let _ = ErrorStack::get();
            return 0;
        }
        usize::try_from(sys::OPENSSL_sk_num(infos)).unwrap_or(0)
    }
}

/// For each SignerInfo, whether it names `cert` (by issuer and serial, or key identifier).
pub(super) fn signer_infos_naming(cms: &CmsContentInfo, cert: &X509Ref) -> Vec<bool> {
    // SAFETY: the stack and its entries belong to cms; the comparison only reads both.
    unsafe {
        let infos = CMS_get0_SignerInfos(cms.as_ptr());
        if infos.is_null() {
            let _ = ErrorStack::get();
            return Vec::new();
        }
        (0..sys::OPENSSL_sk_num(infos))
            .map(|i| {
                let si = sys::OPENSSL_sk_value(infos, i);
                !si.is_null() && CMS_SignerInfo_cert_cmp(si, cert.as_ptr()) == 0
            })
            .collect()
    }
}
