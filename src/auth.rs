//! Credentials: argon2id password hashes and API bearer tokens. Pure (no store access).
//!
//! Tokens are 256 random bits, so a plain SHA-256 is a sufficient at-rest hash (no brute
//! force is possible); passwords are low-entropy and get argon2id.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use openssl::hash::{MessageDigest, hash};

use crate::certinfo::hex;

const TOKEN_PREFIX: &str = "hisp_";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password is empty; give a non-empty password")]
    EmptyPassword,
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.is_empty() {
        return Err(AuthError::EmptyPassword);
    }
    let mut salt = [0u8; 16];
    openssl::rand::rand_bytes(&mut salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Constant-time (inside argon2) check of a password against a stored PHC string.
pub fn verify_password(password: &str, stored: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), stored)
        .is_ok()
}

/// A freshly minted bearer token: shown once, only its hash is stored.
pub struct NewToken {
    pub token: String,
    pub hash: String,
    /// Enough to recognise the token in listings without revealing it.
    pub prefix: String,
}

pub fn new_token() -> NewToken {
    let mut raw = [0u8; 32];
    openssl::rand::rand_bytes(&mut raw).expect("OpenSSL RNG failure");
    let token = format!("{TOKEN_PREFIX}{}", hex(&raw));
    NewToken {
        hash: token_hash(&token),
        prefix: token[..TOKEN_PREFIX.len() + 8].to_string(),
        token,
    }
}

pub fn token_hash(token: &str) -> String {
    hex(&hash(MessageDigest::sha256(), token.trim().as_bytes())
        .expect("SHA-256 is always available"))
}

/// Compares two secrets (or their hashes) without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("correct horse", "garbage"));
        assert_ne!(
            h,
            hash_password("correct horse").unwrap(),
            "salt must differ"
        );
        assert!(hash_password("").is_err());
    }

    #[test]
    fn tokens() {
        let t = new_token();
        assert!(t.token.starts_with("hisp_") && t.token.len() == 5 + 64);
        assert_eq!(token_hash(&t.token), t.hash);
        assert!(t.token.starts_with(&t.prefix));
        assert_ne!(new_token().token, t.token);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
