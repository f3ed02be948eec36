//! Trust bundles (SPEC D26): where each comes from, its current certificates, the local domains
//! that trust it (incoming/outgoing), and how its refreshes went. A bundle's certificates are
//! anchors of every mapped domain, alongside the ones added by hand.
//!
//! Every change to a bundle commits together with its audit entry.

use serde::Serialize;
use sqlx::Row;

use super::anchors::Anchor;
use super::audit::{AuditEvent, append};
use super::{Backend, Result, Store, StoreError, flag, now_ms, on_duplicate, opt_text, redact_url};
use crate::certinfo::sha256_hex;

/// A local domain's use of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleDomain {
    pub domain: String,
    pub incoming: bool,
    pub outgoing: bool,
}

/// One certificate of a bundle, as stored.
#[derive(Debug, Clone)]
pub struct BundleCert {
    pub sha256: String,
    pub subject: String,
    pub not_after: i64,
    pub der: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredBundle {
    pub id: i64,
    pub name: String,
    pub url: Option<String>,
    pub file: Option<String>,
    /// SHA-256 of the pinned signing certificate, if the bundle must be signed.
    pub signer_sha256: Option<String>,
    #[serde(skip)]
    pub signer_der: Option<Vec<u8>>,
    pub refresh_secs: i64,
    pub content_sha256: Option<String>,
    pub anchor_count: i64,
    pub last_attempt_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    pub failure_count: i64,
    pub consecutive_failures: i64,
    pub created_at: i64,
    pub domains: Vec<BundleDomain>,
}

impl StoredBundle {
    /// The URL or file it is read from, for messages.
    pub fn source(&self) -> &str {
        self.url
            .as_deref()
            .or(self.file.as_deref())
            .unwrap_or("(no source)")
    }
}

/// A bundle to add.
#[derive(Debug, Clone)]
pub struct NewBundle<'a> {
    pub name: &'a str,
    pub url: Option<&'a str>,
    pub file: Option<&'a str>,
    pub signer_der: Option<&'a [u8]>,
    pub refresh_secs: i64,
    pub domains: &'a [BundleDomain],
}

/// The refresh counters of one bundle, for /metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleCounters {
    pub name: String,
    pub anchors: i64,
    pub failures_total: i64,
    pub consecutive_failures: i64,
    pub last_success_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
}

/// What storing a successful fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Replaced {
    /// Same certificate set as before: nothing but the timestamps written.
    Unchanged,
    Updated,
}

const SELECT: &str = "SELECT id, name, url, file, signer_der, refresh_secs, content_sha256,
    anchor_count, last_attempt_at, last_success_at, last_error, failure_count,
    consecutive_failures, created_at FROM bundles";

fn from_row(r: &sqlx::any::AnyRow) -> Result<StoredBundle> {
    let signer_der: Option<Vec<u8>> = r.try_get("signer_der")?;
    Ok(StoredBundle {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        url: opt_text(r, "url")?,
        file: opt_text(r, "file")?,
        signer_sha256: signer_der.as_deref().map(sha256_hex),
        signer_der,
        refresh_secs: r.try_get("refresh_secs")?,
        content_sha256: opt_text(r, "content_sha256")?,
        anchor_count: r.try_get("anchor_count")?,
        last_attempt_at: r.try_get("last_attempt_at")?,
        last_success_at: r.try_get("last_success_at")?,
        last_error: opt_text(r, "last_error")?,
        failure_count: r.try_get("failure_count")?,
        consecutive_failures: r.try_get("consecutive_failures")?,
        created_at: r.try_get("created_at")?,
        domains: Vec::new(),
    })
}

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("no bundle named {name} (see `hisp bundle list`)"))
}

async fn insert_certs(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    bundle_id: i64,
    certs: &[BundleCert],
) -> Result<()> {
    for c in certs {
        sqlx::query(
            "INSERT INTO bundle_certs (bundle_id, sha256, subject_dn, not_after_secs, cert_der)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(bundle_id)
        .bind(&c.sha256)
        .bind(&c.subject)
        .bind(c.not_after)
        .bind(c.der.as_slice())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Adds a bundle with the certificates of its first fetch, its domain mappings and the
    /// audit entry, all or nothing.
    pub async fn add_bundle(
        &self,
        new: &NewBundle<'_>,
        content_sha256: &str,
        certs: &[BundleCert],
        actor: &str,
    ) -> Result<StoredBundle> {
        let mut domain_ids = Vec::new();
        for d in new.domains {
            domain_ids.push((self.require_domain(&d.domain).await?.id, d));
        }
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let id: i64 = on_duplicate(
            sqlx::query(
                "INSERT INTO bundles (name, url, file, signer_der, refresh_secs, content_sha256,
                    anchor_count, last_attempt_at, last_success_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8) RETURNING id",
            )
            .bind(new.name)
            .bind(new.url)
            .bind(new.file)
            .bind(new.signer_der)
            .bind(new.refresh_secs)
            .bind(content_sha256)
            .bind(certs.len() as i64)
            .bind(now)
            .fetch_one(&mut *tx)
            .await,
            || {
                format!(
                    "a bundle named {} already exists (see `hisp bundle list`; remove it first to change it)",
                    new.name
                )
            },
        )?
        .try_get("id")?;
        for (domain_id, d) in &domain_ids {
            sqlx::query(
                "INSERT INTO bundle_domains (bundle_id, domain_id, incoming, outgoing)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(domain_id)
            .bind(i64::from(d.incoming))
            .bind(i64::from(d.outgoing))
            .execute(&mut *tx)
            .await?;
        }
        insert_certs(&mut tx, id, certs).await?;
        let detail = serde_json::json!({
            "source": new.url.map(redact_url).or(new.file.map(str::to_string)),
            "signer_sha256": new.signer_der.map(sha256_hex),
            "domains": new.domains,
            "anchors": certs.len(),
            "content_sha256": content_sha256,
        });
        append(
            &mut tx,
            self.backend(),
            &AuditEvent {
                actor,
                event: "bundle.added",
                subject: new.name,
                outcome: "ok",
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        self.bundle(new.name).await
    }

    /// One bundle with its domains, or NotFound.
    pub async fn bundle(&self, name: &str) -> Result<StoredBundle> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE name = $1")))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| not_found(name))?;
        let mut b = from_row(&row)?;
        b.domains = self.bundle_domains(b.id).await?;
        Ok(b)
    }

    pub async fn list_bundles(&self) -> Result<Vec<StoredBundle>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY name")))
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut b = from_row(r)?;
            b.domains = self.bundle_domains(b.id).await?;
            out.push(b);
        }
        Ok(out)
    }

    async fn bundle_domains(&self, bundle_id: i64) -> Result<Vec<BundleDomain>> {
        sqlx::query(
            "SELECT d.name, m.incoming, m.outgoing FROM bundle_domains m
             JOIN domains d ON d.id = m.domain_id WHERE m.bundle_id = $1 ORDER BY d.name",
        )
        .bind(bundle_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(BundleDomain {
                domain: r.try_get("name")?,
                incoming: flag(r, "incoming")?,
                outgoing: flag(r, "outgoing")?,
            })
        })
        .collect()
    }

    /// Removes a bundle; its anchors go with it.
    pub async fn remove_bundle(&self, name: &str, actor: &str) -> Result<StoredBundle> {
        let b = self.bundle(name).await?;
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query("DELETE FROM bundles WHERE id = $1")
            .bind(b.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(not_found(name));
        }
        append(
            &mut tx,
            self.backend(),
            &AuditEvent {
                actor,
                event: "bundle.removed",
                subject: name,
                outcome: "ok",
                detail: serde_json::json!({
                    "source": redact_url(b.source()),
                    "anchors": b.anchor_count,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(b)
    }

    /// Records a successful fetch. The certificates are replaced only when the content hash
    /// differs from the stored one, and then in the same transaction as the audit entry, so a
    /// reader sees the old set or the new one, never a mix.
    pub async fn record_bundle_success(
        &self,
        name: &str,
        content_sha256: &str,
        certs: &[BundleCert],
        actor: &str,
    ) -> Result<Replaced> {
        let mut tx = self.begin_write().await?;
        // Two nodes refreshing the same bundle at once must not interleave the replacement.
        // (SQLite's write transaction is already exclusive.)
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let sql = format!("SELECT id, content_sha256 FROM bundles WHERE name = $1{lock}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found(name))?;
        let id: i64 = row.try_get("id")?;
        let before = opt_text(&row, "content_sha256")?;
        let now = now_ms();
        let replaced = if before.as_deref() == Some(content_sha256) {
            Replaced::Unchanged
        } else {
            sqlx::query("DELETE FROM bundle_certs WHERE bundle_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            insert_certs(&mut tx, id, certs).await?;
            append(
                &mut tx,
                self.backend(),
                &AuditEvent {
                    actor,
                    event: "bundle.changed",
                    subject: name,
                    outcome: "ok",
                    detail: serde_json::json!({
                        "previous_sha256": before,
                        "content_sha256": content_sha256,
                        "anchors": certs.len(),
                    }),
                },
            )
            .await?;
            Replaced::Updated
        };
        sqlx::query(
            "UPDATE bundles SET content_sha256 = $1, anchor_count = $2, last_attempt_at = $3,
                last_success_at = $3, last_error = NULL, consecutive_failures = 0
             WHERE id = $4",
        )
        .bind(content_sha256)
        .bind(certs.len() as i64)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(replaced)
    }

    /// Records a failed fetch or verification; the certificates stay as they were.
    pub async fn record_bundle_failure(&self, name: &str, error: &str, actor: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE bundles SET last_attempt_at = $1, last_error = $2,
                failure_count = failure_count + 1, consecutive_failures = consecutive_failures + 1
             WHERE name = $3",
        )
        .bind(now_ms())
        .bind(error)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(not_found(name));
        }
        append(
            &mut tx,
            self.backend(),
            &AuditEvent {
                actor,
                event: "bundle.refresh_failed",
                subject: name,
                outcome: "failed",
                detail: serde_json::json!({"error": error}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Per-bundle refresh counters, for the metrics endpoint.
    pub async fn bundle_counters(&self) -> Result<Vec<BundleCounters>> {
        self.list_bundles().await.map(|list| {
            list.into_iter()
                .map(|b| BundleCounters {
                    name: b.name,
                    anchors: b.anchor_count,
                    failures_total: b.failure_count,
                    consecutive_failures: b.consecutive_failures,
                    last_success_at: b.last_success_at,
                    last_attempt_at: b.last_attempt_at,
                })
                .collect()
        })
    }

    /// The anchors bundles give local domains (all, or `domain`'s), marked with the bundle's
    /// name. They have no anchor id: they leave with their bundle (`hisp bundle remove`).
    pub async fn list_bundle_anchors(&self, domain: Option<&str>) -> Result<Vec<Anchor>> {
        let base = "SELECT b.name AS bundle, d.name AS domain, c.sha256, c.subject_dn,
                c.not_after_secs, c.cert_der, m.incoming, m.outgoing, b.created_at
            FROM bundle_certs c
            JOIN bundles b ON b.id = c.bundle_id
            JOIN bundle_domains m ON m.bundle_id = c.bundle_id
            JOIN domains d ON d.id = m.domain_id";
        let rows = match domain {
            Some(name) => {
                let sql = format!("{base} WHERE d.name = $1 ORDER BY b.name, c.sha256");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(name)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                let sql = format!("{base} ORDER BY d.name, b.name, c.sha256");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(Anchor {
                    id: 0,
                    domain: r.try_get("domain")?,
                    sha256: r.try_get("sha256")?,
                    subject: r.try_get("subject_dn")?,
                    not_after: r.try_get("not_after_secs")?,
                    incoming: flag(r, "incoming")?,
                    outgoing: flag(r, "outgoing")?,
                    created_at: r.try_get("created_at")?,
                    bundle: Some(r.try_get("bundle")?),
                    cert_der: r.try_get("cert_der")?,
                })
            })
            .collect()
    }

    /// Every anchor trust decisions use: those added by hand and those from bundles.
    pub async fn list_trust_anchors(&self, domain: Option<&str>) -> Result<Vec<Anchor>> {
        let mut all = self.list_anchors(domain).await?;
        all.extend(self.list_bundle_anchors(domain).await?);
        Ok(all)
    }
}
