//! `hisp serve`: the SMTP listeners (inbound and submission) and the delivery workers, until
//! SIGTERM or SIGINT.
//!
//! Shutdown is graceful: listeners stop accepting, sessions waiting for a command are told
//! `421 4.3.2` and closed, a session in the middle of DATA finishes its message first, and
//! workers finish the message they are sending and release the leases of the rest.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{CliError, CliResult, Ctx};
use crate::pipeline::enqueue::Enqueue;
use crate::pipeline::local::LocalDelivery;
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

pub async fn run(ctx: &Ctx) -> CliResult {
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
    bind_all(
        &common,
        Role::Submission,
        &smtp.submission_listen,
        submission,
        &mut listeners,
    )
    .await?;
    let client = ClientConfig {
        hostname: ctx.config.hostname.clone(),
        routes: ctx.config.delivery.routes.clone(),
        require_tls: ctx.config.delivery.require_tls,
        connect_timeout: ctx.config.delivery.connect_timeout.std(),
        command_timeout: std::time::Duration::from_secs(300),
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
    let signal = stop_signal()
        .await
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    eprintln!("hisp: {signal}: no longer accepting connections; finishing messages in progress");
    let _ = stop.send(true);
    while listeners.join_next().await.is_some() {}
    // Sessions in DATA get as long as a client may take for one chunk of data.
    let deadline = tokio::time::Instant::now() + smtp.data_timeout.std();
    while limits.active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    while workers.join_next().await.is_some() {}
    eprintln!("hisp: stopped");
    Ok(())
}
