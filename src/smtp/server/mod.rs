//! SMTP listeners: one tokio task per configured address, one [`session::Session`] per
//! connection. Inbound (port 25) and submission (port 587) differ only in their [`Role`].

mod auth;
mod conn;
mod data;
mod greeting;
pub mod limits;
mod mail;
mod rcpt;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::Smtp;
use crate::pipeline::{Pipeline, Role};
use crate::store::Store;
pub use limits::Limits;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {reason} (is another server using the port?)")]
    Bind { addr: SocketAddr, reason: String },
}

/// What every session of one listener needs.
pub struct Shared<P: Pipeline> {
    pub role: Role,
    pub config: Smtp,
    pub hostname: String,
    pub store: Store,
    pub pipeline: Arc<P>,
    pub tls: Option<TlsAcceptor>,
    pub limits: Arc<Limits>,
    /// Turns true when the server stops: sessions waiting for a command close with 421.
    pub shutdown: watch::Receiver<bool>,
}

pub struct Listener<P: Pipeline> {
    tcp: TcpListener,
    shared: Arc<Shared<P>>,
}

impl<P: Pipeline> Listener<P> {
    pub async fn bind(
        addr: SocketAddr,
        shared: Arc<Shared<P>>,
    ) -> Result<Listener<P>, ServerError> {
        let tcp = crate::listen::bind(addr).map_err(|e| ServerError::Bind {
            addr,
            reason: e.to_string(),
        })?;
        Ok(Listener { tcp, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.tcp
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    /// Accepts connections until `shutdown` turns true. Sessions already running finish on
    /// their own.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                a = self.tcp.accept() => a,
                _ = shutdown.changed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    eprintln!("hisp: smtp accept on {}: {e}", self.local_addr());
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move {
                let mut conn = conn::Conn::new(tcp);
                let slot = match shared.limits.admit(peer.ip()) {
                    Ok(slot) => slot,
                    Err(reply) => {
                        conn.send(&reply.to_bytes());
                        conn.shutdown().await;
                        return;
                    }
                };
                if shared.role == Role::Submission && shared.limits.is_locked_out(peer.ip()) {
                    let reply = crate::smtp::reply::Reply::new(
                        421,
                        "4.7.0",
                        "too many failed logins from your address; try again later",
                    );
                    conn.send(&reply.to_bytes());
                    conn.shutdown().await;
                    return;
                }
                let _gauge = crate::metrics::SessionGauge::open(match shared.role {
                    Role::Inbound => "inbound",
                    Role::Submission => "submission",
                });
                session::Session::new(shared, conn, peer).run().await;
                drop(slot);
            });
        }
    }
}
