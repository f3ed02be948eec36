//! Two `hisp serve` processes talking Direct to each other, for the reliability tests: each
//! with its own config and store, a dev PKI, a DNS server in this process publishing both
//! certificates, static routes between the gateways. Gateways can be killed with SIGKILL,
//! stopped and restarted; submitters stop quietly when the server goes away and report the
//! Message-IDs that were answered `250`.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use hisp::devpki::{Ca, Issued};
use hisp::dns_server::{DnsServer, Zone, ZoneContent};
use sqlx::Row;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Backend, Env, slapd::free_port, smtp::b64};

pub const SMITH: &str = "dr.smith@hisp-a.example";
pub const JONES: &str = "dr.jones@hisp-b.example";
pub const PASSWORD: &str = "pw-secret";

pub struct Gateway {
    pub env: Env,
    pub domain: &'static str,
    pub inbound: u16,
    pub submission: u16,
    pub child: Option<Child>,
    /// Lines of `hisp serve`'s stderr go here, so a failing test can show them.
    pub log: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Gateway {
    async fn new(
        backend: Backend,
        domain: &'static str,
        user: &str,
        cert: &Issued,
        root: &Ca,
    ) -> Gateway {
        let env = Env::new(backend).await;
        env.run(&["domain", "add", domain]).ok();
        env.run_env(
            &["address", "add", user, "--password-env", "PW"],
            &[("PW", PASSWORD)],
        )
        .ok();
        let c = env.write("me.pem", &cert.cert_pem());
        let k = env.write("me.key", &cert.key_pem());
        env.import_pem(&c, &k).ok();
        let anchor = env.write("anchor.pem", &root.cert.to_pem().unwrap());
        env.run(&[
            "anchor",
            "add",
            "--domain",
            domain,
            "--file",
            anchor.to_str().unwrap(),
        ])
        .ok();
        let log = env.path("serve.log");
        Gateway {
            env,
            domain,
            inbound: free_port(),
            submission: free_port(),
            child: None,
            log,
        }
    }

    fn configure(&self, other: &Gateway, dns: SocketAddr, extra: &str) {
        let mut config = std::fs::read_to_string(&self.env.config).unwrap();
        config = config.replace("hisp-test.example", self.domain);
        config.push_str(&format!(
            "[smtp]\nlisten = [\"127.0.0.1:{inbound}\"]\nsubmission_listen = [\"127.0.0.1:{sub}\"]\nrequire_tls_for_auth = false\n\
[delivery]\nroutes = {{ \"{other}\" = \"127.0.0.1:{other_port}\" }}\nretry = [\"1s\"]\nlease = \"3s\"\nconnect_timeout = \"2s\"\n\
[dns]\nnameservers = [\"{dns}\"]\ntimeout = \"3s\"\nattempts = 1\n\
[discovery]\nldap_timeout = \"1s\"\nnegative_cache_ttl = \"1s\"\n{extra}",
            inbound = self.inbound,
            sub = self.submission,
            other = other.domain,
            other_port = other.inbound,
        ));
        std::fs::write(&self.env.config, config).unwrap();
    }

    /// Starts `hisp serve` and waits until both listeners accept connections.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.domain);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            self.env
                .command(&["serve"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap(),
        );
        for port in [self.inbound, self.submission] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut ok = false;
            for _ in 0..300 {
                if TcpStream::connect(addr).await.is_ok() {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                ok,
                "{} never listened on {addr}: {}",
                self.domain,
                self.log_text()
            );
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no shutdown, no flushing; what was not committed is gone.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }

    /// SIGTERM, and wait for the graceful stop.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Message-IDs (without brackets) of `kind` rows in `address`'s mailbox, one per row.
    pub async fn mailbox_ids(&self, address: &str, kind: &str) -> Vec<String> {
        let store = self.env.store().await;
        let rows = sqlx::query(
            "SELECT m.message_id FROM mailbox m JOIN addresses a ON a.id = m.address_id
             WHERE a.address = $1 AND m.kind = $2 ORDER BY m.id",
        )
        .bind(address)
        .bind(kind)
        .fetch_all(store.pool())
        .await
        .unwrap();
        store.close().await;
        rows.iter()
            .map(|r| {
                let id: String = r.get("message_id");
                id.trim_start_matches('<').trim_end_matches('>').to_string()
            })
            .collect()
    }

    /// `(message_id without brackets, state)` of every tracking record.
    pub async fn tracking(&self) -> Vec<(String, String)> {
        let store = self.env.store().await;
        let rows = sqlx::query("SELECT message_id, state FROM tracking ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        store.close().await;
        rows.iter()
            .map(|r| {
                let id: String = r.get("message_id");
                (
                    id.trim_start_matches('<').trim_end_matches('>').to_string(),
                    r.get("state"),
                )
            })
            .collect()
    }

    /// How many DSNs the sender's mailbox holds.
    pub async fn dsn_count(&self, address: &str) -> usize {
        self.mailbox_ids(address, "dsn").await.len()
    }
}

/// hisp-a.example (SMITH, the sender) and hisp-b.example (JONES), configured, not started.
pub struct Pair {
    pub a: Gateway,
    pub b: Gateway,
    pub dns: DnsServer,
}

pub async fn pair(backend: Backend, extra_a: &str, extra_b: &str) -> Pair {
    let root = Ca::root("Reliability Root").unwrap();
    let smith = root.leaf().email(SMITH).build().unwrap();
    let jones = root.leaf().email(JONES).build().unwrap();
    let zone = Zone::new();
    let mut content = ZoneContent::new();
    content.origin("hisp-a.example").unwrap();
    content.origin("hisp-b.example").unwrap();
    content
        .cert("dr.smith.hisp-a.example", &smith.cert_der())
        .unwrap();
    content
        .cert("dr.jones.hisp-b.example", &jones.cert_der())
        .unwrap();
    zone.replace(content);
    let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), zone)
        .await
        .unwrap();
    let a = Gateway::new(backend, "hisp-a.example", SMITH, &smith, &root).await;
    let b = Gateway::new(backend, "hisp-b.example", JONES, &jones, &root).await;
    a.configure(&b, dns.local_addr, extra_a);
    b.configure(&a, dns.local_addr, extra_b);
    Pair { a, b, dns }
}

/// A Direct message from SMITH to JONES of roughly `size` bytes.
pub fn message(id: &str, size: usize) -> String {
    let mut body = format!(
        "From: {SMITH}\r\nTo: {JONES}\r\nSubject: reliability {id}\r\nMessage-ID: <{id}>\r\n\r\n"
    );
    while body.len() < size {
        body.push_str(
            "The quick brown fox jumps over the lazy dog, again and again and again.\r\n",
        );
    }
    body
}

/// What a submitter saw.
#[derive(Default, Debug)]
pub struct Submitted {
    /// Answered 250 (without brackets).
    pub acked: Vec<String>,
    /// Answered something else after DATA: (id, reply).
    pub refused: Vec<(String, String)>,
}

/// One SMTP AUTH session to `port` submitting `ids` in turn, each `size` bytes. Stops at the
/// first broken connection (a killed server) and never panics on one. A reply other than 250
/// after the message is recorded and the session goes on when `go_on_after_refusal`.
pub async fn submitter(
    port: u16,
    ids: Vec<String>,
    size: usize,
    go_on_after_refusal: bool,
    progress: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Submitted {
    let mut out = Submitted::default();
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return out;
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
        loop {
            let mut line = String::new();
            match tokio::time::timeout(Duration::from_secs(60), r.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line.trim_end().to_string());
            }
        }
    }
    macro_rules! step {
        ($line:expr, $want:expr) => {{
            if w.write_all(format!("{}\r\n", $line).as_bytes())
                .await
                .is_err()
            {
                return out;
            }
            match reply(&mut r).await {
                Some(rep) if rep.starts_with($want) => rep,
                _ => return out,
            }
        }};
    }
    if !reply(&mut r).await.is_some_and(|g| g.starts_with("220")) {
        return out;
    }
    step!("EHLO ehr.example", "250");
    step!(
        format!("AUTH PLAIN {}", b64(&format!("\0{SMITH}\0{PASSWORD}"))),
        "235"
    );
    for id in ids {
        step!(format!("MAIL FROM:<{SMITH}>"), "250");
        step!(format!("RCPT TO:<{JONES}>"), "250");
        step!("DATA", "354");
        let body = message(&id, size);
        if w.write_all(format!("{body}.\r\n").as_bytes())
            .await
            .is_err()
        {
            return out;
        }
        match reply(&mut r).await {
            Some(rep) if rep.starts_with("250") => {
                out.acked.push(id);
                progress.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Some(rep) => {
                out.refused.push((id, rep));
                if !go_on_after_refusal {
                    return out;
                }
            }
            None => return out,
        }
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    out
}

/// Polls `probe` every 200 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if probe().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
