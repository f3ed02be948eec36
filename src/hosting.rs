//! Publishing our certificates so partners can discover them (DCDT H1-H4): the DNS CERT
//! record in zone-file syntax and an LDAP entry in LDIF. Pure text building.

use std::net::IpAddr;

use crate::address::DirectAddress;
use crate::dns_server::{DnsServerError, ZoneContent};
use crate::store::local_certs::LocalCert;

/// The owner name for a certificate's CERT record: `bob@ex.org` → `bob.ex.org`, a domain
/// stays itself (SPEC C16).
pub fn cert_owner(subject: &str) -> String {
    match DirectAddress::parse(subject) {
        Ok(a) => a.cert_query_name(),
        Err(_) => subject.trim_end_matches('.').to_ascii_lowercase(),
    }
}

fn base64(der: &[u8]) -> String {
    openssl::base64::encode_block(der)
}

/// `owner. TTL IN CERT 1 0 0 base64` — type PKIX, key tag 0, algorithm 0, numeric so every
/// zone parser reads it.
pub fn cert_record(subject: &str, ttl: u32, der: &[u8]) -> String {
    format!(
        "{}. {ttl} IN CERT 1 0 0 {}\n",
        cert_owner(subject),
        base64(der)
    )
}

/// The default directory suffix for a domain: `hisp-a.example` → `dc=hisp-a,dc=example`.
pub fn default_base_dn(domain: &str) -> String {
    domain
        .trim_end_matches('.')
        .split('.')
        .map(|label| format!("dc={label}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An inetOrgPerson entry whose `mail` is the address or domain (domain-bound certificates are
/// found with `mail=<domain>`, SPEC C18), carrying the certificate in both attributes Direct
/// clients read.
pub fn ldif_entry(subject: &str, base_dn: &str, certs: &[&[u8]]) -> String {
    let mail = subject.trim_end_matches('.').to_ascii_lowercase();
    let cn = escape_dn_value(&mail);
    let sn = mail.split('@').next().unwrap_or(&mail).to_string();
    let mut lines = vec![
        format!("dn: cn={cn},{base_dn}"),
        "objectClass: top".to_string(),
        "objectClass: person".to_string(),
        "objectClass: organizationalPerson".to_string(),
        "objectClass: inetOrgPerson".to_string(),
        format!("cn: {mail}"),
        format!("sn: {sn}"),
        format!("mail: {mail}"),
    ];
    for der in certs {
        let b64 = base64(der);
        lines.push(format!("userSMIMECertificate:: {b64}"));
        lines.push(format!("userCertificate;binary:: {b64}"));
    }
    let mut out = String::new();
    for line in &lines {
        fold_into(line, &mut out);
    }
    out.push('\n');
    out
}

/// RFC 2849 folding: lines of at most 76 characters, continuations start with one space.
fn fold_into(line: &str, out: &mut String) {
    let bytes = line.as_bytes();
    let mut start = 0;
    let mut width = 76;
    while start < bytes.len() {
        let mut end = (start + width).min(bytes.len());
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        if start > 0 {
            out.push(' ');
        }
        out.push_str(&line[start..end]);
        out.push('\n');
        start = end;
        width = 75;
    }
}

/// RFC 4514 escaping of an attribute value.
fn escape_dn_value(v: &str) -> String {
    let mut out = String::new();
    for (i, ch) in v.chars().enumerate() {
        match ch {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(ch);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(ch);
            }
            _ => out.push(ch),
        }
    }
    out
}

/// What the built-in DNS responder publishes: authority for `zone` and every local domain; a
/// CERT record for each local certificate usable for encryption and not expired; and, when
/// `address` is set, A/AAAA and MX records so partners' mail for the local domains reaches
/// this gateway.
pub fn zone_content(
    zone: &str,
    domains: &[String],
    certs: &[LocalCert],
    address: Option<IpAddr>,
    now: i64,
) -> Result<(ZoneContent, usize), DnsServerError> {
    let mut content = ZoneContent::new();
    content.origin(zone)?;
    for d in domains {
        if !d.eq_ignore_ascii_case(zone) {
            content.origin(d)?;
        }
    }
    let mut published = 0;
    for c in certs.iter().filter(|c| c.can_encrypt && c.not_after > now) {
        content.cert(&cert_owner(&c.subject), &c.cert_der)?;
        published += 1;
    }
    if let Some(ip) = address {
        use hickory_proto::rr::RData;
        use hickory_proto::rr::rdata::{A, AAAA, MX};
        let ttl = crate::dns_server::DEFAULT_TTL;
        for d in domains {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            content.record(d, ttl, data)?;
            content.record(d, ttl, RData::MX(MX::new(10, crate::dns_server::name(d)?)))?;
        }
    }
    Ok((content, published))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_record_text() {
        assert_eq!(
            cert_record("Bob@Hisp-A.example", 300, &[0x30, 0x03, 1, 2, 3]),
            "bob.hisp-a.example. 300 IN CERT 1 0 0 MAMBAgM=\n"
        );
        assert_eq!(
            cert_record("hisp-a.example", 60, &[0x30, 0x00]),
            "hisp-a.example. 60 IN CERT 1 0 0 MAA=\n"
        );
    }

    #[test]
    fn ldif_is_folded_and_complete() {
        let der = vec![0x42u8; 300];
        let text = ldif_entry("bob@hisp-a.example", "dc=hisp-a,dc=example", &[&der]);
        assert!(text.starts_with("dn: cn=bob@hisp-a.example,dc=hisp-a,dc=example\n"));
        assert!(text.lines().all(|l| l.len() <= 76), "{text}");
        let unfolded = text.replace("\n ", "");
        let b64 = base64(&der);
        assert!(unfolded.contains(&format!("userSMIMECertificate:: {b64}\n")));
        assert!(unfolded.contains(&format!("userCertificate;binary:: {b64}\n")));
        assert!(unfolded.contains("mail: bob@hisp-a.example\n"));
        assert!(text.ends_with("\n\n"));
        assert_eq!(default_base_dn("hisp-a.example"), "dc=hisp-a,dc=example");
        assert_eq!(escape_dn_value("a,b=c"), "a\\,b\\=c");
    }
}
