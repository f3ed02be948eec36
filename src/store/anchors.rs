//! Trust anchors per local domain, in an incoming set (who may send to us) and an outgoing
//! set (whom we may send to) — SPEC D20.

use super::{Result, Store, StoreError, flag, now_ms, on_duplicate};
use serde::Serialize;
use sqlx::Row;

/// What `add_anchors` did with one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorChange {
    Added,
    /// Already anchored; its incoming/outgoing flags now include the requested ones.
    Widened,
}

#[derive(Debug, Clone, Serialize)]
pub struct Anchor {
    pub id: i64,
    pub domain: String,
    pub sha256: String,
    pub subject: String,
    pub not_after: i64,
    pub incoming: bool,
    pub outgoing: bool,
    pub created_at: i64,
    /// The trust bundle this anchor comes from (its `id` is then 0); absent for anchors
    /// added by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    #[serde(skip)]
    pub cert_der: Vec<u8>,
}

const SELECT: &str = "SELECT t.id, d.name AS domain, t.sha256, t.subject_dn, t.not_after_secs,
    t.incoming, t.outgoing, t.created_at, t.cert_der
    FROM anchors t JOIN domains d ON d.id = t.domain_id";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Anchor> {
    Ok(Anchor {
        id: r.try_get("id")?,
        domain: r.try_get("domain")?,
        sha256: r.try_get("sha256")?,
        subject: r.try_get("subject_dn")?,
        not_after: r.try_get("not_after_secs")?,
        incoming: flag(r, "incoming")?,
        outgoing: flag(r, "outgoing")?,
        created_at: r.try_get("created_at")?,
        bundle: None,
        cert_der: r.try_get("cert_der")?,
    })
}

impl Store {
    /// Adds certificates as anchors of `domain`, all or none. A certificate already anchored
    /// with fewer directions is widened to the union; one already anchored with every
    /// requested direction is a Conflict (nothing is written).
    pub async fn add_anchors(
        &self,
        domain: &str,
        certs: &[(crate::certinfo::CertInfo, Vec<u8>)],
        incoming: bool,
        outgoing: bool,
    ) -> Result<Vec<(Anchor, AnchorChange)>> {
        let d = self.require_domain(domain).await?;
        let mut tx = self.begin_write().await?;
        let mut changes = Vec::new();
        for (info, der) in certs {
            let existing = sqlx::query(
                "SELECT id, incoming, outgoing FROM anchors WHERE domain_id = $1 AND sha256 = $2",
            )
            .bind(d.id)
            .bind(&info.sha256)
            .fetch_optional(&mut *tx)
            .await?;
            let change = match existing {
                None => {
                    on_duplicate(
                        sqlx::query(
                            "INSERT INTO anchors (domain_id, sha256, subject_dn, not_after_secs,
                                cert_der, incoming, outgoing, created_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(d.id)
                        .bind(&info.sha256)
                        .bind(&info.subject)
                        .bind(info.not_after)
                        .bind(der.as_slice())
                        .bind(i64::from(incoming))
                        .bind(i64::from(outgoing))
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await,
                        || format!("anchor {} was added concurrently for {domain}", info.sha256),
                    )?;
                    AnchorChange::Added
                }
                Some(row) => {
                    let (had_in, had_out) = (flag(&row, "incoming")?, flag(&row, "outgoing")?);
                    if (had_in || !incoming) && (had_out || !outgoing) {
                        return Err(StoreError::Conflict(format!(
                            "anchor {} is already present for {domain} (id {})",
                            info.sha256,
                            row.try_get::<i64, _>("id")?
                        )));
                    }
                    sqlx::query("UPDATE anchors SET incoming = $1, outgoing = $2 WHERE id = $3")
                        .bind(i64::from(had_in || incoming))
                        .bind(i64::from(had_out || outgoing))
                        .bind(row.try_get::<i64, _>("id")?)
                        .execute(&mut *tx)
                        .await?;
                    AnchorChange::Widened
                }
            };
            let sql = format!("{SELECT} WHERE t.domain_id = $1 AND t.sha256 = $2");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(d.id)
                .bind(&info.sha256)
                .fetch_one(&mut *tx)
                .await?;
            let anchor = from_row(&row)?;
            let event = match change {
                AnchorChange::Added => "anchor.added",
                AnchorChange::Widened => "anchor.widened",
            };
            self.audit_change(
                &mut tx,
                event,
                domain,
                serde_json::json!({"id": anchor.id, "sha256": anchor.sha256, "subject": anchor.subject,
                       "incoming": anchor.incoming, "outgoing": anchor.outgoing}),
            )
            .await?;
            changes.push((anchor, change));
        }
        tx.commit().await?;
        Ok(changes)
    }

    pub async fn list_anchors(&self, domain: Option<&str>) -> Result<Vec<Anchor>> {
        let rows = match domain {
            Some(name) => {
                self.require_domain(name).await?;
                let sql = format!("{SELECT} WHERE d.name = $1 ORDER BY t.id");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(name)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                let sql = format!("{SELECT} ORDER BY d.name, t.id");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(from_row).collect()
    }

    pub async fn remove_anchor(&self, id: i64) -> Result<Anchor> {
        let sql = format!("{SELECT} WHERE t.id = $1");
        let anchor = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(from_row)
            .transpose()?
            .ok_or_else(|| {
                StoreError::NotFound(format!("no anchor with id {id} (see `hisp anchor list`)"))
            })?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM anchors WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.audit_change(
            &mut tx,
            "anchor.removed",
            &anchor.domain,
            serde_json::json!({"id": anchor.id, "sha256": anchor.sha256, "subject": anchor.subject}),
        )
        .await?;
        tx.commit().await?;
        Ok(anchor)
    }
}
