//! Small key/value facts about the store itself (e.g. the master key check value).

use super::{Result, Store};
use sqlx::Row;

/// The value of `key`, read through `db`: the pool, or an open transaction.
pub(crate) async fn meta_value<'c, E>(db: E, key: &str) -> Result<Option<String>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.try_get::<String, _>("value")).transpose()?)
}

impl Store {
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        meta_value(self.pool(), key).await
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
