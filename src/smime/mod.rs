//! The security agent: Direct's S/MIME (SPEC A). Pure functions over bytes — no network, no
//! database. Trust in certificates is not decided here (see `trust`); this module checks
//! cryptography and format: signatures verify, content decrypts, algorithms are allowed.

pub mod algorithms;
mod build;
mod certcache;
mod cms;
mod decrypt;
pub mod der;
#[cfg(test)]
mod direct_tests;
mod evp;
pub mod ffi;
pub mod mime;
mod verify;
pub mod wrap;

pub use algorithms::AlgorithmPolicy;
pub use cms::{
    Opened, SealOptions, Verified, decrypt, encrypt_entity, open, seal, sign_entity, verify_entity,
};
pub use wrap::{Envelope, EnvelopeError, check_envelope};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

/// Deepest MIME nesting accepted inside a message; real clinical mail stays far below.
pub const MAX_MIME_DEPTH: usize = 32;

/// A local private key with its certificate and chain (signing, or decrypting).
#[derive(Clone)]
pub struct LocalKey {
    pub cert: X509,
    pub key: PKey<Private>,
    pub chain: Vec<X509>,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = crate::certinfo::CertInfo::of(&self.cert);
        write!(f, "LocalKey({} {})", info.sha256, info.subject)
    }
}

/// Why a message could not be produced or accepted. Every variant is a distinct cause an
/// operator (or the SMTP peer, in a 5xx reply) can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmimeError {
    #[error("not an S/MIME message (Content-Type {0})")]
    NotSmime(String),
    #[error("message is not encrypted ({0})")]
    NotEncrypted(String),
    #[error(transparent)]
    Mime(#[from] mime::MimeError),
    #[error("malformed or truncated CMS structure: {0}")]
    MalformedCms(String),
    #[error("content encryption algorithm {0} is not allowed")]
    WeakCipher(String),
    #[error("unknown content encryption algorithm {0}")]
    UnknownCipher(String),
    #[error("cannot decrypt: {0}")]
    CannotDecrypt(String),
    #[error("decryption failed: {0}")]
    DecryptFailed(String),
    #[error("decrypted content is not signed ({0})")]
    NotSigned(String),
    #[error("MD5 digests are never accepted")]
    Md5,
    #[error("digest algorithm {0} is not allowed")]
    WeakDigest(String),
    #[error("micalg {micalg:?} does not match the signature's digest {digest}")]
    MicalgMismatch { micalg: String, digest: String },
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("{subject} has a {bits}-bit key; at least 2048-bit RSA is required")]
    WeakKey { subject: String, bits: u32 },
    #[error("sender/recipient envelope mismatch: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("cannot build the S/MIME message: {0}")]
    Build(String),
}

impl SmimeError {
    /// A stable short name for logs, metrics and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            SmimeError::NotSmime(_) => "not-smime",
            SmimeError::NotEncrypted(_) => "not-encrypted",
            SmimeError::Mime(mime::MimeError::TooDeep(_)) => "too-deep",
            SmimeError::Mime(mime::MimeError::Base64) => "bad-base64",
            SmimeError::Mime(_) => "malformed-mime",
            SmimeError::MalformedCms(_) => "malformed-cms",
            SmimeError::WeakCipher(_) => "weak-cipher",
            SmimeError::UnknownCipher(_) => "unknown-cipher",
            SmimeError::CannotDecrypt(_) => "cannot-decrypt",
            SmimeError::DecryptFailed(_) => "decrypt-failed",
            SmimeError::NotSigned(_) => "not-signed",
            SmimeError::Md5 => "md5",
            SmimeError::WeakDigest(_) => "weak-digest",
            SmimeError::MicalgMismatch { .. } => "micalg-mismatch",
            SmimeError::BadSignature(_) => "bad-signature",
            SmimeError::WeakKey { .. } => "weak-key",
            SmimeError::Envelope(_) => "envelope-mismatch",
            SmimeError::Build(_) => "build",
        }
    }
}
