//! Development and test PKI: roots, intermediates, leaves, CRLs and PKCS#12 files made in memory.
//!
//! Nothing here is meant to protect real mail. It exists so integration tests and `hisp demo`
//! can produce every certificate shape a Direct HISP meets (address- and domain-bound, expired,
//! revoked, weak, legacy-packaged) without touching disk or an external CA.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::keys::load_legacy_provider;
use openssl::asn1::{Asn1Integer, Asn1IntegerRef, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::rand::rand_bytes;
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Crl, X509Extension, X509Name, X509NameRef, X509Ref};

pub type Result<T> = std::result::Result<T, ErrorStack>;

const ORGANIZATION: &str = "hisp test";
const DEFAULT_LEAF_CN: &str = "hisp test leaf";
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// RSA key of the given size (2048 normally; 1024 for weak-key tests).
pub fn rsa_key(bits: u32) -> Result<PKey<Private>> {
    PKey::from_rsa(Rsa::generate(bits)?)
}

/// What a leaf certificate may be used for (keyUsage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// digitalSignature + keyEncipherment
    Both,
    /// digitalSignature
    SignOnly,
    /// keyEncipherment
    EncryptOnly,
}

/// A certificate with its private key.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

// Encoding an already-parsed certificate or key can only fail when OpenSSL cannot allocate,
// so the plain accessors below treat that as fatal rather than burden every caller.
impl Issued {
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().expect("PEM-encoding a certificate")
    }

    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.to_der().expect("DER-encoding a certificate")
    }

    /// PKCS#8, unencrypted.
    pub fn key_pem(&self) -> Vec<u8> {
        self.key
            .private_key_to_pem_pkcs8()
            .expect("PEM-encoding a private key")
    }

    /// Lowercase hex SHA-256 over the certificate DER.
    pub fn sha256_hex(&self) -> String {
        crate::certinfo::sha256_hex(&self.cert_der())
    }

    /// PKCS#12 with OpenSSL 3's defaults (AES-256-CBC / PBKDF2, SHA-256 MAC).
    ///
    /// # Panics
    /// If `password` contains a NUL byte.
    pub fn to_p12(&self, password: &str, chain: &[X509]) -> Result<Vec<u8>> {
        self.p12(password, chain, false)
    }

    /// PKCS#12 as old Windows / Java exports write it: certificates under PBE-SHA1-RC2-40, the
    /// key under PBE-SHA1-3DES, SHA-1 MAC. Loads the legacy provider, which RC2 needs.
    ///
    /// # Panics
    /// If `password` contains a NUL byte.
    pub fn to_legacy_p12(&self, password: &str, chain: &[X509]) -> Result<Vec<u8>> {
        load_legacy_provider()?;
        self.p12(password, chain, true)
    }

    fn p12(&self, password: &str, chain: &[X509], legacy: bool) -> Result<Vec<u8>> {
        let mut builder = Pkcs12::builder();
        builder.name("hisp devpki").pkey(&self.key).cert(&self.cert);
        if !chain.is_empty() {
            let mut ca = Stack::new()?;
            for cert in chain {
                ca.push(cert.clone())?;
            }
            builder.ca(ca);
        }
        if legacy {
            builder
                .key_algorithm(Nid::PBE_WITHSHA1AND3_KEY_TRIPLEDES_CBC)
                .cert_algorithm(Nid::PBE_WITHSHA1AND40BITRC2_CBC)
                .mac_md(MessageDigest::sha1());
        }
        builder.build2(password)?.to_der()
    }
}

/// A certificate authority (root or intermediate) that issues leaves and CRLs and remembers
/// which serials it revoked.
#[derive(Debug)]
pub struct Ca {
    pub cert: X509,
    pub key: PKey<Private>,
    serial_prefix: [u8; 8],
    next_serial: AtomicU64,
    next_crl_number: AtomicU64,
    revoked: Vec<(X509, i64)>,
}

impl Ca {
    /// Self-signed root, RSA 2048, valid from a day ago for ten years.
    pub fn root(cn: &str) -> Result<Ca> {
        let key = rsa_key(2048)?;
        let name = dn(cn)?;
        let prefix = serial_prefix()?;
        let now = now();
        let serial = serial(&prefix, 0)?;
        let mut builder = draft(&name, &name, &key, &serial, now - DAY, now + 3650 * DAY)?;
        builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        builder.append_extension(ca_key_usage()?)?;
        // RFC 5280 lets a self-signed root omit authorityKeyIdentifier, so only SKI is set.
        let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
        builder.append_extension(ski)?;
        builder.sign(&key, MessageDigest::sha256())?;
        Ok(Ca::new(builder.build(), key, prefix))
    }

    fn new(cert: X509, key: PKey<Private>, serial_prefix: [u8; 8]) -> Ca {
        Ca {
            cert,
            key,
            serial_prefix,
            // Serial 0 of every prefix is the CA's own certificate when it is a root.
            next_serial: AtomicU64::new(1),
            next_crl_number: AtomicU64::new(1),
            revoked: Vec::new(),
        }
    }

    /// Builder for an intermediate CA issued by this one.
    pub fn intermediate(&self, cn: &str) -> CaBuilder<'_> {
        CaBuilder {
            parent: self,
            cn: cn.to_owned(),
            path_len: None,
            aia: None,
            cdp: None,
        }
    }

    /// Builder for an end-entity certificate issued by this CA.
    pub fn leaf(&self) -> LeafBuilder<'_> {
        LeafBuilder {
            parent: self,
            emails: Vec::new(),
            dns: Vec::new(),
            cn: None,
            usage: Usage::Both,
            key_bits: 2048,
            key: None,
            validity_days: (-1, 365),
            aia: None,
            cdp: None,
            email_protection: false,
        }
    }

    /// Records the certificate as revoked an hour ago; later CRLs list it.
    pub fn revoke(&mut self, cert: &X509) {
        if !self.revoked.iter().any(|(known, _)| known == cert) {
            self.revoked.push((cert.clone(), now() - HOUR));
        }
    }

    /// A v2 CRL signed with SHA-256, lastUpdate an hour ago, carrying a CRL number that grows
    /// with every call.
    pub fn crl(&self, next_update_secs: i64) -> Result<X509Crl> {
        let mut entries = Vec::with_capacity(self.revoked.len());
        for (cert, revoked_at) in &self.revoked {
            entries.push((cert.serial_number().to_bn()?.to_vec(), *revoked_at));
        }
        let number = self.next_crl_number.fetch_add(1, Ordering::Relaxed);
        let now = now();
        let der = raw::signed_crl(
            &self.cert.to_der()?,
            &self.key.private_key_to_der()?,
            (now - HOUR, now + next_update_secs),
            &number.to_be_bytes(),
            &entries,
        )?;
        X509Crl::from_der(&der)
    }

    pub fn crl_der(&self, next_update_secs: i64) -> Result<Vec<u8>> {
        self.crl(next_update_secs)?.to_der()
    }

    pub fn as_issued(&self) -> Issued {
        Issued {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    fn issue_serial(&self) -> Result<Asn1Integer> {
        serial(
            &self.serial_prefix,
            self.next_serial.fetch_add(1, Ordering::Relaxed),
        )
    }
}

/// Builder for an intermediate CA; see [`Ca::intermediate`].
pub struct CaBuilder<'a> {
    parent: &'a Ca,
    cn: String,
    path_len: Option<u32>,
    aia: Option<String>,
    cdp: Option<String>,
}

impl CaBuilder<'_> {
    pub fn path_len(mut self, n: u32) -> Self {
        self.path_len = Some(n);
        self
    }

    /// authorityInfoAccess caIssuers URI on this intermediate.
    pub fn aia_ca_issuers(mut self, url: &str) -> Self {
        self.aia = Some(url.to_owned());
        self
    }

    pub fn crl_distribution_point(mut self, url: &str) -> Self {
        self.cdp = Some(url.to_owned());
        self
    }

    /// RSA 2048, valid from a day ago for five years.
    pub fn build(self) -> Result<Ca> {
        let parent = self.parent;
        let key = rsa_key(2048)?;
        let name = dn(&self.cn)?;
        let now = now();
        let serial = parent.issue_serial()?;
        let issuer = parent.cert.subject_name();
        let mut builder = draft(&name, issuer, &key, &serial, now - DAY, now + 5 * 365 * DAY)?;
        let mut constraints = BasicConstraints::new();
        constraints.critical().ca();
        if let Some(n) = self.path_len {
            constraints.pathlen(n);
        }
        builder.append_extension(constraints.build()?)?;
        builder.append_extension(ca_key_usage()?)?;
        key_identifiers(&mut builder, &parent.cert)?;
        locations(&mut builder, self.aia.as_deref(), self.cdp.as_deref())?;
        builder.sign(&parent.key, MessageDigest::sha256())?;
        Ok(Ca::new(builder.build(), key, serial_prefix()?))
    }
}

/// Builder for an end-entity certificate; see [`Ca::leaf`].
pub struct LeafBuilder<'a> {
    parent: &'a Ca,
    emails: Vec<String>,
    dns: Vec<String>,
    cn: Option<String>,
    usage: Usage,
    key_bits: u32,
    key: Option<PKey<Private>>,
    validity_days: (i64, i64),
    aia: Option<String>,
    cdp: Option<String>,
    email_protection: bool,
}

impl LeafBuilder<'_> {
    /// Adds an rfc822Name SAN (address-bound certificate).
    pub fn email(mut self, address: &str) -> Self {
        self.emails.push(address.to_owned());
        self
    }

    /// Adds a dNSName SAN (domain / organisation-bound certificate).
    pub fn dns(mut self, domain: &str) -> Self {
        self.dns.push(domain.to_owned());
        self
    }

    /// Defaults to the first SAN value, else "hisp test leaf".
    pub fn common_name(mut self, cn: &str) -> Self {
        self.cn = Some(cn.to_owned());
        self
    }

    /// Defaults to [`Usage::Both`]; keyUsage is always critical.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    pub fn key_bits(mut self, bits: u32) -> Self {
        self.key_bits = bits;
        self
    }

    /// Certifies an existing key instead of generating one.
    pub fn key(mut self, key: PKey<Private>) -> Self {
        self.key = Some(key);
        self
    }

    /// Valid from two years ago until yesterday.
    pub fn expired(self) -> Self {
        self.validity_days(-730, -1)
    }

    /// Valid from tomorrow for a year.
    pub fn not_yet_valid(self) -> Self {
        self.validity_days(1, 365)
    }

    /// notBefore / notAfter as whole days relative to now.
    pub fn validity_days(
        mut self,
        not_before_offset_days: i64,
        not_after_offset_days: i64,
    ) -> Self {
        self.validity_days = (not_before_offset_days, not_after_offset_days);
        self
    }

    pub fn aia_ca_issuers(mut self, url: &str) -> Self {
        self.aia = Some(url.to_owned());
        self
    }

    pub fn crl_distribution_point(mut self, url: &str) -> Self {
        self.cdp = Some(url.to_owned());
        self
    }

    pub fn extended_key_usage_email_protection(mut self) -> Self {
        self.email_protection = true;
        self
    }

    /// Defaults: valid from a day ago for a year, CA:FALSE, SKI and AKI, SHA-256 signature.
    pub fn build(self) -> Result<Issued> {
        let parent = self.parent;
        let key = match self.key {
            Some(key) => key,
            None => rsa_key(self.key_bits)?,
        };
        let cn = match self.cn {
            Some(cn) => cn,
            // X.520 caps commonName at 64 characters and OpenSSL enforces it, so a long SAN
            // must not make the default name fail.
            None => self
                .emails
                .iter()
                .chain(&self.dns)
                .next()
                .map_or(DEFAULT_LEAF_CN.to_owned(), |v| v.chars().take(64).collect()),
        };
        let name = dn(&cn)?;
        let now = now();
        let (not_before, not_after) = self.validity_days;
        let serial = parent.issue_serial()?;
        let issuer = parent.cert.subject_name();
        let (from, until) = (now + not_before * DAY, now + not_after * DAY);
        let mut builder = draft(&name, issuer, &key, &serial, from, until)?;
        builder.append_extension(BasicConstraints::new().build()?)?;
        let mut usage = KeyUsage::new();
        usage.critical();
        match self.usage {
            Usage::Both => usage.digital_signature().key_encipherment(),
            Usage::SignOnly => usage.digital_signature(),
            Usage::EncryptOnly => usage.key_encipherment(),
        };
        builder.append_extension(usage.build()?)?;
        if self.email_protection {
            builder.append_extension(ExtendedKeyUsage::new().email_protection().build()?)?;
        }
        if !self.emails.is_empty() || !self.dns.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for address in &self.emails {
                san.email(address);
            }
            for domain in &self.dns {
                san.dns(domain);
            }
            let san = san.build(&builder.x509v3_context(Some(&parent.cert), None))?;
            builder.append_extension(san)?;
        }
        key_identifiers(&mut builder, &parent.cert)?;
        locations(&mut builder, self.aia.as_deref(), self.cdp.as_deref())?;
        builder.sign(&parent.key, MessageDigest::sha256())?;
        Ok(Issued {
            cert: builder.build(),
            key,
        })
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn dn(cn: &str) -> Result<X509Name> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, ORGANIZATION)?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(name.build())
}

/// A random per-CA prefix makes serials from two CAs with the same name distinct, while the
/// counter after it makes them unique within one CA without relying on luck.
fn serial_prefix() -> Result<[u8; 8]> {
    let mut prefix = [0; 8];
    rand_bytes(&mut prefix)?;
    // Clear the top bit so the INTEGER stays positive; set the next so every serial is 16 bytes.
    prefix[0] = (prefix[0] & 0x7f) | 0x40;
    Ok(prefix)
}

fn serial(prefix: &[u8; 8], counter: u64) -> Result<Asn1Integer> {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(prefix);
    bytes[8..].copy_from_slice(&counter.to_be_bytes());
    BigNum::from_slice(&bytes)?.to_asn1_integer()
}

fn draft(
    subject: &X509NameRef,
    issuer: &X509NameRef,
    key: &PKeyRef<Private>,
    serial: &Asn1IntegerRef,
    not_before: i64,
    not_after: i64,
) -> Result<X509Builder> {
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    builder.set_serial_number(serial)?;
    builder.set_subject_name(subject)?;
    builder.set_issuer_name(issuer)?;
    builder.set_pubkey(key)?;
    let (not_before, not_after) = (
        Asn1Time::from_unix(not_before)?,
        Asn1Time::from_unix(not_after)?,
    );
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    Ok(builder)
}

fn ca_key_usage() -> Result<X509Extension> {
    KeyUsage::new()
        .critical()
        .key_cert_sign()
        .crl_sign()
        .build()
}

fn key_identifiers(builder: &mut X509Builder, issuer: &X509Ref) -> Result<()> {
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(Some(issuer), None))?;
    builder.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&builder.x509v3_context(Some(issuer), None))?;
    builder.append_extension(aki)
}

/// authorityInfoAccess and crlDistributionPoints are encoded here rather than through OpenSSL's
/// config-string API, which is deprecated and would split a URL that contains a comma.
fn locations(builder: &mut X509Builder, aia: Option<&str>, cdp: Option<&str>) -> Result<()> {
    const URI: u8 = 0x86; // GeneralName uniformResourceIdentifier, [6] IMPLICIT IA5String
    const SEQUENCE: u8 = 0x30;
    const CONTEXT_0: u8 = 0xa0;
    if let Some(url) = aia {
        let ca_issuers = Asn1Object::from_str("1.3.6.1.5.5.7.48.2")?;
        let method = der(0x06, ca_issuers.as_slice());
        let access = [method, der(URI, url.as_bytes())].concat();
        let value = der(SEQUENCE, &der(SEQUENCE, &access));
        builder.append_extension(raw_extension("1.3.6.1.5.5.7.1.1", &value)?)?;
    }
    if let Some(url) = cdp {
        // DistributionPoint { distributionPoint [0] { fullName [0] { uri } } }
        let full_name = der(CONTEXT_0, &der(URI, url.as_bytes()));
        let point = der(SEQUENCE, &der(CONTEXT_0, &full_name));
        builder.append_extension(raw_extension("2.5.29.31", &der(SEQUENCE, &point))?)?;
    }
    Ok(())
}

fn raw_extension(oid: &str, value: &[u8]) -> Result<X509Extension> {
    let oid = Asn1Object::from_str(oid)?;
    let value = Asn1OctetString::new_from_bytes(value)?;
    X509Extension::new_from_der(&oid, false, &value)
}

/// One DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    match u8::try_from(len) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    out.extend_from_slice(content);
    out
}

/// CRL assembly through openssl-sys, since the openssl crate has no CRL builder.
///
/// Objects cross the boundary as DER: handing raw pointers to and from the safe crate needs the
/// `foreign-types` traits, which this crate does not depend on. The cost is a few re-parses.
mod raw {
    use std::ffi::{c_int, c_long};
    use std::ptr;

    use openssl::error::ErrorStack;
    use openssl_sys as ffi;

    use super::Result;

    /// Owns one OpenSSL object so every early `?` return frees what was already built.
    struct Owned<T> {
        ptr: *mut T,
        free: unsafe extern "C" fn(*mut T),
    }

    impl<T> Owned<T> {
        fn new(ptr: *mut T, free: unsafe extern "C" fn(*mut T)) -> Result<Self> {
            if ptr.is_null() {
                Err(ErrorStack::get())
            } else {
                Ok(Owned { ptr, free })
            }
        }
    }

    impl<T> Drop for Owned<T> {
        fn drop(&mut self) {
            // SAFETY: `ptr` is non-null, owned by us and released exactly once.
            unsafe { (self.free)(self.ptr) }
        }
    }

    fn check(rc: c_int) -> Result<()> {
        if rc > 0 {
            Ok(())
        } else {
            Err(ErrorStack::get())
        }
    }

    fn time(unix: i64) -> Result<Owned<ffi::ASN1_TIME>> {
        // SAFETY: a null target makes OpenSSL allocate a fresh ASN1_TIME, or return null.
        let time = unsafe { ffi::ASN1_TIME_set(ptr::null_mut(), unix) };
        Owned::new(time, ffi::ASN1_TIME_free)
    }

    fn integer(big_endian: &[u8]) -> Result<Owned<ffi::ASN1_INTEGER>> {
        let len = c_int::try_from(big_endian.len()).map_err(|_| ErrorStack::get())?;
        // SAFETY: reads exactly `len` bytes of the slice; a null target allocates.
        let bn = unsafe { ffi::BN_bin2bn(big_endian.as_ptr(), len, ptr::null_mut()) };
        let bn = Owned::new(bn, ffi::BN_free)?;
        // SAFETY: `bn` is a live BIGNUM; a null target allocates a new ASN1_INTEGER.
        let int = unsafe { ffi::BN_to_ASN1_INTEGER(bn.ptr, ptr::null_mut()) };
        Owned::new(int, ffi::ASN1_INTEGER_free)
    }

    fn der_len(der: &[u8]) -> Result<c_long> {
        c_long::try_from(der.len()).map_err(|_| ErrorStack::get())
    }

    /// Builds, signs and DER-encodes a v2 CRL. `issuer_der` is the CA certificate, `key_der`
    /// its private key; `entries` pairs big-endian serials with revocation times.
    pub(super) fn signed_crl(
        issuer_der: &[u8],
        key_der: &[u8],
        (last_update, next_update): (i64, i64),
        crl_number: &[u8],
        entries: &[(Vec<u8>, i64)],
    ) -> Result<Vec<u8>> {
        let (cert_len, key_len) = (der_len(issuer_der)?, der_len(key_der)?);
        let mut cursor = issuer_der.as_ptr();
        // SAFETY: d2i reads at most `cert_len` bytes and returns a new object or null.
        let issuer = unsafe { ffi::d2i_X509(ptr::null_mut(), &mut cursor, cert_len) };
        let issuer = Owned::new(issuer, ffi::X509_free)?;
        let mut cursor = key_der.as_ptr();
        // SAFETY: as above.
        let key = unsafe { ffi::d2i_AutoPrivateKey(ptr::null_mut(), &mut cursor, key_len) };
        let key = Owned::new(key, ffi::EVP_PKEY_free)?;
        // SAFETY: allocates an empty CRL or returns null.
        let crl = Owned::new(unsafe { ffi::X509_CRL_new() }, ffi::X509_CRL_free)?;

        let (last, next, number) = (time(last_update)?, time(next_update)?, integer(crl_number)?);

        // SAFETY, for every call below: all pointers come from live `Owned` values; the set,
        // set1 and add1 functions copy their argument, so temporaries may be freed afterwards.
        unsafe {
            check(ffi::X509_CRL_set_version(crl.ptr, 1))?; // 1 means v2
            let issuer_name = ffi::X509_get_subject_name(issuer.ptr);
            check(ffi::X509_CRL_set_issuer_name(crl.ptr, issuer_name))?;
            check(ffi::X509_CRL_set1_lastUpdate(crl.ptr, last.ptr))?;
            check(ffi::X509_CRL_set1_nextUpdate(crl.ptr, next.ptr))?;
        }
        for (serial, revoked_at) in entries {
            let (serial, revoked_at) = (integer(serial)?, time(*revoked_at)?);
            // SAFETY: allocates an empty entry or returns null.
            let entry = Owned::new(unsafe { ffi::X509_REVOKED_new() }, ffi::X509_REVOKED_free)?;
            // SAFETY: as for the block above. add0 takes ownership only when it succeeds, hence
            // the `forget` after the check and not before.
            unsafe {
                check(ffi::X509_REVOKED_set_serialNumber(entry.ptr, serial.ptr))?;
                check(ffi::X509_REVOKED_set_revocationDate(
                    entry.ptr,
                    revoked_at.ptr,
                ))?;
                check(ffi::X509_CRL_add0_revoked(crl.ptr, entry.ptr))?;
            }
            std::mem::forget(entry);
        }
        let (nid, flags) = (ffi::NID_crl_number, ffi::X509V3_ADD_DEFAULT);
        // SAFETY: as for the first block; EVP_sha256 returns a static digest.
        unsafe {
            check(ffi::X509_CRL_sort(crl.ptr))?;
            check(ffi::X509_CRL_add1_ext_i2d(
                crl.ptr,
                nid,
                number.ptr.cast(),
                0,
                flags,
            ))?;
            check(ffi::X509_CRL_sign(crl.ptr, key.ptr, ffi::EVP_sha256()))?;
        }

        // SAFETY: with a null output pointer i2d only reports the encoded length.
        let len = unsafe { ffi::i2d_X509_CRL(crl.ptr, ptr::null_mut()) };
        check(len)?;
        let mut out = vec![0; usize::try_from(len).map_err(|_| ErrorStack::get())?];
        let mut cursor = out.as_mut_ptr();
        // SAFETY: `out` holds exactly the `len` bytes i2d just said it will write.
        check(unsafe { ffi::i2d_X509_CRL(crl.ptr, &mut cursor) })?;
        Ok(out)
    }
}

/// A certs-only PKCS#7 SignedData (.p7b, .p7c), DER: the shape of trust bundles and of AIA
/// objects. Built by hand because OpenSSL's signing calls insist on a signer or content.
pub fn certs_only_p7b(certs: &[&X509]) -> Result<Vec<u8>> {
    let mut ders = Vec::new();
    for cert in certs {
        ders.extend(cert.to_der()?);
    }
    let oid = crate::smime::der::oid;
    let signed_data = [
        der(0x02, &[1]),
        der(0x31, &[]),
        der(0x30, &oid("1.2.840.113549.1.7.1")),
        der(0xa0, &ders),
        der(0x31, &[]),
    ]
    .concat();
    let content = der(0xa0, &der(0x30, &signed_data));
    Ok(der(0x30, &[oid("1.2.840.113549.1.7.2"), content].concat()))
}

/// A signed trust bundle: CMS SignedData by `signer` whose encapsulated content is `p7b`.
pub fn signed_bundle(signer: &Issued, p7b: &[u8]) -> Result<Vec<u8>> {
    openssl::cms::CmsContentInfo::sign(
        Some(&signer.cert),
        Some(&signer.key),
        None,
        Some(p7b),
        openssl::cms::CMSOptions::BINARY,
    )?
    .to_der()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use openssl::ssl::SslFiletype;
    use openssl::x509::X509StoreContext;
    use openssl::x509::store::{X509Lookup, X509StoreBuilder};
    use openssl::x509::verify::X509VerifyFlags;
    use openssl_sys as ffi;

    use super::*;

    const OK: i32 = ffi::X509_V_OK;

    /// Verifies `leaf` against the trusted `root`, `chain` untrusted; returns the verify code.
    fn verify(root: &X509, chain: &[&X509], leaf: &X509, crl: Option<&X509Crl>) -> i32 {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(root.clone()).unwrap();
        if let Some(crl) = crl {
            // The safe API only loads CRLs from files.
            static FILES: AtomicU64 = AtomicU64::new(0);
            let n = FILES.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("devpki-{}-{n}.pem", std::process::id()));
            std::fs::write(&path, crl.to_pem().unwrap()).unwrap();
            let lookup = store.add_lookup(X509Lookup::file()).unwrap();
            let loaded = lookup.load_crl_file(&path, SslFiletype::PEM);
            std::fs::remove_file(&path).unwrap();
            assert_eq!(loaded.unwrap(), 1);
            store.set_flags(X509VerifyFlags::CRL_CHECK).unwrap();
        }
        let store = store.build();
        let mut untrusted = Stack::new().unwrap();
        for cert in chain {
            untrusted.push((*cert).clone()).unwrap();
        }
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, leaf, &untrusted, |c| {
            let ok = c.verify_cert()?;
            assert_eq!(ok, c.error().as_raw() == OK);
            Ok(c.error().as_raw())
        })
        .unwrap()
    }

    /// Runs the openssl CLI with `input` on stdin; returns stdout and stderr together.
    fn openssl(args: &[&str], input: &[u8]) -> String {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        let (o, e) = (out.stdout, out.stderr);
        let text = String::from_utf8_lossy(&o) + String::from_utf8_lossy(&e);
        assert!(out.status.success(), "openssl {args:?}: {text}");
        text.into_owned()
    }

    fn text(cert: &X509) -> String {
        openssl(&["x509", "-noout", "-text"], &cert.to_pem().unwrap())
    }

    #[test]
    fn chain_root_intermediate_address_leaf_verifies() {
        let root = Ca::root("Test Root").unwrap();
        let inter = root.intermediate("Test Inter").path_len(0).build().unwrap();
        let leaf = inter
            .leaf()
            .email("alice@direct.example.org")
            .build()
            .unwrap();

        assert_eq!(verify(&root.cert, &[&inter.cert], &leaf.cert, None), OK);
        let no_inter = verify(&root.cert, &[], &leaf.cert, None);
        assert_eq!(no_inter, ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

        let sans = leaf.cert.subject_alt_names().unwrap();
        let emails: Vec<_> = sans.iter().filter_map(|n| n.email()).collect();
        assert_eq!(emails, ["alice@direct.example.org"]);
        let leaf_text = text(&leaf.cert);
        for want in [
            "X509v3 Key Usage: critical",
            "Digital Signature, Key Encipherment",
            "CA:FALSE",
            "X509v3 Authority Key Identifier",
            "Subject: O = hisp test, CN = alice@direct.example.org",
        ] {
            assert!(leaf_text.contains(want), "{want} missing from {leaf_text}");
        }
        let inter_text = text(&inter.cert);
        assert!(inter_text.contains("CA:TRUE, pathlen:0"), "{inter_text}");
        assert!(inter_text.contains("Certificate Sign, CRL Sign"));
    }

    #[test]
    fn serials_are_unique_within_and_across_cas() {
        let (a, b) = (Ca::root("Same").unwrap(), Ca::root("Same").unwrap());
        let leaves = [a.leaf(), a.leaf(), b.leaf()].map(|l| l.build().unwrap().cert);
        let serials: Vec<_> = [&a.cert, &b.cert, &leaves[0], &leaves[1], &leaves[2]]
            .iter()
            .map(|c| c.serial_number().to_bn().unwrap().to_vec())
            .collect();
        for (i, s) in serials.iter().enumerate() {
            assert_eq!(s.len(), 16);
            assert!(!serials[i + 1..].contains(s));
        }
    }

    #[test]
    fn expired_and_not_yet_valid_leaves_fail() {
        let root = Ca::root("Validity Root").unwrap();
        let check =
            |leaf: LeafBuilder<'_>| verify(&root.cert, &[], &leaf.build().unwrap().cert, None);
        assert_eq!(
            check(root.leaf().expired()),
            ffi::X509_V_ERR_CERT_HAS_EXPIRED
        );
        assert_eq!(
            check(root.leaf().validity_days(-10, -5)),
            ffi::X509_V_ERR_CERT_HAS_EXPIRED
        );
        assert_eq!(
            check(root.leaf().not_yet_valid()),
            ffi::X509_V_ERR_CERT_NOT_YET_VALID
        );
        assert_eq!(check(root.leaf()), OK);
    }

    #[test]
    fn revoked_leaf_fails_crl_check_and_others_pass() {
        let root = Ca::root("CRL Root").unwrap();
        let mut inter = root.intermediate("CRL Inter").build().unwrap();
        let bad = inter.leaf().email("bad@example.org").build().unwrap();
        let good = inter.leaf().email("good@example.org").build().unwrap();
        inter.revoke(&bad.cert);
        inter.revoke(&bad.cert);

        let crl = inter.crl(86_400).unwrap();
        let revoked = crl.get_revoked().unwrap();
        assert_eq!(revoked.len(), 1);
        let listed = revoked.get(0).unwrap().serial_number().to_bn().unwrap();
        assert_eq!(listed, bad.cert.serial_number().to_bn().unwrap());

        let chain = [&inter.cert];
        let bad_code = verify(&root.cert, &chain, &bad.cert, Some(&crl));
        assert_eq!(bad_code, ffi::X509_V_ERR_CERT_REVOKED);
        assert_eq!(verify(&root.cert, &chain, &good.cert, Some(&crl)), OK);

        let der = inter.crl_der(60).unwrap();
        let crl_text = openssl(&["crl", "-inform", "DER", "-noout", "-text"], &der);
        for want in ["Version 2", "X509v3 CRL Number", "sha256WithRSAEncryption"] {
            assert!(crl_text.contains(want), "{want} missing from {crl_text}");
        }
    }

    #[test]
    fn domain_bound_and_usage_variants() {
        let root = Ca::root("Usage Root").unwrap();
        let domain = root.leaf().dns("direct.example.org").build().unwrap();
        let sans = domain.cert.subject_alt_names().unwrap();
        let names: Vec<_> = sans.iter().filter_map(|n| n.dnsname()).collect();
        assert_eq!(names, ["direct.example.org"]);

        let sign = root.leaf().usage(Usage::SignOnly).build().unwrap();
        let sign_text = text(&sign.cert);
        assert!(sign_text.contains("Digital Signature"), "{sign_text}");
        assert!(!sign_text.contains("Key Encipherment"));
        assert!(!sign_text.contains("E-mail Protection"));

        let enc = root.leaf().usage(Usage::EncryptOnly);
        let enc = enc.extended_key_usage_email_protection().build().unwrap();
        let enc_text = text(&enc.cert);
        assert!(enc_text.contains("Key Encipherment"), "{enc_text}");
        assert!(!enc_text.contains("Digital Signature"));
        assert!(enc_text.contains("E-mail Protection"));
    }

    #[test]
    fn aia_and_crl_distribution_points_are_encoded() {
        // Over 127 bytes, so the DER long-form length is exercised.
        let long = format!("http://aia.example.org/{}.der", "x".repeat(120));
        let root = Ca::root("AIA Root").unwrap();
        let inter = root
            .intermediate("AIA Inter")
            .aia_ca_issuers("http://a.example/r.der");
        let inter = inter
            .crl_distribution_point("http://c.example/r.crl")
            .build()
            .unwrap();
        let leaf = inter.leaf().aia_ca_issuers(&long);
        let leaf = leaf
            .crl_distribution_point("http://c.example/i.crl")
            .build()
            .unwrap();

        let inter_text = text(&inter.cert);
        assert!(
            inter_text.contains("CA Issuers - URI:http://a.example/r.der"),
            "{inter_text}"
        );
        assert!(inter_text.contains("URI:http://c.example/r.crl"));
        let leaf_text = text(&leaf.cert);
        assert!(
            leaf_text.contains(&format!("CA Issuers - URI:{long}")),
            "{leaf_text}"
        );
        assert!(leaf_text.contains("X509v3 CRL Distribution Points"));
        assert!(leaf_text.contains("URI:http://c.example/i.crl"));
    }

    #[test]
    fn pkcs12_modern_and_legacy() {
        let root = Ca::root("P12 Root").unwrap();
        let leaf = root.leaf().email("p12@example.org").build().unwrap();
        let chain = [root.cert.clone()];

        let modern = leaf.to_p12("secret", &chain).unwrap();
        let parsed = Pkcs12::from_der(&modern).unwrap().parse2("secret").unwrap();
        assert_eq!(parsed.cert.unwrap(), leaf.cert);
        assert!(parsed.pkey.unwrap().public_eq(&leaf.key));
        assert_eq!(parsed.ca.unwrap().len(), 1);
        assert!(Pkcs12::from_der(&modern).unwrap().parse2("wrong").is_err());
        let info = openssl(
            &["pkcs12", "-info", "-noout", "-passin", "pass:secret"],
            &modern,
        );
        assert!(
            info.contains("AES-256-CBC") && !info.contains("RC2"),
            "{info}"
        );

        let legacy = leaf.to_legacy_p12("secret", &chain).unwrap();
        let args = [
            "pkcs12",
            "-legacy",
            "-info",
            "-noout",
            "-passin",
            "pass:secret",
        ];
        let info = openssl(&args, &legacy);
        assert!(info.contains("pbeWithSHA1And40BitRC2-CBC"), "{info}");
        assert!(info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"));
        assert!(info.contains("MAC: sha1"));
        load_legacy_provider().unwrap();
        let parsed = Pkcs12::from_der(&legacy).unwrap().parse2("secret").unwrap();
        assert_eq!(parsed.cert.unwrap(), leaf.cert);
        assert!(parsed.pkey.unwrap().public_eq(&leaf.key));
    }

    #[test]
    fn weak_and_reused_keys_and_encodings() {
        let root = Ca::root("Key Root").unwrap();
        let weak = root.leaf().key_bits(1024).build().unwrap();
        assert_eq!(weak.cert.public_key().unwrap().bits(), 1024);
        assert_eq!(rsa_key(1024).unwrap().bits(), 1024);

        let key = rsa_key(2048).unwrap();
        let first = root.leaf().key(key.clone()).build().unwrap();
        let second = root.leaf().key(key).build().unwrap();
        assert!(first.key.public_eq(&second.cert.public_key().unwrap()));
        assert_ne!(first.sha256_hex(), second.sha256_hex());

        assert!(first.key_pem().starts_with(b"-----BEGIN PRIVATE KEY-----"));
        assert_eq!(X509::from_der(&first.cert_der()).unwrap(), first.cert);
        let args = ["x509", "-noout", "-fingerprint", "-sha256"];
        let fingerprint = openssl(&args, &first.cert_pem())
            .replace(':', "")
            .to_lowercase();
        assert!(fingerprint.contains(&first.sha256_hex()), "{fingerprint}");
    }
}
