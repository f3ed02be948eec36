//! `hisp cert import|list|export|remove`: keys and certificates of local addresses/domains.

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use super::output::{date, print_json, print_table};
use super::{CliError, CliResult, Ctx, password_from_env};
use crate::keys::{Binding, ImportError, KeyMaterial, bindings, seal_private_key};
use crate::store::local_certs::NewLocalCert;
use crate::store::now_secs;

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Import a private key and certificate (PKCS#12, or PEM cert + key). The key is bound
    /// to the local address (SAN rfc822Name) or domain (SAN dNSName) the certificate names.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["p12", "cert"])))]
    Import {
        /// PKCS#12 file (.p12/.pfx), including old RC2-encrypted ones.
        #[arg(long, value_name = "FILE")]
        p12: Option<PathBuf>,
        /// PEM certificate, optionally followed by its chain.
        #[arg(long, value_name = "PEM", requires = "key", conflicts_with = "p12")]
        cert: Option<PathBuf>,
        /// PEM (or DER) private key, PKCS#8 or PKCS#1.
        #[arg(long, value_name = "PEM", requires = "cert")]
        key: Option<PathBuf>,
        /// Environment variable holding the PKCS#12 or key password.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
    /// List local certificates.
    List,
    /// Print the certificate(s) of an address or domain (or one certificate by sha256).
    Export {
        /// An address, a domain, or a sha256 (prefix of at least 8 hex digits).
        subject: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Pem)]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// TTL of the exported CERT records (--format dns).
        #[arg(long, default_value_t = crate::dns_server::DEFAULT_TTL)]
        ttl: u32,
        /// Directory suffix for the exported entries (--format ldif); default dc=... of the domain.
        #[arg(long, value_name = "DN")]
        base_dn: Option<String>,
    },
    /// Remove a certificate and its private key.
    Remove {
        /// sha256 of the certificate (or a prefix of at least 8 hex digits).
        sha256: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    Pem,
    Der,
    /// DNS CERT resource records in zone-file syntax.
    Dns,
    /// LDAP entries (inetOrgPerson with userSMIMECertificate and userCertificate;binary).
    Ldif,
}

fn read_file(path: &Path) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}

fn import_error(e: ImportError) -> CliError {
    CliError::Failed(e.into())
}

pub async fn run(ctx: &Ctx, cmd: CertCmd) -> CliResult {
    match cmd {
        CertCmd::Import {
            p12,
            cert,
            key,
            password_env,
        } => {
            let password = password_from_env(password_env.as_deref())?.map(Zeroizing::new);
            let password = password.as_ref().map(|p| p.as_str());
            let material = match (p12, cert, key) {
                (Some(p12), None, None) => {
                    let der = read_file(&p12)?;
                    let what = p12.display().to_string();
                    KeyMaterial::from_pkcs12(&der, password.unwrap_or(""), &what)
                        .map_err(import_error)?
                }
                (None, Some(cert), Some(key)) => {
                    let cert_bytes = read_file(&cert)?;
                    let key_bytes = Zeroizing::new(read_file(&key)?);
                    KeyMaterial::from_pem(
                        &cert_bytes,
                        &cert.display().to_string(),
                        &key_bytes,
                        &key.display().to_string(),
                        password,
                    )
                    .map_err(import_error)?
                }
                _ => {
                    return Err(CliError::Usage(
                        "give either --p12 FILE or --cert PEM --key PEM".into(),
                    ));
                }
            };
            import(ctx, material).await
        }
        CertCmd::List => list(ctx).await,
        CertCmd::Export {
            subject,
            format,
            out,
            ttl,
            base_dn,
        } => {
            let opts = ExportOptions {
                ttl,
                base_dn: base_dn.as_deref(),
            };
            export(ctx, &subject, format, out.as_deref(), &opts).await
        }
        CertCmd::Remove { sha256 } => {
            let c = ctx
                .store
                .remove_local_cert(&sha256)
                .await
                .map_err(super::CliError::from)?;
            if ctx.json {
                return print_json(&c);
            }
            println!(
                "removed certificate {} of {} and its private key",
                c.sha256, c.subject
            );
            Ok(())
        }
    }
}

/// The first binding of the certificate that is a local address or domain.
async fn local_binding(ctx: &Ctx, material: &KeyMaterial) -> CliResult<Binding> {
    let candidates = bindings(&material.info);
    for b in &candidates {
        let local = match b {
            Binding::Address(a) => ctx.store.address(a.as_str()).await?.is_some(),
            Binding::Domain(d) => ctx.store.domain(d).await?.is_some(),
        };
        if local {
            return Ok(b.clone());
        }
    }
    let names: Vec<String> = candidates
        .iter()
        .map(|b| format!("{} {}", b.kind(), b.subject()))
        .collect();
    let hint = match candidates.first() {
        Some(Binding::Address(a)) if ctx.store.domain(a.domain()).await?.is_some() => {
            format!("; add the address first with `hisp address add {a}`")
        }
        Some(b) => format!(
            "; add the domain first with `hisp domain add {}`",
            b.domain()
        ),
        None => String::new(),
    };
    Err(CliError::NotFound(format!(
        "certificate {} is bound to {}, which is not local{hint}",
        material.info.sha256,
        names.join(", ")
    )))
}

async fn import(ctx: &Ctx, material: KeyMaterial) -> CliResult {
    let binding = local_binding(ctx, &material).await?;
    let info = &material.info;
    let cert_der = material
        .cert
        .to_der()
        .map_err(|e| CliError::Failed(e.into()))?;
    let mut chain_pem = String::new();
    for c in &material.chain {
        let pem = c.to_pem().map_err(|e| CliError::Failed(e.into()))?;
        chain_pem.push_str(&String::from_utf8_lossy(&pem));
    }
    let sealed = seal_private_key(&ctx.master, &material.key, &info.sha256);
    let address = match &binding {
        Binding::Address(a) => Some(a.as_str()),
        Binding::Domain(_) => None,
    };
    let row = ctx
        .store
        .add_local_cert(&NewLocalCert {
            subject: binding.subject(),
            binding: binding.kind(),
            domain: binding.domain(),
            address,
            info,
            cert_der: &cert_der,
            chain_pem: &chain_pem,
            key_sealed: &sealed,
        })
        .await?;
    let now = now_secs();
    let mut warnings = Vec::new();
    if info.not_after < now {
        warnings.push(format!(
            "the certificate expired on {}",
            date(info.not_after)
        ));
    }
    if info.not_before > now {
        warnings.push(format!(
            "the certificate is not valid before {}",
            date(info.not_before)
        ));
    }
    if !info.can_sign {
        warnings
            .push("keyUsage lacks digitalSignature: this key can decrypt but not sign".to_string());
    }
    if !info.can_encrypt {
        warnings
            .push("keyUsage lacks keyEncipherment: this key can sign but not decrypt".to_string());
    }
    if ctx.json {
        return print_json(&json!({"certificate": row, "warnings": warnings}));
    }
    println!(
        "imported certificate {} for {} ({}-bound, {}, valid until {})",
        row.sha256,
        row.subject,
        row.binding,
        usage(row.can_sign, row.can_encrypt),
        date(row.not_after)
    );
    for w in warnings {
        eprintln!("hisp: warning: {w}");
    }
    Ok(())
}

fn usage(sign: bool, encrypt: bool) -> &'static str {
    match (sign, encrypt) {
        (true, true) => "sign+encrypt",
        (true, false) => "sign only",
        (false, true) => "encrypt only",
        (false, false) => "no usable key usage",
    }
}

async fn list(ctx: &Ctx) -> CliResult {
    let certs = ctx.store.list_local_certs().await?;
    if ctx.json {
        return print_json(&certs);
    }
    let now = now_secs();
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|c| {
            let state = if c.not_after < now {
                "expired"
            } else if c.not_before > now {
                "not yet valid"
            } else {
                "valid"
            };
            vec![
                c.sha256[..16].to_string(),
                c.subject.clone(),
                c.binding.clone(),
                usage(c.can_sign, c.can_encrypt).to_string(),
                date(c.not_after),
                state.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "SHA256",
            "SUBJECT",
            "BINDING",
            "USAGE",
            "NOT AFTER",
            "STATE",
        ],
        &rows,
        "no certificates (import one with `hisp cert import`)",
    );
    Ok(())
}

struct ExportOptions<'a> {
    ttl: u32,
    base_dn: Option<&'a str>,
}

async fn export(
    ctx: &Ctx,
    subject: &str,
    format: ExportFormat,
    out: Option<&Path>,
    opts: &ExportOptions<'_>,
) -> CliResult {
    let found = ctx.store.find_local_certs(subject).await?;
    if found.is_empty() {
        return Err(CliError::NotFound(format!(
            "no local certificate for {subject} (see `hisp cert list`)"
        )));
    }
    let bytes = match format {
        ExportFormat::Pem => {
            let mut text = Vec::new();
            for c in &found {
                let x = openssl::x509::X509::from_der(&c.cert_der)
                    .map_err(|e| CliError::Failed(e.into()))?;
                text.extend(x.to_pem().map_err(|e| CliError::Failed(e.into()))?);
            }
            text
        }
        ExportFormat::Dns => found
            .iter()
            .map(|c| crate::hosting::cert_record(&c.subject, opts.ttl, &c.cert_der))
            .collect::<String>()
            .into_bytes(),
        ExportFormat::Ldif => {
            // One entry per subject, holding all its certificates: two entries with one DN
            // would not load.
            let mut subjects: Vec<(&str, &str, Vec<&[u8]>)> = Vec::new();
            for c in &found {
                match subjects.iter_mut().find(|(s, _, _)| *s == c.subject) {
                    Some((_, _, ders)) => ders.push(&c.cert_der),
                    None => subjects.push((&c.subject, &c.domain, vec![&c.cert_der])),
                }
            }
            subjects
                .iter()
                .map(|(subject, domain, ders)| {
                    let base = opts
                        .base_dn
                        .map(str::to_string)
                        .unwrap_or_else(|| crate::hosting::default_base_dn(domain));
                    crate::hosting::ldif_entry(subject, &base, ders)
                })
                .collect::<String>()
                .into_bytes()
        }
        ExportFormat::Der => match found.as_slice() {
            [one] => one.cert_der.clone(),
            many => {
                let list: Vec<&str> = many.iter().map(|c| c.sha256.as_str()).collect();
                return Err(CliError::Usage(format!(
                    "{subject} has {} certificates and DER holds one; export one by sha256: {}",
                    many.len(),
                    list.join(", ")
                )));
            }
        },
    };
    match out {
        Some(path) => std::fs::write(path, &bytes).map_err(|e| {
            CliError::Failed(anyhow::anyhow!("cannot write {}: {e}", path.display()))
        })?,
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| CliError::Failed(e.into()))?,
    }
    Ok(())
}
