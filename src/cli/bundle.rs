//! `hisp bundle add|list|refresh|remove`: DirectTrust trust bundles, whose certificates become
//! anchors of the local domains mapped to them.

use std::path::PathBuf;

use clap::Subcommand;

use super::output::{date, print_json, print_table};
use super::{CliError, CliResult, Ctx};
use crate::address::normalize_domain;
use crate::bundles::{self, BundleSpec, BundlesError, Refresh, Source};
use crate::certinfo::parse_certs;
use crate::store::bundles::BundleDomain;

#[derive(Subcommand, Debug)]
pub enum BundleCmd {
    /// Fetch a bundle, check it, and trust its certificates for local domains. With neither
    /// --incoming nor --outgoing they are trusted both ways. Nothing is stored if the first
    /// fetch fails.
    Add {
        /// A short name for the bundle (letters, digits, '-', '_', '.').
        name: String,
        /// Where to fetch the .p7b (http or https), on every refresh.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        url: Option<String>,
        /// A local .p7b file, read again on every refresh.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The publisher's bundle-signing certificate (PEM or DER): the bundle must be signed
        /// by exactly this certificate.
        #[arg(long, value_name = "CERT")]
        signer: Option<PathBuf>,
        /// A local domain that trusts the bundle (repeat for several; default: the only one).
        #[arg(long = "domain", value_name = "DOMAIN")]
        domains: Vec<String>,
        /// How often to fetch it again, e.g. 1h, 30m.
        #[arg(long, default_value = "1h", value_name = "INTERVAL")]
        refresh: String,
        /// Trust senders who chain to the bundle (inbound mail).
        #[arg(long)]
        incoming: bool,
        /// Trust recipients who chain to the bundle (outbound mail).
        #[arg(long)]
        outgoing: bool,
    },
    /// List bundles with their refresh state.
    List,
    /// Fetch bundles now (all, or NAME); exit 1 if any failed.
    Refresh { name: Option<String> },
    /// Remove a bundle and the anchors it gave.
    Remove { name: String },
}

impl From<BundlesError> for CliError {
    fn from(e: BundlesError) -> Self {
        match e {
            BundlesError::Invalid(m) => CliError::Usage(m),
            BundlesError::Store(s) => s.into(),
            other => CliError::Failed(other.into()),
        }
    }
}

pub async fn run(ctx: &Ctx, cmd: BundleCmd) -> CliResult {
    let actor = ctx.actor();
    match cmd {
        BundleCmd::Add {
            name,
            url,
            file,
            signer,
            domains,
            refresh,
            incoming,
            outgoing,
        } => {
            let spec = BundleSpec {
                source: source(url, file)?,
                signer_der: signer.as_deref().map(read_signer).transpose()?,
                domains: mapped_domains(ctx, &domains, incoming, outgoing).await?,
                refresh: crate::config::Duration::parse(&refresh)
                    .map_err(|e| CliError::Usage(format!("--refresh: {e}")))?
                    .std(),
                name,
            };
            let fetcher = bundles::http_fetcher(&ctx.config);
            let (b, anchors) = bundles::add(&ctx.store, fetcher, &spec, &actor).await?;
            if ctx.json {
                return print_json(&b);
            }
            let mapped: Vec<String> = b
                .domains
                .iter()
                .map(|d| format!("{} ({})", d.domain, direction(d.incoming, d.outgoing)))
                .collect();
            println!(
                "added bundle {}: {anchors} anchors from {}{}, trusted by {}",
                b.name,
                b.source(),
                if b.signer_sha256.is_some() {
                    " (signature checked)"
                } else {
                    ""
                },
                mapped.join(", ")
            );
        }
        BundleCmd::List => {
            let list = bundles::list(&ctx.store).await?;
            if ctx.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|b| {
                    let state = match (&b.last_error, b.last_success_at) {
                        (Some(e), _) => format!("failing ({}x): {e}", b.consecutive_failures),
                        (None, Some(at)) => format!("ok {}", date(at / 1000)),
                        (None, None) => "never fetched".to_string(),
                    };
                    vec![
                        b.name.clone(),
                        b.anchor_count.to_string(),
                        b.domains
                            .iter()
                            .map(|d| format!("{}:{}", d.domain, direction(d.incoming, d.outgoing)))
                            .collect::<Vec<_>>()
                            .join(","),
                        crate::config::Duration::from_secs(b.refresh_secs.max(0) as u64)
                            .to_string(),
                        if b.signer_sha256.is_some() {
                            "yes"
                        } else {
                            "no"
                        }
                        .to_string(),
                        b.source().to_string(),
                        state,
                    ]
                })
                .collect();
            print_table(
                &[
                    "NAME", "ANCHORS", "DOMAINS", "REFRESH", "SIGNED", "SOURCE", "STATE",
                ],
                &rows,
                "no bundles",
            );
        }
        BundleCmd::Refresh { name } => {
            let fetcher = bundles::http_fetcher(&ctx.config);
            let outcomes = bundles::refresh(&ctx.store, fetcher, name.as_deref(), &actor).await?;
            let failed = outcomes
                .iter()
                .filter(|o| matches!(o.refresh, Refresh::Failed { .. }))
                .count();
            if ctx.json {
                print_json(&outcomes)?;
            } else {
                for o in &outcomes {
                    match &o.refresh {
                        Refresh::Unchanged { anchors } => {
                            println!("{}: unchanged ({anchors} anchors)", o.name)
                        }
                        Refresh::Updated { anchors } => {
                            println!("{}: updated {anchors} anchors", o.name)
                        }
                        Refresh::Failed { reason } => println!("{}: failed: {reason}", o.name),
                    }
                }
                if outcomes.is_empty() {
                    println!("no bundles");
                }
            }
            if failed > 0 {
                return Err(CliError::Failed(anyhow::anyhow!(
                    "{failed} of {} bundle(s) failed to refresh; their last good anchors stay in force",
                    outcomes.len()
                )));
            }
        }
        BundleCmd::Remove { name } => {
            let b = bundles::remove(&ctx.store, &name, &actor).await?;
            if ctx.json {
                return print_json(&b);
            }
            println!(
                "removed bundle {} and its {} anchors",
                b.name, b.anchor_count
            );
        }
    }
    Ok(())
}

fn source(url: Option<String>, file: Option<PathBuf>) -> CliResult<Source> {
    match (url, file) {
        (Some(url), None) => {
            crate::fetch::Url::parse(&url).map_err(|e| CliError::Usage(format!("--url: {e}")))?;
            Ok(Source::Url(url))
        }
        (None, Some(file)) => {
            let absolute = std::fs::canonicalize(&file)
                .map_err(|e| CliError::Usage(format!("--file {}: {e}", file.display())))?;
            Ok(Source::File(absolute))
        }
        _ => Err(CliError::Usage(
            "give exactly one of --url URL or --file FILE".into(),
        )),
    }
}

fn read_signer(path: &std::path::Path) -> CliResult<Vec<u8>> {
    let shown = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| CliError::Usage(format!("--signer {shown}: {e}")))?;
    let certs =
        parse_certs(&bytes, &shown).map_err(|e| CliError::Usage(format!("--signer {e}")))?;
    match certs.as_slice() {
        [one] => one.to_der().map_err(|e| CliError::Failed(e.into())),
        many => Err(CliError::Usage(format!(
            "--signer {shown}: holds {} certificates; give the one bundle-signing certificate",
            many.len()
        ))),
    }
}

/// The domains named with --domain (default: the only local domain), with the directions.
async fn mapped_domains(
    ctx: &Ctx,
    names: &[String],
    incoming: bool,
    outgoing: bool,
) -> CliResult<Vec<BundleDomain>> {
    let (incoming, outgoing) = if incoming || outgoing {
        (incoming, outgoing)
    } else {
        (true, true)
    };
    let mut domains: Vec<String> = Vec::new();
    for n in names {
        let d = normalize_domain(n).map_err(|e| CliError::Usage(format!("--domain {n}: {e}")))?;
        ctx.store.require_domain(&d).await?;
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    if domains.is_empty() {
        let all = ctx.store.list_domains().await?;
        match all.as_slice() {
            [one] => domains.push(one.name.clone()),
            [] => {
                return Err(CliError::Usage(
                    "no local domains yet: add one with `hisp domain add DOMAIN`, then name it with --domain".into(),
                ));
            }
            _ => {
                return Err(CliError::Usage(
                    "several local domains: name the ones that trust this bundle with --domain"
                        .into(),
                ));
            }
        }
    }
    Ok(domains
        .into_iter()
        .map(|domain| BundleDomain {
            domain,
            incoming,
            outgoing,
        })
        .collect())
}

fn direction(incoming: bool, outgoing: bool) -> &'static str {
    match (incoming, outgoing) {
        (true, true) => "both",
        (true, false) => "incoming",
        (false, true) => "outgoing",
        (false, false) => "none",
    }
}
