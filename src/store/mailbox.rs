//! Mailboxes of local addresses: messages delivered here, and notifications about our own.

use super::{Result, Store, now_ms};

/// A message to file for local recipients.
#[derive(Debug, Clone)]
pub struct NewMailboxMessage<'a> {
    pub message_id: &'a str,
    pub sender: &'a str,
    pub subject: &'a str,
    pub raw: &'a [u8],
}

impl Store {
    /// Files the message for every address in `addresses` in one transaction. The same
    /// message from the same sender is filed once per mailbox, so a sender that retries after
    /// a lost `250` does not create duplicates. Returns how many copies were new.
    pub async fn deliver_local(
        &self,
        addresses: &[String],
        m: &NewMailboxMessage<'_>,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut filed = 0;
        for address in addresses {
            filed += file_in(&mut tx, address, "message", m).await?;
        }
        tx.commit().await?;
        Ok(filed)
    }
}

/// Files one message of `kind` (`message`, `mdn` or `dsn`) for `address` inside the caller's
/// transaction; 0 when that mailbox already holds it (same Message-ID from the same sender)
/// or the address no longer exists.
pub async fn file_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    address: &str,
    kind: &str,
    m: &NewMailboxMessage<'_>,
) -> Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO mailbox (address_id, message_id, sender, subject, kind, size, raw, received_at)
         SELECT id, $1, $2, $3, $4, $5, $6, $7 FROM addresses WHERE address = $8
         ON CONFLICT DO NOTHING",
    )
    .bind(m.message_id)
    .bind(m.sender)
    .bind(m.subject)
    .bind(kind)
    .bind(m.raw.len() as i64)
    .bind(m.raw)
    .bind(now_ms())
    .bind(address)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// One mailbox entry without its content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MailboxItem {
    pub id: i64,
    pub message_id: String,
    pub sender: String,
    pub subject: String,
    pub kind: String,
    pub size: i64,
    /// Unix milliseconds.
    pub received_at: i64,
}

fn item_from_row(r: &sqlx::any::AnyRow) -> Result<MailboxItem> {
    use sqlx::Row;
    Ok(MailboxItem {
        id: r.try_get("id")?,
        message_id: r.try_get("message_id")?,
        sender: r.try_get("sender")?,
        subject: r.try_get("subject")?,
        kind: r.try_get("kind")?,
        size: r.try_get("size")?,
        received_at: r.try_get("received_at")?,
    })
}

impl Store {
    /// Entries of `address` with id greater than `after`, oldest first.
    pub async fn mailbox_list(
        &self,
        address: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MailboxItem>> {
        // `$n` names bind by position in rusqlite too, so both paths share one statement.
        const PAGE: &str =
            "SELECT m.id, m.message_id, m.sender, m.subject, m.kind, m.size, m.received_at
             FROM mailbox m JOIN addresses a ON a.id = m.address_id
             WHERE a.address = $1 AND m.id > $2 ORDER BY m.id LIMIT $3";
        if let Some(inline) = &self.inline
            && let Some(page) = inline.try_read(|c| {
                let mut st = c.prepare_cached(PAGE)?;
                let rows = st.query_map(rusqlite::params![address, after, limit], |r| {
                    Ok(MailboxItem {
                        id: r.get(0)?,
                        message_id: r.get(1)?,
                        sender: r.get(2)?,
                        subject: r.get(3)?,
                        kind: r.get(4)?,
                        size: r.get(5)?,
                        received_at: r.get(6)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
        {
            return Ok(page?);
        }
        let rows = sqlx::query(PAGE)
            .bind(address)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// Bytes held in `address`'s mailbox.
    pub async fn mailbox_usage(&self, address: &str) -> Result<i64> {
        use sqlx::Row;
        Ok(sqlx::query(
            "SELECT CAST(COALESCE(SUM(m.size), 0) AS BIGINT) AS used FROM mailbox m
             JOIN addresses a ON a.id = m.address_id WHERE a.address = $1",
        )
        .bind(address)
        .fetch_one(self.pool())
        .await?
        .try_get("used")?)
    }

    /// Entry `id` with the address whose mailbox holds it.
    pub async fn mailbox_entry(&self, id: i64) -> Result<Option<(String, MailboxItem)>> {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT a.address, m.id, m.message_id, m.sender, m.subject, m.kind, m.size, m.received_at
             FROM mailbox m JOIN addresses a ON a.id = m.address_id WHERE m.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some((r.try_get("address")?, item_from_row(&r)?)))
    }

    /// Deletes entry `id`; false if there was none.
    pub async fn mailbox_remove(&self, id: i64) -> Result<bool> {
        let n = sqlx::query("DELETE FROM mailbox WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// The stored message `id`.
    pub async fn mailbox_raw(&self, id: i64) -> Result<Option<Vec<u8>>> {
        use sqlx::Row;
        let row = sqlx::query("SELECT raw FROM mailbox WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("raw")?),
            None => None,
        })
    }
}
