//! Local domains: the domains this HISP receives mail for and sends mail from.

use super::{Result, Store, StoreError, now_ms, on_duplicate};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Domain {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub addresses: i64,
    pub certificates: i64,
    pub anchors: i64,
}

const SELECT: &str = "SELECT d.id, d.name, d.created_at,
    (SELECT COUNT(*) FROM addresses a WHERE a.domain_id = d.id) AS n_addresses,
    (SELECT COUNT(*) FROM local_certs c WHERE c.domain_id = d.id) AS n_certs,
    (SELECT COUNT(*) FROM anchors t WHERE t.domain_id = d.id) AS n_anchors
    FROM domains d";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Domain> {
    Ok(Domain {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        addresses: r.try_get("n_addresses")?,
        certificates: r.try_get("n_certs")?,
        anchors: r.try_get("n_anchors")?,
    })
}

impl Store {
    /// `name` must already be normalised (see `address::normalize_domain`).
    pub async fn add_domain(&self, name: &str) -> Result<Domain> {
        let mut tx = self.begin_write().await?;
        on_duplicate(
            sqlx::query("INSERT INTO domains (name, created_at) VALUES ($1, $2)")
                .bind(name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await,
            || format!("domain {name} already exists"),
        )?;
        self.audit_change(&mut tx, "domain.added", name, serde_json::json!({}))
            .await?;
        tx.commit().await?;
        self.domain(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("domain {name} vanished after insert")))
    }

    pub async fn domain(&self, name: &str) -> Result<Option<Domain>> {
        let sql = format!("{SELECT} WHERE d.name = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// The domain, or a NotFound error that tells the admin how to add it.
    pub async fn require_domain(&self, name: &str) -> Result<Domain> {
        self.domain(name).await?.ok_or_else(|| {
            StoreError::NotFound(format!(
                "domain {name} is not a local domain (add it with `hisp domain add {name}`)"
            ))
        })
    }

    pub async fn list_domains(&self) -> Result<Vec<Domain>> {
        let sql = format!("{SELECT} ORDER BY d.name");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Removes a domain. Unless `force`, refuses while addresses, keys or anchors remain,
    /// because removing them with it would silently lose mailboxes and keys.
    pub async fn remove_domain(&self, name: &str, force: bool) -> Result<Domain> {
        let d = self.require_domain(name).await?;
        if !force && (d.addresses > 0 || d.certificates > 0 || d.anchors > 0) {
            return Err(StoreError::Conflict(format!(
                "domain {name} still has {} address(es), {} certificate(s) and {} anchor(s); remove them first or use --force to delete everything under it",
                d.addresses, d.certificates, d.anchors
            )));
        }
        // Re-check emptiness in the DELETE itself: an address added since the count above
        // must not be cascade-deleted without --force.
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "DELETE FROM domains WHERE id = $1 AND ($2 = 1 OR (
                NOT EXISTS (SELECT 1 FROM addresses WHERE domain_id = $1)
                AND NOT EXISTS (SELECT 1 FROM local_certs WHERE domain_id = $1)
                AND NOT EXISTS (SELECT 1 FROM anchors WHERE domain_id = $1)))",
        )
        .bind(d.id)
        .bind(i64::from(force))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "domain {name} changed while being removed; run the command again"
            )));
        }
        self.audit_change(
            &mut tx,
            "domain.removed",
            &d.name,
            serde_json::json!({"force": force}),
        )
        .await?;
        tx.commit().await?;
        Ok(d)
    }
}
