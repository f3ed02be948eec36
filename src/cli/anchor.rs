//! `hisp anchor add|list|remove`: trust anchors per local domain.

use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;

use super::output::{date, print_json, print_table};
use super::{CliError, CliResult, Ctx};
use crate::address::normalize_domain;
use crate::certinfo::{CertInfo, parse_certs};
use crate::store::anchors::AnchorChange;

#[derive(Subcommand, Debug)]
pub enum AnchorCmd {
    /// Trust a CA (or end-entity) certificate for a local domain. With neither --incoming
    /// nor --outgoing it is trusted both ways.
    Add {
        #[arg(long)]
        domain: String,
        /// PEM (one or more certificates) or DER.
        #[arg(long, value_name = "CERT")]
        file: PathBuf,
        /// Trust senders who chain to it (inbound mail).
        #[arg(long)]
        incoming: bool,
        /// Trust recipients who chain to it (outbound mail).
        #[arg(long)]
        outgoing: bool,
    },
    /// List anchors.
    List {
        #[arg(long)]
        domain: Option<String>,
    },
    /// Remove an anchor by id (see `hisp anchor list`; anchors from a bundle leave with
    /// `hisp bundle remove`).
    Remove { id: i64 },
}

pub async fn run(ctx: &Ctx, cmd: AnchorCmd) -> CliResult {
    match cmd {
        AnchorCmd::Add {
            domain,
            file,
            incoming,
            outgoing,
        } => {
            let domain = normalize_domain(&domain).map_err(|e| CliError::Usage(e.to_string()))?;
            ctx.store.require_domain(&domain).await?;
            let bytes = std::fs::read(&file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let certs = parse_certs(&bytes, &file.display().to_string())
                .map_err(|e| CliError::Failed(e.into()))?;
            let (incoming, outgoing) = if incoming || outgoing {
                (incoming, outgoing)
            } else {
                (true, true)
            };
            let mut parsed = Vec::new();
            for cert in &certs {
                let der = cert.to_der().map_err(|e| CliError::Failed(e.into()))?;
                parsed.push((CertInfo::of(cert), der));
            }
            let changes = ctx
                .store
                .add_anchors(&domain, &parsed, incoming, outgoing)
                .await?;
            if ctx.json {
                let list: Vec<_> = changes
                    .iter()
                    .map(|(a, c)| json!({"anchor": a, "change": c}))
                    .collect();
                return print_json(&list);
            }
            for (a, change) in &changes {
                let verb = match change {
                    AnchorChange::Added => "added",
                    AnchorChange::Widened => "widened",
                };
                println!(
                    "{verb} anchor {} for {} ({}): {} sha256 {}",
                    a.id,
                    a.domain,
                    direction(a.incoming, a.outgoing),
                    a.subject,
                    a.sha256
                );
            }
        }
        AnchorCmd::List { domain } => {
            let domain = domain
                .map(|d| normalize_domain(&d).map_err(|e| CliError::Usage(e.to_string())))
                .transpose()?;
            // Bundle anchors are listed too (with the bundle's name): they are trusted just the
            // same, and an admin asking "why is this CA trusted?" should see them here.
            let anchors = ctx.store.list_trust_anchors(domain.as_deref()).await?;
            if ctx.json {
                return print_json(&anchors);
            }
            let rows: Vec<Vec<String>> = anchors
                .iter()
                .map(|a| {
                    vec![
                        match &a.bundle {
                            Some(name) => format!("bundle:{name}"),
                            None => a.id.to_string(),
                        },
                        a.domain.clone(),
                        direction(a.incoming, a.outgoing).to_string(),
                        a.sha256[..16].to_string(),
                        date(a.not_after),
                        a.subject.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "DOMAIN",
                    "DIRECTION",
                    "SHA256",
                    "NOT AFTER",
                    "SUBJECT",
                ],
                &rows,
                "no anchors",
            );
        }
        AnchorCmd::Remove { id } => {
            let a = ctx.store.remove_anchor(id).await?;
            if ctx.json {
                return print_json(&a);
            }
            println!("removed anchor {} ({}) from {}", a.id, a.subject, a.domain);
        }
    }
    Ok(())
}

fn direction(incoming: bool, outgoing: bool) -> &'static str {
    match (incoming, outgoing) {
        (true, true) => "both",
        (true, false) => "incoming",
        (false, true) => "outgoing",
        (false, false) => "none",
    }
}
