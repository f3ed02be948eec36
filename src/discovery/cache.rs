//! The discovery result cache: positive and negative results with their own TTLs, one lookup
//! in flight per (address, anchor set), bounded in size.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openssl::sha::Sha256;
use openssl::x509::X509;
use tokio::sync::OnceCell;

use super::Report;

/// A set of trust anchors with a fingerprint, so cache keys stay cheap: a result validated
/// under one anchor set says nothing about another.
pub struct Anchors {
    certs: Vec<X509>,
    id: u64,
}

impl Anchors {
    pub fn new(certs: Vec<X509>) -> Anchors {
        let mut ders: Vec<Vec<u8>> = certs.iter().filter_map(|c| c.to_der().ok()).collect();
        ders.sort();
        let mut h = Sha256::new();
        for der in &ders {
            h.update(&(der.len() as u64).to_be_bytes());
            h.update(der);
        }
        let digest = h.finish();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Anchors {
            certs,
            id: u64::from_be_bytes(id),
        }
    }

    pub fn certs(&self) -> &[X509] {
        &self.certs
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

type Key = (String, u64);

pub(super) struct Cache {
    slots: Mutex<HashMap<Key, Arc<OnceCell<Arc<Report>>>>>,
    /// Entries kept at most; past this, expired ones go first, then everything (a cold cache
    /// is slower, never wrong).
    max_entries: usize,
}

impl Cache {
    pub(super) fn new(max_entries: usize) -> Cache {
        Cache {
            slots: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<OnceCell<Arc<Report>>>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached report for `key`, or the result of `run` — run once however many callers
    /// ask at the same time; the others wait for it.
    pub(super) async fn get_or_run<F, Fut>(&self, key: Key, run: F) -> Arc<Report>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Arc<Report>>,
    {
        let slot = {
            let mut slots = self.lock();
            let now = Instant::now();
            let fresh = slots
                .get(&key)
                .filter(|s| s.get().is_none_or(|r| r.expires > now))
                .cloned();
            match fresh {
                Some(s) => s,
                None => {
                    if slots.len() >= self.max_entries {
                        slots.retain(|_, s| s.get().is_none_or(|r| r.expires > now));
                        if slots.len() >= self.max_entries {
                            slots.clear();
                        }
                    }
                    let s = Arc::new(OnceCell::new());
                    slots.insert(key, s.clone());
                    s
                }
            }
        };
        slot.get_or_init(run).await.clone()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn report(ttl: Duration) -> Arc<Report> {
        let mut r = Report::new("a@b.example");
        r.expires = Instant::now() + ttl;
        Arc::new(r)
    }

    #[tokio::test]
    async fn one_run_for_concurrent_callers_and_expiry_reruns() {
        let cache = Arc::new(Cache::new(100));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, runs) = (cache.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_run(("a@b.example".into(), 1), || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        report(Duration::from_millis(100))
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Another anchor set is another key.
        cache
            .get_or_run(("a@b.example".into(), 2), || async {
                runs.fetch_add(1, Ordering::SeqCst);
                report(Duration::from_secs(60))
            })
            .await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
        cache
            .get_or_run(("a@b.example".into(), 1), || async {
                runs.fetch_add(1, Ordering::SeqCst);
                report(Duration::from_secs(60))
            })
            .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn size_is_bounded() {
        let cache = Cache::new(10);
        for i in 0..25u64 {
            cache
                .get_or_run(("a@b.example".into(), i), || async {
                    report(Duration::from_secs(60))
                })
                .await;
            assert!(cache.len() <= 10);
        }
    }

    #[test]
    fn anchor_ids_ignore_order_and_differ_by_content() {
        let a = crate::devpki::Ca::root("A").unwrap();
        let b = crate::devpki::Ca::root("B").unwrap();
        let ab = Anchors::new(vec![a.cert.clone(), b.cert.clone()]);
        let ba = Anchors::new(vec![b.cert.clone(), a.cert.clone()]);
        let only_a = Anchors::new(vec![a.cert.clone()]);
        assert_eq!(ab.id(), ba.id());
        assert_ne!(ab.id(), only_a.id());
    }
}
