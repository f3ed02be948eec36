//! The HTTP(S) fetcher used for IPKIX records, AIA intermediates and CRLs, against real
//! servers: its deadline holds against slow and trickling peers, its size cap against endless
//! bodies, and https verifies the server (openssl s_server as the peer).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hisp::devpki::Ca;
use hisp::fetch::{FetchError, HttpFetcher};

use common::TempDir;
use common::http::{HttpServer, Route};

#[test]
fn limits_and_errors_over_http() {
    let http = HttpServer::empty();
    http.set("/ok", "application/pkix-cert", b"certificate".to_vec());
    http.set_oversized("/big", "application/octet-stream", 5_000_000);
    http.set_endless("/endless", "application/octet-stream");
    http.route(
        "/trickle",
        Route::trickle("application/octet-stream", Duration::from_millis(100)),
    );
    http.set_delayed(
        "/slow",
        "text/plain",
        b"late".to_vec(),
        Duration::from_secs(5),
    );
    http.route("/moved", Route::redirect("/ok"));
    let f = HttpFetcher::new(Duration::from_millis(1500), 64 * 1024);

    assert_eq!(f.get(&http.url("/ok")).unwrap(), b"certificate");
    assert_eq!(f.get(&http.url("/moved")).unwrap(), b"certificate");
    assert!(matches!(
        f.get(&http.url("/missing")),
        Err(FetchError::Status { status: 404, .. })
    ));
    assert!(matches!(
        f.get(&http.url("/big")),
        Err(FetchError::TooLarge { .. })
    ));
    assert!(matches!(
        f.get(&http.url("/endless")),
        Err(FetchError::TooLarge { .. })
    ));
    for path in ["/trickle", "/slow"] {
        let started = Instant::now();
        let err = f.get(&http.url(path)).unwrap_err();
        assert!(matches!(err, FetchError::Timeout { .. }), "{path}: {err}");
        // The deadline is for the whole fetch, not per read.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    assert!(matches!(
        f.get("ftp://x/y"),
        Err(FetchError::Unsupported(_))
    ));
}

struct SServer(Child);

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// openssl s_server serving files from `dir` over TLS with `leaf` (issued for localhost).
fn s_server(
    dir: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (SServer, u16) {
    let port = common::slapd::free_port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (SServer(child), port)
}

#[test]
fn https_verifies_the_server() {
    let dir = TempDir::new("https");
    let ca = Ca::root("Fetch TLS Root").unwrap();
    let leaf = ca.leaf().dns("localhost").build().unwrap();
    let cert = dir.path().join("tls.pem");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, leaf.cert_pem()).unwrap();
    std::fs::write(&key, leaf.key_pem()).unwrap();
    std::fs::write(dir.path().join("bob.cer"), b"the certificate").unwrap();
    let (_server, port) = s_server(dir.path(), &cert, &key);
    let url = format!("https://localhost:{port}/bob.cer");

    // The system trust store doesn't know our test CA: refused.
    let f = HttpFetcher::new(Duration::from_secs(5), 64 * 1024);
    let err = f.get(&url).unwrap_err();
    assert!(matches!(err, FetchError::Tls { .. }), "{err}");

    // Trusting it (OpenSSL reads SSL_CERT_FILE for its default trust store), the body
    // arrives. Run in a child so the variable can't leak into other tests.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.to_pem().unwrap()).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "https_child", "--nocapture"])
        .env("SSL_CERT_FILE", &ca_file)
        .env("HISP_FETCH_CHILD_URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("fetched 15 bytes"),
        "{text}"
    );
}

/// Runs only as the child of `https_verifies_the_server`.
#[test]
fn https_child() {
    let Ok(url) = std::env::var("HISP_FETCH_CHILD_URL") else {
        return;
    };
    let f = HttpFetcher::new(Duration::from_secs(5), 64 * 1024);
    let body = f.get(&url).unwrap();
    assert_eq!(body, b"the certificate");
    println!("fetched {} bytes", body.len());
}
