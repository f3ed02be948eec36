//! LDAP certificate discovery (SPEC C18): SRV `_ldap._tcp.<domain>` in priority/weight order,
//! the first reachable server answers; anonymous bind; base DNs from the root DSE
//! `namingContexts`; subtree search on `mail`; certificates from `userSMIMECertificate`,
//! `userCertificate;binary` and `userCertificate`.
//!
//! Entries are decoded here rather than with ldap3's `SearchEntry::construct`, which panics on
//! malformed BER — and the BER comes from a server on the internet.

use std::time::Duration;

use ldap3::asn1::{PL, StructureTag};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, ldap_escape};

use super::dns::DnsClient;

/// Attribute names, lower-cased, whose values are DER certificates.
const CERT_ATTRS: [&str; 3] = [
    "usersmimecertificate",
    "usercertificate;binary",
    "usercertificate",
];

/// A certificate value found in a directory entry.
#[derive(Debug, Clone)]
pub struct LdapCert {
    /// `ldap://host:port`
    pub server: String,
    pub dn: String,
    pub attribute: String,
    pub der: Vec<u8>,
}

/// What one LDAP discovery step saw: the certificates and, in order, what happened with each
/// server — the lines an admin reads when a partner's directory "doesn't work".
#[derive(Debug, Clone, Default)]
pub struct LdapOutcome {
    pub certs: Vec<LdapCert>,
    pub notes: Vec<String>,
    /// A server was reached and searched (false: no SRV records, or none reachable).
    pub searched: bool,
}

pub struct LdapClient {
    pub timeout: Duration,
}

impl LdapClient {
    /// Searches `(mail=<mail>)` in the directory that `domain`'s SRV records name.
    pub async fn find(&self, dns: &DnsClient, domain: &str, mail: &str) -> LdapOutcome {
        let mut out = LdapOutcome::default();
        let srv_name = format!("_ldap._tcp.{domain}");
        let targets = match dns.srv_records(&srv_name).await {
            Ok(t) => t,
            Err(e) => {
                out.notes.push(e.to_string());
                return out;
            }
        };
        if targets.is_empty() {
            out.notes.push(format!("no SRV records at {srv_name}"));
            return out;
        }
        for target in &targets {
            // Resolved with our resolver, not the system's, so `[dns] nameservers` governs
            // every name discovery looks up.
            let ips = match dns.addresses(&target.host).await {
                Ok(ips) if !ips.is_empty() => ips,
                Ok(_) => {
                    out.notes.push(format!(
                        "{}:{} (SRV priority {} weight {}): the host has no address; trying the next server",
                        target.host, target.port, target.priority, target.weight
                    ));
                    continue;
                }
                Err(e) => {
                    out.notes.push(format!(
                        "{}:{}: {e}; trying the next server",
                        target.host, target.port
                    ));
                    continue;
                }
            };
            for ip in ips {
                let url = server_url(ip, target.port);
                let shown = format!("{url} ({}:{})", target.host, target.port);
                match self.search(&url, mail).await {
                    Ok((certs, bases)) => {
                        out.searched = true;
                        out.notes.push(format!(
                            "{shown}, SRV priority {} weight {}: searched {} for (mail={mail}): {} certificate(s)",
                            target.priority,
                            target.weight,
                            if bases.is_empty() {
                                "no naming contexts".to_string()
                            } else {
                                bases.join(", ")
                            },
                            certs.len()
                        ));
                        out.certs = certs;
                        // SRV targets are replicas of one directory: the first that answers
                        // is the answer, whether or not it holds a certificate.
                        return out;
                    }
                    Err(e) => out.notes.push(format!(
                        "{shown}, SRV priority {} weight {}: {e}; trying the next server",
                        target.priority, target.weight
                    )),
                }
            }
        }
        out.notes
            .push(format!("no LDAP server of {srv_name} could be reached"));
        out
    }

    async fn search(&self, url: &str, mail: &str) -> Result<(Vec<LdapCert>, Vec<String>), String> {
        let settings = LdapConnSettings::new().set_conn_timeout(self.timeout);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        ldap3::drive!(conn);
        let result = self.search_connected(&mut ldap, url, mail).await;
        let _ = ldap.unbind().await;
        result
    }

    async fn search_connected(
        &self,
        ldap: &mut ldap3::Ldap,
        url: &str,
        mail: &str,
    ) -> Result<(Vec<LdapCert>, Vec<String>), String> {
        ldap.with_timeout(self.timeout)
            .simple_bind("", "")
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("anonymous bind refused: {e}"))?;
        let root = ldap
            .with_timeout(self.timeout)
            .search("", Scope::Base, "(objectClass=*)", vec!["namingContexts"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("root DSE unreadable: {e}"))?;
        let mut bases = Vec::new();
        for entry in &root.0 {
            if let Some(e) = decode_entry(&entry.0) {
                for (name, values) in e.attributes {
                    if name.eq_ignore_ascii_case("namingContexts") {
                        bases.extend(values.into_iter().filter_map(|v| String::from_utf8(v).ok()));
                    }
                }
            }
        }
        let filter = format!("(mail={})", ldap_escape(mail));
        let mut certs = Vec::new();
        for base in &bases {
            let found = ldap
                .with_timeout(self.timeout)
                .search(base, Scope::Subtree, &filter, CERT_ATTRS.to_vec())
                .await
                .map_err(|e| format!("search in {base} failed: {e}"))?;
            // noSuchObject for one naming context is not fatal: others may hold the entry.
            for entry in &found.0 {
                let Some(e) = decode_entry(&entry.0) else {
                    continue;
                };
                for (name, values) in e.attributes {
                    let lower = name.to_ascii_lowercase();
                    if CERT_ATTRS.contains(&lower.as_str()) {
                        for der in values {
                            certs.push(LdapCert {
                                server: url.to_string(),
                                dn: e.dn.clone(),
                                attribute: name.clone(),
                                der,
                            });
                        }
                    }
                }
            }
        }
        Ok((certs, bases))
    }
}

fn server_url(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("ldap://[{v6}]:{port}"),
        std::net::IpAddr::V4(v4) => format!("ldap://{v4}:{port}"),
    }
}

/// A SearchResultEntry: DN and raw attribute values.
#[derive(Debug, PartialEq)]
pub struct Entry {
    pub dn: String,
    pub attributes: Vec<(String, Vec<Vec<u8>>)>,
}

/// Decodes `[APPLICATION 4] SEQUENCE { objectName, attributes SEQUENCE OF SEQUENCE { type,
/// vals SET OF value } }`; None on any shape it doesn't expect.
pub fn decode_entry(tag: &StructureTag) -> Option<Entry> {
    if tag.id != 4 {
        return None;
    }
    let PL::C(parts) = &tag.payload else {
        return None;
    };
    let [dn, attrs, ..] = parts.as_slice() else {
        return None;
    };
    let PL::P(dn) = &dn.payload else {
        return None;
    };
    let dn = String::from_utf8(dn.clone()).ok()?;
    let PL::C(attrs) = &attrs.payload else {
        return None;
    };
    let mut attributes = Vec::new();
    for attr in attrs {
        let PL::C(pair) = &attr.payload else {
            return None;
        };
        let [name, values, ..] = pair.as_slice() else {
            return None;
        };
        let PL::P(name) = &name.payload else {
            return None;
        };
        let PL::C(values) = &values.payload else {
            return None;
        };
        let values = values
            .iter()
            .map(|v| match &v.payload {
                PL::P(b) => Some(b.clone()),
                PL::C(_) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        attributes.push((String::from_utf8(name.clone()).ok()?, values));
    }
    Some(Entry { dn, attributes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::TagClass;

    fn p(id: u64, b: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id,
            payload: PL::P(b.to_vec()),
        }
    }
    fn c(class: TagClass, id: u64, v: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(v),
        }
    }

    #[test]
    fn decodes_an_entry_and_refuses_odd_shapes() {
        let attr = c(
            TagClass::Universal,
            16,
            vec![
                p(4, b"userCertificate;binary"),
                c(TagClass::Universal, 17, vec![p(4, &[0x30, 0x00])]),
            ],
        );
        let entry = c(
            TagClass::Application,
            4,
            vec![p(4, b"cn=bob,dc=x"), c(TagClass::Universal, 16, vec![attr])],
        );
        assert_eq!(
            decode_entry(&entry),
            Some(Entry {
                dn: "cn=bob,dc=x".into(),
                attributes: vec![("userCertificate;binary".into(), vec![vec![0x30, 0x00]])],
            })
        );
        assert_eq!(decode_entry(&p(4, b"x")), None);
        let short = c(TagClass::Application, 4, vec![p(4, b"cn=x")]);
        assert_eq!(decode_entry(&short), None);
        let bad_dn = c(
            TagClass::Application,
            4,
            vec![p(4, &[0xff]), c(TagClass::Universal, 16, vec![])],
        );
        assert_eq!(decode_entry(&bad_dn), None);
    }
}
