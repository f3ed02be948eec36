//! Reading a private key and its certificate from PKCS#12 or PEM, and checking that the
//! pair is one Direct can use. Pure: bytes in, a checked `KeyMaterial` out. Which local
//! address or domain the key belongs to is decided by the caller against the store.

use openssl::error::ErrorStack;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{Id, PKey, Private};
use openssl::provider::Provider;
use openssl::x509::X509;
use std::sync::OnceLock;

use crate::address::{DirectAddress, normalize_domain};
use crate::certinfo::{CertError, CertInfo, first_reason, parse_certs};

/// RSA keys under this size are refused everywhere (SPEC A7).
pub const MIN_RSA_BITS: u32 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{what}: wrong password for the PKCS#12 file (or the file is damaged)")]
    Pkcs12Password { what: String },
    #[error("{what}: not a readable PKCS#12 file ({detail})")]
    Pkcs12Malformed { what: String, detail: String },
    #[error("{what}: the PKCS#12 file holds no private key")]
    Pkcs12NoKey { what: String },
    #[error("{what}: the PKCS#12 file holds no certificate")]
    Pkcs12NoCert { what: String },
    #[error(
        "OpenSSL's legacy provider could not be loaded ({0}); old RC2-encrypted PKCS#12 files cannot be read"
    )]
    LegacyProvider(String),
    #[error("{what}: not a readable private key ({detail})")]
    KeyMalformed { what: String, detail: String },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("the private key does not match certificate {sha256} (subject {subject})")]
    Mismatch { sha256: String, subject: String },
    #[error(
        "certificate {sha256} has a {bits}-bit RSA key; Direct requires at least {MIN_RSA_BITS} bits"
    )]
    WeakKey { sha256: String, bits: u32 },
    #[error("certificate {sha256} has a {algorithm} key; Direct uses RSA keys only")]
    NotRsa { sha256: String, algorithm: String },
    #[error(
        "certificate {sha256} names no Direct address (subjectAltName rfc822Name) or domain (dNSName); it can't be bound to a local address or domain"
    )]
    NoBinding { sha256: String },
}

/// Loads OpenSSL 3's "legacy" provider (RC2, 3DES, ...) next to "default", once per process,
/// so old PKCS#12 files can be read and written. Dropping a Provider unloads it, so the handles
/// live in a static; a failure is cached too (a missing legacy.so won't appear mid-run).
pub fn load_legacy_provider() -> Result<(), ErrorStack> {
    static PROVIDERS: OnceLock<Result<[Provider; 2], ErrorStack>> = OnceLock::new();
    PROVIDERS
        .get_or_init(|| {
            // Keeping fallbacks means code that never asked for a provider still gets "default".
            let default = Provider::try_load(None, "default", true)?;
            let legacy = Provider::try_load(None, "legacy", true)?;
            Ok([default, legacy])
        })
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

/// What a certificate binds its key to (SPEC B11/B12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Address(DirectAddress),
    Domain(String),
}

impl Binding {
    pub fn subject(&self) -> &str {
        match self {
            Binding::Address(a) => a.as_str(),
            Binding::Domain(d) => d,
        }
    }

    pub fn domain(&self) -> &str {
        match self {
            Binding::Address(a) => a.domain(),
            Binding::Domain(d) => d,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Binding::Address(_) => "address",
            Binding::Domain(_) => "domain",
        }
    }
}

/// The SAN bindings of a certificate; wildcards and unparseable names are ignored
/// because Direct binds only exact addresses and domains.
pub fn bindings(info: &CertInfo) -> Vec<Binding> {
    let addresses = info
        .emails
        .iter()
        .filter_map(|e| DirectAddress::parse(e).ok())
        .map(Binding::Address);
    let domains = info
        .dns_names
        .iter()
        .filter(|d| !d.contains('*'))
        .filter_map(|d| normalize_domain(d).ok())
        .map(Binding::Domain);
    addresses.chain(domains).collect()
}

/// A private key with its certificate and any CA certificates that came with it.
pub struct KeyMaterial {
    pub cert: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    pub info: CertInfo,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("info", &self.info)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    pub fn from_pkcs12(der: &[u8], password: &str, what: &str) -> Result<KeyMaterial, ImportError> {
        // Best effort: modern (AES/PBKDF2) files don't need the legacy provider, so its
        // absence only matters, and is only reported, when parsing fails.
        let legacy = load_legacy_provider();
        let p12 = Pkcs12::from_der(der).map_err(|e| ImportError::Pkcs12Malformed {
            what: what.to_string(),
            detail: first_reason(&e),
        })?;
        let parsed = p12.parse2(password).map_err(|e| match &legacy {
            Err(le) => ImportError::LegacyProvider(first_reason(le)),
            Ok(()) => classify_p12_error(&e, what),
        })?;
        let key = parsed.pkey.ok_or_else(|| ImportError::Pkcs12NoKey {
            what: what.to_string(),
        })?;
        let cert = parsed.cert.ok_or_else(|| ImportError::Pkcs12NoCert {
            what: what.to_string(),
        })?;
        let chain = parsed
            .ca
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        KeyMaterial::checked(cert, chain, key)
    }

    /// `cert_pem` may hold the certificate followed by its chain; `key_pem` is PKCS#8 or
    /// PKCS#1 PEM (or DER), encrypted when `password` is given.
    pub fn from_pem(
        cert_pem: &[u8],
        cert_what: &str,
        key_pem: &[u8],
        key_what: &str,
        password: Option<&str>,
    ) -> Result<KeyMaterial, ImportError> {
        let mut certs = parse_certs(cert_pem, cert_what)?.into_iter();
        let cert = certs.next().ok_or_else(|| CertError::Empty {
            what: cert_what.to_string(),
        })?;
        let chain: Vec<X509> = certs.collect();
        let key = read_private_key(key_pem, key_what, password)?;
        KeyMaterial::checked(cert, chain, key)
    }

    fn checked(
        cert: X509,
        chain: Vec<X509>,
        key: PKey<Private>,
    ) -> Result<KeyMaterial, ImportError> {
        let info = CertInfo::of(&cert);
        if key.id() != Id::RSA {
            return Err(ImportError::NotRsa {
                sha256: info.sha256,
                algorithm: format!("{:?}", key.id()),
            });
        }
        let matches = cert
            .public_key()
            .map(|p| p.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(ImportError::Mismatch {
                sha256: info.sha256,
                subject: info.subject,
            });
        }
        if key.bits() < MIN_RSA_BITS {
            return Err(ImportError::WeakKey {
                sha256: info.sha256,
                bits: key.bits(),
            });
        }
        if bindings(&info).is_empty() {
            return Err(ImportError::NoBinding {
                sha256: info.sha256,
            });
        }
        Ok(KeyMaterial {
            cert,
            chain,
            key,
            info,
        })
    }
}

fn read_private_key(
    bytes: &[u8],
    what: &str,
    password: Option<&str>,
) -> Result<PKey<Private>, ImportError> {
    let malformed = |e: &ErrorStack| ImportError::KeyMalformed {
        what: what.to_string(),
        detail: first_reason(e),
    };
    let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if is_pem {
        if !bytes.windows(11).any(|w| w == b"PRIVATE KEY") {
            return Err(ImportError::KeyMalformed {
                what: what.to_string(),
                detail: "no PRIVATE KEY block in the PEM".to_string(),
            });
        }
        let encrypted = bytes.windows(9).any(|w| w == b"ENCRYPTED");
        return match (encrypted, password) {
            (true, None) => Err(ImportError::KeyMalformed {
                what: what.to_string(),
                detail: "the key is encrypted; give its password with --password-env".to_string(),
            }),
            (_, Some(pw)) => {
                PKey::private_key_from_pem_passphrase(bytes, pw.as_bytes()).map_err(|e| {
                    ImportError::KeyMalformed {
                        what: what.to_string(),
                        detail: format!("{} (wrong password?)", first_reason(&e)),
                    }
                })
            }
            (false, None) => PKey::private_key_from_pem(bytes).map_err(|e| malformed(&e)),
        };
    }
    PKey::private_key_from_der(bytes).map_err(|e| malformed(&e))
}

fn classify_p12_error(e: &ErrorStack, what: &str) -> ImportError {
    let reasons: Vec<String> = e
        .errors()
        .iter()
        .filter_map(|err| err.reason().map(str::to_ascii_lowercase))
        .collect();
    // With a MAC, a wrong password fails the MAC check; without one (-nomac files) it shows
    // up as a padding/decode failure of the decrypted bags.
    let password_like = [
        "mac verify failure",
        "mac verify error",
        "bad decrypt",
        "pkcs12_pbe_crypt",
        "decode error",
        "cipherfinal",
    ];
    if reasons
        .iter()
        .any(|r| password_like.iter().any(|p| r.contains(p)))
    {
        return ImportError::Pkcs12Password {
            what: what.to_string(),
        };
    }
    ImportError::Pkcs12Malformed {
        what: what.to_string(),
        detail: reasons
            .first()
            .cloned()
            .unwrap_or_else(|| "unknown error".to_string()),
    }
}
