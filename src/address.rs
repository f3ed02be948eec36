//! Direct addresses and domain names: parsing, normalising, and the DNS CERT query names.
//!
//! Direct addresses are compared case-insensitively as a whole: certificate SANs, SMTP
//! envelopes and admin input all disagree about case in practice, and two mailboxes that
//! differ only by case would be a trap for users.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not an address: it needs exactly one @ between a local part and a domain")]
    NotAnAddress(String),
    #[error("{input:?} has an invalid local part: {why}")]
    LocalPart { input: String, why: &'static str },
    #[error("{input:?} is not a valid domain name: {why}")]
    Domain { input: String, why: &'static str },
}

/// A normalised (lower-case) Direct address `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectAddress {
    text: String,
    at: usize,
}

impl DirectAddress {
    pub fn parse(input: &str) -> Result<DirectAddress, AddressError> {
        let trimmed = input.trim();
        let trimmed = trimmed
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(trimmed);
        let (local, domain) = trimmed
            .rsplit_once('@')
            .ok_or_else(|| AddressError::NotAnAddress(input.to_string()))?;
        if local.is_empty() || local.contains('@') {
            return Err(AddressError::NotAnAddress(input.to_string()));
        }
        if local.len() > 64 {
            return Err(AddressError::LocalPart {
                input: input.to_string(),
                why: "longer than 64 characters",
            });
        }
        // A dot-atom local part: no quoting, no spaces, no leading/trailing/double dots.
        // Direct addresses are always of this shape, and they become DNS labels in CERT lookups.
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
        if !local.chars().all(atext) {
            return Err(AddressError::LocalPart {
                input: input.to_string(),
                why: "only letters, digits, dots and !#$%&'*+-/=?^_`{|}~ are allowed",
            });
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(AddressError::LocalPart {
                input: input.to_string(),
                why: "dots may not start, end or repeat",
            });
        }
        let domain = normalize_domain(domain)?;
        let text = format!("{}@{}", local.to_ascii_lowercase(), domain);
        Ok(DirectAddress {
            at: local.len(),
            text,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn local_part(&self) -> &str {
        &self.text[..self.at]
    }

    pub fn domain(&self) -> &str {
        &self.text[self.at + 1..]
    }

    /// RFC 4398 section 2.1 mapping used by Direct: `bob@ex.org` → `bob.ex.org`.
    pub fn cert_query_name(&self) -> String {
        format!("{}.{}", self.local_part(), self.domain())
    }
}

impl fmt::Display for DirectAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Lower-cases and checks a DNS domain name (LDH labels, at least two labels, no wildcard).
pub fn normalize_domain(input: &str) -> Result<String, AddressError> {
    let bad = |why| AddressError::Domain {
        input: input.to_string(),
        why,
    };
    let d = input.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() {
        return Err(bad("empty"));
    }
    if d.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("needs at least two labels, e.g. example.org"));
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each label must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad(
                "only letters, digits and hyphens are allowed in labels",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("labels may not start or end with a hyphen"));
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let a = DirectAddress::parse(" <Bob.Smith@Direct.Example.ORG> ").unwrap();
        assert_eq!(a.as_str(), "bob.smith@direct.example.org");
        assert_eq!(a.local_part(), "bob.smith");
        assert_eq!(a.domain(), "direct.example.org");
        assert_eq!(a.cert_query_name(), "bob.smith.direct.example.org");
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            "bob",
            "@ex.org",
            "bob@",
            "bob@@ex.org",
            "bob@localhost",
            "a b@ex.org",
            ".bob@ex.org",
            "bo..b@ex.org",
            "bob@ex..org",
            "bob@-ex.org",
            "bob@*.ex.org",
            "\"q\"@ex.org",
        ] {
            assert!(DirectAddress::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn domains() {
        assert_eq!(normalize_domain("Ex.Org.").unwrap(), "ex.org");
        assert!(normalize_domain("ex_org.com").is_err());
        assert!(normalize_domain(&format!("{}.org", "a".repeat(64))).is_err());
    }
}
