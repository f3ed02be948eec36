//! An in-process SMTP listener over a throwaway store, and a raw line client (plain or TLS)
//! that reads whole replies, for byte-level session tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hisp::address::DirectAddress;
use hisp::config::Smtp;
use hisp::pipeline::Role;
use hisp::pipeline::enqueue::Enqueue;
use hisp::smtp::server::{Limits, Listener, Shared};
use hisp::store::Store;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Backend, TempDir, fresh_database};

pub const HOST: &str = "hisp-a.example";
pub const ALICE: &str = "alice@hisp-a.example";
pub const ALICE_PW: &str = "correct horse battery";
pub const BOB: &str = "bob@hisp-a.example";

/// A test CA and a TLS certificate for `HOST` signed by it, as PEM files.
pub struct TlsFiles {
    pub ca_der: Vec<u8>,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

pub fn tls_files(dir: &std::path::Path) -> TlsFiles {
    let ca = hisp::devpki::Ca::root("SMTP Test CA").unwrap();
    let leaf = ca.leaf().dns(HOST).common_name(HOST).build().unwrap();
    let cert = dir.join("tls.pem");
    let key = dir.join("tls.key");
    std::fs::write(&cert, leaf.cert_pem()).unwrap();
    std::fs::write(&key, leaf.key_pem()).unwrap();
    TlsFiles {
        ca_der: ca.as_issued().cert_der(),
        cert,
        key,
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub store: Store,
    pub tls: Option<TlsFiles>,
    _stop: watch::Sender<bool>,
    _dir: TempDir,
}

/// Settings for tests: short timeouts so timeout tests run fast, RFC defaults otherwise.
pub fn test_config() -> Smtp {
    Smtp {
        command_timeout: hisp::config::Duration(Duration::from_secs(10)),
        data_timeout: hisp::config::Duration(Duration::from_secs(10)),
        ..Smtp::default()
    }
}

/// A listener for `role` on 127.0.0.1 with local domain hisp-a.example, ALICE (with a
/// password) and BOB, queueing what it accepts.
pub async fn start(backend: Backend, role: Role, tls: bool, config: Smtp) -> Server {
    let dir = TempDir::new("smtp");
    let url = fresh_database(backend, dir.path()).await;
    let store = Store::open(&url, 4).await.unwrap();
    store.add_domain(HOST).await.unwrap();
    let hash = hisp::auth::hash_password(ALICE_PW).unwrap();
    store
        .add_address(&DirectAddress::parse(ALICE).unwrap(), Some(&hash))
        .await
        .unwrap();
    store
        .add_address(&DirectAddress::parse(BOB).unwrap(), None)
        .await
        .unwrap();
    let files = tls.then(|| tls_files(dir.path()));
    let acceptor = files.as_ref().map(|f| {
        tokio_rustls::TlsAcceptor::from(hisp::smtp::tls::server_config(&f.cert, &f.key).unwrap())
    });
    let limits = Limits::new(config.max_connections, config.max_connections_per_ip);
    let (stop, rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        role,
        config,
        hostname: HOST.into(),
        store: store.clone(),
        pipeline: Arc::new(Enqueue {
            store: store.clone(),
            hostname: HOST.into(),
            give_up_after: Duration::from_secs(3600),
        }),
        tls: acceptor,
        limits,
        shutdown: rx.clone(),
    });
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), shared)
        .await
        .unwrap();
    let addr = listener.local_addr();
    tokio::spawn(listener.serve(rx));
    Server {
        addr,
        store,
        tls: files,
        _stop: stop,
        _dir: dir,
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Client {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            io: Box::new(TcpStream::connect(addr).await.unwrap()),
            buf: Vec::new(),
        }
    }

    /// Connects and checks the 220 greeting.
    pub async fn greeted(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        let g = c.reply().await;
        assert!(g.starts_with("220 hisp-a.example "), "{g}");
        c
    }

    pub async fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
        self.io.flush().await.unwrap();
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8(line).unwrap());
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), self.io.read(&mut chunk))
                .await
                .expect("no reply within 30 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One whole reply (all lines of a multi-line one), with CRLFs; empty at EOF.
    pub async fn reply(&mut self) -> String {
        let mut out = String::new();
        while let Some(line) = self.line().await {
            assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
            out.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                break;
            }
        }
        out
    }

    /// Sends a command and asserts the reply starts with `expect` (e.g. `"250 2.1.0"`).
    pub async fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        let r = self.reply().await;
        assert!(
            r.starts_with(expect),
            "{line:?}: expected {expect:?}, got {r:?}"
        );
        r
    }

    /// True when the server has closed the connection (after any unread replies).
    pub async fn closed(&mut self) -> bool {
        self.line().await.is_none()
    }

    /// STARTTLS, then the TLS handshake trusting `ca_der` for `HOST`.
    pub async fn starttls(mut self, ca_der: &[u8]) -> Client {
        self.cmd("STARTTLS", "220 2.0.0").await;
        self.upgrade(ca_der).await
    }

    pub async fn upgrade(self, ca_der: &[u8]) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::try_from(HOST).unwrap();
        let tls = connector
            .connect(name, self.io)
            .await
            .expect("TLS handshake");
        Client {
            io: Box::new(tls),
            buf: Vec::new(),
        }
    }
}

pub fn b64(text: &str) -> String {
    // Test-only encoder; the server decodes with its own.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = text.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(T[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Messages on the queue: (envelope from, body) with their recipients.
pub async fn queued(store: &Store) -> Vec<(String, Vec<u8>, Vec<String>)> {
    use sqlx::Row;
    let msgs = sqlx::query("SELECT id, envelope_from, body FROM queue_messages ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let mut out = Vec::new();
    for m in msgs {
        let id: i64 = m.get("id");
        let rcpts = sqlx::query(
            "SELECT recipient FROM queue_recipients WHERE queue_message_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("recipient"))
        .collect();
        out.push((m.get("envelope_from"), m.get("body"), rcpts));
    }
    out
}
