//! Private keys: reading them from PKCS#12/PEM, and sealing them at rest under the master key.

pub mod import;
pub mod master;

use openssl::pkey::{PKey, Private};
use zeroize::Zeroizing;

pub use import::{Binding, ImportError, KeyMaterial, MIN_RSA_BITS, bindings, load_legacy_provider};
pub use master::{KeySource, MasterKey, MasterKeyError};

fn aad(cert_sha256: &str) -> Vec<u8> {
    format!("hisp private key for {cert_sha256}").into_bytes()
}

/// PKCS#8 DER of the key, sealed under the master key and bound to its certificate.
pub fn seal_private_key(master: &MasterKey, key: &PKey<Private>, cert_sha256: &str) -> Vec<u8> {
    let der = Zeroizing::new(
        key.private_key_to_pkcs8()
            .expect("serialising an in-memory RSA key cannot fail"),
    );
    master.seal(&der, &aad(cert_sha256))
}

pub fn open_private_key(
    master: &MasterKey,
    sealed: &[u8],
    cert_sha256: &str,
) -> Result<PKey<Private>, MasterKeyError> {
    let der = Zeroizing::new(master.open(sealed, &aad(cert_sha256), cert_sha256)?);
    PKey::private_key_from_pkcs8(&der).map_err(|_| MasterKeyError::Unseal {
        context: cert_sha256.to_string(),
    })
}
