//! The keys and anchors the Direct pipelines use, read from the store and refreshed every few
//! seconds, so an admin's `cert import` or `anchor add` reaches a running server within 5
//! seconds (INTERFACE.md) without a restart and without a store round trip per message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::x509::X509;

use crate::address::DirectAddress;
use crate::discovery::Anchors;
use crate::keys::{MasterKey, open_private_key};
use crate::smime::LocalKey;
use crate::store::{Store, StoreError};

/// How old a snapshot may get before the next use reloads it.
pub const REFRESH: Duration = Duration::from_secs(4);

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot unseal the private key of {subject} ({sha256}): {reason}")]
    Unseal {
        subject: String,
        sha256: String,
        reason: String,
    },
    #[error("stored certificate {0} is not valid DER")]
    BadCert(String),
}

/// One local certificate with its unsealed key.
#[derive(Clone)]
pub struct Held {
    /// The address or domain it is bound to.
    pub subject: String,
    pub domain: String,
    pub address_bound: bool,
    pub can_sign: bool,
    pub can_encrypt: bool,
    pub not_before: i64,
    pub not_after: i64,
    pub key: LocalKey,
}

/// Keys and anchors at one moment.
#[derive(Default)]
pub struct Snapshot {
    pub held: Vec<Held>,
    pub incoming: HashMap<String, Arc<Vec<X509>>>,
    pub outgoing: HashMap<String, Arc<Anchors>>,
    pub domains: Vec<String>,
}

impl Snapshot {
    /// The keys to sign `sender`'s mail with: its own certificates if it has any usable now,
    /// else its domain's (SPEC B: address-bound first).
    pub fn signing_keys(&self, sender: &DirectAddress, now: i64) -> Vec<LocalKey> {
        let usable = |h: &&Held| h.can_sign && h.not_before <= now && now < h.not_after;
        let own: Vec<LocalKey> = self
            .held
            .iter()
            .filter(|h| h.address_bound && h.subject == sender.as_str())
            .filter(usable)
            .map(|h| h.key.clone())
            .collect();
        if !own.is_empty() {
            return own;
        }
        self.held
            .iter()
            .filter(|h| !h.address_bound && h.subject == sender.domain())
            .filter(usable)
            .map(|h| h.key.clone())
            .collect()
    }

    /// Every key that may have been used to encrypt to these recipients: their own and their
    /// domain's, expired ones included (old mail may still arrive for them).
    pub fn decryption_keys(&self, recipients: &[DirectAddress]) -> Vec<LocalKey> {
        self.held
            .iter()
            .filter(|h| h.can_encrypt)
            .filter(|h| {
                recipients.iter().any(|r| {
                    (h.address_bound && h.subject == r.as_str())
                        || (!h.address_bound && h.subject == r.domain())
                })
            })
            .map(|h| h.key.clone())
            .collect()
    }

    /// The certificate (address-bound first) to sign MDNs from `address` with.
    pub fn incoming_anchors(&self, domain: &str) -> Arc<Vec<X509>> {
        self.incoming.get(domain).cloned().unwrap_or_default()
    }

    pub fn outgoing_anchors(&self, domain: &str) -> Arc<Anchors> {
        self.outgoing
            .get(domain)
            .cloned()
            .unwrap_or_else(|| Arc::new(Anchors::new(Vec::new())))
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }
}

pub struct Keyring {
    store: Store,
    master: Arc<MasterKey>,
    current: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    reload: tokio::sync::Mutex<()>,
}

impl Keyring {
    pub fn new(store: Store, master: Arc<MasterKey>) -> Keyring {
        Keyring {
            store,
            master,
            current: Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    /// The current snapshot, reloaded when older than [`REFRESH`]. One reload at a time; a
    /// failed reload keeps serving the last good snapshot if there is one.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, KeyringError> {
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        let _guard = self.reload.lock().await;
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        match self.load().await {
            Ok(s) => {
                let s = Arc::new(s);
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), s.clone()));
                Ok(s)
            }
            Err(e) => match self
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                Some((_, old)) => {
                    eprintln!(
                        "hisp: warning: keys and anchors not reloaded, using the last good set: {e}"
                    );
                    Ok(old)
                }
                None => Err(e),
            },
        }
    }

    /// Forget the snapshot so the next use reloads (tests, and after local changes).
    pub fn invalidate(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn fresh(&self) -> Option<Arc<Snapshot>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some((at, s)) if at.elapsed() < REFRESH => Some(s.clone()),
            _ => None,
        }
    }

    async fn load(&self) -> Result<Snapshot, KeyringError> {
        let mut snap = Snapshot {
            domains: self
                .store
                .list_domains()
                .await?
                .into_iter()
                .map(|d| d.name)
                .collect(),
            ..Snapshot::default()
        };
        let certs = self.store.list_local_certs().await?;
        for c in certs {
            let cert =
                X509::from_der(&c.cert_der).map_err(|_| KeyringError::BadCert(c.sha256.clone()))?;
            let key = open_private_key(&self.master, &c.key_sealed, &c.sha256).map_err(|e| {
                KeyringError::Unseal {
                    subject: c.subject.clone(),
                    sha256: c.sha256.clone(),
                    reason: e.to_string(),
                }
            })?;
            let chain = X509::stack_from_pem(c.chain_pem.as_bytes()).unwrap_or_default();
            snap.held.push(Held {
                address_bound: c.binding == "address",
                subject: c.subject,
                domain: c.domain,
                can_sign: c.can_sign,
                can_encrypt: c.can_encrypt,
                not_before: c.not_before,
                not_after: c.not_after,
                key: LocalKey { cert, key, chain },
            });
        }
        let mut incoming: HashMap<String, Vec<X509>> = HashMap::new();
        let mut outgoing: HashMap<String, Vec<X509>> = HashMap::new();
        for a in self.store.list_trust_anchors(None).await? {
            let cert =
                X509::from_der(&a.cert_der).map_err(|_| KeyringError::BadCert(a.sha256.clone()))?;
            if a.incoming {
                incoming
                    .entry(a.domain.clone())
                    .or_default()
                    .push(cert.clone());
            }
            if a.outgoing {
                outgoing.entry(a.domain.clone()).or_default().push(cert);
            }
        }
        snap.incoming = incoming
            .into_iter()
            .map(|(d, v)| (d, Arc::new(v)))
            .collect();
        snap.outgoing = outgoing
            .into_iter()
            .map(|(d, v)| (d, Arc::new(Anchors::new(v))))
            .collect();
        Ok(snap)
    }
}
