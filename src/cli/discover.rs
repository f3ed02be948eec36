//! `hisp discover ADDRESS`: run certificate discovery the way the outbound pipeline would and
//! show every step, every certificate seen with its verdict, and the choice — the tool for
//! "you can't find our certificate".

use std::sync::Arc;

use clap::Args;
use openssl::x509::X509;

use super::output::print_json;
use super::{CliError, CliResult, Ctx};
use crate::address::{DirectAddress, normalize_domain};
use crate::discovery::{Anchors, Discovery, Report};

#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// The recipient address to find certificates for.
    pub address: String,
    /// Validate against this local domain's outgoing anchors (default: the only local domain,
    /// or the outgoing anchors of all local domains).
    #[arg(long, value_name = "LOCAL_DOMAIN")]
    pub domain: Option<String>,
}

pub async fn run(ctx: &Ctx, args: DiscoverArgs) -> CliResult {
    let address = DirectAddress::parse(&args.address)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.address)))?;
    let (anchors, described) = outgoing_anchors(ctx, args.domain.as_deref()).await?;
    if anchors.is_empty() && !ctx.json {
        eprintln!(
            "hisp: warning: {described} has no outgoing trust anchors, so no certificate can be trusted; add one with `hisp anchor add --domain DOMAIN --file CA.pem --outgoing`"
        );
    }
    let discovery = Discovery::new(&ctx.config).map_err(|e| CliError::Failed(e.into()))?;
    let anchors = Arc::new(Anchors::new(anchors));
    let report = discovery.discover_uncached(&address, &anchors).await;
    if ctx.json {
        let mut doc = report.to_json();
        doc["anchors"] = serde_json::Value::from(described.clone());
        print_json(&doc)?;
    } else {
        print_human(&report, &described, anchors.certs().len());
    }
    if report.selected.is_empty() {
        return Err(CliError::NotFound(report.failure_reason()));
    }
    Ok(())
}

async fn outgoing_anchors(ctx: &Ctx, domain: Option<&str>) -> CliResult<(Vec<X509>, String)> {
    let (list, described) = match domain {
        Some(d) => {
            let d =
                normalize_domain(d).map_err(|e| CliError::Usage(format!("--domain {d}: {e}")))?;
            ctx.store.require_domain(&d).await?;
            (ctx.store.list_trust_anchors(Some(&d)).await?, d)
        }
        None => {
            let domains = ctx.store.list_domains().await?;
            let described = match domains.as_slice() {
                [one] => one.name.clone(),
                [] => "this HISP (no local domains)".to_string(),
                many => format!("all {} local domains", many.len()),
            };
            (ctx.store.list_trust_anchors(None).await?, described)
        }
    };
    let mut certs = Vec::new();
    for a in list.iter().filter(|a| a.outgoing) {
        let cert = X509::from_der(&a.cert_der).map_err(|e| CliError::Failed(e.into()))?;
        certs.push(cert);
    }
    Ok((certs, described))
}

fn print_human(report: &Report, anchors_of: &str, anchor_count: usize) {
    println!("Certificate discovery for {}", report.address);
    println!("Trust: outgoing anchors of {anchors_of} ({anchor_count})");
    for (i, step) in report.steps.iter().enumerate() {
        println!();
        println!("[{}] {}: {}", i + 1, step.source.as_str(), step.query);
        for note in &step.notes {
            println!("    {note}");
        }
        if let Some(e) = &step.error {
            println!("    error: {e}");
        }
        for c in &step.certificates {
            let subject = if c.subject.is_empty() {
                "(unreadable)"
            } else {
                &c.subject
            };
            println!("    certificate {subject}");
            println!("      sha256    {}", c.sha256);
            if c.not_after > 0 {
                println!("      not after {}", crate::certinfo::iso_date(c.not_after));
            }
            println!("      from      {}", c.origin);
            println!("      verdict   {}: {}", c.verdict, c.reason);
            for w in &c.warnings {
                println!("      warning   {w}");
            }
        }
    }
    println!();
    match report.selected_from {
        Some(source) => {
            println!("Selected ({}):", source.as_str());
            for c in &report.selected {
                println!("    {}  {}", c.sha256, c.subject);
            }
        }
        None => println!("No usable certificate: {}", report.failure_reason()),
    }
}
