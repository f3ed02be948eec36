//! A tiny real HTTP/1.1 server for the URLs certificate discovery fetches: AIA caIssuers
//! intermediates, CRL distribution points, IPKIX certificate URLs from DNS CERT records.
//!
//! It speaks just enough HTTP/1.1 for a real client: persistent connections, `Connection:
//! close`, Content-Length-framed and close-delimited bodies, HEAD. Routes can change while it
//! runs, requests are counted per path (to prove a fetch happened, or was served from a cache),
//! and misbehaving routes — slow, endless, huge, trickling — exercise the client's timeouts
//! and size limits. Plain `std::net` on threads, so it needs no runtime and works from both
//! sync and `#[tokio::test]` tests.
//!
//! Routes and hit counts are keyed by the request path without its query string.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// An idle persistent connection is closed after this long, so stray client pools can't keep
/// server threads alive for the rest of the test run.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request line or header line accepted.
const MAX_LINE: u64 = 8192;
const FILLER: [u8; 16384] = [b'x'; 16384];

/// What a route answers with after its status line and headers.
#[derive(Clone, Debug)]
pub enum Body {
    /// These bytes, framed by Content-Length.
    Bytes(Vec<u8>),
    /// Filler bytes without Content-Length (close-delimited) until the client hangs up: for
    /// size limits that must hold even when no length is announced.
    Endless,
    /// Content-Length `n` followed by `n` filler bytes: honest, just too big. A client may
    /// refuse on the header alone or has to count while reading.
    Sized(u64),
    /// One filler byte every interval, forever, without Content-Length: each read succeeds,
    /// so only a deadline on the whole fetch (not a per-read timeout) ends it.
    Trickle(Duration),
}

/// One path's response.
#[derive(Clone, Debug)]
pub struct Route {
    pub status: u16,
    pub content_type: String,
    pub body: Body,
    /// Waited before the status line is sent (after the request is counted).
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Route {
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Route {
        Route {
            status: 200,
            content_type: content_type.to_owned(),
            body: Body::Bytes(body.into()),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn endless(content_type: &str) -> Route {
        Route {
            body: Body::Endless,
            ..Route::ok(content_type, [])
        }
    }

    pub fn oversized(content_type: &str, len: u64) -> Route {
        Route {
            body: Body::Sized(len),
            ..Route::ok(content_type, [])
        }
    }

    pub fn trickle(content_type: &str, every: Duration) -> Route {
        Route {
            body: Body::Trickle(every),
            ..Route::ok(content_type, [])
        }
    }

    /// `302 Found` to `location` (absolute URL or path).
    pub fn redirect(location: &str) -> Route {
        Route::ok("text/plain", "redirect\n")
            .with_status(302)
            .with_header("Location", location)
    }

    pub fn with_status(mut self, status: u16) -> Route {
        self.status = status;
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Route {
        self.delay = delay;
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Route {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

struct State {
    routes: Mutex<HashMap<String, Route>>,
    hits: Mutex<HashMap<String, usize>>,
    stopping: AtomicBool,
    /// Open connections, so stop() can cut them: a "down" server must not keep answering on
    /// a client's pooled keep-alive connection.
    conns: Mutex<HashMap<u64, TcpStream>>,
}

/// A running server on `127.0.0.1:port`; stopped on drop.
pub struct HttpServer {
    pub port: u16,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `routes` (path → (content type, body)) with status 200 on a free loopback port.
    pub fn start(routes: HashMap<String, (String, Vec<u8>)>) -> HttpServer {
        let routes = routes
            .into_iter()
            .map(|(path, (ct, body))| (path, Route::ok(&ct, body)))
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback HTTP port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            routes: Mutex::new(routes),
            hits: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
        });
        let accept_state = Arc::clone(&state);
        let accept = std::thread::Builder::new()
            .name(format!("http-test-{port}"))
            .spawn(move || accept_loop(listener, accept_state))
            .expect("spawn HTTP accept thread");
        HttpServer {
            port,
            state,
            accept: Some(accept),
        }
    }

    /// A server with no routes yet (everything 404 until `set`).
    pub fn empty() -> HttpServer {
        HttpServer::start(HashMap::new())
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `base_url() + path`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Adds or replaces a route; takes effect for the next request.
    pub fn route(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), route);
    }

    pub fn set(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) {
        self.route(path, Route::ok(content_type, body));
    }

    pub fn set_delayed(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
        delay: Duration,
    ) {
        self.route(path, Route::ok(content_type, body).with_delay(delay));
    }

    pub fn set_endless(&self, path: &str, content_type: &str) {
        self.route(path, Route::endless(content_type));
    }

    pub fn set_oversized(&self, path: &str, content_type: &str, len: u64) {
        self.route(path, Route::oversized(content_type, len));
    }

    /// Removes a route; the path answers 404 again.
    pub fn remove(&self, path: &str) {
        self.state.routes.lock().unwrap().remove(path);
    }

    /// Requests received for `path` (any method, any outcome, 404s included), counted when
    /// the request has been read — before any delay, so a client that timed out still counts.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    pub fn reset_hits(&self) {
        self.state.hits.lock().unwrap().clear();
    }

    /// Stops listening and cuts open connections; the port then refuses connections.
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.state.stopping.store(true, Ordering::SeqCst);
        // accept() has no timeout; a connection of our own wakes it to see the flag.
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        let _ = accept.join();
        for (_, conn) in self.state.conns.lock().unwrap().drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    for stream in listener.incoming() {
        if state.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            state.conns.lock().unwrap().insert(id, clone);
        }
        let conn_state = Arc::clone(&state);
        std::thread::spawn(move || {
            serve(&conn_state, stream);
            conn_state.conns.lock().unwrap().remove(&id);
        });
    }
}

struct Request {
    method: String,
    path: String,
    close: bool,
}

fn serve(state: &State, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while let Some(req) = read_request(&mut reader) {
        if state.stopping.load(Ordering::SeqCst) {
            break;
        }
        *state
            .hits
            .lock()
            .unwrap()
            .entry(req.path.clone())
            .or_default() += 1;
        let route = state.routes.lock().unwrap().get(&req.path).cloned();
        let route =
            route.unwrap_or_else(|| Route::ok("text/plain", "not found\n").with_status(404));
        if !respond(state, &mut writer, &req, &route) {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// Reads one request head and skips its body; None when the connection ended or the request
/// is something this server doesn't handle (then the connection is simply closed).
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    // RFC 9112 §2.2: ignore empty lines before a request line.
    while line.trim().is_empty() {
        line.clear();
        if reader.by_ref().take(MAX_LINE).read_line(&mut line).ok()? == 0 {
            return None;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let mut keep_alive = version == "HTTP/1.1";
    let mut content_length = 0u64;
    loop {
        let mut header = String::new();
        if reader.by_ref().take(MAX_LINE).read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked request bodies: nothing discovery sends; refuse rather than misframe.
            return None;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let skipped = std::io::copy(
        &mut reader.by_ref().take(content_length),
        &mut std::io::sink(),
    )
    .ok()?;
    if skipped != content_length {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    // absolute-form ("GET http://host/path"), as sent to proxies.
    let path = match path.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        close: !keep_alive,
    })
}

/// Writes the response; false when the connection must (or did) end.
fn respond(state: &State, w: &mut TcpStream, req: &Request, route: &Route) -> bool {
    if !sleep_unless_stopping(state, route.delay) {
        return false;
    }
    let close_delimited = matches!(route.body, Body::Endless | Body::Trickle(_));
    let close = req.close || close_delimited;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n",
        route.status,
        reason(route.status),
        route.content_type
    );
    for (name, value) in &route.headers {
        head += &format!("{name}: {value}\r\n");
    }
    match &route.body {
        Body::Bytes(b) => head += &format!("Content-Length: {}\r\n", b.len()),
        Body::Sized(n) => head += &format!("Content-Length: {n}\r\n"),
        Body::Endless | Body::Trickle(_) => {}
    }
    if close {
        head += "Connection: close\r\n";
    }
    head += "\r\n";
    if w.write_all(head.as_bytes()).is_err() {
        return false;
    }
    if req.method.eq_ignore_ascii_case("HEAD") {
        return !close && w.flush().is_ok();
    }
    let sent = match &route.body {
        Body::Bytes(b) => w.write_all(b).is_ok(),
        Body::Sized(n) => {
            let mut left = *n;
            while left > 0 && !state.stopping.load(Ordering::SeqCst) {
                let chunk = left.min(FILLER.len() as u64) as usize;
                if w.write_all(&FILLER[..chunk]).is_err() {
                    return false;
                }
                left -= chunk as u64;
            }
            left == 0
        }
        // Both end only when the client hangs up (the write fails) or the server stops.
        Body::Endless => {
            while !state.stopping.load(Ordering::SeqCst) {
                if w.write_all(&FILLER).is_err() {
                    break;
                }
            }
            false
        }
        Body::Trickle(every) => {
            while sleep_unless_stopping(state, *every) {
                if w.write_all(b"x").is_err() {
                    break;
                }
            }
            false
        }
    };
    sent && !close && w.flush().is_ok()
}

/// Sleeps in short slices so stop() isn't held up by a long delay; false if stopping.
fn sleep_unless_stopping(state: &State, total: Duration) -> bool {
    let step = Duration::from_millis(20);
    let mut left = total;
    while !left.is_zero() {
        if state.stopping.load(Ordering::SeqCst) {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !state.stopping.load(Ordering::SeqCst)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
