//! `hisp serve`: run the gateway's long-lived services from one config until SIGTERM or
//! Ctrl-C. Today that is the authoritative DNS responder for our certificates (DCDT H1-H2);
//! the SMTP listeners, queue workers and API join it as they are built.

use std::time::Duration;

use super::{CliError, CliResult, Ctx};
use crate::dns_server::{DnsServer, Zone};

/// How often the published records are rebuilt from the store: admin changes made with the
/// CLI while the server runs show up within this time (INTERFACE.md: 5 seconds).
const REFRESH: Duration = Duration::from_secs(5);

pub async fn run(ctx: &Ctx) -> CliResult {
    let mut services = 0;
    let mut dns = None;
    if let (Some(listen), Some(zone_name)) = (
        ctx.config.dns_server.listen,
        ctx.config.dns_server.zone.clone(),
    ) {
        let zone = Zone::new();
        let published = refresh_zone(ctx, &zone, &zone_name).await?;
        let server = DnsServer::start(listen, zone.clone())
            .await
            .map_err(|e| CliError::Failed(e.into()))?;
        say(&format!(
            "hisp: DNS responder on {} (UDP and TCP), authoritative for {zone_name} and the local domains; {published} CERT record(s)",
            server.local_addr
        ));
        dns = Some((server, zone, zone_name));
        services += 1;
    }
    if services == 0 {
        return Err(CliError::Usage(
            "nothing to serve: set [dns_server] listen and zone (the SMTP listeners and API are not part of this build yet)".into(),
        ));
    }
    let mut tick = tokio::time::interval(REFRESH);
    tick.tick().await;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| CliError::Failed(e.into()))?;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some((_, zone, name)) = &dns
                    && let Err(e) = refresh_zone(ctx, zone, name).await
                {
                    // Keep serving the last good records; the store may be briefly busy.
                    eprintln!("hisp: warning: DNS records not refreshed: {e}");
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    say("hisp: shutting down");
    if let Some((server, _, _)) = dns {
        server.shutdown().await;
    }
    Ok(())
}

/// A start-up or shutdown line. A closed stdout (a supervisor that stopped reading) must not
/// take the server down, so write errors are ignored.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn refresh_zone(ctx: &Ctx, zone: &Zone, zone_name: &str) -> CliResult<usize> {
    let domains: Vec<String> = ctx
        .store
        .list_domains()
        .await?
        .into_iter()
        .map(|d| d.name)
        .collect();
    let certs = ctx.store.list_local_certs().await?;
    let (content, published) = crate::hosting::zone_content(
        zone_name,
        &domains,
        &certs,
        ctx.config.dns_server.address,
        crate::clock::now_secs(),
    )
    .map_err(|e| CliError::Failed(e.into()))?;
    zone.replace(content);
    Ok(published)
}
