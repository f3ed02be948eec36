//! Certificate revocation lists (SPEC D24): where a certificate's CRLs live, fetching and caching
//! them until their nextUpdate, and looking a certificate up in one.
//!
//! Errors are plain sentences (`String`) naming the URL, because the validator turns them into
//! warnings or refusal reasons verbatim.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use openssl::x509::{CrlStatus, ReasonCode, X509, X509Crl, X509CrlRef, X509Ref};

use super::{Fetcher, date, ffi};
use crate::certinfo::{dn_string, first_reason, unix_time};

/// How long a CRL without nextUpdate is trusted before it is fetched again.
const NO_NEXT_UPDATE_TTL: i64 = 3_600;

/// CRLs by distribution-point URL, kept until their nextUpdate (thread-safe, Mutex inside).
#[derive(Default)]
pub struct CrlCache {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    crl: X509Crl,
    /// Unix seconds after which the CRL must be fetched again.
    until: i64,
}

impl CrlCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The CRL published at `url`, checked to be signed by `issuer`. A cached copy is used while
    /// fresh at `now`; otherwise it is fetched with `fetcher`, parsed (DER or PEM), checked, and
    /// cached until its nextUpdate (one hour when it has none).
    ///
    /// The signature is checked on every call, not only on fetch, because one URL can be named by
    /// certificates of different issuers and entries may come from [`CrlCache::insert_der`].
    pub fn get(
        &self,
        url: &str,
        issuer: &X509Ref,
        fetcher: &dyn Fetcher,
        now: i64,
    ) -> Result<X509Crl, String> {
        if let Some(crl) = self.fresh(url, now)? {
            check_signer(&crl, issuer, url)?;
            return Ok(crl);
        }
        // The lock is not held while fetching: a slow server must not stall other validations.
        let bytes = fetcher
            .fetch(url)
            .map_err(|e| format!("CRL {url} unreachable: {e}"))?;
        let crl = parse(&bytes).map_err(|why| format!("CRL {url} {why}"))?;
        check_signer(&crl, issuer, url)?;
        let until = match crl.next_update() {
            Some(next) => unix_time(next),
            None => now + NO_NEXT_UPDATE_TTL,
        };
        if until < now {
            return Err(format!(
                "CRL {url} is out of date (next update was due {})",
                date(crl.next_update().unwrap_or(crl.last_update()))
            ));
        }
        self.store(url, &crl, until, now)?;
        Ok(crl)
    }

    /// Adds a CRL obtained elsewhere (e.g. persisted in a database) under `url`; DER or PEM.
    /// It is kept until its nextUpdate (lastUpdate plus one hour when it has none); its signature
    /// is checked when [`CrlCache::get`] hands it out.
    pub fn insert_der(&self, url: &str, der: &[u8]) -> Result<(), String> {
        let crl = parse(der).map_err(|why| format!("CRL for {url} {why}"))?;
        let until = match crl.next_update() {
            Some(next) => unix_time(next),
            None => unix_time(crl.last_update()) + NO_NEXT_UPDATE_TTL,
        };
        self.store(url, &crl, until, i64::MIN)
    }

    /// Every cached CRL as (URL, DER), so a caller can persist them.
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        self.lock()
            .iter()
            .filter_map(|(url, entry)| Some((url.clone(), entry.crl.to_der().ok()?)))
            .collect()
    }

    fn fresh(&self, url: &str, now: i64) -> Result<Option<X509Crl>, String> {
        match self.lock().get(url) {
            Some(entry) if entry.until >= now => ffi::crl_clone(&entry.crl)
                .map(Some)
                .map_err(|e| format!("CRL {url}: {}", first_reason(&e))),
            _ => Ok(None),
        }
    }

    /// Caches `crl`, dropping entries that were already out of date at `now`.
    fn store(&self, url: &str, crl: &X509CrlRef, until: i64, now: i64) -> Result<(), String> {
        let crl = ffi::crl_clone(crl).map_err(|e| format!("CRL {url}: {}", first_reason(&e)))?;
        let mut entries = self.lock();
        entries.retain(|_, entry| entry.until >= now);
        entries.insert(url.to_owned(), Entry { crl, until });
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map is never left half-updated, so a panic elsewhere does not make it unusable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn parse(bytes: &[u8]) -> Result<X509Crl, String> {
    let pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    let parsed = if pem {
        X509Crl::from_pem(bytes)
    } else {
        X509Crl::from_der(bytes)
    };
    parsed.map_err(|e| format!("is not a CRL (DER or PEM): {}", first_reason(&e)))
}

fn check_signer(crl: &X509CrlRef, issuer: &X509Ref, url: &str) -> Result<(), String> {
    let signed = issuer
        .public_key()
        .and_then(|key| crl.verify(&key))
        .unwrap_or(false);
    if signed
        && crl
            .issuer_name()
            .try_cmp(issuer.subject_name())
            .is_ok_and(|o| o.is_eq())
    {
        Ok(())
    } else {
        Err(format!(
            "CRL {url} is not signed by the certificate's issuer {}",
            dn_string(issuer.subject_name())
        ))
    }
}

/// The HTTP(S) CRL distribution point URIs of `cert`, in the certificate's order.
/// Other schemes (LDAP, file) are ignored: the fetcher speaks HTTP only.
pub(super) fn distribution_points(cert: &X509Ref) -> Vec<String> {
    let Some(points) = cert.crl_distribution_points() else {
        return Vec::new();
    };
    points
        .iter()
        .filter_map(|point| point.distpoint()?.fullname())
        .flat_map(|names| names.iter().filter_map(|name| name.uri()))
        .filter(|uri| {
            let lower = uri.to_ascii_lowercase();
            lower.starts_with("http://") || lower.starts_with("https://")
        })
        .map(str::to_owned)
        .collect()
}

/// "on <date> (<reason>)" when `crl` lists `cert`; None when it does not.
pub(super) fn revocation(crl: &X509CrlRef, cert: &X509) -> Option<String> {
    // RemoveFromCrl only appears in delta CRLs, where it lifts a certificateHold.
    let CrlStatus::Revoked(entry) = crl.get_by_cert(cert) else {
        return None;
    };
    let reason = entry
        .extension::<ReasonCode>()
        .ok()
        .flatten()
        .and_then(|(_, code)| code.get_i64().ok());
    Some(format!(
        "on {} ({})",
        date(entry.revocation_date()),
        reason_name(reason)
    ))
}

fn reason_name(code: Option<i64>) -> &'static str {
    match code {
        Some(1) => "key compromise",
        Some(2) => "CA compromise",
        Some(3) => "affiliation changed",
        Some(4) => "superseded",
        Some(5) => "cessation of operation",
        Some(6) => "certificate hold",
        Some(9) => "privilege withdrawn",
        Some(10) => "AA compromise",
        _ => "reason unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::super::Verdict;
    use super::super::testing::{Env, now};
    use super::*;
    use crate::config::CrlMode;
    use crate::devpki::{Ca, Issued};

    const URL: &str = "http://crl.example/inter.crl";
    const DAY: i64 = 86_400;

    /// root → inter → leaf with a CRL distribution point; `inter` is handed in as untrusted.
    struct Setup {
        root: Ca,
        inter: Ca,
        leaf: Issued,
    }

    fn setup() -> Setup {
        let root = Ca::root("CRL Root").unwrap();
        let inter = root.intermediate("CRL Inter").build().unwrap();
        let leaf = inter.leaf().crl_distribution_point(URL).build().unwrap();
        Setup { root, inter, leaf }
    }

    impl Setup {
        fn env(&self, mode: CrlMode) -> Env {
            let mut env = Env::new(&[&self.root.cert]);
            env.policy.crl = mode;
            env
        }

        fn check(&self, env: &Env, cert: &X509) -> crate::trust::Validation {
            let untrusted = [self.inter.cert.clone()];
            env.validate(
                cert,
                &untrusted,
                super::super::Purpose::Signing,
                &super::super::BindTo::Any,
            )
        }
    }

    #[test]
    fn revoked_leaf_is_refused_from_a_cached_crl() {
        let mut s = setup();
        let good = s.inter.leaf().crl_distribution_point(URL).build().unwrap();
        s.inter.revoke(&s.leaf.cert);
        let mut env = s.env(CrlMode::SoftFail);
        env.fetcher.serve(URL, s.inter.crl_der(DAY).unwrap());

        let v = s.check(&env, &s.leaf.cert);
        assert_eq!(v.verdict, Verdict::Revoked, "{}", v.reason);
        let when = crate::certinfo::iso_date(now() - 3_600);
        let want = format!("the certificate was revoked by {URL} on {when} (reason unspecified)");
        assert_eq!(v.reason, want);
        assert_eq!(v.chain.len(), 3);
        assert_eq!((env.fetcher.calls(), env.cache.len()), (1, 1));

        assert_eq!(s.check(&env, &s.leaf.cert).verdict, Verdict::Revoked);
        let v = s.check(&env, &good.cert);
        assert!(v.is_valid() && v.warnings.is_empty(), "{v:?}");
        assert_eq!(env.fetcher.calls(), 1, "served from the cache");
    }

    #[test]
    fn revoked_intermediate_is_refused() {
        let root_url = "http://crl.example/root.crl";
        let mut root = Ca::root("Parent Root").unwrap();
        let inter = root
            .intermediate("Doomed Inter")
            .crl_distribution_point(root_url);
        let inter = inter.build().unwrap();
        let leaf = inter.leaf().build().unwrap();
        root.revoke(&inter.cert);
        let mut env = Env::new(&[&root.cert]);
        env.fetcher.serve(root_url, root.crl_der(DAY).unwrap());
        let untrusted = [inter.cert.clone()];
        let v = env.validate(
            &leaf.cert,
            &untrusted,
            super::super::Purpose::Signing,
            &super::super::BindTo::Any,
        );
        assert_eq!(v.verdict, Verdict::Revoked, "{}", v.reason);
        assert!(v.reason.starts_with(
            "intermediate Doomed Inter was revoked by http://crl.example/root.crl on "
        ));

        // An anchored intermediate is trusted as it is; its own revocation is not looked up.
        let env = Env::new(&[&inter.cert]);
        assert!(env.check(&leaf.cert).is_valid());
    }

    #[test]
    fn unreachable_crl_soft_fails_or_hard_fails() {
        let s = setup();
        let env = s.env(CrlMode::SoftFail);
        let v = s.check(&env, &s.leaf.cert);
        assert_eq!(v.verdict, Verdict::Valid, "{}", v.reason);
        let want = format!(
            "CRL {URL} unreachable: connection refused (soft-fail: revocation of the certificate not checked)"
        );
        assert_eq!(v.warnings, [want]);

        let v = s.check(&s.env(CrlMode::HardFail), &s.leaf.cert);
        assert_eq!(v.verdict, Verdict::RevocationUnknown);
        let want = format!(
            "revocation status of the certificate unknown: CRL {URL} unreachable: connection refused"
        );
        assert_eq!(v.reason, want);
        assert_eq!(v.chain.len(), 3);

        let env = s.env(CrlMode::Off);
        let v = s.check(&env, &s.leaf.cert);
        assert!(v.is_valid() && v.warnings.is_empty());
        assert_eq!(env.fetcher.calls(), 0);
    }

    #[test]
    fn crl_signed_by_another_ca_counts_as_unavailable() {
        let s = setup();
        let mut impostor = Ca::root("CRL Inter").unwrap();
        impostor.revoke(&s.leaf.cert);
        let forged = impostor.crl_der(DAY).unwrap();

        let mut soft = s.env(CrlMode::SoftFail);
        soft.fetcher.serve(URL, forged.clone());
        let v = s.check(&soft, &s.leaf.cert);
        assert_eq!(v.verdict, Verdict::Valid, "{}", v.reason);
        assert_eq!(v.warnings.len(), 1);
        assert!(
            v.warnings[0]
                .contains("is not signed by the certificate's issuer O=hisp test, CN=CRL Inter")
        );
        assert!(soft.cache.is_empty());

        let mut hard = s.env(CrlMode::HardFail);
        hard.fetcher.serve(URL, forged);
        assert_eq!(
            s.check(&hard, &s.leaf.cert).verdict,
            Verdict::RevocationUnknown
        );
    }

    #[test]
    fn out_of_date_crls_are_refetched_and_refused() {
        let s = setup();
        let mut env = s.env(CrlMode::HardFail);
        env.fetcher.serve(URL, s.inter.crl_der(-60).unwrap());
        let v = s.check(&env, &s.leaf.cert);
        assert_eq!(v.verdict, Verdict::RevocationUnknown);
        assert!(v.reason.contains("is out of date"), "{}", v.reason);
        assert!(env.cache.is_empty());

        env.fetcher.serve(URL, s.inter.crl_der(DAY).unwrap());
        let cache = &env.cache;
        assert!(cache.get(URL, &s.inter.cert, &env.fetcher, now()).is_ok());
        assert!(
            cache
                .get(URL, &s.inter.cert, &env.fetcher, now() + DAY / 2)
                .is_ok()
        );
        assert_eq!(env.fetcher.calls(), 2);
        let later = cache.get(URL, &s.inter.cert, &env.fetcher, now() + 2 * DAY);
        assert!(later.err().unwrap().contains("out of date"));
        assert_eq!(env.fetcher.calls(), 3);
    }

    #[test]
    fn inserted_crls_are_served_and_still_verified() {
        let mut s = setup();
        s.inter.revoke(&s.leaf.cert);
        let env = s.env(CrlMode::HardFail);
        let crl = s.inter.crl(DAY).unwrap();
        env.cache.insert_der(URL, &crl.to_pem().unwrap()).unwrap();
        assert_eq!(s.check(&env, &s.leaf.cert).verdict, Verdict::Revoked);
        assert_eq!(env.fetcher.calls(), 0);

        let wrong = env.cache.get(URL, &s.root.cert, &env.fetcher, now());
        assert!(wrong.err().unwrap().contains("not signed by"));
        assert_eq!(
            env.cache.entries(),
            [(URL.to_owned(), crl.to_der().unwrap())]
        );
        let err = env.cache.insert_der("http://x/", b"junk").unwrap_err();
        assert!(err.starts_with("CRL for http://x/ is not a CRL"), "{err}");
        assert_eq!(env.cache.len(), 1);
    }

    #[test]
    fn only_http_distribution_points_are_used() {
        let root = Ca::root("DP Root").unwrap();
        let ldap = root
            .leaf()
            .crl_distribution_point("ldap://dir.example/cn=crl")
            .build()
            .unwrap();
        let https = root
            .leaf()
            .crl_distribution_point("HTTPS://crl.example/a.crl")
            .build()
            .unwrap();
        assert!(distribution_points(&ldap.cert).is_empty());
        assert_eq!(
            distribution_points(&https.cert),
            ["HTTPS://crl.example/a.crl"]
        );
        assert!(distribution_points(&root.cert).is_empty());
    }
}
