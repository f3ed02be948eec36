//! `hisp audit verify` and `hisp audit list`: the hash-chained audit log (never holds message
//! bodies, passwords, tokens or keys).

use clap::Subcommand;

use super::output::{print_json, print_table};
use super::{CliError, CliResult, Ctx};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Check every entry's hash and link; exit 1 if any entry was edited, inserted or deleted.
    Verify,
    /// Show entries, oldest first.
    List {
        /// From this time: a date (2026-11-30), a UTC time (2026-11-30T14:00:00Z), or a
        /// duration back from now (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
}

pub async fn run(ctx: &Ctx, cmd: AuditCmd) -> CliResult {
    match cmd {
        AuditCmd::Verify => {
            let check = ctx.store.audit_verify().await?;
            if ctx.json {
                print_json(&check)?;
            }
            match check.problem {
                None => {
                    if !ctx.json {
                        println!(
                            "audit log intact: {} entries, head {}",
                            check.entries, check.head
                        );
                    }
                    Ok(())
                }
                Some(p) => Err(CliError::Failed(anyhow::anyhow!(
                    "audit log tampered with: {p}"
                ))),
            }
        }
        AuditCmd::List { since, limit } => {
            let since_ms = match since.as_deref() {
                None => 0,
                Some(s) => parse_since(s, crate::clock::now_ms())
                    .map_err(|e| CliError::Usage(format!("--since {s:?}: {e}")))?,
            };
            let entries = ctx.store.audit_list(since_ms, limit.max(0)).await?;
            if ctx.json {
                return print_json(&entries);
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        timestamp(e.at),
                        e.actor.clone(),
                        e.event.clone(),
                        e.subject.clone(),
                        e.outcome.clone(),
                        e.detail_text.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID", "AT (UTC)", "ACTOR", "EVENT", "SUBJECT", "OUTCOME", "DETAIL",
                ],
                &rows,
                "no audit entries",
            );
            Ok(())
        }
    }
}

fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        crate::certinfo::iso_date(secs),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix ms for `--since`.
fn parse_since(s: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(d) = crate::config::Duration::parse(s) {
        return Ok(now_ms - d.0.as_millis() as i64);
    }
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (s, None),
    };
    let ymd: Vec<i64> = date
        .split('-')
        .map(|p| p.parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|_| "expected a date like 2026-11-30, a time like 2026-11-30T14:00:00Z, or a duration like 24h".to_string())?;
    let [y, m, d] = ymd[..] else {
        return Err("expected YYYY-MM-DD".into());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err("no such date".into());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let hms: Vec<i64> = t
            .split(':')
            .map(|p| p.parse::<i64>())
            .collect::<Result<_, _>>()
            .map_err(|_| "expected a time like 14:00:00".to_string())?;
        let (h, mi, se) = match hms[..] {
            [h, m] => (h, m, 0),
            [h, m, s] => (h, m, s),
            _ => return Err("expected HH:MM or HH:MM:SS".into()),
        };
        secs += h * 3600 + mi * 60 + se;
    }
    Ok(secs * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of `civil_date`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = 1_796_080_238_000;
        assert_eq!(
            parse_since("2026-11-30", now),
            Ok(1_796_083_200_000 - 86_400_000)
        );
        assert_eq!(
            parse_since("2026-11-30T23:10:38Z", now),
            Ok(1_796_080_238_000)
        );
        assert_eq!(parse_since("1h", now), Ok(now - 3_600_000));
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("2026-13-01", now).is_err());
        assert_eq!(timestamp(1_796_080_238_123), "2026-11-30 23:10:38");
    }
}
