//! HTTP(S) GET for the few URLs a HISP must follow: AIA caIssuers intermediates, CRL
//! distribution points and IPKIX certificate records.
//!
//! Deliberately small and blocking: it runs inside certificate validation, which is CPU work
//! already off the async reactor. Every fetch has a deadline and a size cap, because these URLs
//! come from certificates and DNS records that strangers control. Failures are remembered for a
//! short while so that a dead CRL server under soft-fail doesn't cost a timeout per message.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

use crate::trust::Fetcher;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    #[error("unsupported URL {0:?}: only http:// and https:// are fetched")]
    Unsupported(String),
    #[error("bad URL {0:?}")]
    BadUrl(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{url}: no complete answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: answer larger than the {limit}-byte limit")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: malformed HTTP response: {reason}")]
    Malformed { url: String, reason: String },
    #[error("{url}: too many redirects")]
    Redirects { url: String },
    #[error("{url}: network error: {reason}")]
    Io { url: String, reason: String },
}

/// A parsed `http(s)://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, FetchError> {
        let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "http://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ci(url, "https://") {
            (true, r)
        } else {
            return Err(FetchError::Unsupported(url.to_string()));
        };
        let bad = || FetchError::BadUrl(url.to_string());
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // Fragments are never sent; a bare "?q" still needs a leading slash on the wire.
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if authority.is_empty() || authority.contains('@') || path.bytes().any(|b| b <= b' ') {
            return Err(bad());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(bad)?;
            let host = &v6[..end];
            let port = match &v6[end + 1..] {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?,
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Url {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// How long a failed URL is answered from memory before it is tried again.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 3;

/// The real [`Fetcher`]: blocking HTTP/1.0 GET (so no chunked bodies), TLS through OpenSSL
/// with the system trust store for https.
pub struct HttpFetcher {
    timeout: Duration,
    max_size: u64,
    failures: Mutex<HashMap<String, (Instant, FetchError)>>,
    failure_memory: Duration,
}

impl HttpFetcher {
    pub fn new(timeout: Duration, max_size: u64) -> HttpFetcher {
        HttpFetcher {
            timeout,
            max_size,
            failures: Mutex::new(HashMap::new()),
            failure_memory: FAILURE_MEMORY,
        }
    }

    /// Fetches every time, even a URL that just failed: for the few URLs an admin chose
    /// (trust bundles), which are fetched on their own schedule anyway.
    pub fn without_failure_memory(mut self) -> HttpFetcher {
        self.failure_memory = Duration::ZERO;
        self
    }

    pub fn from_config(config: &crate::config::Discovery) -> HttpFetcher {
        HttpFetcher::new(config.fetch_timeout.0, config.fetch_max_size.0)
    }

    /// GET `url`, following up to three redirects, within one overall deadline.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        if let Some(err) = self.remembered_failure(url) {
            return Err(err);
        }
        let result = self.get_uncached(url);
        if let Err(e) = &result {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: a flood of distinct bad URLs must not grow memory without limit.
            if failures.len() >= 1024 {
                failures.retain(|_, (at, _)| at.elapsed() < self.failure_memory);
                if failures.len() >= 1024 {
                    failures.clear();
                }
            }
            failures.insert(url.to_string(), (Instant::now(), e.clone()));
        }
        result
    }

    fn remembered_failure(&self, url: &str) -> Option<FetchError> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(url) {
            Some((at, e)) if at.elapsed() < self.failure_memory => Some(e.clone()),
            _ => None,
        }
    }

    fn get_uncached(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let deadline = Instant::now() + self.timeout;
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let parsed = Url::parse(&current)?;
            match self.get_once(&parsed, &current, deadline)? {
                Answer::Body(body) => return Ok(body),
                Answer::Redirect(location) => current = resolve_location(&parsed, &location),
            }
        }
        Err(FetchError::Redirects {
            url: url.to_string(),
        })
    }

    fn get_once(&self, url: &Url, raw: &str, deadline: Instant) -> Result<Answer, FetchError> {
        let timeout_err = || FetchError::Timeout {
            url: raw.to_string(),
            secs: self.timeout.as_secs(),
        };
        let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| FetchError::Resolve {
                host: url.host.clone(),
                reason: e.to_string(),
            })?
            .collect();
        let mut last = None;
        let mut stream = None;
        for addr in addrs {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(timeout_err)?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => {
                    last = Some(FetchError::Connect {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                return Err(last.unwrap_or_else(|| FetchError::Resolve {
                    host: url.host.clone(),
                    reason: "no addresses".into(),
                }));
            }
        };
        let host_header = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: hisp/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            url.path,
            env!("CARGO_PKG_VERSION")
        );
        let limit = self.max_size;
        let io = |e: std::io::Error| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                timeout_err()
            } else {
                FetchError::Io {
                    url: raw.to_string(),
                    reason: e.to_string(),
                }
            }
        };
        let bytes = if url.tls {
            let mut builder =
                SslConnector::builder(SslMethod::tls_client()).map_err(|e| FetchError::Tls {
                    host: url.host.clone(),
                    reason: e.to_string(),
                })?;
            builder.set_verify(SslVerifyMode::PEER);
            let connector = builder.build();
            set_deadline(&stream, deadline).map_err(|_| timeout_err())?;
            let mut tls = connector
                .connect(&url.host, stream.try_clone().map_err(io)?)
                .map_err(|e| FetchError::Tls {
                    host: url.host.clone(),
                    reason: e.to_string(),
                })?;
            tls.write_all(request.as_bytes()).map_err(io)?;
            read_limited(&mut tls, &stream, deadline, limit, raw, &timeout_err)?
        } else {
            let mut s = stream.try_clone().map_err(io)?;
            set_deadline(&stream, deadline).map_err(|_| timeout_err())?;
            s.write_all(request.as_bytes()).map_err(io)?;
            read_limited(&mut s, &stream, deadline, limit, raw, &timeout_err)?
        };
        parse_response(&bytes, raw, limit)
    }
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        self.get(url).map_err(|e| e.to_string())
    }
}

enum Answer {
    Body(Vec<u8>),
    Redirect(String),
}

fn set_deadline(stream: &TcpStream, deadline: Instant) -> std::io::Result<()> {
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or(std::io::ErrorKind::TimedOut)?;
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))
}

/// Reads to EOF, refusing more than `limit` body bytes (plus room for headers) and stopping at
/// the deadline even if the peer trickles bytes.
fn read_limited(
    reader: &mut dyn Read,
    stream: &TcpStream,
    deadline: Instant,
    limit: u64,
    url: &str,
    timeout_err: &dyn Fn() -> FetchError,
) -> Result<Vec<u8>, FetchError> {
    const HEADER_ROOM: u64 = 16 * 1024;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        set_deadline(stream, deadline).map_err(|_| timeout_err())?;
        match reader.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() as u64 > limit + HEADER_ROOM {
                    return Err(FetchError::TooLarge {
                        url: url.to_string(),
                        limit,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timeout_err());
            }
            Err(e) => {
                // A TLS peer that closes without close_notify still sent a whole HTTP/1.0 body.
                if !out.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof {
                    return Ok(out);
                }
                let s = e.to_string();
                if !out.is_empty() && s.contains("unexpected eof") {
                    return Ok(out);
                }
                return Err(FetchError::Io {
                    url: url.to_string(),
                    reason: s,
                });
            }
        }
    }
}

fn parse_response(bytes: &[u8], url: &str, limit: u64) -> Result<Answer, FetchError> {
    let malformed = |reason: &str| FetchError::Malformed {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let end = memchr::memmem::find(bytes, b"\r\n\r\n").ok_or_else(|| malformed("no header end"))?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| malformed("non-text headers"))?;
    let body = &bytes[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(malformed("not an HTTP/1.x status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("bad status code"))?;
    let mut location = None;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed("header line without a colon"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("location") {
            location = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| malformed("bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            chunked = true;
        }
    }
    match status {
        200 => {}
        301 | 302 | 303 | 307 | 308 => {
            return location
                .map(Answer::Redirect)
                .ok_or_else(|| malformed("redirect without Location"));
        }
        other => {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: other,
            });
        }
    }
    if chunked {
        return Err(malformed("chunked body in answer to an HTTP/1.0 request"));
    }
    if body.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    if let Some(n) = length
        && n != body.len() as u64
    {
        return Err(malformed(&format!(
            "body is {} bytes but Content-Length says {n}",
            body.len()
        )));
    }
    Ok(Answer::Body(body.to_vec()))
}

fn resolve_location(base: &Url, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme = if base.tls { "https" } else { "http" };
    let host = if base.host.contains(':') {
        format!("[{}]", base.host)
    } else {
        base.host.clone()
    };
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{dir}/{location}")
    };
    format!("{scheme}://{host}:{}{path}", base.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://ca.example:8080/aia/int.cer").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "ca.example", 8080, "/aia/int.cer")
        );
        let u = Url::parse("HTTPS://[::1]/x?y#frag").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "::1", 443, "/x?y")
        );
        assert_eq!(Url::parse("http://h").unwrap().path, "/");
        assert!(matches!(
            Url::parse("ldap://x/"),
            Err(FetchError::Unsupported(_))
        ));
        assert!(matches!(
            Url::parse("http://u@h/"),
            Err(FetchError::BadUrl(_))
        ));
        assert!(matches!(
            Url::parse("http://h:x/"),
            Err(FetchError::BadUrl(_))
        ));
        assert!(matches!(
            Url::parse("http://h/a b"),
            Err(FetchError::BadUrl(_))
        ));
    }

    #[test]
    fn parses_responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert!(matches!(parse_response(ok, "u", 10), Ok(Answer::Body(b)) if b == b"abc"));
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc";
        assert!(matches!(
            parse_response(short, "u", 10),
            Err(FetchError::Malformed { .. })
        ));
        let big = b"HTTP/1.0 200 OK\r\n\r\n0123456789AB";
        assert!(matches!(
            parse_response(big, "u", 10),
            Err(FetchError::TooLarge { .. })
        ));
        let nf = b"HTTP/1.0 404 Not Found\r\n\r\n";
        assert!(matches!(
            parse_response(nf, "u", 10),
            Err(FetchError::Status { status: 404, .. })
        ));
        let redir = b"HTTP/1.1 302 Found\r\nLocation: /b\r\n\r\n";
        assert!(matches!(parse_response(redir, "u", 10), Ok(Answer::Redirect(l)) if l == "/b"));
        assert!(parse_response(b"garbage", "u", 10).is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n", "u", 10).is_err());
    }

    #[test]
    fn resolves_relative_redirects() {
        let base = Url::parse("http://h:81/a/b.cer").unwrap();
        assert_eq!(resolve_location(&base, "/c"), "http://h:81/c");
        assert_eq!(resolve_location(&base, "c.cer"), "http://h:81/a/c.cer");
        assert_eq!(resolve_location(&base, "https://x/y"), "https://x/y");
    }

    #[test]
    fn a_refused_connection_is_an_error_and_remembered() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let f = HttpFetcher::new(Duration::from_secs(2), 1000);
        let url = format!("http://127.0.0.1:{port}/x");
        let first = f.get(&url).unwrap_err();
        assert!(matches!(first, FetchError::Connect { .. }), "{first}");
        let started = Instant::now();
        assert_eq!(f.get(&url).unwrap_err(), first);
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
