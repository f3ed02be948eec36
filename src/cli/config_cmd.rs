//! `hisp config check`: validate the configuration without touching the store.

use clap::Subcommand;

use super::{CliResult, output::print_json};
use crate::config::{Config, Source};

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Load and validate the configuration; exit 2 naming the bad key if it is wrong.
    Check,
}

pub fn run(cmd: &ConfigCmd, config: &Config, source: &Source, json: bool) -> CliResult {
    match cmd {
        ConfigCmd::Check => {
            let from = match source {
                Source::File(p) => p.display().to_string(),
                Source::Defaults => "built-in defaults".to_string(),
            };
            let db = crate::store::redact_url(&config.database.url);
            if json {
                print_json(&serde_json::json!({"ok": true, "source": from, "database": db}))
            } else {
                println!("config OK ({from}); database {db}");
                Ok(())
            }
        }
    }
}
