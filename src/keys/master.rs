//! The master key that seals private keys at rest (AES-256-GCM).
//!
//! Sealed blob layout: `0x01 | nonce (12) | ciphertext | tag (16)`. The additional data binds
//! each blob to the certificate it belongs to, so swapping key columns between rows in the
//! database fails to open instead of silently pairing a certificate with the wrong key.

use openssl::hash::{MessageDigest, hash};
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

use crate::certinfo::hex;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const CHECK_AAD: &[u8] = b"hisp master key check v1";

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "master key from {source_name} is not usable: {why} (expected 32 bytes, as 64 hex digits or base64; make one with `openssl rand -base64 32`)"
    )]
    BadFormat { source_name: String, why: String },
    #[error(
        "cannot read master key file {path}: {reason} (set [keys] master_key_file or HISP_MASTER_KEY to the right key)"
    )]
    Read { path: PathBuf, reason: String },
    #[error("cannot create master key file {path}: {reason}")]
    Create { path: PathBuf, reason: String },
    #[error(
        "the master key from {source_name} (id {key_id}) is not the key this store's private keys were sealed with; set [keys] master_key_file or HISP_MASTER_KEY to the original key"
    )]
    WrongKey { source_name: String, key_id: String },
    #[error(
        "this store holds private keys sealed with a master key, but {path} does not exist; restore the original key file or point [keys] master_key_file / HISP_MASTER_KEY at it"
    )]
    MissingForExistingStore { path: PathBuf },
    #[error(
        "private key for certificate {context} cannot be decrypted: wrong master key or damaged row"
    )]
    Unseal { context: String },
}

/// Where the key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    /// Generated on this run at the given path.
    Generated(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => f.write_str("HISP_MASTER_KEY"),
            KeySource::File(p) | KeySource::Generated(p) => write!(f, "{}", p.display()),
        }
    }
}

pub struct MasterKey {
    key: [u8; 32],
    pub source: KeySource,
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        // Don't leave the key in freed memory.
        self.key.zeroize();
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(id {}, from {})", self.key_id(), self.source)
    }
}

/// Accepts 32 raw bytes, 64 hex digits, or base64 of 32 bytes (surrounding whitespace ignored).
pub fn parse_key_text(bytes: &[u8], source_name: &str) -> Result<[u8; 32], MasterKeyError> {
    let bad = |why: &str| MasterKeyError::BadFormat {
        source_name: source_name.to_string(),
        why: why.to_string(),
    };
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    if let Some(t) = text {
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut key = [0u8; 32];
            for (i, chunk) in t.as_bytes().chunks(2).enumerate() {
                let s = std::str::from_utf8(chunk).map_err(|_| bad("invalid hex"))?;
                key[i] = u8::from_str_radix(s, 16).map_err(|_| bad("invalid hex"))?;
            }
            return Ok(key);
        }
        if !t.is_empty()
            && let Ok(decoded) = openssl::base64::decode_block(t)
            && let Ok(key) = <[u8; 32]>::try_from(decoded.as_slice())
        {
            return Ok(key);
        }
    }
    if bytes.len() == 32 {
        let mut key = [0u8; 32];
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("it is empty"));
    }
    Err(bad(
        "not 64 hex digits, base64 of 32 bytes, or 32 raw bytes",
    ))
}

impl MasterKey {
    pub fn from_bytes(key: [u8; 32], source: KeySource) -> MasterKey {
        MasterKey { key, source }
    }

    /// Finds the master key: `HISP_MASTER_KEY`, else the configured file, else
    /// `<data_dir>/master.key`, created (mode 0600) when `may_create` and it doesn't exist.
    pub fn resolve(
        env_value: Option<&str>,
        configured_file: Option<&Path>,
        data_dir: &Path,
        may_create: bool,
    ) -> Result<MasterKey, MasterKeyError> {
        if let Some(v) = env_value {
            let key = parse_key_text(v.as_bytes(), "HISP_MASTER_KEY")?;
            return Ok(MasterKey::from_bytes(key, KeySource::Env));
        }
        if let Some(path) = configured_file {
            return MasterKey::read_file(path);
        }
        let path = data_dir.join("master.key");
        if path.exists() {
            return MasterKey::read_file(&path);
        }
        if !may_create {
            return Err(MasterKeyError::MissingForExistingStore { path });
        }
        MasterKey::create_file(&path)
    }

    fn read_file(path: &Path) -> Result<MasterKey, MasterKeyError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| MasterKeyError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?);
        let key = parse_key_text(&bytes, &path.display().to_string())?;
        Ok(MasterKey::from_bytes(
            key,
            KeySource::File(path.to_path_buf()),
        ))
    }

    /// Writes a new key to a private temporary file, then links it into place, so another
    /// process never sees a half-written key file; if one beat us to it, its key wins.
    fn create_file(path: &Path) -> Result<MasterKey, MasterKeyError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let fail = |e: std::io::Error| MasterKeyError::Create {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail)?;
        }
        let mut key = [0u8; 32];
        openssl::rand::rand_bytes(&mut key).map_err(|e| fail(std::io::Error::other(e)))?;
        let text = Zeroizing::new(format!("{}\n", openssl::base64::encode_block(&key)));
        let tmp = dir.join(format!(".master.key.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                // Make the new directory entry itself durable.
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(MasterKey::from_bytes(
                    key,
                    KeySource::Generated(path.to_path_buf()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                key.zeroize();
                MasterKey::read_file(path)
            }
            Err(e) => {
                key.zeroize();
                Err(fail(e))
            }
        }
    }

    /// A short public identifier of the key (not usable to recover it).
    pub fn key_id(&self) -> String {
        let mut input = b"hisp master key id".to_vec();
        input.extend_from_slice(&self.key);
        let digest = hash(MessageDigest::sha256(), &input).expect("SHA-256 is always available");
        hex(&digest[..6])
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce).expect("OpenSSL RNG failure");
        let mut tag = [0u8; TAG_LEN];
        let ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(&nonce),
            aad,
            plaintext,
            &mut tag,
        )
        .expect("AES-256-GCM encryption with a valid key cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out.extend_from_slice(&tag);
        out
    }

    /// Opens a sealed blob; any tampering, a wrong key or wrong `aad` gives `Unseal`.
    pub fn open(
        &self,
        sealed: &[u8],
        aad: &[u8],
        context: &str,
    ) -> Result<Vec<u8>, MasterKeyError> {
        let fail = || MasterKeyError::Unseal {
            context: context.to_string(),
        };
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(fail());
        }
        let nonce = &sealed[1..1 + NONCE_LEN];
        let (ct, tag) = sealed[1 + NONCE_LEN..].split_at(sealed.len() - 1 - NONCE_LEN - TAG_LEN);
        decrypt_aead(Cipher::aes_256_gcm(), &self.key, Some(nonce), aad, ct, tag)
            .map_err(|_| fail())
    }

    /// A value stored once per store so a wrong key is detected up front, not at first use.
    pub fn check_value(&self) -> String {
        openssl::base64::encode_block(&self.seal(b"", CHECK_AAD))
    }

    pub fn matches_check_value(&self, value: &str) -> bool {
        openssl::base64::decode_block(value.trim())
            .ok()
            .is_some_and(|sealed| self.open(&sealed, CHECK_AAD, "check").is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_formats() {
        let raw = [7u8; 32];
        assert_eq!(parse_key_text(&raw, "t").unwrap(), raw);
        let hex_text = "07".repeat(32);
        assert_eq!(parse_key_text(hex_text.as_bytes(), "t").unwrap(), raw);
        let b64 = format!("  {}\n", openssl::base64::encode_block(&raw));
        assert_eq!(parse_key_text(b64.as_bytes(), "t").unwrap(), raw);
        for bad in [&b""[..], b"   \n", b"abc", &[1u8; 31][..], b"AAAA"] {
            assert!(parse_key_text(bad, "t").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn seal_open_and_tamper() {
        let k = MasterKey::from_bytes([1; 32], KeySource::Env);
        let sealed = k.seal(b"secret key bytes", b"aad-1");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open(&sealed, b"aad-1", "c").unwrap(), b"secret key bytes");
        assert!(k.open(&sealed, b"aad-2", "c").is_err());
        let mut bent = sealed.clone();
        let last = bent.len() - 1;
        bent[last] ^= 1;
        assert!(k.open(&bent, b"aad-1", "c").is_err());
        assert!(k.open(&sealed[..10], b"aad-1", "c").is_err());
        let other = MasterKey::from_bytes([2; 32], KeySource::Env);
        assert!(matches!(
            other.open(&sealed, b"aad-1", "c"),
            Err(MasterKeyError::Unseal { .. })
        ));
        assert!(k.matches_check_value(&k.check_value()));
        assert!(!other.matches_check_value(&k.check_value()));
        assert_ne!(k.key_id(), other.key_id());
    }

    #[test]
    fn creates_file_once_with_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hisp-mk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let k1 = MasterKey::resolve(None, None, &dir, true).unwrap();
        assert!(matches!(k1.source, KeySource::Generated(_)));
        let path = dir.join("master.key");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let k2 = MasterKey::resolve(None, None, &dir, true).unwrap();
        assert!(matches!(k2.source, KeySource::File(_)));
        assert_eq!(k1.key_id(), k2.key_id());
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            MasterKey::resolve(None, None, &dir, false),
            Err(MasterKeyError::MissingForExistingStore { .. })
        ));
        let missing = dir.join("nope.key");
        assert!(matches!(
            MasterKey::resolve(None, Some(&missing), &dir, true),
            Err(MasterKeyError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
