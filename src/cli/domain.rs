//! `hisp domain add|list|remove`.

use clap::Subcommand;

use super::output::{date, print_json, print_table};
use super::{CliError, CliResult, Ctx};
use crate::address::normalize_domain;

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// Add a local domain.
    Add { domain: String },
    /// List local domains.
    List,
    /// Remove a local domain (refused while it has addresses, keys or anchors, unless --force).
    Remove {
        domain: String,
        /// Also delete every address, mailbox, key and anchor under the domain.
        #[arg(long)]
        force: bool,
    },
}

fn parse(domain: &str) -> CliResult<String> {
    normalize_domain(domain).map_err(|e| CliError::Usage(e.to_string()))
}

pub async fn run(ctx: &Ctx, cmd: DomainCmd) -> CliResult {
    match cmd {
        DomainCmd::Add { domain } => {
            let name = parse(&domain)?;
            let d = ctx.store.add_domain(&name).await?;
            if ctx.json {
                return print_json(&d);
            }
            println!("added domain {}", d.name);
        }
        DomainCmd::List => {
            let domains = ctx.store.list_domains().await?;
            if ctx.json {
                return print_json(&domains);
            }
            let rows: Vec<Vec<String>> = domains
                .iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.addresses.to_string(),
                        d.certificates.to_string(),
                        d.anchors.to_string(),
                        date(d.created_at / 1000),
                    ]
                })
                .collect();
            print_table(
                &["DOMAIN", "ADDRESSES", "CERTS", "ANCHORS", "ADDED"],
                &rows,
                "no domains (add one with `hisp domain add DOMAIN`)",
            );
        }
        DomainCmd::Remove { domain, force } => {
            let name = parse(&domain)?;
            let d = ctx.store.remove_domain(&name, force).await?;
            if ctx.json {
                return print_json(&d);
            }
            println!("removed domain {}", d.name);
        }
    }
    Ok(())
}
