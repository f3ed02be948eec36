//! `hisp queue list|retry|drop`: look at and steer the delivery queue.

use clap::Subcommand;
use serde_json::json;

use super::output::{print_json, print_table};
use super::{CliResult, Ctx};
use crate::certinfo::iso_date;

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// List recipients waiting for delivery (with --all, also delivered, failed and dropped).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Try the pending recipients of a queued message now instead of at their next retry.
    Retry {
        /// The queue id shown by `hisp queue list`.
        id: i64,
    },
    /// Stop delivering a queued message to its pending recipients (no DSN is sent).
    Drop {
        /// The queue id shown by `hisp queue list`.
        id: i64,
    },
}

/// `YYYY-MM-DD HH:MM:SS` UTC, short enough for a table.
fn when(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let t = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        iso_date(secs),
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

pub async fn run(ctx: &Ctx, cmd: QueueCmd) -> CliResult {
    match cmd {
        QueueCmd::List { all } => {
            let entries = ctx.store.queue_list(all).await?;
            if ctx.json {
                return print_json(&entries);
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        if e.from.is_empty() {
                            "<>".into()
                        } else {
                            e.from.clone()
                        },
                        e.recipient.clone(),
                        e.state.clone(),
                        e.attempts.to_string(),
                        if e.state == "pending" {
                            when(e.next_attempt_at)
                        } else {
                            "-".into()
                        },
                        e.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "FROM",
                    "RECIPIENT",
                    "STATE",
                    "ATTEMPTS",
                    "NEXT (UTC)",
                    "LAST ERROR",
                ],
                &rows,
                if all {
                    "the queue is empty"
                } else {
                    "nothing waiting for delivery"
                },
            );
        }
        QueueCmd::Retry { id } => {
            let n = ctx.store.queue_retry(id).await?;
            if ctx.json {
                return print_json(&json!({"id": id, "recipients": n}));
            }
            println!("queue message {id}: {n} pending recipient(s) due now");
        }
        QueueCmd::Drop { id } => {
            let n = ctx.store.queue_drop(id).await?;
            if ctx.json {
                return print_json(&json!({"id": id, "recipients": n}));
            }
            println!("queue message {id}: dropped {n} pending recipient(s)");
        }
    }
    Ok(())
}
