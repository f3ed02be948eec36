//! `hisp serve`: the SMTP listeners (inbound and submission), the delivery workers, the trust
//! bundle refresher and the authoritative DNS responder for our certificates, until SIGTERM or
//! SIGINT.
//!
//! Shutdown is graceful: listeners stop accepting, sessions waiting for a command are told
//! `421 4.3.2` and closed, a session in the middle of DATA finishes its message first, and
//! workers finish the message they are sending and release the leases of the rest.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{CliError, CliResult, Ctx};
use crate::config::Pipelines;
use crate::dns_server::{DnsServer, Zone};
use crate::pipeline::enqueue::Enqueue;
use crate::pipeline::keyring::Keyring;
use crate::pipeline::local::LocalDelivery;
use crate::pipeline::receive::DirectInbound;
use crate::pipeline::submit::DirectSubmission;
use crate::pipeline::{Pipeline, Role};
use crate::queue::{Policy, Worker};
use crate::smtp::client::{ClientConfig, SmtpClient};
use crate::smtp::mx::HickoryMx;
use crate::smtp::server::{Limits, Listener, Shared};

async fn stop_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// What every listener of this process shares.
struct Common<'a> {
    ctx: &'a Ctx,
    tls: Option<TlsAcceptor>,
    limits: Arc<Limits>,
    stopped: watch::Receiver<bool>,
}

async fn bind_all<P: Pipeline>(
    common: &Common<'_>,
    role: Role,
    addrs: &[std::net::SocketAddr],
    pipeline: Arc<P>,
    listeners: &mut JoinSet<()>,
) -> CliResult {
    let ctx = common.ctx;
    let shared = Arc::new(Shared {
        role,
        config: ctx.config.smtp.clone(),
        hostname: ctx.config.hostname.clone(),
        store: ctx.store.clone(),
        pipeline,
        tls: common.tls.clone(),
        limits: Arc::clone(&common.limits),
        shutdown: common.stopped.clone(),
    });
    for addr in addrs {
        let listener = Listener::bind(*addr, Arc::clone(&shared))
            .await
            .map_err(|e| CliError::Failed(e.into()))?;
        eprintln!(
            "hisp: smtp {} listening on {}",
            match role {
                Role::Inbound => "inbound",
                Role::Submission => "submission",
            },
            listener.local_addr()
        );
        listeners.spawn(listener.serve(common.stopped.clone()));
    }
    Ok(())
}

/// Everything `hisp serve` started, to be stopped gracefully.
pub struct Running {
    stop: watch::Sender<bool>,
    listeners: JoinSet<()>,
    workers: JoinSet<()>,
    background: JoinSet<()>,
    limits: Arc<Limits>,
    data_timeout: std::time::Duration,
    dns: Option<(DnsServer, tokio::task::JoinHandle<()>)>,
    api: Option<crate::api::Server>,
}

pub async fn run(ctx: &Ctx) -> CliResult {
    let running = start(ctx).await?;
    let signal = stop_signal()
        .await
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    eprintln!("hisp: {signal}: no longer accepting connections; finishing messages in progress");
    running.stop().await;
    eprintln!("hisp: stopped");
    Ok(())
}

impl Running {
    /// Stop accepting, let sessions in DATA finish (up to the DATA timeout), let workers
    /// finish the message they are sending and release the rest.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        while self.listeners.join_next().await.is_some() {}
        let deadline = tokio::time::Instant::now() + self.data_timeout;
        while self.limits.active() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        while self.workers.join_next().await.is_some() {}
        while self.background.join_next().await.is_some() {}
        if let Some((server, refresher)) = self.dns {
            refresher.abort();
            server.shutdown().await;
        }
    }
}

/// Starts the listeners, workers, timers and DNS responder of `ctx`'s config.
pub async fn start(ctx: &Ctx) -> CliResult<Running> {
    let smtp = &ctx.config.smtp;
    let tls = match (&smtp.tls_cert, &smtp.tls_key) {
        (Some(cert), Some(key)) => Some(TlsAcceptor::from(
            crate::smtp::tls::server_config(cert, key)
                .map_err(|e| CliError::Usage(e.to_string()))?,
        )),
        _ => None,
    };
    let limits = Limits::new(smtp.max_connections, smtp.max_connections_per_ip);
    let (stop, stopped) = watch::channel(false);
    let mut listeners = JoinSet::new();
    let common = Common {
        ctx,
        tls,
        limits: Arc::clone(&limits),
        stopped: stopped.clone(),
    };
    let mut background = JoinSet::new();
    // Recorded from the start, so the first scrape sees everything since boot.
    crate::metrics::handle();
    let submit: crate::api::Submitter;
    match smtp.pipelines {
        Pipelines::Plain => {
            eprintln!(
                "hisp: WARNING: [smtp] pipelines = \"plain\": messages are NOT signed, encrypted or verified; this mode is for testing the SMTP edge only"
            );
            let inbound = Arc::new(LocalDelivery {
                store: ctx.store.clone(),
                hostname: ctx.config.hostname.clone(),
            });
            bind_all(
                &common,
                Role::Inbound,
                &smtp.listen,
                inbound,
                &mut listeners,
            )
            .await?;
            let submission = Arc::new(Enqueue {
                store: ctx.store.clone(),
                hostname: ctx.config.hostname.clone(),
                give_up_after: ctx.config.delivery.give_up_after.std(),
            });
            submit = crate::api::submitter(submission.clone());
            bind_all(
                &common,
                Role::Submission,
                &smtp.submission_listen,
                submission,
                &mut listeners,
            )
            .await?;
        }
        Pipelines::Direct => {
            let (inbound, submission) = direct_pipelines(ctx)?;
            bind_all(
                &common,
                Role::Inbound,
                &smtp.listen,
                inbound,
                &mut listeners,
            )
            .await?;
            submit = crate::api::submitter(submission.clone());
            bind_all(
                &common,
                Role::Submission,
                &smtp.submission_listen,
                submission,
                &mut listeners,
            )
            .await?;
            let tracker = crate::pipeline::timeouts::Timeouts {
                store: ctx.store.clone(),
                hostname: ctx.config.hostname.clone(),
            };
            background.spawn(tracker.run(stopped.clone()));
        }
    }
    let client = ClientConfig {
        hostname: ctx.config.hostname.clone(),
        routes: ctx.config.delivery.routes.clone(),
        require_tls: ctx.config.delivery.require_tls,
        connect_timeout: ctx.config.delivery.connect_timeout.std(),
        command_timeout: std::time::Duration::from_secs(300),
        port: ctx.config.delivery.port,
    };
    let dns = HickoryMx::new(&ctx.config.dns).map_err(|e| CliError::Failed(e.into()))?;
    let mut workers = JoinSet::new();
    for _ in 0..ctx.config.delivery.workers {
        let transport = SmtpClient::new(client.clone(), dns.clone())
            .map_err(|e| CliError::Failed(anyhow::anyhow!("TLS client set-up: {e}")))?;
        let worker = Worker::new(
            ctx.store.clone(),
            &ctx.config.hostname,
            Policy::from_config(&ctx.config.delivery),
            transport,
        );
        let stopped = stopped.clone();
        workers.spawn(async move { worker.run(stopped, std::time::Duration::from_secs(1)).await });
    }
    // Trust bundles are refreshed whatever the pipelines: their anchors are data in the store.
    background.spawn(crate::bundles::run(
        ctx.store.clone(),
        crate::bundles::http_fetcher(&ctx.config),
        stopped.clone(),
    ));
    let dns = start_dns(ctx).await?;
    let api = match ctx.config.api.listen {
        Some(addr) => {
            let ready = Arc::new(crate::api::Readiness::default());
            let state = crate::api::ApiState(Arc::new(crate::api::Inner {
                store: ctx.store.clone(),
                hostname: ctx.config.hostname.clone(),
                submit,
                ready: ready.clone(),
                tokens: crate::login::TokenCache::new(),
                backoff: crate::login::Backoff::new(
                    smtp.max_auth_failures,
                    smtp.auth_failure_backoff.std(),
                ),
                bundle_fetcher: crate::bundles::http_fetcher(&ctx.config),
                max_body: usize::try_from(ctx.config.api.max_body_size.0).unwrap_or(usize::MAX),
                max_message: usize::try_from(smtp.max_message_size.0).unwrap_or(usize::MAX),
            }));
            let server = crate::api::Server::start(addr, state).await.map_err(|e| {
                CliError::Failed(anyhow::anyhow!(
                    "cannot listen for the HTTP API on {addr} ([api] listen): {e}"
                ))
            })?;
            eprintln!("hisp: HTTP API listening on http://{}", server.local_addr);
            // Everything above is bound and running.
            ready.set(true);
            Some(server)
        }
        None => {
            drop(submit);
            None
        }
    };
    Ok(Running {
        stop,
        listeners,
        workers,
        background,
        limits,
        data_timeout: smtp.data_timeout.std(),
        dns,
        api,
    })
}

/// How often the published DNS records are rebuilt from the store: admin changes made with the
/// CLI while the server runs show up within this time (INTERFACE.md: 5 seconds).
const DNS_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// The DNS responder of `[dns_server]`, if configured, with the task that keeps its records
/// in step with the store.
async fn start_dns(ctx: &Ctx) -> CliResult<Option<(DnsServer, tokio::task::JoinHandle<()>)>> {
    let (Some(listen), Some(zone_name)) = (
        ctx.config.dns_server.listen,
        ctx.config.dns_server.zone.clone(),
    ) else {
        return Ok(None);
    };
    let zone = Zone::new();
    let published = refresh_zone(ctx, &zone, &zone_name).await?;
    let server = DnsServer::start(listen, zone.clone())
        .await
        .map_err(|e| CliError::Failed(e.into()))?;
    eprintln!(
        "hisp: DNS responder on {} (UDP and TCP), authoritative for {zone_name} and the local domains; {published} CERT record(s)",
        server.local_addr
    );
    let (store, config) = (ctx.store.clone(), ctx.config.clone());
    let refresher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(DNS_REFRESH);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = refresh(&store, &config, &zone, &zone_name).await {
                // Keep serving the last good records; the store may be briefly busy.
                eprintln!("hisp: warning: DNS records not refreshed: {e}");
            }
        }
    });
    Ok(Some((server, refresher)))
}

async fn refresh_zone(ctx: &Ctx, zone: &Zone, zone_name: &str) -> CliResult<usize> {
    refresh(&ctx.store, &ctx.config, zone, zone_name)
        .await
        .map_err(CliError::Failed)
}

async fn refresh(
    store: &crate::store::Store,
    config: &crate::config::Config,
    zone: &Zone,
    zone_name: &str,
) -> anyhow::Result<usize> {
    let domains: Vec<String> = store
        .list_domains()
        .await?
        .into_iter()
        .map(|d| d.name)
        .collect();
    let certs = store.list_local_certs().await?;
    let (content, published) = crate::hosting::zone_content(
        zone_name,
        &domains,
        &certs,
        config.dns_server.address,
        crate::clock::now_secs(),
    )?;
    zone.replace(content);
    Ok(published)
}

/// The Direct pipelines: both share one keyring and one discovery service (and so one
/// certificate cache).
fn direct_pipelines(ctx: &Ctx) -> CliResult<(Arc<DirectInbound>, Arc<DirectSubmission>)> {
    let config = &ctx.config;
    let keyring = Arc::new(Keyring::new(ctx.store.clone(), ctx.master.clone()));
    let discovery =
        Arc::new(crate::discovery::Discovery::new(config).map_err(|e| CliError::Failed(e.into()))?);
    let seal = crate::smime::SealOptions::from(&config.security);
    let inbound = Arc::new(DirectInbound {
        store: ctx.store.clone(),
        keyring: keyring.clone(),
        discovery: discovery.clone(),
        hostname: config.hostname.clone(),
        seal,
        algorithms: crate::smime::AlgorithmPolicy::from(&config.security),
        trust: Arc::new(crate::trust::Policy::from(&config.security)),
        fetcher: discovery.fetcher(),
        crl_cache: discovery.crl_cache(),
        give_up_after: config.delivery.give_up_after.std(),
        deliver_processed: config.notifications.deliver_processed_mdns,
        quota: config.mailbox.quota.0,
    });
    let submission = Arc::new(DirectSubmission {
        store: ctx.store.clone(),
        keyring,
        discovery,
        hostname: config.hostname.clone(),
        seal,
        give_up_after: config.delivery.give_up_after.std(),
        notify_timeout: config.notifications.timeout.std(),
    });
    Ok((inbound, submission))
}
