//! Small key/value facts about the store itself (e.g. the master key check value).

use super::{Result, Store};
use sqlx::Row;

impl Store {
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>("value")).transpose()?)
    }

    /// Inserts if absent; returns the value now stored (which may be another node's).
    pub async fn meta_set_if_absent(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(self.pool())
            .await?;
        Ok(self.meta_get(key).await?.unwrap_or_default())
    }
}
