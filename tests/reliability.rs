//! Reliability of the Direct path between two `hisp serve` processes (issue 8):
//! - SIGKILL of the sending gateway, then of the receiving one, in the middle of a run;
//! - the receiving gateway down for a while (8 s here; `scripts/reliability` runs 2 minutes);
//! - the sending gateway's store running out of space (a small tmpfs);
//! - 2,000 concurrent connections, slowloris clients and clients vanishing mid-DATA.
//!
//! Always: every message answered `250` ends up in the recipient's mailbox exactly once and
//! every tracking record reaches `dispatched`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::direct::{JONES, Pair, SMITH, Submitted, eventually, pair, submitter};
use common::{Backend, backends};

/// Long enough that no tracking record times out while a gateway is down.
const A_EXTRA: &str = "[notifications]\ntimeout = \"30m\"\n";

/// Starts `clients` submitters of `per_client` messages each, ids `{tag}-c{i}-{n}@hisp-a.example`.
fn submit_all(
    port: u16,
    tag: &str,
    clients: usize,
    per_client: usize,
    size: usize,
    progress: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Submitted>> {
    (0..clients)
        .map(|i| {
            let ids = (0..per_client)
                .map(|n| format!("{tag}-c{i}-{n}@hisp-a.example"))
                .collect();
            tokio::spawn(submitter(port, ids, size, false, Arc::clone(progress)))
        })
        .collect()
}

async fn acked_of(handles: Vec<tokio::task::JoinHandle<Submitted>>) -> Vec<String> {
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap().acked);
    }
    acked
}

/// Waits until every acknowledged message is filed at B and every tracking record at A is
/// dispatched; then checks exactly-once and returns (filed, unacknowledged-but-filed).
async fn settles(
    p: &Pair,
    acked: &HashSet<String>,
    limit: Duration,
    extras_allowed: usize,
) -> (usize, usize) {
    let done = eventually(limit, || async {
        let filed: HashSet<String> =
            p.b.mailbox_ids(JONES, "message")
                .await
                .into_iter()
                .collect();
        let tracking = p.a.tracking().await;
        acked.is_subset(&filed)
            && tracking.len() >= filed.len()
            && tracking.iter().all(|(_, s)| s == "dispatched")
    })
    .await;
    let filed = p.b.mailbox_ids(JONES, "message").await;
    let tracking = p.a.tracking().await;
    let unique: HashSet<String> = filed.iter().cloned().collect();
    let missing: Vec<&String> = acked.difference(&unique).collect();
    let pending: Vec<&(String, String)> =
        tracking.iter().filter(|(_, s)| s != "dispatched").collect();
    assert!(
        done,
        "did not settle: {} acknowledged messages missing at B ({:?}...), {} tracking records not dispatched ({:?}...)\nA: {}\nB: {}",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        pending.len(),
        pending.iter().take(3).collect::<Vec<_>>(),
        tail(&p.a.log_text()),
        tail(&p.b.log_text()),
    );
    assert_eq!(unique.len(), filed.len(), "a message was filed twice at B");
    let tracked: HashSet<String> = tracking.iter().map(|(id, _)| id.clone()).collect();
    assert!(
        acked.is_subset(&tracked),
        "an acknowledged message has no tracking record"
    );
    assert_eq!(tracked, unique, "tracked and filed messages differ");
    let extra = unique.difference(acked).count();
    assert!(
        extra <= extras_allowed,
        "{extra} messages filed that were never acknowledged (at most {extras_allowed} were in flight)"
    );
    (unique.len(), extra)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

async fn kill9(backend: Backend) {
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 40;
    let mut p = pair(backend, A_EXTRA, "").await;
    p.a.start().await;
    p.b.start().await;

    // 1. The sending gateway dies while clients submit and its workers deliver.
    let progress = Arc::new(AtomicUsize::new(0));
    let clients = submit_all(p.a.submission, "k1", CLIENTS, PER_CLIENT, 4000, &progress);
    // Polled tightly: on PostgreSQL a whole phase takes well under a second.
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress.load(Ordering::SeqCst) < CLIENTS * PER_CLIENT / 4 {
        assert!(
            Instant::now() < deadline,
            "submissions too slow: {}",
            tail(&p.a.log_text())
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    p.a.kill9().await;
    let mut acked: HashSet<String> = acked_of(clients).await.into_iter().collect();
    let first = acked.len();
    assert!(first < CLIENTS * PER_CLIENT, "the kill came too late");
    p.a.start().await;

    // 2. The receiving gateway dies while it decrypts, files and answers with MDNs.
    let progress = Arc::new(AtomicUsize::new(0));
    let clients = submit_all(p.a.submission, "k2", CLIENTS, PER_CLIENT, 4000, &progress);
    let filed_before = p.b.mailbox_ids(JONES, "message").await.len();
    let reached = eventually(Duration::from_secs(120), || async {
        p.b.mailbox_ids(JONES, "message").await.len() >= filed_before + 10
    })
    .await;
    assert!(reached, "B files nothing: {}", tail(&p.b.log_text()));
    p.b.kill9().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.b.start().await;
    let second = acked_of(clients).await;
    assert_eq!(
        second.len(),
        CLIENTS * PER_CLIENT,
        "submission failed while only B was down"
    );
    acked.extend(second);

    let (filed, extra) = settles(&p, &acked, Duration::from_secs(240), CLIENTS).await;
    assert_eq!(
        p.a.dsn_count(SMITH).await,
        0,
        "a DSN was sent for mail that was only delayed"
    );
    eprintln!(
        "kill -9 ({backend:?}): {} acknowledged ({first} before A was killed), {filed} filed exactly once, {extra} committed but unacknowledged, every tracking record dispatched",
        acked.len()
    );
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_sender_then_receiver_loses_and_duplicates_nothing() {
    for b in backends() {
        kill9(b).await;
    }
}

/// Seconds the receiving gateway stays down (`scripts/reliability` sets 120).
fn down_secs() -> u64 {
    std::env::var("HISP_RELIABILITY_DOWN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

async fn receiver_down(backend: Backend) {
    const CLIENTS: usize = 3;
    const PER_CLIENT: usize = 20;
    let down = Duration::from_secs(down_secs());
    let mut p = pair(backend, A_EXTRA, "").await;
    p.a.start().await;
    p.b.start().await;
    let progress = Arc::new(AtomicUsize::new(0));
    let clients = submit_all(p.a.submission, "down", CLIENTS, PER_CLIENT, 4000, &progress);
    let reached = eventually(Duration::from_secs(120), || async {
        !p.b.mailbox_ids(JONES, "message").await.is_empty()
    })
    .await;
    assert!(reached, "B files nothing: {}", tail(&p.b.log_text()));
    p.b.stop().await;
    let went_down = Instant::now();
    // Submission goes on while B is away: A queues.
    let acked: HashSet<String> = acked_of(clients).await.into_iter().collect();
    assert_eq!(
        acked.len(),
        CLIENTS * PER_CLIENT,
        "submission failed while B was down"
    );
    let waiting =
        p.a.tracking()
            .await
            .iter()
            .filter(|(_, s)| s == "queued")
            .count();
    assert!(waiting > 0, "nothing was left waiting for B");
    tokio::time::sleep(down.saturating_sub(went_down.elapsed())).await;
    assert_eq!(
        p.a.dsn_count(SMITH).await,
        0,
        "a DSN was sent while B was down"
    );
    p.b.start().await;
    let back = Instant::now();
    let (filed, _) = settles(&p, &acked, Duration::from_secs(240), 0).await;
    assert_eq!(
        p.a.dsn_count(SMITH).await,
        0,
        "a DSN was sent for mail that was only delayed"
    );
    eprintln!(
        "receiver down ({backend:?}): B down {:.0} s with {waiting} messages queued at A; all {filed} filed exactly once and dispatched {:.1} s after B returned; no DSN",
        down.as_secs_f64(),
        back.elapsed().as_secs_f64()
    );
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receiver_down_then_back_delivers_everything_without_dsn() {
    for b in backends() {
        receiver_down(b).await;
    }
}

/// A tmpfs of `size` mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: std::path::PathBuf, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(path))
    }

    fn available(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The sending gateway's SQLite store on a small tmpfs that fills up: submission answers
/// `452 4.3.1`, nothing acknowledged is lost, and it recovers once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_store_answers_452_and_recovers() {
    let mut p = pair(Backend::Sqlite, A_EXTRA, "").await;
    let fs = match Tmpfs::mount(p.a.env.path("small"), "8m") {
        Ok(fs) => fs,
        // Needs root (or CAP_SYS_ADMIN); CI runs as root, so there it must work.
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("note: cannot mount a tmpfs ({e}); skipping the disk-full test");
            return;
        }
        Err(e) => panic!("CI is set but mounting a tmpfs failed: {e}"),
    };
    // Move A's store (set up by the CLI) onto the tmpfs.
    let old = p.a.env.path("hisp.db");
    let new = fs.0.join("hisp.db");
    for suffix in ["", "-wal", "-shm"] {
        let from = std::path::PathBuf::from(format!("{}{suffix}", old.display()));
        if from.exists() {
            std::fs::copy(&from, format!("{}{suffix}", new.display())).unwrap();
            std::fs::remove_file(&from).unwrap();
        }
    }
    let url = format!("sqlite://{}", new.display());
    let config = std::fs::read_to_string(&p.a.env.config)
        .unwrap()
        .replace(&p.a.env.db_url, &url);
    std::fs::write(&p.a.env.config, config).unwrap();
    p.a.env.db_url = url;
    p.a.start().await;
    p.b.start().await;

    // Leave about 1.5 MiB: a few dozen 40 KB messages fill it.
    let filler = fs.0.join("filler");
    let room = fs.available().saturating_sub(1536 * 1024);
    std::fs::write(&filler, vec![0u8; room as usize]).unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let ids: Vec<String> = (0..80)
        .map(|n| format!("full-{n}@hisp-a.example"))
        .collect();
    let first = submitter(p.a.submission, ids, 40_000, true, Arc::clone(&progress)).await;
    assert!(
        !first.acked.is_empty(),
        "nothing accepted before the store filled up"
    );
    assert!(
        !first.refused.is_empty(),
        "the store never filled up ({} accepted)",
        first.acked.len()
    );
    for (id, reply) in &first.refused {
        assert!(reply.starts_with("452 4.3.1"), "{id}: {reply}");
    }

    // Space returns: submission works again, and everything acknowledged gets through.
    std::fs::remove_file(&filler).unwrap();
    let ids: Vec<String> = (0..5)
        .map(|n| format!("after-{n}@hisp-a.example"))
        .collect();
    let second = submitter(p.a.submission, ids, 40_000, false, Arc::clone(&progress)).await;
    assert_eq!(second.acked.len(), 5, "not recovered: {:?}", second.refused);
    let acked: HashSet<String> = first.acked.iter().chain(&second.acked).cloned().collect();
    let (filed, _) = settles(&p, &acked, Duration::from_secs(240), 0).await;
    eprintln!(
        "disk full: {} accepted, then {} answered {:?}; after space returned 5 more accepted; {filed} filed exactly once, all dispatched",
        first.acked.len(),
        first.refused.len(),
        first.refused[0].1
    );
    p.a.stop().await;
    p.b.stop().await;
    drop(fs);
}

/// Resident set size of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// 2,000 sockets here and 2,000 in the server need more than the usual 1,024 descriptors;
/// children inherit the raised limit.
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= 5000,
        "RLIMIT_NOFILE hard limit {} is too low for 2,000 connections",
        lim.rlim_max
    );
}

async fn connect_from(ip: [u8; 4], port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((ip, 0)))?;
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

async fn read_reply(
    r: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
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

/// Trickles "EHLO slow.example\r\n" one byte every 3 s; returns the server's answer (the
/// 421 that ends it, if any) and how long the connection lasted.
async fn slowloris(
    ip: [u8; 4],
    port: u16,
    connected: Arc<AtomicUsize>,
) -> (Option<String>, Duration) {
    use tokio::io::AsyncWriteExt;
    let Ok(stream) = connect_from(ip, port).await else {
        return (Some("connect failed".into()), Duration::ZERO);
    };
    let start = Instant::now();
    let (r, mut w) = stream.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let greeting = read_reply(&mut r).await;
    connected.fetch_add(1, Ordering::SeqCst);
    if !greeting.as_deref().is_some_and(|g| g.starts_with("220")) {
        return (greeting, start.elapsed());
    }
    let answer = tokio::spawn(async move { read_reply(&mut r).await });
    for b in b"EHLO slow.example".iter().cycle() {
        if answer.is_finished() || w.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    (answer.await.unwrap(), start.elapsed())
}

/// Starts a message and vanishes in the middle of DATA, `rounds` times.
async fn vanisher(ip: [u8; 4], port: u16, rounds: usize) -> usize {
    use tokio::io::AsyncWriteExt;
    let mut vanished = 0;
    for _ in 0..rounds {
        let Ok(stream) = connect_from(ip, port).await else {
            continue;
        };
        let (r, mut w) = stream.into_split();
        let mut r = tokio::io::BufReader::new(r);
        let mut ok = read_reply(&mut r)
            .await
            .is_some_and(|g| g.starts_with("220"));
        for (cmd, want) in [
            ("EHLO gone.example".to_string(), "250"),
            (format!("MAIL FROM:<{SMITH}>"), "250"),
            (format!("RCPT TO:<{JONES}>"), "250"),
            ("DATA".to_string(), "354"),
        ] {
            if !ok {
                break;
            }
            ok = w.write_all(format!("{cmd}\r\n").as_bytes()).await.is_ok()
                && read_reply(&mut r)
                    .await
                    .is_some_and(|g| g.starts_with(want));
        }
        if ok {
            let chunk = "MIIB".repeat(16).into_bytes();
            for _ in 0..(64 * 1024 / chunk.len()) {
                let _ = w.write_all(&chunk).await;
                let _ = w.write_all(b"\r\n").await;
            }
            vanished += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Dropping both halves closes the socket mid-DATA.
    }
    vanished
}

/// 2,000 concurrent connections to the receiving gateway's inbound port — 1,700 slowloris
/// clients and 300 clients that vanish mid-DATA, three times each — while real Direct mail
/// flows from A to B. B keeps accepting that mail, cuts the slowloris clients off after its
/// command timeout, refuses connections over the per-IP limit, and its memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_connections_slowloris_and_vanishing_clients() {
    const SLOW: usize = 1700;
    const GONE: usize = 300;
    const PER_IP: usize = 50;
    raise_nofile(16384);
    let mut p = pair(Backend::Sqlite, A_EXTRA, "").await;
    let config = std::fs::read_to_string(&p.b.env.config).unwrap().replace(
        "require_tls_for_auth = false\n",
        "require_tls_for_auth = false\nmax_connections = 2500\nmax_connections_per_ip = 50\ncommand_timeout = \"15s\"\n",
    );
    std::fs::write(&p.b.env.config, config).unwrap();
    p.a.start().await;
    p.b.start().await;
    let pid = p.b.pid();
    let rss_idle = rss(pid);
    let port = p.b.inbound;
    let t0 = Instant::now();

    // Each client address carries at most PER_IP connections: 127.0.1.x slowloris,
    // 127.0.2.x the vanishing ones.
    let connected = Arc::new(AtomicUsize::new(0));
    let mut slow = Vec::new();
    for i in 0..SLOW {
        let ip = [127, 0, 1, 1 + (i / PER_IP) as u8];
        slow.push(tokio::spawn(slowloris(ip, port, Arc::clone(&connected))));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let gone: Vec<_> = (0..GONE)
        .map(|i| tokio::spawn(vanisher([127, 0, 2, 1 + (i / PER_IP) as u8], port, 3)))
        .collect();
    let all_in = eventually(Duration::from_secs(60), || async {
        connected.load(Ordering::SeqCst) >= SLOW
    })
    .await;
    assert!(
        all_in,
        "only {} slowloris clients got a greeting",
        connected.load(Ordering::SeqCst)
    );

    // Over the per-IP limit: refused at once.
    let extra = connect_from([127, 0, 1, 1], port).await.unwrap();
    let (r, _w) = extra.into_split();
    let over = read_reply(&mut tokio::io::BufReader::new(r)).await;
    assert!(
        over.as_deref().is_some_and(|r| r.starts_with("421 4.7.0")),
        "51st connection from one address: {over:?}"
    );

    // Real mail keeps flowing through all of this.
    let sampling = Arc::new(std::sync::atomic::AtomicU64::new(rss_idle));
    let sampler = {
        let peak = Arc::clone(&sampling);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let progress = Arc::new(AtomicUsize::new(0));
    let clients = submit_all(p.a.submission, "busy", 2, 10, 4000, &progress);
    let acked: HashSet<String> = acked_of(clients).await.into_iter().collect();
    assert_eq!(acked.len(), 20);
    let served = Instant::now();
    let (filed, _) = settles(&p, &acked, Duration::from_secs(120), 0).await;
    let served = served.elapsed();

    let mut vanished = 0;
    for g in gone {
        vanished += g.await.unwrap();
    }
    eprintln!("vanishers done after {:?}", t0.elapsed());
    let mut cut_off = 0;
    let mut longest = Duration::ZERO;
    for s in slow {
        let (answer, lasted) = s.await.unwrap();
        if answer
            .as_deref()
            .is_some_and(|a| a.starts_with("421 4.4.2"))
        {
            cut_off += 1;
        }
        longest = longest.max(lasted);
    }
    sampler.abort();
    eprintln!("slowloris done after {:?}", t0.elapsed());
    let peak = sampling.load(Ordering::SeqCst).max(rss(pid));
    let after = rss(pid);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "2,000 connections: {SLOW} slowloris ({cut_off} cut off with 421 4.4.2, longest {:.0} s), {vanished} vanished mid-DATA; {filed} real messages filed and dispatched in {:.1} s meanwhile; hisp serve RSS idle {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        longest.as_secs_f64(),
        served.as_secs_f64(),
        mib(rss_idle),
        mib(peak),
        mib(after)
    );
    assert_eq!(
        cut_off, SLOW,
        "slowloris clients not cut off by the command timeout"
    );
    assert!(
        longest < Duration::from_secs(40),
        "a slowloris client lasted {longest:?}"
    );
    assert!(
        vanished >= GONE * 2,
        "only {vanished} clients got into DATA"
    );
    assert!(
        peak - rss_idle < 200 * 1024 * 1024,
        "RSS grew by {:.1} MiB",
        mib(peak - rss_idle)
    );
    p.a.stop().await;
    p.b.stop().await;
}
