//! API bearer tokens, stored as hashes (see `auth`).

use super::{Result, Store, StoreError, flag, now_ms};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    pub id: i64,
    pub prefix: String,
    pub address: Option<String>,
    pub admin: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const SELECT: &str = "SELECT t.id, t.prefix, a.address, t.is_admin, t.created_at,
    t.last_used_at, t.revoked_at, t.token_hash
    FROM api_tokens t LEFT JOIN addresses a ON a.id = t.address_id";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Token> {
    Ok(Token {
        id: r.try_get("id")?,
        prefix: r.try_get("prefix")?,
        address: r.try_get("address")?,
        admin: flag(r, "is_admin")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

impl Store {
    /// Stores a token hash for an address (`Some`) or an admin token (`None`).
    pub async fn add_token(
        &self,
        hash: &str,
        prefix: &str,
        address: Option<&str>,
    ) -> Result<Token> {
        let address_id = match address {
            Some(a) => Some(self.require_address(a).await?.id),
            None => None,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, prefix, address_id, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(prefix)
        .bind(address_id)
        .bind(i64::from(address.is_none()))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let sql = format!("{SELECT} WHERE t.token_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_one(&mut *tx)
            .await?;
        let token = from_row(&row)?;
        // The prefix identifies the token in listings; the token itself is never recorded.
        self.audit_change(
            &mut tx,
            "token.created",
            token.address.as_deref().unwrap_or("admin"),
            serde_json::json!({"id": token.id, "prefix": token.prefix}),
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// The live (not revoked) token stored under `hash`, with the stored hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<(Token, String)>> {
        let sql = format!("{SELECT} WHERE t.token_hash = $1 AND t.revoked_at IS NULL");
        // Every API client's first request after the token cache expires lands here.
        if let Some(inline) = &self.inline
            && let Some(found) = inline.try_read(|c| {
                use rusqlite::OptionalExtension;
                c.prepare_cached(&sql)?
                    .query_row([hash], |r| {
                        Ok((
                            Token {
                                id: r.get(0)?,
                                prefix: r.get(1)?,
                                address: r.get(2)?,
                                admin: r.get::<_, i64>(3)? != 0,
                                created_at: r.get(4)?,
                                last_used_at: r.get(5)?,
                                revoked_at: r.get(6)?,
                            },
                            r.get(7)?,
                        ))
                    })
                    .optional()
            })
        {
            return Ok(found?);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => Ok(Some((from_row(&r)?, r.try_get("token_hash")?))),
            None => Ok(None),
        }
    }

    pub async fn list_tokens(&self) -> Result<Vec<Token>> {
        let sql = format!("{SELECT} ORDER BY t.id");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    pub async fn revoke_token(&self, id: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "no active token with id {id} (see `hisp token list`)"
            )));
        }
        self.audit_change(
            &mut tx,
            "token.revoked",
            &id.to_string(),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
