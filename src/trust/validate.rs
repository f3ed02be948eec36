//! The validation entry point, its inputs and verdicts, and the checks that need no network.
//!
//! Checks run in a fixed order and the first failure wins: the cheap, local facts about a
//! certificate (key, usage, binding, dates) come before path building and revocation, which may
//! fetch, so a certificate that is plainly wrong is refused with its own reason and no traffic.

use std::fmt;

use openssl::x509::{X509, X509ExtendedKeyUsage, X509KeyUsage, X509Ref};

use super::{Fetcher, crl, date, ffi, policy};
use crate::address::DirectAddress;
use crate::certinfo::{CertInfo, dn_string};
use crate::config::{CrlMode, Security};
use crate::keys::MIN_RSA_BITS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Signing,
    Encryption,
}

/// What the certificate must be bound to (SPEC B11-B13).
#[derive(Debug, Clone)]
pub enum BindTo {
    /// SAN rfc822Name equal to the address, or SAN dNSName equal to its domain: an org-bound
    /// certificate covers every address of its domain.
    Address(DirectAddress),
    /// SAN dNSName equal to the domain.
    Domain(String),
    /// No binding check.
    Any,
}

/// Why a certificate was refused (or `Valid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Valid,
    Expired,
    NotYetValid,
    Revoked,
    Untrusted,
    WrongBinding,
    WrongKeyUsage,
    WeakKey,
    PathTooLong,
    RevocationUnknown,
    PolicyMismatch,
    Malformed,
}

impl Verdict {
    /// Stable kebab-case name, used in JSON output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Expired => "expired",
            Verdict::NotYetValid => "not-yet-valid",
            Verdict::Revoked => "revoked",
            Verdict::Untrusted => "untrusted",
            Verdict::WrongBinding => "wrong-binding",
            Verdict::WrongKeyUsage => "wrong-key-usage",
            Verdict::WeakKey => "weak-key",
            Verdict::PathTooLong => "path-too-long",
            Verdict::RevocationUnknown => "revocation-unknown",
            Verdict::PolicyMismatch => "policy-mismatch",
            Verdict::Malformed => "malformed",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Validation {
    pub verdict: Verdict,
    /// One human sentence saying why.
    pub reason: String,
    /// leaf .. anchor, when a path was built.
    pub chain: Vec<X509>,
    /// Non-fatal notes, e.g. an unreachable CRL under soft-fail.
    pub warnings: Vec<String>,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        self.verdict == Verdict::Valid
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub crl: CrlMode,
    /// Most certificates allowed between leaf and anchor; more is `PathTooLong`.
    pub max_path_length: u32,
    /// Policy OIDs; when not empty the leaf must assert at least one.
    pub required_policies: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from(&Security::default())
    }
}

impl From<&Security> for Policy {
    fn from(security: &Security) -> Self {
        Policy {
            crl: security.crl,
            max_path_length: security.max_path_length,
            required_policies: security.required_policies.clone(),
        }
    }
}

pub struct Validator<'a> {
    pub anchors: &'a [X509],
    pub policy: &'a Policy,
    pub fetcher: &'a dyn Fetcher,
    pub crl_cache: &'a crl::CrlCache,
    /// Unix seconds "now" (tests pass fixed times).
    pub time: i64,
}

/// A failed check, before it becomes a [`Validation`].
pub(super) struct Refusal {
    verdict: Verdict,
    reason: String,
}

impl Refusal {
    pub(super) fn new(verdict: Verdict, reason: String) -> Refusal {
        Refusal { verdict, reason }
    }
}

impl Validator<'_> {
    /// Full validation of `cert` for `purpose` and `bind`; `untrusted` are extra intermediates
    /// (e.g. from the S/MIME message). Never panics on any input.
    pub fn validate(
        &self,
        cert: &X509,
        untrusted: &[X509],
        purpose: Purpose,
        bind: &BindTo,
    ) -> Validation {
        let mut chain = Vec::new();
        let mut warnings = Vec::new();
        let (verdict, reason) =
            match self.run(cert, untrusted, purpose, bind, &mut chain, &mut warnings) {
                Ok(reason) => (Verdict::Valid, reason),
                Err(refusal) => (refusal.verdict, refusal.reason),
            };
        Validation {
            verdict,
            reason,
            chain,
            warnings,
        }
    }

    fn run(
        &self,
        cert: &X509,
        untrusted: &[X509],
        purpose: Purpose,
        bind: &BindTo,
        chain: &mut Vec<X509>,
        warnings: &mut Vec<String>,
    ) -> Result<String, Refusal> {
        if ffi::has_invalid_extension(cert) {
            return Err(Refusal::new(
                Verdict::Malformed,
                "certificate has an extension OpenSSL cannot decode".to_owned(),
            ));
        }
        let info = CertInfo::of(cert);
        check_key(&info)?;
        check_usage(cert, purpose)?;
        check_binding(&info, bind)?;
        check_dates(&info, cert, self.time)?;
        *chain = self.build_path(cert, untrusted)?;
        self.check_revocation(chain, warnings)?;
        check_policies(cert, &self.policy.required_policies)?;
        Ok(match chain.last() {
            Some(anchor) if chain.len() > 1 => {
                format!("chains to trust anchor {}", name(anchor))
            }
            _ => "the certificate is itself a trust anchor".to_owned(),
        })
    }

    /// Each certificate below the anchor against the CRL at its first distribution point that
    /// yields one signed by its issuer. Certificates without an HTTP distribution point are not
    /// checked: Direct does not require one.
    fn check_revocation(&self, chain: &[X509], warnings: &mut Vec<String>) -> Result<(), Refusal> {
        if self.policy.crl == CrlMode::Off {
            return Ok(());
        }
        let Some(leaf) = chain.first() else {
            return Ok(());
        };
        for pair in chain.windows(2) {
            let (cert, issuer) = (&pair[0], &pair[1]);
            if self.anchors.contains(cert) {
                continue;
            }
            let mut failures = Vec::new();
            let mut checked = false;
            for url in crl::distribution_points(cert) {
                match self.crl_cache.get(&url, issuer, self.fetcher, self.time) {
                    Ok(list) => {
                        if let Some(when) = crl::revocation(&list, cert) {
                            let who = describe(cert, leaf, self.anchors);
                            let reason = format!("{who} was revoked by {url} {when}");
                            return Err(Refusal::new(Verdict::Revoked, reason));
                        }
                        checked = true;
                        break;
                    }
                    Err(why) => failures.push(why),
                }
            }
            if checked || failures.is_empty() {
                continue;
            }
            let who = describe(cert, leaf, self.anchors);
            let why = failures.join("; ");
            if self.policy.crl == CrlMode::HardFail {
                let reason = format!("revocation status of {who} unknown: {why}");
                return Err(Refusal::new(Verdict::RevocationUnknown, reason));
            }
            warnings.push(format!(
                "{why} (soft-fail: revocation of {who} not checked)"
            ));
        }
        Ok(())
    }
}

/// "the certificate", "intermediate <name>" or "trust anchor <name>", for reasons.
pub(super) fn describe(cert: &X509Ref, leaf: &X509Ref, anchors: &[X509]) -> String {
    if cert == leaf {
        "the certificate".to_owned()
    } else if anchors.iter().any(|anchor| cert == anchor) {
        format!("trust anchor {}", name(cert))
    } else {
        format!("intermediate {}", name(cert))
    }
}

fn name(cert: &X509Ref) -> String {
    CertInfo::common_name(cert).unwrap_or_else(|| dn_string(cert.subject_name()))
}

/// SPEC A7: RSA of at least 2048 bits; Direct has no profile for other key types.
fn check_key(info: &CertInfo) -> Result<(), Refusal> {
    if info.key_bits == 0 {
        let reason = "certificate public key cannot be read".to_owned();
        return Err(Refusal::new(Verdict::Malformed, reason));
    }
    let reason = if info.key_algorithm != "RSA" {
        format!(
            "{} key; Direct requires RSA keys of at least {MIN_RSA_BITS} bits",
            info.key_algorithm
        )
    } else if info.key_bits < MIN_RSA_BITS {
        format!(
            "{}-bit RSA key; Direct requires at least {MIN_RSA_BITS} bits",
            info.key_bits
        )
    } else {
        return Ok(());
    };
    Err(Refusal::new(Verdict::WeakKey, reason))
}

/// SPEC B14: single-use certificates are picked by keyUsage; an absent keyUsage allows both.
fn check_usage(cert: &X509Ref, purpose: Purpose) -> Result<(), Refusal> {
    let (bit, bit_name, purpose_name) = match purpose {
        Purpose::Signing => (
            X509KeyUsage::DIGITAL_SIGNATURE,
            "digitalSignature",
            "signing",
        ),
        Purpose::Encryption => (
            X509KeyUsage::KEY_ENCIPHERMENT,
            "keyEncipherment",
            "encryption",
        ),
    };
    if cert.key_usage().is_some_and(|usage| !usage.contains(bit)) {
        let reason = format!("keyUsage lacks {bit_name}, needed for {purpose_name}");
        return Err(Refusal::new(Verdict::WrongKeyUsage, reason));
    }
    let email = X509ExtendedKeyUsage::SMIME | X509ExtendedKeyUsage::ANYEKU;
    if cert
        .extended_key_usage()
        .is_some_and(|eku| !eku.intersects(email))
    {
        let reason = "extendedKeyUsage lacks emailProtection".to_owned();
        return Err(Refusal::new(Verdict::WrongKeyUsage, reason));
    }
    Ok(())
}

/// SPEC B11-B13: exact, case-insensitive SAN matches only (CertInfo lower-cases SANs).
fn check_binding(info: &CertInfo, bind: &BindTo) -> Result<(), Refusal> {
    let wanted = match bind {
        BindTo::Any => return Ok(()),
        BindTo::Address(address) => {
            let domain = address.domain();
            if info.emails.iter().any(|e| e == address.as_str())
                || info.dns_names.iter().any(|d| d == domain)
            {
                return Ok(());
            }
            format!("{address} (nor its domain {domain})")
        }
        BindTo::Domain(domain) => {
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if info.dns_names.contains(&domain) {
                return Ok(());
            }
            format!("the domain {domain}")
        }
    };
    let names: Vec<&str> = info
        .emails
        .iter()
        .chain(&info.dns_names)
        .map(String::as_str)
        .collect();
    let reason = if names.is_empty() {
        format!("certificate has no SAN email address or DNS name; needs {wanted}")
    } else {
        format!("SAN names {}, not {wanted}", names.join(", "))
    };
    Err(Refusal::new(Verdict::WrongBinding, reason))
}

fn check_dates(info: &CertInfo, cert: &X509Ref, time: i64) -> Result<(), Refusal> {
    if info.not_before > time {
        let reason = format!(
            "certificate is not valid before {}",
            date(cert.not_before())
        );
        return Err(Refusal::new(Verdict::NotYetValid, reason));
    }
    if info.not_after < time {
        let reason = format!("certificate expired on {}", date(cert.not_after()));
        return Err(Refusal::new(Verdict::Expired, reason));
    }
    Ok(())
}

/// SPEC D25. anyPolicy does not satisfy a filter: the point of one is an explicit assertion.
fn check_policies(cert: &X509Ref, required: &[String]) -> Result<(), Refusal> {
    if required.is_empty() {
        return Ok(());
    }
    let asserted = policy::asserted(cert).map_err(|why| Refusal::new(Verdict::Malformed, why))?;
    if required
        .iter()
        .any(|oid| asserted.iter().any(|have| have == oid.trim()))
    {
        return Ok(());
    }
    let required = required.join(", ");
    let reason = if asserted.is_empty() {
        format!("certificate asserts no certificate policy; required: one of {required}")
    } else {
        format!(
            "certificate policies {} include none of the required {required}",
            asserted.join(", ")
        )
    };
    Err(Refusal::new(Verdict::PolicyMismatch, reason))
}

#[cfg(test)]
mod tests {
    use openssl::x509::X509;

    use super::super::testing::{Env, address, leaf_with_policies, now};
    use super::*;
    use crate::devpki::{Ca, Usage};

    const YEAR: i64 = 365 * 86_400;

    fn assert_verdict(v: &Validation, verdict: Verdict, reason_part: &str) {
        assert_eq!(v.verdict, verdict, "{}", v.reason);
        assert!(
            v.reason.contains(reason_part),
            "{:?} lacks {reason_part:?}",
            v.reason
        );
    }

    #[test]
    fn address_bound_leaf_under_root_is_valid() {
        let root = Ca::root("Valid Root").unwrap();
        let leaf = root
            .leaf()
            .email("alice@direct.example.org")
            .build()
            .unwrap();
        let env = Env::new(&[&root.cert, &root.cert]); // bundles may overlap
        let bind = address("Alice@Direct.Example.org");
        for purpose in [Purpose::Signing, Purpose::Encryption] {
            let v = env.validate(&leaf.cert, &[], purpose, &bind);
            assert_verdict(&v, Verdict::Valid, "chains to trust anchor Valid Root");
            assert_eq!(v.chain, [leaf.cert.clone(), root.cert.clone()]);
            assert!(v.warnings.is_empty() && v.is_valid());
        }
        assert_eq!(env.fetcher.calls(), 0);
    }

    #[test]
    fn intermediate_from_the_message_completes_the_path() {
        let root = Ca::root("Msg Root").unwrap();
        let inter = root.intermediate("Msg Inter").build().unwrap();
        let leaf = inter.leaf().email("bob@example.org").build().unwrap();
        let env = Env::new(&[&root.cert]);
        let bind = address("bob@example.org");

        let alone = env.validate(&leaf.cert, &[], Purpose::Signing, &bind);
        assert_verdict(
            &alone,
            Verdict::Untrusted,
            "no path to the 1 trust anchor: unable to get local issuer certificate",
        );
        assert!(alone.chain.is_empty());

        let given = [inter.cert.clone()];
        let v = env.validate(&leaf.cert, &given, Purpose::Signing, &bind);
        assert_verdict(&v, Verdict::Valid, "Msg Root");
        assert_eq!(v.chain, [leaf.cert, inter.cert, root.cert]);
    }

    #[test]
    fn anchors_from_another_root_do_not_trust() {
        let (root, other) = (
            Ca::root("Real Root").unwrap(),
            Ca::root("Other Root").unwrap(),
        );
        let second = Ca::root("Second Root").unwrap();
        let leaf = root.leaf().build().unwrap();
        let env = Env::new(&[&other.cert, &second.cert]);
        let v = env.check(&leaf.cert);
        assert_verdict(
            &v,
            Verdict::Untrusted,
            "no path to any of the 2 trust anchors",
        );

        let v = Env::new(&[]).check(&leaf.cert);
        assert_verdict(&v, Verdict::Untrusted, "no trust anchors");
    }

    #[test]
    fn dates_are_checked_at_the_given_time() {
        let root = Ca::root("Date Root").unwrap();
        let env = Env::new(&[&root.cert]);
        let expired = root.leaf().validity_days(-30, -2).build().unwrap();
        let v = env.check(&expired.cert);
        let until = crate::certinfo::iso_date(now() - 2 * 86_400);
        assert_verdict(
            &v,
            Verdict::Expired,
            &format!("certificate expired on {until}"),
        );

        let early = root.leaf().not_yet_valid().build().unwrap();
        let v = env.check(&early.cert);
        let from = crate::certinfo::iso_date(now() + 86_400);
        assert_verdict(
            &v,
            Verdict::NotYetValid,
            &format!("not valid before {from}"),
        );

        let mut later = Env::new(&[&root.cert]);
        later.time = now() + 3 * 86_400;
        assert_eq!(later.check(&early.cert).verdict, Verdict::Valid);
        // Back then the leaf was fine but the root not yet issued.
        later.time = now() - 3 * 86_400;
        let v = later.check(&expired.cert);
        assert_verdict(
            &v,
            Verdict::NotYetValid,
            "trust anchor Date Root is not valid before",
        );
    }

    #[test]
    fn expired_intermediate_is_named() {
        let root = Ca::root("Long Root").unwrap();
        let inter = root.intermediate("Short Inter").build().unwrap();
        let leaf = inter.leaf().validity_days(-1, 3_000).build().unwrap();
        let mut env = Env::new(&[&root.cert]);
        let given = [inter.cert];
        env.time = now() + 6 * YEAR;
        let v = env.validate(&leaf.cert, &given, Purpose::Signing, &BindTo::Any);
        assert_verdict(&v, Verdict::Expired, "intermediate Short Inter expired on ");
        env.time = now() + 4 * YEAR;
        let v = env.validate(&leaf.cert, &given, Purpose::Signing, &BindTo::Any);
        assert_verdict(&v, Verdict::Valid, "Long Root");
    }

    #[test]
    fn binding_must_match_the_san() {
        let root = Ca::root("Bind Root").unwrap();
        let env = Env::new(&[&root.cert]);
        let bob = root.leaf().email("bob@x.org").build().unwrap();
        let org = root.leaf().dns("x.org").build().unwrap();
        let bare = root.leaf().common_name("nobody").build().unwrap();
        let check = |cert: &X509, bind: &BindTo| env.validate(cert, &[], Purpose::Signing, bind);

        let v = check(&bob.cert, &address("alice@x.org"));
        assert_verdict(
            &v,
            Verdict::WrongBinding,
            "SAN names bob@x.org, not alice@x.org",
        );
        assert!(v.chain.is_empty());
        let v = check(&bob.cert, &BindTo::Domain("x.org".into()));
        assert_verdict(&v, Verdict::WrongBinding, "not the domain x.org");
        let v = check(&org.cert, &BindTo::Domain("y.org".into()));
        assert_verdict(
            &v,
            Verdict::WrongBinding,
            "SAN names x.org, not the domain y.org",
        );
        let v = check(&org.cert, &address("carol@sub.x.org"));
        assert_verdict(&v, Verdict::WrongBinding, "nor its domain sub.x.org");
        let v = check(&bare.cert, &address("bob@x.org"));
        assert_verdict(
            &v,
            Verdict::WrongBinding,
            "no SAN email address or DNS name",
        );

        assert!(check(&bob.cert, &address("BOB@X.ORG")).is_valid());
        assert!(check(&org.cert, &address("anyone@x.org")).is_valid());
        assert!(check(&org.cert, &BindTo::Domain("X.Org.".into())).is_valid());
        assert!(check(&bare.cert, &BindTo::Any).is_valid());
    }

    #[test]
    fn key_usage_must_allow_the_purpose() {
        let root = Ca::root("Usage Root").unwrap();
        let env = Env::new(&[&root.cert]);
        let sign = root.leaf().usage(Usage::SignOnly).build().unwrap();
        let enc = root.leaf().usage(Usage::EncryptOnly);
        let enc = enc.extended_key_usage_email_protection().build().unwrap();
        let run = |cert: &X509, purpose| env.validate(cert, &[], purpose, &BindTo::Any);

        let v = run(&sign.cert, Purpose::Encryption);
        assert_verdict(&v, Verdict::WrongKeyUsage, "keyUsage lacks keyEncipherment");
        let v = run(&enc.cert, Purpose::Signing);
        assert_verdict(
            &v,
            Verdict::WrongKeyUsage,
            "keyUsage lacks digitalSignature",
        );
        assert!(run(&sign.cert, Purpose::Signing).is_valid());
        assert!(run(&enc.cert, Purpose::Encryption).is_valid());
    }

    #[test]
    fn short_rsa_keys_are_weak() {
        let root = Ca::root("Weak Root").unwrap();
        let weak = root.leaf().key_bits(1024).build().unwrap();
        let v = Env::new(&[&root.cert]).check(&weak.cert);
        assert_verdict(
            &v,
            Verdict::WeakKey,
            "1024-bit RSA key; Direct requires at least 2048",
        );
    }

    #[test]
    fn local_checks_come_before_the_path() {
        // Weak, sign-only, bound elsewhere, expired and untrusted: the key is reported first,
        // then usage, binding and dates, each once the earlier problems are gone.
        let root = Ca::root("Order Root").unwrap();
        let env = Env::new(&[]);
        let bind = address("a@x.org");
        let run = |leaf: crate::devpki::LeafBuilder<'_>| {
            let leaf = leaf.build().unwrap();
            env.validate(&leaf.cert, &[], Purpose::Encryption, &bind)
                .verdict
        };
        let all = || {
            root.leaf()
                .email("b@x.org")
                .usage(Usage::SignOnly)
                .expired()
        };
        assert_eq!(run(all().key_bits(1024)), Verdict::WeakKey);
        assert_eq!(run(all()), Verdict::WrongKeyUsage);
        assert_eq!(run(all().usage(Usage::Both)), Verdict::WrongBinding);
        assert_eq!(
            run(all().usage(Usage::Both).email("a@x.org")),
            Verdict::Expired
        );
        let fresh = root.leaf().email("a@x.org");
        assert_eq!(run(fresh), Verdict::Untrusted);
        assert_eq!(env.fetcher.calls(), 0);
    }

    #[test]
    fn paths_longer_than_the_limit_are_refused() {
        let root = Ca::root("Deep Root").unwrap();
        let first = root.intermediate("Deep 1").build().unwrap();
        let second = first.intermediate("Deep 2").build().unwrap();
        let third = second.intermediate("Deep 3").build().unwrap();
        let leaf = third.leaf().build().unwrap();
        let middle = [first.cert, second.cert, third.cert];
        let mut env = Env::new(&[&root.cert]);
        env.policy.max_path_length = 2;
        let v = env.validate(&leaf.cert, &middle, Purpose::Signing, &BindTo::Any);
        assert_verdict(
            &v,
            Verdict::PathTooLong,
            "more than 2 intermediate certificates",
        );

        env.policy.max_path_length = 3;
        let v = env.validate(&leaf.cert, &middle, Purpose::Signing, &BindTo::Any);
        assert_verdict(&v, Verdict::Valid, "Deep Root");
        assert_eq!(v.chain.len(), 5);
    }

    #[test]
    fn any_certificate_can_be_the_anchor() {
        let root = Ca::root("Partial Root").unwrap();
        let inter = root.intermediate("Partial Inter").build().unwrap();
        let leaf = inter.leaf().email("p@x.org").build().unwrap();

        let env = Env::new(&[&leaf.cert]);
        let v = env.validate(&leaf.cert, &[], Purpose::Signing, &address("p@x.org"));
        assert_verdict(&v, Verdict::Valid, "itself a trust anchor");
        assert_eq!(v.chain, vec![leaf.cert.clone()]);

        let env = Env::new(&[&inter.cert]);
        let v = env.check(&leaf.cert);
        assert_verdict(&v, Verdict::Valid, "chains to trust anchor Partial Inter");
        assert_eq!(v.chain, [leaf.cert.clone(), inter.cert.clone()]);
    }

    #[test]
    fn required_policies_filter_the_leaf() {
        let root = Ca::root("Policy Root").unwrap();
        let plain = root.leaf().email("p@x.org").build().unwrap();
        let direct = "1.3.6.1.4.1.41179.0.1.2";
        let tagged = leaf_with_policies(&root, "p@x.org", &["1.2.3.4", direct]);
        let mut env = Env::new(&[&root.cert]);
        assert!(env.check(&plain.cert).is_valid());

        env.policy.required_policies = vec!["1.3.6.1.4.1.41179.1.3".into(), direct.into()];
        let v = env.check(&plain.cert);
        assert_verdict(&v, Verdict::PolicyMismatch, "asserts no certificate policy");
        assert_eq!(
            v.chain.len(),
            2,
            "the path was built before the policy check"
        );
        assert_verdict(&env.check(&tagged), Verdict::Valid, "Policy Root");

        env.policy.required_policies = vec!["1.3.6.1.4.1.41179.1.3".into()];
        let v = env.check(&tagged);
        let listed = format!("policies 1.2.3.4, {direct} include none of the required");
        assert_verdict(&v, Verdict::PolicyMismatch, &listed);
    }

    #[test]
    fn verdict_names_are_stable() {
        let all = [
            (Verdict::Valid, "valid"),
            (Verdict::Expired, "expired"),
            (Verdict::NotYetValid, "not-yet-valid"),
            (Verdict::Revoked, "revoked"),
            (Verdict::Untrusted, "untrusted"),
            (Verdict::WrongBinding, "wrong-binding"),
            (Verdict::WrongKeyUsage, "wrong-key-usage"),
            (Verdict::WeakKey, "weak-key"),
            (Verdict::PathTooLong, "path-too-long"),
            (Verdict::RevocationUnknown, "revocation-unknown"),
            (Verdict::PolicyMismatch, "policy-mismatch"),
            (Verdict::Malformed, "malformed"),
        ];
        for (verdict, name) in all {
            assert_eq!(verdict.as_str(), name);
            assert_eq!(verdict.to_string(), name);
        }
    }

    #[test]
    fn policy_defaults_follow_the_config() {
        let policy = Policy::default();
        assert_eq!(policy.crl, CrlMode::SoftFail);
        assert_eq!(policy.max_path_length, 5);
        assert!(policy.required_policies.is_empty());
    }
}
