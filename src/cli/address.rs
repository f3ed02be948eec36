//! `hisp address add|list|remove|passwd`.

use clap::Subcommand;
use serde_json::json;

use super::output::{date, print_json, print_table};
use super::{CliError, CliResult, Ctx, password_from_env};
use crate::address::DirectAddress;
use crate::auth::hash_password;

#[derive(Subcommand, Debug)]
pub enum AddressCmd {
    /// Add a local address (its domain must be local). Without --password-env it can
    /// receive mail but cannot log in.
    Add {
        address: String,
        /// Environment variable holding the login password.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
    /// List local addresses.
    List {
        #[arg(long)]
        domain: Option<String>,
    },
    /// Remove an address with its mailbox, keys and tokens.
    Remove { address: String },
    /// Set or change the login password of an address.
    Passwd {
        address: String,
        #[arg(long, value_name = "VAR")]
        password_env: String,
    },
}

fn parse(address: &str) -> CliResult<DirectAddress> {
    DirectAddress::parse(address).map_err(|e| CliError::Usage(e.to_string()))
}

fn hashed(password: Option<String>) -> CliResult<Option<String>> {
    password
        .map(|p| hash_password(&p).map_err(|e| CliError::Usage(e.to_string())))
        .transpose()
}

pub async fn run(ctx: &Ctx, cmd: AddressCmd) -> CliResult {
    match cmd {
        AddressCmd::Add {
            address,
            password_env,
        } => {
            let addr = parse(&address)?;
            let hash = hashed(password_from_env(password_env.as_deref())?)?;
            let a = ctx.store.add_address(&addr, hash.as_deref()).await?;
            if ctx.json {
                return print_json(&a);
            }
            let login = if a.has_password {
                "with a login password"
            } else {
                "without a login (receive only)"
            };
            println!("added address {} {login}", a.address);
        }
        AddressCmd::List { domain } => {
            let filter = domain
                .map(|d| {
                    crate::address::normalize_domain(&d).map_err(|e| CliError::Usage(e.to_string()))
                })
                .transpose()?;
            if let Some(d) = &filter {
                ctx.store.require_domain(d).await?;
            }
            let list = ctx.store.list_addresses(filter.as_deref()).await?;
            if ctx.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|a| {
                    vec![
                        a.address.clone(),
                        if a.has_password { "yes" } else { "no" }.to_string(),
                        date(a.created_at / 1000),
                    ]
                })
                .collect();
            print_table(&["ADDRESS", "LOGIN", "ADDED"], &rows, "no addresses");
        }
        AddressCmd::Remove { address } => {
            let addr = parse(&address)?;
            let a = ctx.store.remove_address(addr.as_str()).await?;
            if ctx.json {
                return print_json(&a);
            }
            println!(
                "removed address {} with its mailbox, keys and tokens",
                a.address
            );
        }
        AddressCmd::Passwd {
            address,
            password_env,
        } => {
            let addr = parse(&address)?;
            let hash = hashed(password_from_env(Some(&password_env))?)?;
            ctx.store
                .set_password_hash(addr.as_str(), hash.as_deref())
                .await?;
            if ctx.json {
                return print_json(&json!({"address": addr.as_str(), "password_set": true}));
            }
            println!("password set for {addr}");
        }
    }
    Ok(())
}
