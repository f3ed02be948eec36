//! What a discovery run saw and chose, in a form an admin can read (`hisp discover`) and a
//! DSN can quote.

use std::time::Instant;

use openssl::x509::X509;
use serde_json::{Value, json};

use crate::certinfo::iso_date;
use crate::trust::Verdict;

/// The four discovery steps, in the order SPEC C15 fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    DnsAddress,
    DnsDomain,
    LdapAddress,
    LdapDomain,
}

impl Source {
    pub const ORDER: [Source; 4] = [
        Source::DnsAddress,
        Source::DnsDomain,
        Source::LdapAddress,
        Source::LdapDomain,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Source::DnsAddress => "dns-address",
            Source::DnsDomain => "dns-domain",
            Source::LdapAddress => "ldap-address",
            Source::LdapDomain => "ldap-domain",
        }
    }
}

/// One certificate seen during discovery, with the trust verdict.
#[derive(Debug, Clone)]
pub struct SeenCert {
    pub subject: String,
    pub sha256: String,
    pub not_after: i64,
    pub verdict: Verdict,
    pub reason: String,
    pub warnings: Vec<String>,
    /// Where it came from: record name, URL, LDAP server and entry.
    pub origin: String,
    /// None when the bytes were not a certificate.
    pub cert: Option<X509>,
}

impl SeenCert {
    pub fn is_valid(&self) -> bool {
        self.verdict == Verdict::Valid && self.cert.is_some()
    }

    pub(super) fn malformed(
        sha256: String,
        origin: String,
        e: &openssl::error::ErrorStack,
    ) -> Self {
        SeenCert {
            subject: String::new(),
            sha256,
            not_after: 0,
            verdict: Verdict::Malformed,
            reason: format!(
                "not a DER X.509 certificate ({})",
                crate::certinfo::first_reason(e)
            ),
            warnings: Vec::new(),
            origin,
            cert: None,
        }
    }

    pub(super) fn internal(reason: &str) -> Self {
        SeenCert {
            subject: String::new(),
            sha256: String::new(),
            not_after: 0,
            verdict: Verdict::Malformed,
            reason: format!("validation failed internally: {reason}"),
            warnings: Vec::new(),
            origin: String::new(),
            cert: None,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "subject": self.subject,
            "sha256": self.sha256,
            "not_after": if self.not_after > 0 { Value::from(iso_date(self.not_after)) } else { Value::Null },
            "verdict": self.verdict.as_str(),
            "reason": self.reason,
            "warnings": self.warnings,
            "origin": self.origin,
        })
    }
}

/// One step: what was asked, what came back, what went wrong.
#[derive(Debug, Clone)]
pub struct Step {
    pub source: Source,
    pub query: String,
    pub certificates: Vec<SeenCert>,
    /// What happened along the way (no records, servers tried, IPKIX fetches).
    pub notes: Vec<String>,
    /// A DNS failure (timeout, SERVFAIL): the step has no answer, not an empty one.
    pub error: Option<String>,
    /// LDAP: no directory could be searched.
    pub unreachable: bool,
}

impl Step {
    pub(super) fn new(source: Source, query: String) -> Step {
        Step {
            source,
            query,
            certificates: Vec::new(),
            notes: Vec::new(),
            error: None,
            unreachable: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub address: String,
    pub steps: Vec<Step>,
    pub selected: Vec<SeenCert>,
    pub selected_from: Option<Source>,
    /// Stopped on a DNS failure: try again later rather than give up.
    pub temporary: bool,
    pub(super) expires: Instant,
}

impl Report {
    pub(super) fn new(address: &str) -> Report {
        Report {
            address: address.to_string(),
            steps: Vec::new(),
            selected: Vec::new(),
            selected_from: None,
            temporary: false,
            expires: Instant::now(),
        }
    }

    /// The certificates to encrypt to.
    pub fn certificates(&self) -> Vec<X509> {
        self.selected
            .iter()
            .filter_map(|c| c.cert.clone())
            .collect()
    }

    /// One sentence for a sender's DSN or a log line: why nothing was found.
    pub fn failure_reason(&self) -> String {
        if !self.selected.is_empty() {
            return format!(
                "{} usable certificate(s) found via {}",
                self.selected.len(),
                self.selected_from.map(|s| s.as_str()).unwrap_or("?")
            );
        }
        if self.temporary
            && let Some(e) = self.steps.iter().find_map(|s| s.error.as_ref())
        {
            return format!("the recipient's certificate could not be looked up ({e}); will retry");
        }
        let refused: Vec<String> = self
            .steps
            .iter()
            .flat_map(|s| s.certificates.iter())
            .map(|c| {
                format!(
                    "{} ({}: {})",
                    if c.subject.is_empty() {
                        &c.sha256
                    } else {
                        &c.subject
                    },
                    c.verdict,
                    c.reason
                )
            })
            .collect();
        if refused.is_empty() {
            format!(
                "no certificate for {} is published in DNS (CERT) or LDAP",
                self.address
            )
        } else {
            format!(
                "no usable certificate for {}: {}",
                self.address,
                refused.join("; ")
            )
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "address": self.address,
            "steps": self.steps.iter().map(|s| json!({
                "source": s.source.as_str(),
                "query": s.query,
                "certificates": s.certificates.iter().map(SeenCert::to_json).collect::<Vec<_>>(),
                "notes": s.notes,
                "error": s.error,
            })).collect::<Vec<_>>(),
            "selected": self.selected.iter().map(|c| c.sha256.clone()).collect::<Vec<_>>(),
            "selected_from": self.selected_from.map(|s| s.as_str()),
            "temporary": self.temporary,
            "reason": if self.selected.is_empty() { Value::from(self.failure_reason()) } else { Value::Null },
        })
    }
}
