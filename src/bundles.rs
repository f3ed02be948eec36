//! Trust bundles end to end (SPEC D26): fetch (HTTP(S) or a file), verify and read
//! ([`crate::trust::bundle`]), store, and refresh each bundle on its own interval. Shared by
//! `hisp bundle`, `hisp serve` and the admin API.
//!
//! A failed refresh never touches the anchors: the last good set stays in force, and the
//! failure is recorded on the bundle (error, counters) and in the audit log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssl::x509::X509;
use serde::Serialize;
use tokio::sync::watch;

use crate::certinfo::CertInfo;
use crate::store::bundles::{BundleCert, BundleDomain, NewBundle, Replaced, StoredBundle};
use crate::store::{Store, StoreError};
use crate::trust::Fetcher;
use crate::trust::bundle::{self, BundleError};

/// Largest bundle fetched; DirectTrust's community bundles are well below this.
pub const MAX_BUNDLE_SIZE: u64 = 32 * 1024 * 1024;
/// A bundle server gets at least this long to answer, whatever the discovery timeout.
const MIN_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `hisp serve` looks for bundles that are due.
const TICK: Duration = Duration::from_millis(500);
/// Shortest refresh interval accepted (a bundle server is someone else's machine).
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum BundlesError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bundle {name}: {reason}")]
    Unusable { name: String, reason: String },
}

/// Where a bundle is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(String),
    /// Stored as an absolute path, so `hisp serve` finds it from any working directory.
    File(PathBuf),
}

/// A bundle to add.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    pub name: String,
    pub source: Source,
    /// DER of the certificate that must have signed the bundle, if it is signed.
    pub signer_der: Option<Vec<u8>>,
    pub domains: Vec<BundleDomain>,
    pub refresh: Duration,
}

/// What one refresh did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Refresh {
    Unchanged { anchors: usize },
    Updated { anchors: usize },
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshOutcome {
    pub name: String,
    #[serde(flatten)]
    pub refresh: Refresh,
}

/// The HTTP fetcher for bundles: the discovery timeout (at least 30 s), a larger size cap
/// than for AIA and CRL objects, and no memory of failures, so a bundle server that comes back
/// is used at the next refresh.
pub fn http_fetcher(config: &crate::config::Config) -> Arc<dyn Fetcher> {
    Arc::new(
        crate::fetch::HttpFetcher::new(
            config.discovery.fetch_timeout.std().max(MIN_FETCH_TIMEOUT),
            MAX_BUNDLE_SIZE,
        )
        .without_failure_memory(),
    )
}

/// Checks a bundle name: it appears in commands, logs and metric labels.
pub fn check_name(name: &str) -> Result<(), BundlesError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(BundlesError::Invalid(format!(
            "bundle name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Fetches and verifies the bundle, then stores it with its anchors. Nothing is stored when
/// the first fetch or verification fails.
pub async fn add(
    store: &Store,
    fetcher: Arc<dyn Fetcher>,
    spec: &BundleSpec,
    actor: &str,
) -> Result<(StoredBundle, usize), BundlesError> {
    check_name(&spec.name)?;
    if spec.refresh < MIN_REFRESH {
        return Err(BundlesError::Invalid(format!(
            "refresh interval {:?} is shorter than the minimum of 1 s",
            spec.refresh
        )));
    }
    if spec.domains.is_empty() {
        return Err(BundlesError::Invalid(format!(
            "bundle {}: name at least one local domain that trusts it (--domain)",
            spec.name
        )));
    }
    for d in &spec.domains {
        store.require_domain(&d.domain).await?;
    }
    if let Ok(existing) = store.bundle(&spec.name).await {
        return Err(BundlesError::Store(StoreError::Conflict(format!(
            "a bundle named {} already exists ({}); remove it first to change it",
            existing.name,
            existing.source()
        ))));
    }
    let (content_sha256, certs) =
        fetch_and_read(fetcher, spec.source.clone(), spec.signer_der.clone())
            .await
            .map_err(|reason| BundlesError::Unusable {
                name: spec.name.clone(),
                reason,
            })?;
    let (url, file) = match &spec.source {
        Source::Url(u) => (Some(u.clone()), None),
        Source::File(p) => (None, Some(p.display().to_string())),
    };
    let new = NewBundle {
        name: &spec.name,
        url: url.as_deref(),
        file: file.as_deref(),
        signer_der: spec.signer_der.as_deref(),
        refresh_secs: i64::try_from(spec.refresh.as_secs()).unwrap_or(i64::MAX),
        domains: &spec.domains,
    };
    let stored = store
        .add_bundle(&new, &content_sha256, &certs, actor)
        .await?;
    Ok((stored, certs.len()))
}

pub async fn list(store: &Store) -> Result<Vec<StoredBundle>, BundlesError> {
    Ok(store.list_bundles().await?)
}

pub async fn remove(store: &Store, name: &str, actor: &str) -> Result<StoredBundle, BundlesError> {
    Ok(store.remove_bundle(name, actor).await?)
}

/// Refreshes one bundle (`name`) or all of them, one after the other. A failure of one is
/// recorded and reported in its outcome; the others still run.
pub async fn refresh(
    store: &Store,
    fetcher: Arc<dyn Fetcher>,
    name: Option<&str>,
    actor: &str,
) -> Result<Vec<RefreshOutcome>, BundlesError> {
    let bundles = match name {
        Some(n) => vec![store.bundle(n).await?],
        None => store.list_bundles().await?,
    };
    let mut outcomes = Vec::with_capacity(bundles.len());
    for b in &bundles {
        outcomes.push(refresh_one(store, fetcher.clone(), b, actor).await);
    }
    Ok(outcomes)
}

/// Refreshes the bundles whose interval has passed since their last attempt.
pub async fn refresh_due(
    store: &Store,
    fetcher: Arc<dyn Fetcher>,
    actor: &str,
    now_ms: i64,
) -> Result<Vec<RefreshOutcome>, BundlesError> {
    let mut outcomes = Vec::new();
    for b in store.list_bundles().await? {
        let due = b
            .last_attempt_at
            .is_none_or(|at| now_ms.saturating_sub(at) >= b.refresh_secs.saturating_mul(1000));
        if due {
            outcomes.push(refresh_one(store, fetcher.clone(), &b, actor).await);
        }
    }
    Ok(outcomes)
}

/// Per-bundle refresh counters, for the metrics endpoint.
pub async fn counters(
    store: &Store,
) -> Result<Vec<crate::store::bundles::BundleCounters>, BundlesError> {
    Ok(store.bundle_counters().await?)
}

/// `hisp serve`'s refresher: every bundle on its own interval until `stopped`. Failures are
/// logged and recorded, never fatal; the keyring's reload then brings changed anchors into
/// force.
pub async fn run(store: Store, fetcher: Arc<dyn Fetcher>, mut stopped: watch::Receiver<bool>) {
    const ACTOR: &str = "serve:bundle-refresh";
    // A store that stays unreachable is reported once, not on every tick.
    let mut last_store_error = None;
    while !*stopped.borrow() {
        tokio::select! {
            _ = stopped.changed() => break,
            result = refresh_due(&store, fetcher.clone(), ACTOR, crate::clock::now_ms()) => {
                match result {
                    Ok(outcomes) => {
                        last_store_error = None;
                        outcomes.iter().for_each(log);
                    }
                    Err(e) => {
                        let e = e.to_string();
                        if last_store_error.as_ref() != Some(&e) {
                            eprintln!("hisp: warning: trust bundles not checked: {e}");
                            last_store_error = Some(e);
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = stopped.changed() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

fn log(o: &RefreshOutcome) {
    match &o.refresh {
        Refresh::Unchanged { .. } => {}
        Refresh::Updated { anchors } => {
            eprintln!("hisp: trust bundle {} updated: {anchors} anchors", o.name)
        }
        Refresh::Failed { reason } => eprintln!(
            "hisp: warning: trust bundle {} not refreshed, its last good anchors stay in force: {reason}",
            o.name
        ),
    }
}

async fn refresh_one(
    store: &Store,
    fetcher: Arc<dyn Fetcher>,
    b: &StoredBundle,
    actor: &str,
) -> RefreshOutcome {
    let source = match (&b.url, &b.file) {
        (Some(u), _) => Source::Url(u.clone()),
        (None, Some(f)) => Source::File(PathBuf::from(f)),
        (None, None) => {
            return RefreshOutcome {
                name: b.name.clone(),
                refresh: Refresh::Failed {
                    reason: "the stored bundle has neither a URL nor a file".into(),
                },
            };
        }
    };
    let refresh = match fetch_and_read(fetcher, source, b.signer_der.clone()).await {
        Ok((hash, certs)) => {
            match store
                .record_bundle_success(&b.name, &hash, &certs, actor)
                .await
            {
                Ok(Replaced::Unchanged) => Refresh::Unchanged {
                    anchors: certs.len(),
                },
                Ok(Replaced::Updated) => Refresh::Updated {
                    anchors: certs.len(),
                },
                Err(e) => Refresh::Failed {
                    reason: format!("cannot store the new anchors: {e}"),
                },
            }
        }
        Err(reason) => {
            if let Err(e) = store.record_bundle_failure(&b.name, &reason, actor).await {
                eprintln!(
                    "hisp: warning: cannot record the failed refresh of bundle {}: {e}",
                    b.name
                );
            }
            Refresh::Failed { reason }
        }
    };
    RefreshOutcome {
        name: b.name.clone(),
        refresh,
    }
}

/// Reads the bundle and checks it, off the reactor (blocking HTTP, signature checking).
/// Returns the content hash and the certificates, or why not, in one sentence.
async fn fetch_and_read(
    fetcher: Arc<dyn Fetcher>,
    source: Source,
    signer_der: Option<Vec<u8>>,
) -> Result<(String, Vec<BundleCert>), String> {
    tokio::task::spawn_blocking(move || {
        let bytes = match &source {
            Source::Url(url) => fetcher
                .fetch(url)
                .map_err(|e| format!("cannot fetch {url}: {e}"))?,
            Source::File(path) => {
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
            }
        };
        let signer = signer_der
            .as_deref()
            .map(X509::from_der)
            .transpose()
            .map_err(|_| {
                "the stored signing certificate is unreadable; remove the bundle and add it again"
                    .to_string()
            })?;
        let parsed = bundle::parse(&bytes, signer.as_deref()).map_err(|e: BundleError| {
            let from = match &source {
                Source::Url(u) => u.clone(),
                Source::File(p) => p.display().to_string(),
            };
            format!("{from}: {e}")
        })?;
        let certs = parsed
            .certificates
            .iter()
            .map(|der| {
                let cert =
                    X509::from_der(der).map_err(|e| format!("certificate unreadable: {e}"))?;
                let info = CertInfo::of(&cert);
                Ok(BundleCert {
                    sha256: info.sha256,
                    subject: info.subject,
                    not_after: info.not_after,
                    der: der.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok((parsed.content_sha256, certs))
    })
    .await
    .map_err(|e| format!("bundle check stopped: {e}"))?
}
