//! `hisp bench`: end-to-end throughput of two gateways on loopback, and the RSA ceiling of
//! this machine measured in the same run.
//!
//! The two gateways are the ones `hisp demo` builds (dev PKI, local DNS, one SQLite store
//! each, real sockets, real S/MIME), run in this process. C clients submit N messages over
//! SMTP AUTH to hisp-a; the run ends when every message is in dr.jones's mailbox on hisp-b and
//! every tracking record on hisp-a is `dispatched` (processed and dispatched MDNs came back).
//!
//! Why a ceiling: every message costs six RSA-2048 private-key operations across the two
//! gateways (sign; decrypt; sign and later decrypt each of the two MDNs), and on this kind of
//! hardware those dominate. Private-key operations per second on all cores, divided by six,
//! is what the machine could do if nothing else cost anything; achieved/ceiling says how close
//! the rest of the gateway comes. The RSA rate is measured just before and just after the
//! message phase and averaged, because the machine may be shared and its speed drifts.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use sqlx::Row;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::pair::{JONES, PASSWORD, Pair, SMITH, fail};
use super::{CliError, CliResult};
use crate::store::Store;

/// Private-key operations per message: sign + decrypt of the message, and sign + decrypt of
/// each of the processed and dispatched MDNs.
const RSA_OPS_PER_MESSAGE: f64 = 6.0;
/// How long each RSA measurement runs, before and after the message phase.
const RSA_SECONDS: f64 = 2.0;
/// The run fails when neither the mailbox nor the tracking records move for this long.
const STALL: Duration = Duration::from_secs(120);

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Messages to send.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Concurrent submission clients (one SMTP session each).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Size of each submitted message in bytes (also 10KB, 1MiB, ...).
    #[arg(long, default_value = "10KB")]
    size: String,
}

#[derive(serde::Serialize)]
struct Report {
    messages: usize,
    concurrency: usize,
    size_bytes: usize,
    store: &'static str,
    mdns: &'static str,
    elapsed_s: f64,
    messages_per_s: f64,
    latency_ms: Latency,
    cpu_s_per_message: Option<f64>,
    peak_rss_bytes: Option<u64>,
    threads: usize,
    rsa2048_sign_ops_per_s: f64,
    rsa2048_sign_ops_per_s_before: f64,
    rsa2048_sign_ops_per_s_after: f64,
    /// Per CPU second of the measuring threads: what one core does when it is not shared.
    rsa2048_sign_ops_per_cpu_s: Option<f64>,
    rsa_ops_per_message: f64,
    ceiling_messages_per_s: f64,
    ratio: f64,
    /// The RSA CPU time a message needs over the CPU time it took: the ratio this run would
    /// reach if it had every core to itself; robust when other processes share the machine.
    ratio_cpu: Option<f64>,
}

#[derive(serde::Serialize)]
struct Latency {
    p50: i64,
    p95: i64,
    p99: i64,
    max: i64,
}

pub async fn run(args: &BenchArgs, json: bool) -> CliResult {
    let size = crate::config::Size::parse(&args.size)
        .map_err(|e| CliError::Usage(format!("--size: {e}")))?
        .0 as usize;
    if args.messages == 0 || args.concurrency == 0 {
        return Err(CliError::Usage(
            "--messages and --concurrency must be at least 1".into(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("hisp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let result = bench(&dir, args, size).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(fail)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

async fn bench(dir: &std::path::Path, args: &BenchArgs, size: usize) -> CliResult<Report> {
    let concurrency = args.concurrency.min(args.messages);
    let pair = Pair::build(dir, |c| {
        // Every client comes from 127.0.0.1; the bench measures throughput, not the limits.
        c.smtp.max_connections_per_ip = c.smtp.max_connections_per_ip.max(concurrency as u32 + 8);
        c.smtp.max_connections = c.smtp.max_connections.max(concurrency as u32 + 64);
        c.smtp.max_message_size = crate::config::Size((size as u64 * 2).max(1 << 20));
    })
    .await?;
    let run_a = super::serve::start(&pair.ctx_a).await?;
    let run_b = super::serve::start(&pair.ctx_b).await?;

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    progress_note("measuring RSA-2048 private-key operations on all cores");
    let rsa_before = rsa_ops_per_s(threads).await?;

    let template = Template::new(size);
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let submitted: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (template, submitted, next, acked) = (
            template.clone(),
            Arc::clone(&submitted),
            Arc::clone(&next),
            Arc::clone(&acked),
        );
        let (port, total, failed) = (pair.a.submission, args.messages, Arc::clone(&failed));
        clients.spawn(async move {
            let r = client(port, total, &template, &submitted, &next, &acked).await;
            if r.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            r
        });
    }

    let progress = Progress::new(args.messages);
    let (mut filed, mut done, mut last_move, mut last_seen) = (0, 0, Instant::now(), (0, 0));
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if failed.load(Ordering::SeqCst) {
            break;
        }
        filed = count_filed(&pair.ctx_b.store).await?;
        let states = tracking_states(&pair.ctx_a.store).await?;
        done = states.get("dispatched").copied().unwrap_or(0);
        let bad: usize = ["failed", "timed-out"]
            .iter()
            .filter_map(|s| states.get(*s))
            .sum();
        if bad > 0 {
            progress.finish();
            return Err(fail(format!(
                "{bad} tracking record(s) on hisp-a failed or timed out; see the stores under {}",
                dir.display()
            )));
        }
        progress.show(acked.load(Ordering::SeqCst), filed, done, started.elapsed());
        if filed >= args.messages && done >= args.messages {
            break;
        }
        if (filed, done) != last_seen {
            last_seen = (filed, done);
            last_move = Instant::now();
        } else if last_move.elapsed() > STALL {
            progress.finish();
            return Err(fail(format!(
                "no progress for {} s: {filed} of {} filed, {done} tracking records complete",
                STALL.as_secs(),
                args.messages
            )));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds();
    progress.finish();
    while let Some(r) = clients.join_next().await {
        r.map_err(fail)??;
    }
    debug_assert!(filed >= args.messages && done >= args.messages);

    // The clients are done: the map is complete and no longer shared.
    let submitted = std::mem::take(&mut *submitted.lock().unwrap_or_else(|e| e.into_inner()));
    let latencies = latencies(&pair.ctx_b.store, &submitted).await?;
    progress_note("measuring RSA-2048 private-key operations again");
    let rsa_after = rsa_ops_per_s(threads).await?;
    let peak_rss = peak_rss_bytes();

    run_a.stop().await;
    run_b.stop().await;
    pair.dns.shutdown().await;
    pair.ctx_a.store.close().await;
    pair.ctx_b.store.close().await;

    let rsa = (rsa_before.per_s + rsa_after.per_s) / 2.0;
    let per_cpu_s = rsa_before
        .per_cpu_s
        .zip(rsa_after.per_cpu_s)
        .map(|(a, b)| (a + b) / 2.0);
    let cpu_per_message = cpu0.zip(cpu1).map(|(a, b)| (b - a) / args.messages as f64);
    let messages_per_s = args.messages as f64 / elapsed;
    let ceiling = rsa / RSA_OPS_PER_MESSAGE;
    Ok(Report {
        messages: args.messages,
        concurrency,
        size_bytes: template.size(),
        store: "sqlite",
        mdns: "processed+dispatched",
        elapsed_s: elapsed,
        messages_per_s,
        latency_ms: latencies,
        cpu_s_per_message: cpu0.zip(cpu1).map(|(a, b)| (b - a) / args.messages as f64),
        peak_rss_bytes: peak_rss,
        threads,
        rsa2048_sign_ops_per_s: rsa,
        rsa2048_sign_ops_per_s_before: rsa_before.per_s,
        rsa2048_sign_ops_per_s_after: rsa_after.per_s,
        rsa2048_sign_ops_per_cpu_s: per_cpu_s,
        rsa_ops_per_message: RSA_OPS_PER_MESSAGE,
        ceiling_messages_per_s: ceiling,
        ratio: messages_per_s / ceiling,
        ratio_cpu: per_cpu_s
            .zip(cpu_per_message)
            .filter(|(_, c)| *c > 0.0)
            .map(|(ops, c)| RSA_OPS_PER_MESSAGE / ops / c),
    })
}

fn print_report(r: &Report) {
    println!(
        "hisp bench: {} messages of {} bytes from {} SMTP AUTH clients, hisp-a -> hisp-b on loopback, SQLite stores, processed and dispatched MDNs",
        r.messages, r.size_bytes, r.concurrency
    );
    println!(
        "  end to end           {:.1} messages/s ({} messages, all filed and tracked complete, in {:.2} s)",
        r.messages_per_s, r.messages, r.elapsed_s
    );
    println!(
        "  submit -> mailbox    p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99, r.latency_ms.max
    );
    match r.cpu_s_per_message {
        Some(c) => println!(
            "  CPU                  {:.2} ms per message (this process: both gateways and the clients)",
            c * 1000.0
        ),
        None => println!("  CPU                  unavailable (no /proc/self/stat)"),
    }
    match r.peak_rss_bytes {
        Some(b) => println!(
            "  peak RSS             {:.1} MiB (this process)",
            b as f64 / (1024.0 * 1024.0)
        ),
        None => println!("  peak RSS             unavailable (no /proc/self/status)"),
    }
    println!(
        "  RSA-2048 sign        {:.0} private-key ops/s on {} threads (before {:.0}, after {:.0})",
        r.rsa2048_sign_ops_per_s,
        r.threads,
        r.rsa2048_sign_ops_per_s_before,
        r.rsa2048_sign_ops_per_s_after
    );
    println!(
        "  ceiling              {:.1} messages/s ({} private-key operations per message)",
        r.ceiling_messages_per_s, r.rsa_ops_per_message
    );
    println!("  achieved / ceiling   {:.2}", r.ratio);
    if let (Some(ops), Some(ratio)) = (r.rsa2048_sign_ops_per_cpu_s, r.ratio_cpu) {
        println!(
            "  CPU-time ratio       {ratio:.2} (RSA {:.0} ops per CPU second: {:.2} ms of the {:.2} ms of CPU per message)",
            ops,
            r.rsa_ops_per_message / ops * 1000.0,
            r.cpu_s_per_message.unwrap_or(0.0) * 1000.0
        );
    }
}

/// The submitted message: fixed headers around a base64 attachment padded to the size asked
/// for; only the Message-ID and Subject change per message.
#[derive(Clone)]
struct Template {
    tail: Arc<Vec<u8>>,
}

const BOUNDARY: &str = "hisp-bench-1";

impl Template {
    fn new(size: usize) -> Template {
        let mut tail = format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n--{BOUNDARY}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBenchmark message, see the attachment.\r\n--{BOUNDARY}\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        .into_bytes();
        let closing = format!("--{BOUNDARY}--\r\n");
        let header = Template::header(999).len();
        let target = size.saturating_sub(header + closing.len());
        let mut seed = [0u8; 57];
        let _ = openssl::rand::rand_bytes(&mut seed);
        let line = openssl::base64::encode_block(&seed);
        while tail.len() + line.len() + 2 <= target {
            tail.extend_from_slice(line.as_bytes());
            tail.extend_from_slice(b"\r\n");
        }
        tail.extend_from_slice(closing.as_bytes());
        Template {
            tail: Arc::new(tail),
        }
    }

    fn header(n: usize) -> String {
        format!(
            "From: Dr Smith <{SMITH}>\r\nTo: Dr Jones <{JONES}>\r\nSubject: bench {n}\r\nMessage-ID: <bench-{n}@hisp-a.example>\r\n"
        )
    }

    fn message(&self, n: usize) -> (String, Vec<u8>) {
        let mut m = Template::header(n).into_bytes();
        m.extend_from_slice(&self.tail);
        (format!("bench-{n}@hisp-a.example"), m)
    }

    fn size(&self) -> usize {
        self.message(999).1.len()
    }
}

/// One EHR session: AUTH once, then messages until all `total` are taken.
async fn client(
    port: u16,
    total: usize,
    template: &Template,
    submitted: &Mutex<HashMap<String, i64>>,
    next: &AtomicUsize,
    acked: &AtomicUsize,
) -> CliResult {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(fail)?;
    stream.set_nodelay(true).map_err(fail)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    expect(&mut r, "220").await?;
    let plain = openssl::base64::encode_block(format!("\0{SMITH}\0{PASSWORD}").as_bytes());
    command(&mut r, &mut w, "EHLO ehr.hisp-a.example", "250").await?;
    command(&mut r, &mut w, &format!("AUTH PLAIN {plain}"), "235").await?;
    loop {
        let n = next.fetch_add(1, Ordering::SeqCst);
        if n >= total {
            break;
        }
        let (id, body) = template.message(n);
        let t0 = crate::clock::now_ms();
        command(&mut r, &mut w, &format!("MAIL FROM:<{SMITH}>"), "250").await?;
        command(&mut r, &mut w, &format!("RCPT TO:<{JONES}>"), "250").await?;
        command(&mut r, &mut w, "DATA", "354").await?;
        w.write_all(&body).await.map_err(fail)?;
        w.write_all(b".\r\n").await.map_err(fail)?;
        expect(&mut r, "250").await?;
        submitted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, t0);
        acked.fetch_add(1, Ordering::SeqCst);
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    Ok(())
}

async fn command(
    r: &mut BufReader<OwnedReadHalf>,
    w: &mut OwnedWriteHalf,
    line: &str,
    want: &str,
) -> CliResult<String> {
    w.write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(fail)?;
    expect(r, want).await
}

async fn expect(r: &mut BufReader<OwnedReadHalf>, want: &str) -> CliResult<String> {
    let last = loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.map_err(fail)? == 0 {
            return Err(fail("the submission server closed the connection"));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            break line.trim_end().to_string();
        }
    };
    if !last.starts_with(want) {
        return Err(fail(format!("submission: expected {want}, got {last}")));
    }
    Ok(last)
}

async fn count_filed(store: &Store) -> CliResult<usize> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM mailbox m JOIN addresses a ON a.id = m.address_id
         WHERE a.address = $1 AND m.kind = 'message'",
    )
    .bind(JONES)
    .fetch_one(store.pool())
    .await
    .map_err(fail)?;
    Ok(row.try_get::<i64, _>("n").map_err(fail)? as usize)
}

async fn tracking_states(store: &Store) -> CliResult<HashMap<String, usize>> {
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM tracking GROUP BY state")
        .fetch_all(store.pool())
        .await
        .map_err(fail)?;
    let mut out = HashMap::new();
    for r in rows {
        let state: String = r.try_get("state").map_err(fail)?;
        let n: i64 = r.try_get("n").map_err(fail)?;
        out.insert(state, n as usize);
    }
    Ok(out)
}

/// Submit (MAIL FROM sent) to filed (the mailbox row's commit time on hisp-b), per message.
async fn latencies(store: &Store, submitted: &HashMap<String, i64>) -> CliResult<Latency> {
    let rows = sqlx::query("SELECT message_id, received_at FROM mailbox WHERE kind = 'message'")
        .fetch_all(store.pool())
        .await
        .map_err(fail)?;
    let mut ms = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get("message_id").map_err(fail)?;
        let at: i64 = r.try_get("received_at").map_err(fail)?;
        let id = id.trim_start_matches('<').trim_end_matches('>');
        if let Some(t0) = submitted.get(id) {
            ms.push(at - t0);
        }
    }
    if ms.len() != submitted.len() {
        return Err(fail(format!(
            "{} messages were acknowledged but {} of them are in the mailbox",
            submitted.len(),
            ms.len()
        )));
    }
    ms.sort_unstable();
    Ok(Latency {
        p50: percentile(&ms, 50.0),
        p95: percentile(&ms, 95.0),
        p99: percentile(&ms, 99.0),
        max: ms.last().copied().unwrap_or(0),
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// RSA-2048 private-key signatures (SHA-256, PKCS#1), one thread per core: operations per
/// second of wall-clock time (all threads together), and per CPU second of those threads.
async fn rsa_ops_per_s(threads: usize) -> CliResult<Rsa2048> {
    tokio::task::spawn_blocking(move || -> CliResult<Rsa2048> {
        let key = PKey::from_rsa(Rsa::generate(2048).map_err(fail)?).map_err(fail)?;
        type Counted = CliResult<(u64, f64, Option<f64>)>;
        let counts: Vec<Counted> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let key = key.clone();
                    s.spawn(move || -> Counted {
                        let cpu0 = thread_cpu_seconds();
                        let start = Instant::now();
                        let mut n = 0u64;
                        while start.elapsed().as_secs_f64() < RSA_SECONDS {
                            let mut signer =
                                Signer::new(MessageDigest::sha256(), &key).map_err(fail)?;
                            signer.update(b"hisp bench").map_err(fail)?;
                            signer.sign_to_vec().map_err(fail)?;
                            n += 1;
                        }
                        let cpu = cpu0.zip(thread_cpu_seconds()).map(|(a, b)| b - a);
                        Ok((n, start.elapsed().as_secs_f64(), cpu))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(fail("RSA thread panicked")))
                })
                .collect()
        });
        let (mut rate, mut ops, mut cpu) = (0.0, 0u64, Some(0.0));
        for c in counts {
            let (n, secs, c) = c?;
            rate += n as f64 / secs;
            ops += n;
            cpu = cpu.zip(c).map(|(a, b)| a + b);
        }
        Ok(Rsa2048 {
            per_s: rate,
            per_cpu_s: cpu.filter(|c| *c > 0.0).map(|c| ops as f64 / c),
        })
    })
    .await
    .map_err(fail)?
}

struct Rsa2048 {
    per_s: f64,
    per_cpu_s: Option<f64>,
}

/// User + system CPU seconds of this process so far (Linux).
fn cpu_seconds() -> Option<f64> {
    stat_cpu_seconds("/proc/self/stat")
}

/// User + system CPU seconds of the calling thread so far (Linux).
fn thread_cpu_seconds() -> Option<f64> {
    stat_cpu_seconds("/proc/thread-self/stat")
}

fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name in parentheses may contain spaces; the fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name and state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // In clock ticks; USER_HZ is 100 on every Linux architecture we build for.
    Some((utime + stime) / 100.0)
}

/// Peak resident set size of this process (VmHWM).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn progress_note(text: &str) {
    eprintln!("hisp bench: {text}");
}

/// A one-line progress bar on stderr: redrawn in place on a terminal, a line every few
/// seconds otherwise (logs, CI).
struct Progress {
    total: usize,
    tty: bool,
    last_line: Mutex<Instant>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            tty: std::io::stderr().is_terminal(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn show(&self, acked: usize, filed: usize, done: usize, elapsed: Duration) {
        const WIDTH: usize = 30;
        let fill = (done.min(self.total) * WIDTH) / self.total.max(1);
        let line = format!(
            "[{}{}] submitted {acked}/{t}  filed {filed}/{t}  complete {done}/{t}  {:.0} s",
            "#".repeat(fill),
            "-".repeat(WIDTH - fill),
            elapsed.as_secs_f64(),
            t = self.total,
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
        } else {
            let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_secs(5) {
                *last = Instant::now();
                let _ = writeln!(err, "hisp bench: {line}");
            }
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 95.0), 95);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn template_has_the_asked_size_and_is_valid_smtp_data() {
        for size in [10 * 1024, 1024 * 1024] {
            let t = Template::new(size);
            let (id, m) = t.message(12345);
            assert_eq!(id, "bench-12345@hisp-a.example");
            let diff = m.len() as i64 - size as i64;
            assert!(diff.abs() < 80, "size {size}: got {}", m.len());
            assert!(m.ends_with(b"\r\n"));
            // No line may start with a dot (we send without dot-stuffing).
            assert!(!m.windows(3).any(|w| w == b"\r\n."));
        }
    }

    #[test]
    fn cpu_and_rss_readable_here() {
        assert!(cpu_seconds().is_some());
        assert!(peak_rss_bytes().unwrap() > 0);
    }
}
