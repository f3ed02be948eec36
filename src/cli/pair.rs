//! Two Direct gateways on loopback, shared by `hisp demo` and `hisp bench`: a development PKI
//! with an address-bound certificate per side, an authoritative DNS server publishing both as
//! CERT records, and hisp-a.example / hisp-b.example with their own SQLite stores, keys,
//! trust anchors and static routes to each other. Nothing here touches the user's store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{CliError, CliResult, Ctx};
use crate::address::DirectAddress;
use crate::certinfo::CertInfo;
use crate::config::{Config, Source};
use crate::devpki::{Ca, Issued};
use crate::dns_server::{DnsServer, Zone, ZoneContent};
use crate::keys::{KeySource, MasterKey, seal_private_key};
use crate::store::Store;
use crate::store::local_certs::NewLocalCert;

pub const SMITH: &str = "dr.smith@hisp-a.example";
pub const JONES: &str = "dr.jones@hisp-b.example";
pub const PASSWORD: &str = "demo-password";

pub fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(anyhow::anyhow!("{e}"))
}

fn free_port() -> CliResult<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    Ok(l.local_addr().map_err(fail)?.port())
}

pub struct Side {
    pub domain: &'static str,
    pub user: &'static str,
    pub cert: Issued,
    pub dir: PathBuf,
    pub inbound: u16,
    pub submission: u16,
}

/// The PKI, the DNS server and both configured (not yet started) gateways.
pub struct Pair {
    pub root: Ca,
    pub dns: DnsServer,
    /// The CERT records published, as `(owner, DER length)`, for the demo to show.
    pub published: Vec<(String, usize)>,
    pub a: Side,
    pub b: Side,
    pub ctx_a: Ctx,
    pub ctx_b: Ctx,
}

impl Pair {
    /// Builds everything under `dir`; `tune` may change each gateway's config (the bench
    /// raises connection limits and workers) before its store is opened.
    pub async fn build(dir: &Path, tune: impl Fn(&mut Config)) -> CliResult<Pair> {
        let root = Ca::root("hisp demo root CA").map_err(fail)?;
        let smith = root.leaf().email(SMITH).build().map_err(fail)?;
        let jones = root.leaf().email(JONES).build().map_err(fail)?;

        let zone = Zone::new();
        let mut content = ZoneContent::new();
        let mut published = Vec::new();
        for (domain, addr, cert) in [
            ("hisp-a.example", SMITH, &smith),
            ("hisp-b.example", JONES, &jones),
        ] {
            content.origin(domain).map_err(fail)?;
            let owner = DirectAddress::parse(addr).map_err(fail)?.cert_query_name();
            content.cert(&owner, &cert.cert_der()).map_err(fail)?;
            published.push((owner.to_string(), cert.cert_der().len()));
        }
        zone.replace(content);
        let dns = DnsServer::start("127.0.0.1:0".parse().map_err(fail)?, zone)
            .await
            .map_err(fail)?;

        let a = Side {
            domain: "hisp-a.example",
            user: SMITH,
            cert: smith,
            dir: dir.join("hisp-a"),
            inbound: free_port()?,
            submission: free_port()?,
        };
        let b = Side {
            domain: "hisp-b.example",
            user: JONES,
            cert: jones,
            dir: dir.join("hisp-b"),
            inbound: free_port()?,
            submission: free_port()?,
        };
        let ctx_a = gateway(&a, &b, &root, dns.local_addr, &tune).await?;
        let ctx_b = gateway(&b, &a, &root, dns.local_addr, &tune).await?;
        Ok(Pair {
            root,
            dns,
            published,
            a,
            b,
            ctx_a,
            ctx_b,
        })
    }
}

/// A configured, populated gateway context for `me`, routing `other`'s domain to its port.
async fn gateway(
    me: &Side,
    other: &Side,
    root: &Ca,
    dns: SocketAddr,
    tune: &impl Fn(&mut Config),
) -> CliResult<Ctx> {
    std::fs::create_dir_all(&me.dir).map_err(fail)?;
    let mut config = Config {
        hostname: me.domain.to_string(),
        data_dir: me.dir.clone(),
        ..Config::default()
    };
    config.database.url = format!("sqlite://{}", me.dir.join("hisp.db").display());
    config.database.max_connections = 4;
    config.smtp.listen = vec![SocketAddr::from(([127, 0, 0, 1], me.inbound))];
    config.smtp.submission_listen = vec![SocketAddr::from(([127, 0, 0, 1], me.submission))];
    // Loopback only, and there is no TLS certificate for these listeners.
    config.smtp.require_tls_for_auth = false;
    // Two gateways in one process, and neither needs the API: don't take port 8080.
    config.api.listen = None;
    config.delivery.routes.insert(
        other.domain.to_string(),
        format!("127.0.0.1:{}", other.inbound),
    );
    config.delivery.retry = vec![crate::config::Duration(Duration::from_secs(1))];
    config.dns.nameservers = vec![dns];
    config.discovery.ldap_timeout = crate::config::Duration(Duration::from_secs(1));
    tune(&mut config);
    let store = Store::open(&config.database.url, config.database.max_connections).await?;
    let mut raw = [0u8; 32];
    openssl::rand::rand_bytes(&mut raw).map_err(fail)?;
    let master = MasterKey::from_bytes(raw, KeySource::Env);
    store.add_domain(me.domain).await?;
    let hash = crate::auth::hash_password(PASSWORD).map_err(fail)?;
    let user = DirectAddress::parse(me.user).map_err(fail)?;
    store.add_address(&user, Some(&hash)).await?;
    let info = CertInfo::of(&me.cert.cert);
    let der = me.cert.cert_der();
    let sealed = seal_private_key(&master, &me.cert.key, &info.sha256);
    let chain = String::from_utf8_lossy(&root.cert.to_pem().map_err(fail)?).into_owned();
    store
        .add_local_cert(&NewLocalCert {
            subject: me.user,
            binding: "address",
            domain: me.domain,
            address: Some(me.user),
            info: &info,
            cert_der: &der,
            chain_pem: &chain,
            key_sealed: &sealed,
        })
        .await?;
    let root_der = root.cert.to_der().map_err(fail)?;
    store
        .add_anchors(
            me.domain,
            &[(CertInfo::of(&root.cert), root_der)],
            true,
            true,
        )
        .await?;
    Ok(Ctx {
        config,
        source: Source::Defaults,
        store,
        master: Arc::new(master),
        json: false,
    })
}
