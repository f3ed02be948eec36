//! Which algorithms Direct allows (SPEC A4-A7), by OID, and the legacy switches.

use super::SmimeError;
use crate::config::{ContentCipher, Security};
use openssl::symm::Cipher;

/// The admin's legacy switches; everything else is fixed by the spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlgorithmPolicy {
    pub allow_sha1: bool,
    pub allow_3des: bool,
    pub allow_rc2: bool,
}

impl From<&Security> for AlgorithmPolicy {
    fn from(s: &Security) -> Self {
        AlgorithmPolicy {
            allow_sha1: s.allow_sha1,
            allow_3des: s.allow_3des,
            allow_rc2: s.allow_rc2,
        }
    }
}

/// Name of a content-encryption algorithm, checked against the policy.
pub fn check_cipher(oid: &str, policy: &AlgorithmPolicy) -> Result<&'static str, SmimeError> {
    let (name, allowed) = match oid {
        "2.16.840.1.101.3.4.1.2" => ("aes-128-cbc", true),
        "2.16.840.1.101.3.4.1.22" => ("aes-192-cbc", true),
        "2.16.840.1.101.3.4.1.42" => ("aes-256-cbc", true),
        "2.16.840.1.101.3.4.1.6" => ("aes-128-gcm", true),
        "2.16.840.1.101.3.4.1.26" => ("aes-192-gcm", true),
        "2.16.840.1.101.3.4.1.46" => ("aes-256-gcm", true),
        "1.2.840.113549.3.7" => ("des-ede3-cbc", policy.allow_3des),
        "1.2.840.113549.3.2" => ("rc2-cbc", policy.allow_rc2),
        // Single DES has no switch: 56-bit keys are broken.
        "1.3.14.3.2.7" => ("des-cbc", false),
        other => return Err(SmimeError::UnknownCipher(other.to_string())),
    };
    if allowed {
        Ok(name)
    } else {
        Err(SmimeError::WeakCipher(name.to_string()))
    }
}

/// Name of a digest (or signature algorithm's digest), checked against the policy.
pub fn check_digest(oid: &str, policy: &AlgorithmPolicy) -> Result<&'static str, SmimeError> {
    let name = match oid {
        "2.16.840.1.101.3.4.2.1" | "1.2.840.113549.1.1.11" => "sha-256",
        "2.16.840.1.101.3.4.2.2" | "1.2.840.113549.1.1.12" => "sha-384",
        "2.16.840.1.101.3.4.2.3" | "1.2.840.113549.1.1.13" => "sha-512",
        "2.16.840.1.101.3.4.2.4" | "1.2.840.113549.1.1.14" => "sha-224",
        "1.3.14.3.2.26" | "1.2.840.113549.1.1.5" => {
            if policy.allow_sha1 {
                "sha-1"
            } else {
                return Err(SmimeError::WeakDigest("sha-1".into()));
            }
        }
        "1.2.840.113549.2.5" | "1.2.840.113549.1.1.4" => return Err(SmimeError::Md5),
        // Plain rsaEncryption and RSASSA-PSS name no digest; the digestAlgorithm does.
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => "",
        other => return Err(SmimeError::WeakDigest(other.to_string())),
    };
    Ok(name)
}

/// Key transport algorithm names, for reports.
pub fn key_transport_name(oid: &str) -> &'static str {
    match oid {
        "1.2.840.113549.1.1.1" => "rsa-pkcs1",
        "1.2.840.113549.1.1.7" => "rsa-oaep",
        _ => "other",
    }
}

pub fn cipher(c: ContentCipher) -> Cipher {
    match c {
        ContentCipher::Aes128Cbc => Cipher::aes_128_cbc(),
        ContentCipher::Aes256Cbc => Cipher::aes_256_cbc(),
        ContentCipher::Aes128Gcm => Cipher::aes_128_gcm(),
        ContentCipher::Aes256Gcm => Cipher::aes_256_gcm(),
    }
}

/// Normalises a micalg value or digest name for comparison ("SHA-256", "sha256" → "sha256").
pub fn normalize_digest_name(name: &str) -> String {
    name.trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| *c != '-')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        let strict = AlgorithmPolicy::default();
        let legacy = AlgorithmPolicy {
            allow_sha1: true,
            allow_3des: true,
            allow_rc2: true,
        };
        assert_eq!(
            check_cipher("2.16.840.1.101.3.4.1.42", &strict),
            Ok("aes-256-cbc")
        );
        assert_eq!(
            check_cipher("1.2.840.113549.3.7", &strict),
            Err(SmimeError::WeakCipher("des-ede3-cbc".into()))
        );
        assert_eq!(
            check_cipher("1.2.840.113549.3.7", &legacy),
            Ok("des-ede3-cbc")
        );
        assert!(check_cipher("1.2.840.113549.3.2", &strict).is_err());
        assert!(
            check_cipher("1.3.14.3.2.7", &legacy).is_err(),
            "single DES never"
        );
        assert!(matches!(
            check_cipher("1.2.3", &legacy),
            Err(SmimeError::UnknownCipher(_))
        ));
        assert_eq!(
            check_digest("1.3.14.3.2.26", &strict),
            Err(SmimeError::WeakDigest("sha-1".into()))
        );
        assert_eq!(check_digest("1.3.14.3.2.26", &legacy), Ok("sha-1"));
        assert_eq!(
            check_digest("1.2.840.113549.2.5", &legacy),
            Err(SmimeError::Md5)
        );
        assert_eq!(
            check_digest("1.2.840.113549.1.1.4", &legacy),
            Err(SmimeError::Md5)
        );
        assert_eq!(
            normalize_digest_name("SHA-256"),
            normalize_digest_name("sha256")
        );
    }
}
