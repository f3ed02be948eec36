//! Local Direct addresses: a mailbox each, and optionally a login (argon2 password hash).

use super::{Result, Store, StoreError, now_ms, on_duplicate, opt_text};
use crate::address::DirectAddress;
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Address {
    pub id: i64,
    pub address: String,
    pub domain: String,
    pub has_password: bool,
    pub created_at: i64,
    #[serde(skip)]
    pub password_hash: Option<String>,
}

const SELECT: &str = "SELECT a.id, a.address, d.name AS domain, a.password_hash, a.created_at
    FROM addresses a JOIN domains d ON d.id = a.domain_id";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Address> {
    let password_hash = opt_text(r, "password_hash")?;
    Ok(Address {
        id: r.try_get("id")?,
        address: r.try_get("address")?,
        domain: r.try_get("domain")?,
        has_password: password_hash.is_some(),
        created_at: r.try_get("created_at")?,
        password_hash,
    })
}

/// How long a local address found in the store is taken as still there.
pub const LOCAL_SEEN_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl Store {
    pub async fn add_address(
        &self,
        address: &DirectAddress,
        password_hash: Option<&str>,
    ) -> Result<Address> {
        let domain = self.require_domain(address.domain()).await?;
        let mut tx = self.begin_write().await?;
        on_duplicate(
            sqlx::query(
            "INSERT INTO addresses (domain_id, address, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(domain.id)
        .bind(address.as_str())
        .bind(password_hash)
        .bind(now_ms())
        .execute(&mut *tx)
        .await,
            || format!(
                "address {address} already exists"
            ),
        )?;
        self.audit_change(
            &mut tx,
            "address.added",
            address.as_str(),
            serde_json::json!({"login": password_hash.is_some()}),
        )
        .await?;
        tx.commit().await?;
        self.require_address(address.as_str()).await
    }

    pub async fn address(&self, address: &str) -> Result<Option<Address>> {
        let sql = format!("{SELECT} WHERE a.address = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(address)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// Whether `address` (normalised) is a local address. Every inbound RCPT asks, so a
    /// yes is remembered for [`LOCAL_SEEN_TTL`]: a removed address is refused again within
    /// that time (INTERFACE.md allows 5 s), while a no always asks the store, so an address
    /// just added is accepted at once.
    pub async fn is_local_address(&self, address: &str) -> Result<bool> {
        if let Some(seen) = self.local_seen.lock().expect("local_seen").get(address)
            && seen.elapsed() < LOCAL_SEEN_TTL
        {
            return Ok(true);
        }
        let found = sqlx::query("SELECT 1 AS one FROM addresses WHERE address = $1")
            .bind(address)
            .fetch_optional(self.pool())
            .await?
            .is_some();
        if found {
            let mut seen = self.local_seen.lock().expect("local_seen");
            if seen.len() >= 100_000 {
                seen.clear();
            }
            seen.insert(address.to_string(), std::time::Instant::now());
        }
        Ok(found)
    }

    /// Whether `name` (normalised) is a local domain, without the counts `domain` gathers.
    pub async fn is_local_domain(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 AS one FROM domains WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .is_some())
    }

    pub async fn require_address(&self, address: &str) -> Result<Address> {
        self.address(address).await?.ok_or_else(|| {
            StoreError::NotFound(format!(
                "address {address} is not a local address (add it with `hisp address add {address}`)"
            ))
        })
    }

    pub async fn list_addresses(&self, domain: Option<&str>) -> Result<Vec<Address>> {
        let rows = match domain {
            Some(d) => {
                let sql = format!("{SELECT} WHERE d.name = $1 ORDER BY a.address");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(d)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                let sql = format!("{SELECT} ORDER BY a.address");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(from_row).collect()
    }

    pub async fn set_password_hash(&self, address: &str, hash: Option<&str>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE addresses SET password_hash = $1 WHERE address = $2")
            .bind(hash)
            .bind(address)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "address {address} is not a local address"
            )));
        }
        self.audit_change(
            &mut tx,
            "address.password_changed",
            address,
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the address with its mailbox, keys and tokens.
    pub async fn remove_address(&self, address: &str) -> Result<Address> {
        let a = self.require_address(address).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM addresses WHERE id = $1")
            .bind(a.id)
            .execute(&mut *tx)
            .await?;
        self.audit_change(
            &mut tx,
            "address.removed",
            &a.address,
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(a)
    }
}
