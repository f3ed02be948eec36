//! The discovery test harness itself: private slapd instances and the HTTP server, checked
//! with external tools and raw sockets only, never with hisp's own LDAP or HTTP client, so a
//! discovery test failure points at hisp rather than at its harness.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{HttpServer, Route};
use common::slapd::{
    self, CertAttr, Slapd, cert_entry_ldif, certs_entry_ldif, ldif_values, slapd_available,
};
use hisp::devpki::Ca;

const SUFFIX_A: &str = "dc=hisp-a,dc=example";
const SUFFIX_B: &str = "dc=hisp-b,dc=example";

fn leaf(ca: &Ca, mail: &str) -> Vec<u8> {
    ca.leaf().email(mail).build().unwrap().cert_der()
}

/// The exact command a person would type, outside the harness's own helpers.
fn ldapsearch_cli(url: &str, base: &str, filter: &str, attrs: &[&str]) -> String {
    let out = Command::new("ldapsearch")
        .env("LDAPNOINIT", "1")
        .args([
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            url,
            "-b",
            base,
            filter,
        ])
        .args(attrs)
        .output()
        .expect("run ldapsearch");
    assert!(
        out.status.success(),
        "ldapsearch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn naming_contexts(url: &str) -> Vec<String> {
    let out = Command::new("ldapsearch")
        .env("LDAPNOINIT", "1")
        .args([
            "-x",
            "-LLL",
            "-H",
            url,
            "-s",
            "base",
            "-b",
            "",
            "namingContexts",
        ])
        .output()
        .expect("run ldapsearch");
    assert!(out.status.success());
    ldif_values(&String::from_utf8(out.stdout).unwrap(), "namingContexts")
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect()
}

fn assert_refused(port: u16) {
    match TcpStream::connect(("127.0.0.1", port)) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "port {port}: {e}"),
        Ok(_) => panic!("port {port} still accepts connections"),
    }
}

#[test]
fn two_slapds_serve_certificates_byte_identical() {
    if !slapd_available() {
        return;
    }
    let ca = Ca::root("harness root").unwrap();
    let bob = leaf(&ca, "bob@hisp-b.example");
    let carol = leaf(&ca, "carol@hisp-b.example");
    let t = Instant::now();
    let a = Slapd::start(SUFFIX_A, "");
    let b = Slapd::start(
        SUFFIX_B,
        &cert_entry_ldif(
            "cn=Carol,dc=hisp-b,dc=example",
            "carol@hisp-b.example",
            &carol,
            CertAttr::Smime,
        ),
    );
    eprintln!("two slapds up in {:?}", t.elapsed());
    assert_ne!(a.port, b.port);
    assert_eq!(b.url, format!("ldap://127.0.0.1:{}", b.port));

    b.add(&cert_entry_ldif(
        "cn=Bob,dc=hisp-b,dc=example",
        "bob@hisp-b.example",
        &bob,
        CertAttr::Both,
    ));

    let found = ldapsearch_cli(
        &b.url,
        SUFFIX_B,
        "(mail=bob@hisp-b.example)",
        &["userSMIMECertificate"],
    );
    assert_eq!(
        ldif_values(&found, "userSMIMECertificate"),
        vec![bob.clone()]
    );
    let found = ldapsearch_cli(
        &b.url,
        SUFFIX_B,
        "(mail=bob@hisp-b.example)",
        &["userCertificate;binary"],
    );
    assert_eq!(ldif_values(&found, "userCertificate;binary"), vec![bob]);

    // Entries given to start() are there, with only the attribute asked for.
    let found = b.search("(mail=carol@hisp-b.example)", &["userSMIMECertificate"]);
    assert_eq!(ldif_values(&found, "userSMIMECertificate"), vec![carol]);
    let found = b.search("(mail=carol@hisp-b.example)", &["userCertificate;binary"]);
    assert!(ldif_values(&found, "userCertificate;binary").is_empty());

    // The servers are separate: A has no Bob.
    assert_eq!(a.search("(mail=bob@hisp-b.example)", &[]), "");

    assert_eq!(naming_contexts(&a.url), vec![SUFFIX_A]);
    assert_eq!(naming_contexts(&b.url), vec![SUFFIX_B]);
}

#[test]
fn domain_entry_with_several_certificates_and_modify() {
    if !slapd_available() {
        return;
    }
    let ca = Ca::root("harness root").unwrap();
    let sign = ca.leaf().dns("hisp-b.example").build().unwrap().cert_der();
    let encrypt = ca.leaf().dns("hisp-b.example").build().unwrap().cert_der();
    let b = Slapd::start(SUFFIX_B, "");
    // A non-cn RDN must end up among the entry's values or slapd refuses the add.
    b.add(&certs_entry_ldif(
        "uid=domain,dc=hisp-b,dc=example",
        "hisp-b.example",
        &[&sign, &encrypt],
        CertAttr::UserCertificate,
    ));
    let found = b.search("(mail=hisp-b.example)", &["userCertificate;binary"]);
    let mut got = ldif_values(&found, "userCertificate;binary");
    let mut want = vec![sign.clone(), encrypt];
    got.sort();
    want.sort();
    assert_eq!(got, want);

    b.modify(&format!(
        "dn: uid=domain,dc=hisp-b,dc=example\nchangetype: modify\nreplace: userCertificate;binary\nuserCertificate;binary:: {}\n",
        openssl::base64::encode_block(&sign)
    ));
    let found = b.search("(mail=hisp-b.example)", &["userCertificate;binary"]);
    assert_eq!(ldif_values(&found, "userCertificate;binary"), vec![sign]);

    b.modify("dn: uid=domain,dc=hisp-b,dc=example\nchangetype: delete\n");
    assert_eq!(b.search("(mail=hisp-b.example)", &[]), "");
}

#[test]
fn stopped_slapd_refuses_connections_and_restarts() {
    if !slapd_available() {
        return;
    }
    let ca = Ca::root("harness root").unwrap();
    let bob = leaf(&ca, "bob@hisp-a.example");
    let mut a = Slapd::start(
        SUFFIX_A,
        &cert_entry_ldif(
            "cn=Bob,dc=hisp-a,dc=example",
            "bob@hisp-a.example",
            &bob,
            CertAttr::Smime,
        ),
    );
    assert!(a.is_running());
    a.stop();
    assert!(!a.is_running());
    assert_refused(a.port);
    let err = slapd::ldapsearch(&a.url, SUFFIX_A, "sub", "(objectClass=*)", &[]).unwrap_err();
    assert!(err.contains("Can't contact LDAP server"), "{err}");

    // Same port, same data.
    a.restart();
    let found = a.search("(mail=bob@hisp-a.example)", &["userSMIMECertificate"]);
    assert_eq!(ldif_values(&found, "userSMIMECertificate"), vec![bob]);

    let dead = slapd::free_port();
    assert_refused(dead);
    assert!(slapd::dead_ldap_url().starts_with("ldap://127.0.0.1:"));
}

// --- HTTP --------------------------------------------------------------------------------------

struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn read_response(r: &mut impl BufRead) -> Response {
    let mut resp = read_head(r);
    match resp.headers.get("content-length") {
        Some(n) => {
            resp.body.resize(n.parse().unwrap(), 0);
            r.read_exact(&mut resp.body).unwrap();
        }
        None => {
            r.read_to_end(&mut resp.body).unwrap();
        }
    }
    resp
}

/// Status line and headers only, as for a HEAD request.
fn read_head(r: &mut impl BufRead) -> Response {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.insert(k.to_ascii_lowercase(), v.trim().to_owned());
    }
    Response {
        status,
        headers,
        body: Vec::new(),
    }
}

fn get(server: &HttpServer, path: &str) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut BufReader::new(s))
}

#[test]
fn http_serves_routes_counts_hits_and_404s() {
    let crl = vec![0x30, 0x82, 0x01, 0x00, 0xff, 0x00, 0x7f];
    let server = HttpServer::start(HashMap::from([(
        "/ca.crl".to_owned(),
        ("application/pkix-crl".to_owned(), crl.clone()),
    )]));
    assert_eq!(
        server.url("/ca.crl"),
        format!("http://127.0.0.1:{}/ca.crl", server.port)
    );

    let r = get(&server, "/ca.crl");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/pkix-crl");
    assert_eq!(r.body, crl);
    assert_eq!(get(&server, "/ca.crl?x=1").body, crl);
    assert_eq!(server.hits("/ca.crl"), 2);

    assert_eq!(get(&server, "/missing.cer").status, 404);
    assert_eq!(server.hits("/missing.cer"), 1);
    assert_eq!(server.total_hits(), 3);

    server.set(
        "/missing.cer",
        "application/pkix-cert",
        b"now here".to_vec(),
    );
    assert_eq!(get(&server, "/missing.cer").body, b"now here");
    server.remove("/ca.crl");
    assert_eq!(get(&server, "/ca.crl").status, 404);

    server.route("/moved", Route::redirect("/missing.cer"));
    let r = get(&server, "/moved");
    assert_eq!(
        (r.status, r.headers["location"].as_str()),
        (302, "/missing.cer")
    );

    server.reset_hits();
    assert_eq!(server.total_hits(), 0);
}

#[test]
fn http_keep_alive_and_connection_close() {
    let server = HttpServer::empty();
    server.set("/a", "text/plain", "first");
    server.set("/b", "text/plain", "second");
    let s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    write!(w, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let first = read_response(&mut r);
    assert_eq!(first.body, b"first");
    assert!(!first.headers.contains_key("connection"));
    write!(w, "HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let head = read_head(&mut r);
    assert_eq!(head.headers["content-length"], "6");
    write!(w, "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let second = read_response(&mut r);
    assert_eq!(second.body, b"second");
    assert_eq!(second.headers["connection"], "close");
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap(), 0, "server closed");
    assert_eq!((server.hits("/a"), server.hits("/b")), (1, 2));
}

#[test]
fn http_delayed_route_trips_a_client_timeout() {
    let server = HttpServer::empty();
    server.set_delayed(
        "/slow.p7c",
        "application/pkcs7-mime",
        "late",
        Duration::from_millis(1500),
    );
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(s, "GET /slow.p7c HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let err = s.read(&mut [0u8; 16]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert_eq!(server.hits("/slow.p7c"), 1, "counted before the delay");

    // A patient client gets the body.
    let t = Instant::now();
    let r = get(&server, "/slow.p7c");
    assert_eq!(r.body, b"late");
    assert!(t.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn http_endless_oversized_and_trickle_bodies() {
    let server = HttpServer::empty();
    server.set_endless("/endless.crl", "application/pkix-crl");
    server.set_oversized("/huge.crl", "application/pkix-crl", 1 << 40);
    server.route(
        "/trickle.crl",
        Route::trickle("application/pkix-crl", Duration::from_millis(50)),
    );

    for path in ["/endless.crl", "/huge.crl"] {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            r.read_line(&mut head).unwrap();
        }
        if path == "/huge.crl" {
            assert!(head.contains("Content-Length: 1099511627776\r\n"), "{head}");
        } else {
            assert!(
                !head.to_ascii_lowercase().contains("content-length"),
                "{head}"
            );
        }
        // Well past any sane certificate or CRL limit, and still flowing.
        let n = std::io::copy(&mut r.take(8 << 20), &mut std::io::sink()).unwrap();
        assert_eq!(n, 8 << 20, "{path}");
    }

    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(s, "GET /trickle.crl HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let t = Instant::now();
    let mut got = 0;
    let mut buf = [0u8; 4096];
    while t.elapsed() < Duration::from_millis(600) {
        got += s.read(&mut buf).unwrap();
    }
    // Headers plus roughly one byte per 50 ms: every read succeeds, the body never ends.
    assert!(got < 400, "{got} bytes");
}

#[test]
fn http_stop_refuses_and_cuts_open_connections() {
    let mut server = HttpServer::empty();
    server.set("/x", "text/plain", "x");
    let s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    write!(w, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r).body, b"x");

    server.stop();
    assert_refused(server.port);
    // The pooled connection is gone too: EOF (or a reset) instead of another answer.
    let _ = write!(w, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut rest = Vec::new();
    assert!(matches!(r.read_to_end(&mut rest), Ok(0) | Err(_)));
    assert!(rest.is_empty());
    assert_eq!(server.hits("/x"), 1);
}
