//! Certificate discovery throughput and cache cost (issue: 1,000 distinct addresses at
//! 2,000/s or more with a cold cache, bounded memory; a cache hit under 5 µs).
//!
//!   cargo bench --bench discovery
//!
//! Real sockets: hisp's DNS responder on loopback UDP serves one address-bound CERT record
//! per address; discovery resolves, parses and fully validates each (path to the anchor,
//! validity, binding, key usage), as the outbound pipeline does for a new recipient.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hisp::address::DirectAddress;
use hisp::config::Config;
use hisp::devpki::{Ca, rsa_key};
use hisp::discovery::{Anchors, Discovery};
use hisp::dns_server::{DnsServer, Zone, ZoneContent};

const ADDRESSES: usize = 1_000;
const CONCURRENCY: usize = 64;
const HITS: usize = 200_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us once without it: keep that
    // quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 50 } else { ADDRESSES };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(n, quick));
}

async fn run(n: usize, quick: bool) {
    let ca = Ca::root("Discovery bench CA").unwrap();
    // One key for every leaf: generating 1,000 RSA keys would dominate set-up, and discovery
    // never looks at whether keys repeat.
    let key = rsa_key(2048).unwrap();
    let domain = "bench.example";
    let mut content = ZoneContent::new();
    content.origin(domain).unwrap();
    let mut addresses = Vec::with_capacity(n);
    for i in 0..n {
        let address = DirectAddress::parse(&format!("user{i}@{domain}")).unwrap();
        let leaf = ca
            .leaf()
            .email(address.as_str())
            .key(key.clone())
            .build()
            .unwrap();
        content
            .cert(&address.cert_query_name(), &leaf.cert_der())
            .unwrap();
        addresses.push(address);
    }
    let zone = Zone::new();
    zone.replace(content);
    let dns = DnsServer::start("127.0.0.1:0".parse().unwrap(), zone.clone())
        .await
        .unwrap();
    let mut config = Config::default();
    config.dns.nameservers = vec![dns.local_addr];
    config.dns.attempts = 2;
    let discovery = Arc::new(Discovery::new(&config).unwrap());
    let anchors = Arc::new(Anchors::new(vec![ca.cert.clone()]));

    // Warm the code paths (not the cache) with an address outside the measured set.
    let warm = DirectAddress::parse(&format!("nobody@{domain}")).unwrap();
    discovery.discover(&warm, &anchors).await;

    let rss_before = rss_kib();
    let started = Instant::now();
    let addresses = Arc::new(addresses);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (d, a, list, next) = (
            discovery.clone(),
            anchors.clone(),
            addresses.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut found = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= list.len() {
                    return found;
                }
                let report = d.discover(&list[i], &a).await;
                found += usize::from(report.selected.len() == 1);
            }
        }));
    }
    let mut found = 0;
    for w in workers {
        found += w.await.unwrap();
    }
    let cold = started.elapsed();
    let rss_after = rss_kib();
    assert_eq!(
        found, n,
        "every address must resolve to its one valid certificate"
    );
    let (udp, tcp) = zone.query_counts();

    // Cache hits: the same addresses again, one task, so the number is the per-call cost.
    let hits = if quick { 10_000 } else { HITS };
    let started = Instant::now();
    for i in 0..hits {
        let r = discovery.discover(&addresses[i % n], &anchors).await;
        std::hint::black_box(&r);
    }
    let hit = started.elapsed();
    let (udp2, tcp2) = zone.query_counts();
    assert_eq!(udp + tcp, udp2 + tcp2, "cache hits must not query DNS");

    let rate = n as f64 / cold.as_secs_f64();
    let per_hit = hit.as_secs_f64() * 1e6 / hits as f64;
    println!(
        "discovery, cold cache: {n} distinct addresses in {cold:.3?} = {rate:.0}/s ({CONCURRENCY} concurrent; target >= 2000/s)"
    );
    println!("  DNS queries answered: {} UDP, {} TCP", udp, tcp);
    println!(
        "  RSS: {} KiB before, {} KiB after ({} KiB for {n} cached results, {:.1} KiB each)",
        rss_before,
        rss_after,
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / n as f64
    );
    println!(
        "discovery, cache hit: {per_hit:.2} µs per lookup over {hits} lookups (target < 5 µs)"
    );
    dns.shutdown().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
