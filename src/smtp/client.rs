//! Outbound SMTP: carries a queued message to each recipient domain's next hop and reports a
//! result per recipient (a 5xx on one RCPT does not fail the others; a 4xx is retried later).
//!
//! Next hop: the static route from `[delivery] routes`, else the domain's MX hosts (lowest
//! preference first, all of them), else the domain itself (A/AAAA); names are resolved
//! through [`Resolve`] (hickory in `hisp serve`, see `mx.rs`). STARTTLS is used whenever
//! offered; with `require_tls` a hop without it is skipped. Certificates are not verified:
//! Direct authenticates and encrypts the message itself with S/MIME, and RFC 7435
//! opportunistic TLS is about passive eavesdroppers. A connection is kept open briefly after
//! a message and reused (after RSET) for the next one to the same host.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::queue::{Attempt, Transport};
use crate::store::queue::{Claimed, QueuedMessage};

/// Finds where a domain's mail goes.
pub trait Resolve: Send + Sync + 'static {
    /// MX hosts as (preference, host). `Ok(empty)` means the domain has none (use its own
    /// A/AAAA records).
    fn mx(&self, domain: &str) -> impl Future<Output = Result<Vec<(u16, String)>, String>> + Send;
    /// A and AAAA addresses of a host.
    fn addresses(&self, host: &str) -> impl Future<Output = Result<Vec<IpAddr>, String>> + Send;
}

/// No MX lookups, and addresses from the operating system's resolver: for static routes
/// and tests.
pub struct NoMx;

impl Resolve for NoMx {
    async fn mx(&self, _domain: &str) -> Result<Vec<(u16, String)>, String> {
        Ok(Vec::new())
    }

    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        tokio::net::lookup_host((host, 0))
            .await
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our EHLO name.
    pub hostname: String,
    pub routes: BTreeMap<String, String>,
    pub require_tls: bool,
    pub connect_timeout: Duration,
    /// RFC 5321 4.5.3.2 allows 5 minutes per command and 10 for the final dot.
    pub command_timeout: Duration,
    /// The port of MX and A/AAAA hops (routes carry their own).
    pub port: u16,
}

/// The hosts to try for `domain`, in order, as `host:port`.
pub fn next_hops(
    domain: &str,
    routes: &BTreeMap<String, String>,
    mx: &[(u16, String)],
    port: u16,
) -> Vec<String> {
    if let Some(route) = routes.get(domain) {
        return vec![route.clone()];
    }
    if mx.is_empty() {
        return vec![format!("{domain}:{port}")];
    }
    let mut sorted = mx.to_vec();
    sorted.sort_by_key(|(pref, _)| *pref);
    sorted
        .into_iter()
        .map(|(_, host)| format!("{}:{port}", host.trim_end_matches('.')))
        .collect()
}

/// One server reply: its code and the text of every line joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    pub text: String,
}

impl ServerReply {
    /// The enhanced status code the reply carries, else the class default.
    pub fn status(&self) -> String {
        let first = self.text.split_whitespace().next().unwrap_or("");
        let parts: Vec<&str> = first.split('.').collect();
        if parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && first.starts_with(char::from(b'0' + (self.code / 100) as u8))
        {
            return first.to_string();
        }
        format!("{}.0.0", self.code / 100)
    }

    pub fn line(&self) -> String {
        format!("{} {}", self.code, self.text)
    }

    fn attempt(&self, host: &str) -> Attempt {
        let remote_mta = Some(host.to_string());
        match self.code {
            200..=399 => Attempt::Delivered { reply: self.line() },
            500..=599 => Attempt::Permanent {
                status: self.status(),
                reply: self.line(),
                remote_mta,
            },
            _ => Attempt::Temporary {
                status: self.status(),
                reply: self.line(),
                remote_mta,
            },
        }
    }
}

/// Parses one reply line: (code, is the last line, text).
pub fn parse_reply_line(line: &[u8]) -> Option<(u16, bool, String)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code: u16 = std::str::from_utf8(&line[..3]).ok()?.parse().ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    let last = match line.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        _ => return None,
    };
    let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned();
    Some((code, last, text))
}

/// The body as DATA sends it: lines starting with a dot get another, and it ends in CRLF.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 8);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Accepts any certificate but still checks the handshake signatures, so the channel is
/// encrypted to whoever holds the key the server presented (opportunistic TLS).
#[derive(Debug)]
struct Unauthenticated(Arc<CryptoProvider>);

impl ServerCertVerifier for Unauthenticated {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> Result<TlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unauthenticated(provider)))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// Why a hop could not be used at all (the next one is tried).
struct HopFailure(String);

struct Wire {
    stream: Stream,
    input: Vec<u8>,
    timeout: Duration,
}

impl Wire {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let write = async {
            match &mut self.stream {
                Stream::Plain(s) => s.write_all(bytes).await,
                Stream::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    async fn reply(&mut self, timeout: Duration) -> Result<ServerReply, String> {
        let mut text = Vec::new();
        loop {
            while let Some(i) = memchr::memchr(b'\n', &self.input) {
                let line: Vec<u8> = self.input.drain(..=i).collect();
                let Some((code, last, t)) = parse_reply_line(&line) else {
                    return Err(format!(
                        "malformed reply {:?}",
                        String::from_utf8_lossy(&line).trim_end()
                    ));
                };
                text.push(t);
                if last {
                    return Ok(ServerReply {
                        code,
                        text: text.join(" / "),
                    });
                }
                if text.len() > 100 {
                    return Err("reply has too many lines".into());
                }
            }
            if self.input.len() > 64 * 1024 {
                return Err("reply line too long".into());
            }
            let mut chunk = [0u8; 4096];
            let read = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut chunk).await,
                    Stream::Tls(s) => s.read(&mut chunk).await,
                    Stream::Gone => Ok(0),
                }
            };
            match tokio::time::timeout(timeout, read).await {
                Err(_) => return Err("timed out waiting for a reply".into()),
                Ok(Err(e)) => return Err(format!("connection lost: {e}")),
                Ok(Ok(0)) => return Err("connection closed by the server".into()),
                Ok(Ok(n)) => self.input.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn command(&mut self, line: &str) -> Result<ServerReply, String> {
        self.write(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        self.reply(self.timeout).await
    }
}

/// What the EHLO reply offered.
#[derive(Debug, Default)]
struct Offer {
    starttls: bool,
    dsn: bool,
    size: bool,
    eight_bit: bool,
}

fn offer(ehlo: &ServerReply) -> Offer {
    let mut o = Offer::default();
    for kw in ehlo.text.split(" / ") {
        let name = kw
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match name.as_str() {
            "STARTTLS" => o.starttls = true,
            "DSN" => o.dsn = true,
            "SIZE" => o.size = true,
            "8BITMIME" => o.eight_bit = true,
            _ => {}
        }
    }
    o
}

/// xtext (RFC 3461 4) for ENVID and ORCPT values.
fn xtext(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// A connection kept open after a transaction, for the next message to the same hop.
struct Idle {
    wire: Wire,
    ehlo: ServerReply,
    since: Instant,
}

/// How long an unused connection is kept, and how many per hop: well under the 5 minutes a
/// server waits for a command, and few enough not to hog a peer's connection slots.
const IDLE_FOR: Duration = Duration::from_secs(30);
const IDLE_PER_HOP: usize = 2;

/// The SMTP client as a queue [`Transport`].
pub struct SmtpClient<R: Resolve> {
    config: ClientConfig,
    resolver: R,
    tls: TlsConnector,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl<R: Resolve> SmtpClient<R> {
    pub fn new(config: ClientConfig, resolver: R) -> Result<SmtpClient<R>, rustls::Error> {
        Ok(SmtpClient {
            config,
            resolver,
            tls: tls_connector()?,
            idle: Mutex::new(HashMap::new()),
        })
    }

    fn take_idle(&self, hop: &str) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(hop)?;
        list.retain(|c| c.since.elapsed() < IDLE_FOR);
        list.pop()
    }

    /// An open connection to `hop` from an earlier message, checked with RSET.
    async fn reuse(&self, hop: &str) -> Option<(Wire, ServerReply)> {
        while let Some(mut c) = self.take_idle(hop) {
            if matches!(c.wire.command("RSET").await, Ok(r) if r.code == 250) {
                return Some((c.wire, c.ehlo));
            }
        }
        None
    }

    fn park(&self, hop: &str, wire: Wire, ehlo: ServerReply) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(hop.to_string()).or_default();
        list.push(Idle {
            wire,
            ehlo,
            since: Instant::now(),
        });
        if list.len() > IDLE_PER_HOP {
            list.remove(0);
        }
    }

    /// A TCP connection to the first address of `hop` (`host:port`) that answers.
    async fn dial(&self, hop: &str) -> Result<TcpStream, HopFailure> {
        let (host, port) = hop
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_start_matches('[').trim_end_matches(']'),
                    p.parse::<u16>().ok()?,
                ))
            })
            .ok_or_else(|| HopFailure(format!("{hop}: not host:port")))?;
        let ips = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self
                .resolver
                .addresses(host)
                .await
                .map_err(|e| HopFailure(format!("{host}: address lookup failed: {e}")))?,
        };
        let mut why = format!("{host} has no address");
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(e)) => why = format!("{addr}: {e}"),
                Err(_) => why = format!("{addr}: connection timed out"),
            }
        }
        Err(HopFailure(why))
    }

    async fn connect(&self, hop: &str) -> Result<(Wire, ServerReply), HopFailure> {
        let tcp = self.dial(hop).await?;
        let _ = tcp.set_nodelay(true);
        let mut wire = Wire {
            stream: Stream::Plain(tcp),
            input: Vec::new(),
            timeout: self.config.command_timeout,
        };
        let greeting = wire
            .reply(self.config.command_timeout)
            .await
            .map_err(|e| HopFailure(format!("{hop}: {e}")))?;
        if greeting.code != 220 {
            return Err(HopFailure(format!(
                "{hop} greeted with {}",
                greeting.line()
            )));
        }
        let ehlo_line = format!("EHLO {}", self.config.hostname);
        let fail = |e: String| HopFailure(format!("{hop}: {e}"));
        let mut ehlo = wire.command(&ehlo_line).await.map_err(fail)?;
        if ehlo.code != 250 {
            return Err(HopFailure(format!("{hop} refused EHLO: {}", ehlo.line())));
        }
        if offer(&ehlo).starttls {
            let r = wire.command("STARTTLS").await.map_err(fail)?;
            if r.code == 220 {
                let host = hop.rsplit_once(':').map_or(hop, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| HopFailure(format!("{hop}: {e}")))?;
                let Stream::Plain(tcp) = std::mem::replace(&mut wire.stream, Stream::Gone) else {
                    return Err(HopFailure(format!("{hop}: STARTTLS twice")));
                };
                let tls =
                    tokio::time::timeout(self.config.command_timeout, self.tls.connect(name, tcp))
                        .await
                        .map_err(|_| HopFailure(format!("{hop}: TLS handshake timed out")))?
                        .map_err(|e| HopFailure(format!("{hop}: TLS handshake failed: {e}")))?;
                wire.stream = Stream::Tls(Box::new(tls));
                wire.input.clear();
                ehlo = wire.command(&ehlo_line).await.map_err(fail)?;
                if ehlo.code != 250 {
                    return Err(HopFailure(format!(
                        "{hop} refused EHLO after STARTTLS: {}",
                        ehlo.line()
                    )));
                }
            } else if self.config.require_tls {
                return Err(HopFailure(format!("{hop} refused STARTTLS: {}", r.line())));
            }
        } else if self.config.require_tls {
            return Err(HopFailure(format!(
                "{hop} does not offer STARTTLS and delivery.require_tls is set"
            )));
        }
        Ok((wire, ehlo))
    }

    /// One transaction on an open connection; a result for every recipient.
    async fn transaction(
        &self,
        wire: &mut Wire,
        ehlo: &ServerReply,
        hop: &str,
        message: &QueuedMessage,
        rcpts: &[&Claimed],
    ) -> (Vec<Attempt>, bool) {
        let offer = offer(ehlo);
        let lost = |e: String| Attempt::Temporary {
            status: "4.4.2".into(),
            reply: format!("{hop}: {e}"),
            remote_mta: Some(hop.to_string()),
        };
        let mut mail = format!("MAIL FROM:<{}>", message.envelope_from);
        if offer.size {
            mail.push_str(&format!(" SIZE={}", message.body.len()));
        }
        if offer.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if offer.dsn {
            if let Some(ret) = &message.ret {
                mail.push_str(&format!(" RET={ret}"));
            }
            if let Some(envid) = &message.envid {
                mail.push_str(&format!(" ENVID={}", xtext(envid)));
            }
        }
        match wire.command(&mail).await {
            Ok(r) if r.code == 250 => {}
            Ok(r) => return (vec![r.attempt(hop); rcpts.len()], true),
            Err(e) => return (vec![lost(e); rcpts.len()], false),
        }
        let mut results: Vec<Option<Attempt>> = vec![None; rcpts.len()];
        let mut accepted = Vec::new();
        for (i, r) in rcpts.iter().enumerate() {
            let mut cmd = format!("RCPT TO:<{}>", r.recipient);
            if offer.dsn {
                if let Some(n) = &r.notify {
                    cmd.push_str(&format!(" NOTIFY={n}"));
                }
                if let Some((kind, addr)) = r.orcpt.as_deref().and_then(|o| o.split_once(';')) {
                    cmd.push_str(&format!(" ORCPT={kind};{}", xtext(addr)));
                }
            }
            match wire.command(&cmd).await {
                Ok(reply) if reply.code / 100 == 2 => accepted.push(i),
                Ok(reply) => results[i] = Some(reply.attempt(hop)),
                Err(e) => {
                    return (finish(results, lost(e)), false);
                }
            }
        }
        if accepted.is_empty() {
            return (finish(results, lost("no recipient accepted".into())), true);
        }
        match wire.command("DATA").await {
            Ok(r) if r.code == 354 => {}
            Ok(r) => {
                for &i in &accepted {
                    results[i] = Some(r.attempt(hop));
                }
                return (finish(results, lost("DATA refused".into())), true);
            }
            Err(e) => return (finish(results, lost(e)), false),
        }
        if let Err(e) = wire.write(&dot_stuff(&message.body)).await {
            return (
                finish(results, lost(format!("connection lost: {e}"))),
                false,
            );
        }
        let final_reply = wire.reply(self.config.command_timeout * 2).await;
        let reusable = final_reply.is_ok();
        let outcome = match final_reply {
            Ok(r) => r.attempt(hop),
            Err(e) => lost(e),
        };
        for &i in &accepted {
            results[i] = Some(outcome.clone());
        }
        (finish(results, lost("no result".into())), reusable)
    }

    async fn deliver_domain(
        &self,
        domain: &str,
        message: &QueuedMessage,
        rcpts: &[&Claimed],
    ) -> Vec<Attempt> {
        let mx = if self.config.routes.contains_key(domain) {
            Vec::new()
        } else {
            match self.resolver.mx(domain).await {
                Ok(mx) => mx,
                Err(e) => {
                    let failure = Attempt::Temporary {
                        status: "4.4.3".into(),
                        reply: format!("DNS lookup for {domain} failed: {e}"),
                        remote_mta: None,
                    };
                    return vec![failure; rcpts.len()];
                }
            }
        };
        let mut why = Vec::new();
        for hop in next_hops(domain, &self.config.routes, &mx, self.config.port) {
            let open = match self.reuse(&hop).await {
                Some(idle) => Ok(idle),
                None => self.connect(&hop).await,
            };
            match open {
                Ok((mut wire, ehlo)) => {
                    let (results, reusable) = self
                        .transaction(&mut wire, &ehlo, &hop, message, rcpts)
                        .await;
                    if reusable {
                        self.park(&hop, wire, ehlo);
                    }
                    return results;
                }
                Err(HopFailure(e)) => why.push(e),
            }
        }
        let failure = Attempt::Temporary {
            status: "4.4.1".into(),
            reply: format!("no usable host for {domain}: {}", why.join("; ")),
            remote_mta: None,
        };
        vec![failure; rcpts.len()]
    }
}

fn finish(results: Vec<Option<Attempt>>, missing: Attempt) -> Vec<Attempt> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| missing.clone()))
        .collect()
}

impl<R: Resolve> Transport for SmtpClient<R> {
    async fn deliver(&self, message: &QueuedMessage, recipients: &[Claimed]) -> Vec<Attempt> {
        let mut results: Vec<Option<Attempt>> = vec![None; recipients.len()];
        let mut domains: Vec<&str> = recipients.iter().map(|r| r.domain.as_str()).collect();
        domains.sort_unstable();
        domains.dedup();
        for domain in domains {
            let (idx, group): (Vec<usize>, Vec<&Claimed>) = recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| r.domain == domain)
                .unzip();
            let attempts = self.deliver_domain(domain, message, &group).await;
            for (i, a) in idx.into_iter().zip(attempts) {
                results[i] = Some(a);
            }
        }
        finish(
            results,
            Attempt::Temporary {
                status: "4.3.0".into(),
                reply: "not attempted".into(),
                remote_mta: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_in_order() {
        let mut routes = BTreeMap::new();
        routes.insert("b.example".to_string(), "127.0.0.1:2526".to_string());
        assert_eq!(
            next_hops("b.example", &routes, &[(1, "mx".into())], 25),
            ["127.0.0.1:2526"]
        );
        assert_eq!(next_hops("c.example", &routes, &[], 25), ["c.example:25"]);
        let mx = [
            (20, "mx2.c.example.".to_string()),
            (10, "mx1.c.example.".to_string()),
        ];
        assert_eq!(
            next_hops("c.example", &routes, &mx, 25),
            ["mx1.c.example:25", "mx2.c.example:25"]
        );
    }

    #[test]
    fn reply_lines_and_status() {
        assert_eq!(
            parse_reply_line(b"250-SIZE 10\r\n"),
            Some((250, false, "SIZE 10".into()))
        );
        assert_eq!(
            parse_reply_line(b"550 5.1.1 no\r\n"),
            Some((550, true, "5.1.1 no".into()))
        );
        assert_eq!(
            parse_reply_line(b"250\r\n"),
            Some((250, true, String::new()))
        );
        assert_eq!(parse_reply_line(b"25x ok\r\n"), None);
        assert_eq!(parse_reply_line(b"999 x\r\n"), None);
        let r = |code, text: &str| ServerReply {
            code,
            text: text.into(),
        };
        assert_eq!(r(550, "5.1.1 no such user").status(), "5.1.1");
        assert_eq!(r(451, "try later").status(), "4.0.0");
        assert_eq!(r(451, "5.1.1 mismatched class").status(), "4.0.0");
    }

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n..c"), b"..a\r\nb\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n");
    }

    #[test]
    fn xtext_encoding() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
