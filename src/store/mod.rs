//! The one SQL store: SQLite (one node) or PostgreSQL (several nodes), chosen by URL.
//!
//! Queries are runtime strings over sqlx's `Any` driver with `$n` placeholders, which both
//! backends accept. Integers are BIGINT/INTEGER everywhere (booleans too, as 0/1) because the
//! `Any` driver decodes those identically on both. One file per concern.
//!
//! On a SQLite file a few hot reads (a mailbox page, a token look-up) first try a rusqlite
//! connection on the calling thread (`inline_read`), because sqlx's hand-off to its SQLite
//! worker thread costs more than those queries; they fall back to the sqlx query.

pub mod addresses;
pub mod anchors;
pub mod audit;
pub mod bundles;
pub mod domains;
mod inline_read;
pub mod local_certs;
pub mod mailbox;
pub mod meta;
pub mod queue;
pub mod tokens;
pub mod tracking;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Connection, Executor, Row};
use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("database migration failed on {url}: {reason}")]
    Migrate { url: String, reason: String },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the store holds an unexpected value ({0}); was it edited by hand?")]
    Corrupt(String),
    /// Reported by the queue writer for a group whose commit ran out of space.
    #[error("the database has no space left ({0}); free disk space or raise the quota")]
    DiskFull(String),
}

impl StoreError {
    /// True when a unique constraint refused the write (a duplicate).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }

    /// True when the database refused the write for lack of space: SQLITE_FULL (13, also
    /// when `PRAGMA max_page_count` is reached) or PostgreSQL's `disk_full` (53100). SMTP
    /// answers such a message `452 4.3.1`, which tells the client to try again later.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull(_) => true,
            StoreError::Db(sqlx::Error::Database(e)) => match e.code().as_deref() {
                Some("53100") => true,
                // SQLite reports its extended code; the primary code is the low byte.
                Some(code) => code.parse::<i32>().is_ok_and(|c| c & 0xff == 13),
                None => false,
            },
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Turns a unique-constraint failure into `Conflict(message())`, the error admins can act on;
/// any other failure passes through.
pub(crate) fn on_duplicate<T>(
    res: std::result::Result<T, sqlx::Error>,
    message: impl FnOnce() -> String,
) -> Result<T> {
    match res.map_err(StoreError::from) {
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(message())),
        other => other,
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    url: String,
    /// The group-commit writer of `enqueue`, started on first use.
    group: std::sync::Arc<std::sync::OnceLock<queue::GroupCommit>>,
    /// Who the admin changes made through this handle are audited as (see `acting_as`).
    actor: Option<std::sync::Arc<str>>,
    /// Local addresses recently found in the store (see `is_local_address`).
    local_seen:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// Rung after a commit that queued mail, so idle delivery workers of this process start
    /// at once instead of at their next poll (other nodes still find it by polling).
    queued: std::sync::Arc<tokio::sync::Notify>,
    /// SQLite file stores only: connections for hot reads that run on the calling thread.
    inline: Option<std::sync::Arc<inline_read::InlineReaders>>,
}

pub use crate::clock::{now_ms, now_secs};

/// The URL with any password replaced, safe for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the last '@' before the path, so a password containing '/' or
    // '@' is still treated as userinfo.
    let (authority, tail) = match rest.rfind('@') {
        Some(at) => {
            let path_start = rest[at..].find('/').map_or(rest.len(), |i| at + i);
            rest.split_at(path_start)
        }
        None => rest.split_at(rest.find('/').unwrap_or(rest.len())),
    };
    let without_userinfo = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_string(),
    };
    // libpq-style `?password=...` parameters too.
    match without_userinfo.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => without_userinfo,
    }
}

/// Creates the database file's directory (0700) and the file itself (0600) before SQLite does:
/// the store holds password hashes, sealed keys and decrypted mail, and SQLite gives its WAL
/// and shared-memory files the main file's mode.
fn prepare_private_file(file: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", file.display())),
    }
}

fn migrations(backend: Backend) -> Migrator {
    let scripts = match backend {
        Backend::Sqlite => [
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_bundles.sql"),
            include_str!("../../migrations/sqlite/0003_mailbox_page.sql"),
        ],
        Backend::Postgres => [
            include_str!("../../migrations/postgres/0001_init.sql"),
            include_str!("../../migrations/postgres/0002_bundles.sql"),
            include_str!("../../migrations/postgres/0003_mailbox_page.sql"),
        ],
    };
    let names = ["init", "bundles", "mailbox_page"];
    Migrator::with_migrations(
        scripts
            .into_iter()
            .zip(names)
            .zip(1..)
            .map(|((sql, name), version)| {
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}

impl Store {
    /// Opens (creating an SQLite file and its directory if needed) and migrates.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let shown = redact_url(url);
        let open_err = |reason: String| StoreError::Open {
            url: shown.clone(),
            reason,
        };
        let mut inline_path = None;
        let (backend, connect_url) = if url.starts_with("sqlite:") {
            // Ask sqlx where the file is, so percent-encoding and absolute paths are read the
            // same way here as when it opens the file.
            let parsed =
                SqliteConnectOptions::from_str(url).map_err(|e| open_err(e.to_string()))?;
            let file = parsed.get_filename();
            let in_memory = file.as_os_str() == ":memory:" || url.contains("mode=memory");
            if file.as_os_str().is_empty() && !in_memory {
                return Err(open_err(
                    "no file name; use e.g. sqlite://data/hisp.db".into(),
                ));
            }
            if !in_memory {
                prepare_private_file(file).map_err(open_err)?;
                inline_path = Some(file.to_path_buf());
            }
            let with_mode = if url.contains("mode=") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, with_mode)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(open_err(
                "unsupported scheme; use sqlite:// or postgres://".into(),
            ));
        };

        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(std::time::Duration::from_secs(30));
        if backend == Backend::Sqlite {
            options = options
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // WAL lets readers (admin CLI, API) run while the server writes; foreign keys
                        // are per connection in SQLite; synchronous stays FULL so a commit that we
                        // acknowledge with 250 survives power loss.
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        Ok(())
                    })
                })
                // After SQLITE_FULL (a full disk) SQLite may already have rolled the transaction
                // back; sqlx's ROLLBACK then fails and that connection keeps counting an open
                // transaction, so every later BEGIN on it fails ("non-zero transaction depth")
                // even after space returns. Such a connection is closed instead of handed out.
                .before_acquire(|conn, _meta| {
                    Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
                });
        }
        // One direct attempt first: the pool retries refused connections until its acquire
        // timeout, which would leave an admin staring at a silent CLI for 30 seconds.
        sqlx::AnyConnection::connect(&connect_url)
            .await
            .map_err(|e| open_err(e.to_string()))?
            .close()
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let pool = options
            .connect(&connect_url)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        // One per core, as tokio starts one runtime thread per core: a read that runs
        // inline on each of them at once still finds a free connection.
        let inline = match inline_path {
            Some(path) => Some(std::sync::Arc::new(
                inline_read::InlineReaders::open(
                    &path,
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                )
                .map_err(|e| open_err(e.to_string()))?,
            )),
            None => None,
        };
        let store = Store {
            pool,
            backend,
            url: shown,
            group: Default::default(),
            actor: None,
            local_seen: Default::default(),
            queued: Default::default(),
            inline,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// This handle with every read going through sqlx, so tests can check that the inline
    /// path and the fallback it takes under load answer the same.
    #[doc(hidden)]
    pub fn without_inline_reads(&self) -> Store {
        Store {
            inline: None,
            ..self.clone()
        }
    }

    /// True when hot reads run inline on this handle (SQLite files only).
    #[doc(hidden)]
    pub fn has_inline_reads(&self) -> bool {
        self.inline.is_some()
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = migrations(self.backend);
        // sqlx locks migrations on PostgreSQL but not on SQLite: two processes starting on a
        // fresh file (the server and an admin command) can race to create the schema. The
        // loser's transaction rolls back; trying again then finds the schema applied.
        let mut attempt = 0;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(_) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => {
                    return Err(StoreError::Migrate {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    /// A transaction that will write. On SQLite it takes the write lock up front (BEGIN
    /// IMMEDIATE): a deferred transaction that reads and then writes can fail with BUSY when
    /// another writer committed in between, without waiting for the busy timeout.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// This store, with every admin change made through it (domains, addresses, keys,
    /// anchors, tokens, queue actions) audited as `actor` in the change's own transaction:
    /// the change and its audit entry commit together or not at all.
    pub fn acting_as(&self, actor: &str) -> Store {
        Store {
            actor: Some(actor.into()),
            ..self.clone()
        }
    }

    /// Appends the audit entry of an admin change inside its transaction, when this handle
    /// acts for someone.
    pub(crate) async fn audit_change(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        event: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        if let Some(actor) = &self.actor {
            audit::append(
                tx,
                self.backend,
                &audit::AuditEvent {
                    actor,
                    event,
                    subject,
                    outcome: "ok",
                    detail,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Wakes one idle delivery worker of this process: call after committing queued mail.
    pub fn wake_workers(&self) {
        self.queued.notify_one();
    }

    /// Completes at the next `wake_workers`.
    pub async fn queued(&self) {
        self.queued.notified().await;
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL with secrets removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Reads an optional text column.
pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

pub(crate) fn flag(row: &AnyRow, col: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://data/hisp.db"), "sqlite://data/hisp.db");
        assert_eq!(redact_url("postgres://u:a/b@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw&sslmode=disable"),
            "postgres://h/db?user=u&password=***&sslmode=disable"
        );
    }
}
