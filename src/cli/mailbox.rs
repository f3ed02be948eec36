//! `hisp mailbox list ADDRESS` and `hisp mailbox show ID`: what arrived for a local address
//! (messages, and MDNs/DSNs about its own mail), for admins and scripts.

use std::io::Write;

use clap::Subcommand;

use super::output::{date, print_json, print_table};
use super::{CliError, CliResult, Ctx};
use crate::address::DirectAddress;

#[derive(Subcommand, Debug)]
pub enum MailboxCmd {
    /// Messages in an address's mailbox, oldest first.
    List {
        address: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Print one message: the decrypted, verified inner RFC 5322 message.
    Show { id: i64 },
}

pub async fn run(ctx: &Ctx, cmd: MailboxCmd) -> CliResult {
    match cmd {
        MailboxCmd::List { address, limit } => {
            let address = DirectAddress::parse(&address)
                .map_err(|e| CliError::Usage(format!("{address}: {e}")))?;
            ctx.store.require_address(address.as_str()).await?;
            let items = ctx
                .store
                .mailbox_list(address.as_str(), 0, limit.max(0))
                .await?;
            if ctx.json {
                return print_json(&items);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|m| {
                    vec![
                        m.id.to_string(),
                        date(m.received_at / 1000),
                        m.kind.clone(),
                        m.sender.clone(),
                        m.subject.clone(),
                        m.size.to_string(),
                    ]
                })
                .collect();
            print_table(
                &["ID", "RECEIVED", "KIND", "FROM", "SUBJECT", "BYTES"],
                &rows,
                &format!("no messages for {address}"),
            );
            Ok(())
        }
        MailboxCmd::Show { id } => {
            let raw = ctx.store.mailbox_raw(id).await?.ok_or_else(|| {
                CliError::NotFound(format!(
                    "no mailbox message {id} (see `hisp mailbox list ADDRESS`)"
                ))
            })?;
            std::io::stdout()
                .write_all(&raw)
                .map_err(|e| CliError::Failed(e.into()))
        }
    }
}
