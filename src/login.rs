//! Checking credentials against the store — SMTP AUTH and API Basic passwords, API bearer
//! tokens — and auditing the outcome. The hashing itself is in `auth` (pure).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::address::DirectAddress;
use crate::store::Store;
use crate::store::tokens::Token;

/// A syntactically valid argon2id hash of a random password, checked against when the user
/// does not exist so that unknown and known users take the same time.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        crate::auth::hash_password("decoy password that matches nothing").unwrap_or_default()
    })
}

/// The normalised address if `password` is right for `user`. The argon2 check runs on the
/// password threads, off the reactor; unknown users are checked against a decoy so they take
/// as long.
pub async fn check_password(store: &Store, user: &str, password: String) -> Option<String> {
    let address = DirectAddress::parse(user).ok()?;
    let stored = match store.address(address.as_str()).await {
        Ok(a) => a.and_then(|a| a.password_hash),
        Err(e) => {
            eprintln!("hisp: login: store lookup failed: {e}");
            None
        }
    };
    let (done, answer) = tokio::sync::oneshot::channel();
    let job: PasswordJob = Box::new(move || {
        let ok = match stored {
            Some(hash) => crate::auth::verify_password(&password, &hash),
            None => {
                crate::auth::verify_password(&password, decoy_hash());
                false
            }
        };
        let _ = done.send(ok);
    });
    if password_threads().send(job).is_err() {
        eprintln!("hisp: login: no password-check thread is running");
        return None;
    }
    let ok = answer.await.unwrap_or(false);
    ok.then(|| address.as_str().to_string())
}

type PasswordJob = Box<dyn FnOnce() + Send>;

/// Password checks run on a few threads of their own, one per core, not on tokio's blocking
/// pool: each argon2 check takes 19 MiB, and glibc keeps that memory in the arena of every
/// thread that ever ran one, so with the blocking pool's many threads the process grew by
/// 19 MiB per concurrent login (480 MiB with 64 clients in `hisp bench`). The checks are
/// CPU-bound, so more threads than cores would not make them faster anyway.
fn password_threads() -> &'static std::sync::mpsc::Sender<PasswordJob> {
    static JOBS: std::sync::OnceLock<std::sync::mpsc::Sender<PasswordJob>> =
        std::sync::OnceLock::new();
    JOBS.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<PasswordJob>();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..threads {
            let queue = std::sync::Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("hisp-auth-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is released before the job runs.
                        let next = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                eprintln!("hisp: cannot start a password-check thread: {e}");
            }
        }
        jobs
    })
}

/// The live token `presented` stands for, if any. The lookup is by hash; the stored hash is
/// then compared in constant time so no comparison in our code leaks how much matched.
pub async fn check_token(
    store: &Store,
    presented: &str,
) -> Result<Option<Token>, crate::store::StoreError> {
    let hash = crate::auth::token_hash(presented);
    Ok(match store.token_by_hash(&hash).await? {
        Some((token, stored))
            if crate::auth::constant_time_eq(stored.as_bytes(), hash.as_bytes()) =>
        {
            Some(token)
        }
        _ => None,
    })
}

/// Records a login attempt. The user name is kept (it is what an investigator needs); the
/// password never is. A store failure is logged, not fatal: the login itself was decided.
pub async fn audit(store: &Store, actor: &str, user: &str, ok: bool, via: &str) {
    let event = crate::store::audit::AuditEvent {
        actor,
        event: "login",
        subject: user,
        outcome: if ok { "ok" } else { "denied" },
        detail: serde_json::json!({ "via": via }),
    };
    if let Err(e) = store.audit(&event).await {
        eprintln!("hisp: warning: login of {user} not audited: {e}");
    }
}

/// Bearer tokens checked recently, so a busy API client costs no store round trip per
/// request. A revoked token or removed address stops working within [`TokenCache::TTL`],
/// the same bound as every other admin change reaching a running server.
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Option<Token>, Instant)>>,
}

impl TokenCache {
    pub const TTL: Duration = Duration::from_secs(5);
    /// Unknown tokens are remembered briefly: enough to blunt a flood of guesses, short
    /// enough that a token just created works at once in practice.
    const NEGATIVE_TTL: Duration = Duration::from_secs(1);
    const MAX_ENTRIES: usize = 10_000;

    pub fn new() -> TokenCache {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Like [`check_token`], through the cache.
    pub async fn check(
        &self,
        store: &Store,
        presented: &str,
    ) -> Result<Option<Token>, crate::store::StoreError> {
        let key = crate::auth::token_hash(presented);
        if let Some((token, at)) = self.entries.lock().expect("token cache").get(&key) {
            let ttl = if token.is_some() {
                Self::TTL
            } else {
                Self::NEGATIVE_TTL
            };
            if at.elapsed() < ttl {
                return Ok(token.clone());
            }
        }
        let token = check_token(store, presented).await?;
        let mut entries = self.entries.lock().expect("token cache");
        if entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (token.clone(), Instant::now()));
        Ok(token)
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new()
    }
}

/// Failed logins per client IP: after `max` failures in a row an IP is refused for `period`
/// (the API's counterpart of the SMTP submission back-off), which caps password guessing.
pub struct Backoff {
    max: u32,
    period: Duration,
    state: Mutex<HashMap<std::net::IpAddr, (u32, Option<Instant>)>>,
}

impl Backoff {
    const MAX_TRACKED: usize = 100_000;

    pub fn new(max: u32, period: Duration) -> Backoff {
        Backoff {
            max: max.max(1),
            period,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must still wait, if it is locked out.
    pub fn locked(&self, ip: std::net::IpAddr) -> Option<Duration> {
        let state = self.state.lock().expect("login backoff");
        let until = state.get(&ip)?.1?;
        until.checked_duration_since(Instant::now())
    }

    pub fn failed(&self, ip: std::net::IpAddr) {
        let mut state = self.state.lock().expect("login backoff");
        if state.len() >= Self::MAX_TRACKED {
            let now = Instant::now();
            state.retain(|_, (_, until)| until.is_some_and(|u| u > now));
        }
        let entry = state.entry(ip).or_insert((0, None));
        if entry.1.is_some_and(|u| u <= Instant::now()) {
            *entry = (0, None);
        }
        entry.0 += 1;
        if entry.0 >= self.max {
            entry.1 = Some(Instant::now() + self.period);
        }
    }

    pub fn succeeded(&self, ip: std::net::IpAddr) {
        self.state.lock().expect("login backoff").remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_locks_after_max_failures_and_expires() {
        let b = Backoff::new(2, Duration::from_millis(40));
        let ip: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let other: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        b.failed(ip);
        assert!(b.locked(ip).is_none());
        b.failed(ip);
        assert!(b.locked(ip).is_some());
        assert!(b.locked(other).is_none());
        std::thread::sleep(Duration::from_millis(50));
        assert!(b.locked(ip).is_none());
        // A success clears the count.
        b.failed(ip);
        b.succeeded(ip);
        b.failed(ip);
        assert!(b.locked(ip).is_none());
    }
}
