//! Building a certification path to a trust anchor with OpenSSL (SPEC D21-D23), fetching missing
//! intermediates from AIA caIssuers URLs when the sender did not include them.

use std::collections::HashSet;

use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkcs7::Pkcs7;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder, X509StoreRef};
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509Ref, X509StoreContext, X509VerifyResult};
use openssl_sys as sys;

use super::date;
use super::validate::{Refusal, Validator, Verdict, describe};
use crate::certinfo::first_reason;

/// Each round fetches the issuer of the certificate the path got stuck at; four covers every
/// real hierarchy (leaf, two or three intermediates) without letting a hostile AIA loop go on.
const MAX_AIA_ROUNDS: usize = 4;

/// One run of OpenSSL's verifier.
struct Attempt {
    ok: bool,
    /// leaf .. anchor on success; the partial path built so far on failure.
    chain: Vec<X509>,
    error: X509VerifyResult,
    /// The certificate the error is about.
    culprit: Option<X509>,
}

impl Validator<'_> {
    /// leaf .. anchor. Any anchor ends a path, even an intermediate or the leaf itself: Direct
    /// lets an admin anchor whichever certificate a partner community gives them.
    pub(super) fn build_path(&self, cert: &X509, untrusted: &[X509]) -> Result<Vec<X509>, Refusal> {
        if self.anchors.is_empty() {
            return Err(Refusal::new(
                Verdict::Untrusted,
                "there are no trust anchors to build a path to".to_owned(),
            ));
        }
        let internal = |e: ErrorStack| {
            Refusal::new(
                Verdict::Untrusted,
                format!("path building failed inside OpenSSL: {}", first_reason(&e)),
            )
        };
        let store = self.store().map_err(internal)?;
        let mut pool = untrusted.to_vec();
        let mut tried = HashSet::new();
        let mut aia_notes = Vec::new();
        let mut rounds = 0;
        loop {
            let attempt = verify(&store, cert, &pool).map_err(internal)?;
            if attempt.ok {
                return Ok(attempt.chain);
            }
            let code = attempt.error.as_raw();
            let missing_issuer = code == sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
                || code == sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT;
            let stuck = attempt.culprit.as_ref().or(attempt.chain.last());
            let urls: Vec<String> = match stuck {
                Some(stuck) if missing_issuer && rounds < MAX_AIA_ROUNDS => ca_issuer_urls(stuck)
                    .into_iter()
                    .filter(|url| !tried.contains(url))
                    .collect(),
                _ => Vec::new(),
            };
            if urls.is_empty() {
                return Err(self.path_refusal(cert, &attempt, &aia_notes));
            }
            rounds += 1;
            for url in urls {
                let fetched = self
                    .fetcher
                    .fetch(&url)
                    .and_then(|b| parse_certificates(&b));
                match fetched {
                    Ok(certs) => pool.extend(certs),
                    Err(why) => aia_notes.push(format!("AIA {url}: {why}")),
                }
                tried.insert(url);
            }
        }
    }

    fn store(&self) -> Result<X509Store, ErrorStack> {
        let mut builder = X509StoreBuilder::new()?;
        for anchor in self.anchors {
            // OpenSSL 1.1.1 and later accept a certificate that is already in the store.
            builder.add_cert(anchor.clone())?;
        }
        let mut param = X509VerifyParam::new()?;
        param.set_flags(X509VerifyFlags::PARTIAL_CHAIN)?;
        param.set_time(self.time);
        // OpenSSL's depth counts the certificates between leaf and anchor, as max_path_length does.
        param.set_depth(i32::try_from(self.policy.max_path_length).unwrap_or(i32::MAX));
        builder.set_param(&param)?;
        Ok(builder.build())
    }

    fn path_refusal(&self, leaf: &X509Ref, attempt: &Attempt, aia_notes: &[String]) -> Refusal {
        let code = attempt.error.as_raw();
        let culprit = attempt.culprit.as_deref();
        let who = || {
            culprit.map_or_else(
                || "a certificate in the path".to_owned(),
                |c| describe(c, leaf, self.anchors),
            )
        };
        let (verdict, reason) = match code {
            sys::X509_V_ERR_CERT_HAS_EXPIRED => (
                Verdict::Expired,
                match culprit {
                    Some(c) => format!("{} expired on {}", who(), date(c.not_after())),
                    None => format!("{} has expired", who()),
                },
            ),
            sys::X509_V_ERR_CERT_NOT_YET_VALID => (
                Verdict::NotYetValid,
                match culprit {
                    Some(c) => format!("{} is not valid before {}", who(), date(c.not_before())),
                    None => format!("{} is not valid yet", who()),
                },
            ),
            sys::X509_V_ERR_CERT_CHAIN_TOO_LONG | sys::X509_V_ERR_PATH_LENGTH_EXCEEDED => (
                Verdict::PathTooLong,
                format!(
                    "the path to a trust anchor needs more than {} intermediate certificates ({})",
                    self.policy.max_path_length,
                    attempt.error.error_string()
                ),
            ),
            _ => {
                let anchors = match self.anchors.len() {
                    1 => "the 1 trust anchor".to_owned(),
                    n => format!("any of the {n} trust anchors"),
                };
                let mut reason = format!("no path to {anchors}: {}", attempt.error.error_string());
                for note in aia_notes {
                    reason.push_str("; ");
                    reason.push_str(note);
                }
                (Verdict::Untrusted, reason)
            }
        };
        Refusal::new(verdict, reason)
    }
}

fn verify(store: &X509StoreRef, cert: &X509Ref, pool: &[X509]) -> Result<Attempt, ErrorStack> {
    let mut untrusted = Stack::new()?;
    for extra in pool {
        untrusted.push(extra.clone())?;
    }
    let mut ctx = X509StoreContext::new()?;
    ctx.init(store, cert, &untrusted, |ctx| {
        let ok = ctx.verify_cert()?;
        let chain = ctx
            .chain()
            .map(|chain| chain.iter().map(ToOwned::to_owned).collect())
            .unwrap_or_default();
        Ok(Attempt {
            ok,
            chain,
            error: ctx.error(),
            culprit: ctx.current_cert().map(ToOwned::to_owned),
        })
    })
}

/// HTTP(S) caIssuers URIs from the authorityInfoAccess extension.
fn ca_issuer_urls(cert: &X509Ref) -> Vec<String> {
    let Some(access) = cert.authority_info() else {
        return Vec::new();
    };
    access
        .iter()
        .filter(|desc| desc.method().nid() == Nid::AD_CA_ISSUERS)
        .filter_map(|desc| desc.location().uri())
        .filter(|uri| {
            let lower = uri.to_ascii_lowercase();
            lower.starts_with("http://") || lower.starts_with("https://")
        })
        .map(str::to_owned)
        .collect()
}

/// Certificates from a fetched AIA object or trust bundle: one DER certificate, PEM
/// certificates, or a PKCS#7 certs-only bundle (.p7c/.p7b) in DER or PEM.
pub fn parse_certificates(bytes: &[u8]) -> Result<Vec<X509>, String> {
    let pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    let parsed = if pem && bytes.windows(16).any(|w| w == b"-----BEGIN PKCS7") {
        Pkcs7::from_pem(bytes).map(|p7| bundle_certs(&p7))
    } else if pem {
        X509::stack_from_pem(bytes)
    } else {
        X509::from_der(bytes)
            .map(|cert| vec![cert])
            .or_else(|_| Pkcs7::from_der(bytes).map(|p7| bundle_certs(&p7)))
    };
    match parsed {
        Ok(certs) if certs.is_empty() => Err("contains no certificates".to_owned()),
        Ok(certs) => Ok(certs),
        Err(e) => Err(format!(
            "neither a certificate nor a PKCS#7 bundle, DER or PEM ({})",
            first_reason(&e)
        )),
    }
}

fn bundle_certs(p7: &Pkcs7) -> Vec<X509> {
    p7.signed()
        .and_then(|signed| signed.certificates())
        .map(|certs| certs.iter().map(ToOwned::to_owned).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Env, address, certs_only_p7};
    use super::super::{Purpose, Verdict};
    use super::*;
    use crate::devpki::Ca;

    const AIA: &str = "http://aia.example/inter.der";

    /// root → inter → leaf, where only the leaf's AIA URL leads to `inter`.
    fn hierarchy(served: impl FnOnce(&Ca) -> Vec<u8>) -> (Env, X509, X509) {
        let root = Ca::root("AIA Root").unwrap();
        let inter = root.intermediate("AIA Inter").build().unwrap();
        let leaf = inter.leaf().email("a@x.org").aia_ca_issuers(AIA);
        let leaf = leaf.build().unwrap();
        let mut env = Env::new(&[&root.cert]);
        env.fetcher.serve(AIA, served(&inter));
        (env, leaf.cert, inter.cert)
    }

    #[test]
    fn missing_intermediate_is_fetched_from_aia() {
        let encodings: [fn(&Ca) -> Vec<u8>; 4] = [
            |ca| ca.cert.to_der().unwrap(),
            |ca| ca.cert.to_pem().unwrap(),
            |ca| certs_only_p7(&[&ca.cert]),
            |ca| {
                Pkcs7::from_der(&certs_only_p7(&[&ca.cert]))
                    .unwrap()
                    .to_pem()
                    .unwrap()
            },
        ];
        for (i, encode) in encodings.into_iter().enumerate() {
            let (env, leaf, inter) = hierarchy(encode);
            let v = env.validate(&leaf, &[], Purpose::Signing, &address("a@x.org"));
            assert_eq!(v.verdict, Verdict::Valid, "encoding {i}: {}", v.reason);
            assert_eq!(v.chain[1], inter, "encoding {i}");
            assert_eq!(env.fetcher.calls(), 1, "encoding {i}");
        }
    }

    #[test]
    fn aia_garbage_is_a_clear_refusal() {
        let (env, leaf, _) = hierarchy(|_| b"<html>404 Not Found</html>".to_vec());
        let v = env.check(&leaf);
        assert_eq!(v.verdict, Verdict::Untrusted);
        let want = format!("; AIA {AIA}: neither a certificate nor a PKCS#7 bundle");
        assert!(v.reason.contains(&want), "{}", v.reason);
        assert!(
            v.reason
                .starts_with("no path to the 1 trust anchor: unable to get local issuer")
        );

        let (mut env, leaf, _) = hierarchy(|_| Vec::new());
        env.fetcher = Default::default();
        let v = env.check(&leaf);
        let want = format!("AIA {AIA}: connection refused");
        assert!(v.reason.ends_with(&want), "{}", v.reason);

        let (env, leaf, _) = hierarchy(|_| certs_only_p7(&[]));
        let v = env.check(&leaf);
        assert!(
            v.reason.ends_with("contains no certificates"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn a_url_is_fetched_once_per_validation() {
        // The URL answers with somebody else's certificate: nothing new to try afterwards.
        let (env, leaf, _) = hierarchy(|_| Ca::root("Stranger").unwrap().cert.to_der().unwrap());
        let v = env.check(&leaf);
        assert_eq!(v.verdict, Verdict::Untrusted, "{}", v.reason);
        assert_eq!(env.fetcher.calls(), 1);
    }

    #[test]
    fn aia_chasing_stops_after_four_rounds() {
        let root = Ca::root("Chase Root").unwrap();
        let mut issuers = vec![root];
        let mut env = Env::new(&[&issuers[0].cert]);
        env.policy.max_path_length = 10;
        for depth in 1..=5 {
            let parent = issuers.last().unwrap();
            let url = format!("http://aia.example/{depth}.der");
            let next = parent.intermediate(&format!("Chase {depth}"));
            let next = if depth == 1 {
                next
            } else {
                next.aia_ca_issuers(&format!("http://aia.example/{}.der", depth - 1))
            };
            let next = next.build().unwrap();
            env.fetcher.serve(&url, next.cert.to_der().unwrap());
            issuers.push(next);
        }
        let leaf_under = |depth: usize| {
            let url = format!("http://aia.example/{depth}.der");
            issuers[depth]
                .leaf()
                .aia_ca_issuers(&url)
                .build()
                .unwrap()
                .cert
        };
        let v = env.check(&leaf_under(4));
        assert_eq!(v.verdict, Verdict::Valid, "{}", v.reason);
        assert_eq!((v.chain.len(), env.fetcher.calls()), (6, 4));

        let v = env.check(&leaf_under(5));
        assert_eq!(v.verdict, Verdict::Untrusted, "{}", v.reason);
        assert_eq!(env.fetcher.calls(), 8);
    }

    #[test]
    fn certificate_formats() {
        let root = Ca::root("Format Root").unwrap();
        let other = Ca::root("Format Other").unwrap();
        let both = [&root.cert, &other.cert];
        let pem = [root.cert.to_pem().unwrap(), other.cert.to_pem().unwrap()].concat();
        assert_eq!(parse_certificates(&pem).unwrap(), both.map(Clone::clone));
        assert_eq!(
            parse_certificates(&certs_only_p7(&both)).unwrap(),
            both.map(Clone::clone)
        );
        assert_eq!(
            parse_certificates(&root.cert.to_der().unwrap()).unwrap(),
            vec![root.cert.clone()]
        );
        for junk in [
            &b""[..],
            b"\x30\x03\x02\x01\x01",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
        ] {
            assert!(parse_certificates(junk).is_err(), "{junk:?}");
        }
    }
}
