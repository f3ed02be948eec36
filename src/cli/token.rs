//! `hisp token create|list|revoke`: API bearer tokens. The token is shown once.

use clap::Subcommand;
use serde_json::json;

use super::output::{date, print_json, print_table};
use super::{CliError, CliResult, Ctx};
use crate::address::DirectAddress;
use crate::auth::new_token;

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token for one address (its own mailbox, sends as itself) or an admin token.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["address", "admin"])))]
    Create {
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        admin: bool,
    },
    /// List tokens (never the secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: i64 },
}

pub async fn run(ctx: &Ctx, cmd: TokenCmd) -> CliResult {
    match cmd {
        TokenCmd::Create { address, admin } => {
            let address = match (address, admin) {
                (Some(a), false) => {
                    Some(DirectAddress::parse(&a).map_err(|e| CliError::Usage(e.to_string()))?)
                }
                (None, true) => None,
                _ => {
                    return Err(CliError::Usage(
                        "give either --address ADDRESS or --admin".into(),
                    ));
                }
            };
            let t = new_token();
            let row = ctx
                .store
                .add_token(
                    &t.hash,
                    &t.prefix,
                    address.as_ref().map(DirectAddress::as_str),
                )
                .await?;
            let subject = row.address.clone().unwrap_or_else(|| "admin".to_string());
            if ctx.json {
                return print_json(
                    &json!({"id": row.id, "token": t.token, "address": row.address, "admin": row.admin}),
                );
            }
            println!("{}", t.token);
            eprintln!(
                "hisp: token {} for {subject} created; it is shown only this once",
                row.id
            );
        }
        TokenCmd::List => {
            let tokens = ctx.store.list_tokens().await?;
            if ctx.json {
                return print_json(&tokens);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        format!("{}…", t.prefix),
                        t.address.clone().unwrap_or_else(|| "(admin)".to_string()),
                        date(t.created_at / 1000),
                        if t.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                        .to_string(),
                    ]
                })
                .collect();
            print_table(
                &["ID", "TOKEN", "FOR", "CREATED", "STATE"],
                &rows,
                "no tokens",
            );
        }
        TokenCmd::Revoke { id } => {
            ctx.store.revoke_token(id).await?;
            if ctx.json {
                return print_json(&json!({"id": id, "revoked": true}));
            }
            println!("revoked token {id}");
        }
    }
    Ok(())
}
