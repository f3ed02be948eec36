//! Certificates of local addresses and domains, each with its sealed private key.

use super::{Result, Store, StoreError, flag, now_ms, on_duplicate};
use serde::Serialize;
use sqlx::Row;

/// A new row; `key_sealed` comes from `keys::seal_private_key`.
pub struct NewLocalCert<'a> {
    pub subject: &'a str,
    pub binding: &'a str,
    pub domain: &'a str,
    pub address: Option<&'a str>,
    pub info: &'a crate::certinfo::CertInfo,
    pub cert_der: &'a [u8],
    pub chain_pem: &'a str,
    pub key_sealed: &'a [u8],
}

#[derive(Debug, Clone, Serialize)]
pub struct LocalCert {
    pub id: i64,
    pub subject: String,
    pub binding: String,
    pub domain: String,
    pub sha256: String,
    pub subject_dn: String,
    pub issuer_dn: String,
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub can_sign: bool,
    pub can_encrypt: bool,
    pub created_at: i64,
    #[serde(skip)]
    pub cert_der: Vec<u8>,
    #[serde(skip)]
    pub chain_pem: String,
    #[serde(skip)]
    pub key_sealed: Vec<u8>,
}

const SELECT: &str = "SELECT c.id, c.subject, c.binding, d.name AS domain, c.sha256, c.subject_dn,
    c.issuer_dn, c.serial, c.not_before_secs, c.not_after_secs, c.can_sign, c.can_encrypt,
    c.created_at, c.cert_der, c.chain_pem, c.key_sealed
    FROM local_certs c JOIN domains d ON d.id = c.domain_id";

fn from_row(r: &sqlx::any::AnyRow) -> Result<LocalCert> {
    Ok(LocalCert {
        id: r.try_get("id")?,
        subject: r.try_get("subject")?,
        binding: r.try_get("binding")?,
        domain: r.try_get("domain")?,
        sha256: r.try_get("sha256")?,
        subject_dn: r.try_get("subject_dn")?,
        issuer_dn: r.try_get("issuer_dn")?,
        serial: r.try_get("serial")?,
        not_before: r.try_get("not_before_secs")?,
        not_after: r.try_get("not_after_secs")?,
        can_sign: flag(r, "can_sign")?,
        can_encrypt: flag(r, "can_encrypt")?,
        created_at: r.try_get("created_at")?,
        cert_der: r.try_get("cert_der")?,
        chain_pem: r.try_get("chain_pem")?,
        key_sealed: r.try_get("key_sealed")?,
    })
}

impl Store {
    pub async fn add_local_cert(&self, new: &NewLocalCert<'_>) -> Result<LocalCert> {
        let domain = self.require_domain(new.domain).await?;
        let address_id = match new.address {
            Some(a) => Some(self.require_address(a).await?.id),
            None => None,
        };
        let mut tx = self.begin_write().await?;
        on_duplicate(
            sqlx::query(
            "INSERT INTO local_certs (domain_id, address_id, subject, binding, sha256, subject_dn,
                issuer_dn, serial, not_before_secs, not_after_secs, can_sign, can_encrypt, cert_der,
                chain_pem, key_sealed, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(domain.id)
        .bind(address_id)
        .bind(new.subject)
        .bind(new.binding)
        .bind(&new.info.sha256)
        .bind(&new.info.subject)
        .bind(&new.info.issuer)
        .bind(&new.info.serial)
        .bind(new.info.not_before)
        .bind(new.info.not_after)
        .bind(i64::from(new.info.can_sign))
        .bind(i64::from(new.info.can_encrypt))
        .bind(new.cert_der)
        .bind(new.chain_pem)
        .bind(new.key_sealed)
        .bind(now_ms())
        .execute(&mut *tx)
        .await,
            || format!(
                "certificate {} is already imported",
                new.info.sha256
            ),
        )?;
        self.audit_change(
            &mut tx,
            "key.imported",
            new.subject,
            serde_json::json!({"sha256": new.info.sha256, "binding": new.binding,
                "issuer": new.info.issuer, "not_after": new.info.not_after,
                "chain": new.chain_pem.matches("-----BEGIN CERTIFICATE-----").count()}),
        )
        .await?;
        tx.commit().await?;
        self.find_local_certs(&new.info.sha256)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound("certificate vanished after insert".into()))
    }

    pub async fn list_local_certs(&self) -> Result<Vec<LocalCert>> {
        let sql = format!("{SELECT} ORDER BY c.subject, c.not_after_secs DESC");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Certificates whose subject (address or domain) equals `key`, or whose SHA-256 starts
    /// with it (at least 8 hex digits, so a short typo can't match by accident).
    pub async fn find_local_certs(&self, key: &str) -> Result<Vec<LocalCert>> {
        let key = key.trim().to_ascii_lowercase();
        let is_hex_prefix =
            key.len() >= 8 && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
        let pattern = if is_hex_prefix {
            format!("{key}%")
        } else {
            String::new()
        };
        let sql = format!(
            "{SELECT} WHERE c.subject = $1 OR c.sha256 LIKE $2 ORDER BY c.not_after_secs DESC"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&key)
            .bind(pattern)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    pub async fn remove_local_cert(&self, sha256: &str) -> Result<LocalCert> {
        let found = self.find_local_certs(sha256).await?;
        let cert = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(StoreError::NotFound(format!(
                    "no local certificate matches {sha256}"
                )));
            }
            many => {
                return Err(StoreError::Conflict(format!(
                    "{sha256} matches {} certificates; give the full sha256",
                    many.len()
                )));
            }
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM local_certs WHERE id = $1")
            .bind(cert.id)
            .execute(&mut *tx)
            .await?;
        self.audit_change(
            &mut tx,
            "key.removed",
            &cert.subject,
            serde_json::json!({"sha256": cert.sha256}),
        )
        .await?;
        tx.commit().await?;
        Ok(cert)
    }

    pub async fn count_local_certs(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM local_certs")
            .fetch_one(self.pool())
            .await?
            .try_get("n")?)
    }
}
