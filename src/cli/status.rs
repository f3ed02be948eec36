//! `hisp status MESSAGE-ID`: where an outbound message is, per recipient (SPEC E30).

use super::output::{date, print_json, print_table};
use super::{CliError, CliResult, Ctx};

pub async fn run(ctx: &Ctx, message_id: &str) -> CliResult {
    let id = crate::headers::bracketed_message_id(message_id);
    let records = ctx.store.tracking(&id).await?;
    if records.is_empty() {
        return Err(CliError::NotFound(format!(
            "no outbound message {id} is tracked (see the Message-ID header of the message as sent)"
        )));
    }
    if ctx.json {
        return print_json(&serde_json::json!({
            "message_id": id,
            "sender": records[0].sender,
            "recipients": records,
        }));
    }
    println!("{id} from {}", records[0].sender);
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.recipient.clone(),
                r.state.clone(),
                date(r.updated_at / 1000),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["RECIPIENT", "STATE", "SINCE", "REASON"], &rows, "");
    Ok(())
}
