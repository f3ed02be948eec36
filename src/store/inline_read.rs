//! SQLite reads that run on the calling thread.
//!
//! sqlx runs every SQLite statement on a worker thread of its own and hands the result back
//! over a channel: two context switches per statement. For short, hot reads under load (an
//! API mailbox page is ~50 µs of SQLite work) those switches cost more than the query, so
//! such reads take a connection from this small set and run inline. WAL mode means readers
//! never wait for the writer, so "inline" is a bounded, short block of the calling thread.
//! When every connection is in use, or SQLite reports it is busy (WAL recovery after a
//! crash), the caller falls back to its ordinary sqlx query; nothing here is the only way in.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub struct InlineReaders {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for InlineReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InlineReaders({})", self.conns.len())
    }
}

impl InlineReaders {
    /// `count` read-only connections to the SQLite file at `path`.
    pub fn open(path: &Path, count: usize) -> rusqlite::Result<InlineReaders> {
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            // Never writes: a bug that tried would fail instead of bypassing the writer.
            conn.pragma_update(None, "query_only", true)?;
            // Short: past this the caller takes the ordinary path instead of blocking.
            conn.busy_timeout(Duration::from_millis(5))?;
            conns.push(Mutex::new(conn));
        }
        Ok(InlineReaders {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `read` on a free connection. `None` when all are in use or SQLite was busy: the
    /// caller then runs its sqlx query.
    pub fn try_read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Option<rusqlite::Result<T>> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            // A poisoned lock only means a panic mid-read; the connection itself is fine.
            let guard = match self.conns[(start + i) % n].try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => continue,
            };
            return match read(&guard) {
                Err(e) if is_busy(&e) => None,
                other => Some(other),
            };
        }
        None
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hisp-inline-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("t.db")
    }

    #[test]
    fn reads_inline_and_refuses_writes() {
        let path = scratch("reads");
        let w = Connection::open(&path).unwrap();
        w.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (7);")
            .unwrap();
        let r = InlineReaders::open(&path, 2).unwrap();
        let x: i64 = r
            .try_read(|c| c.query_row("SELECT x FROM t", [], |row| row.get(0)))
            .unwrap()
            .unwrap();
        assert_eq!(x, 7);
        let write = r.try_read(|c| c.execute("INSERT INTO t VALUES (8)", []));
        assert!(matches!(write, Some(Err(_))), "{write:?}");
    }

    #[test]
    fn all_connections_in_use_means_fall_back() {
        let path = scratch("busy");
        Connection::open(&path).unwrap();
        let r = InlineReaders::open(&path, 1).unwrap();
        let inner = r.try_read(|_| Ok(r.try_read(|_| Ok(1)).is_none())).unwrap();
        assert!(inner.unwrap(), "a held connection is not handed out twice");
    }
}
