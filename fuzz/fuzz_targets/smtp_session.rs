//! Whole SMTP sessions from untrusted bytes: the fuzzer's input is everything a client sends
//! on one connection (commands, pipelined batches, AUTH exchanges, DATA with dot-stuffing,
//! garbage, a cut-off end). It goes through a real loopback socket into the real session
//! state machine and the plain queueing pipeline on a real SQLite store; the first byte picks
//! the listener role. A panic in a session task aborts the process (panic = "abort" in the
//! fuzz profile), so any panic on network bytes is a finding.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hisp::address::DirectAddress;
use hisp::config::Smtp;
use hisp::pipeline::Role;
use hisp::pipeline::enqueue::Enqueue;
use hisp::smtp::server::{Limits, Listener, Shared};
use hisp::store::Store;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Rig {
    runtime: tokio::runtime::Runtime,
    inbound: SocketAddr,
    submission: SocketAddr,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (inbound, submission) = runtime.block_on(async {
            let dir = std::env::temp_dir().join(format!("hisp-fuzz-smtp-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let url = format!("sqlite://{}", dir.join("hisp.db").display());
            let store = Store::open(&url, 4).await.unwrap();
            store.add_domain("hisp-a.example").await.unwrap();
            // A cheap password hash would be nicer, but the real argon2 path is what runs.
            let hash = hisp::auth::hash_password("secret").unwrap();
            store
                .add_address(&DirectAddress::parse("alice@hisp-a.example").unwrap(), Some(&hash))
                .await
                .unwrap();
            let config = Smtp {
                max_connections: 10_000,
                max_connections_per_ip: 10_000,
                // No lock-out: a locked-out fuzzer would only ever see 421.
                max_auth_failures: u32::MAX,
                max_message_size: hisp::config::Size(64 * 1024),
                command_timeout: hisp::config::Duration(Duration::from_secs(2)),
                data_timeout: hisp::config::Duration(Duration::from_secs(2)),
                require_tls_for_auth: false,
                ..Smtp::default()
            };
            let (_stop, rx) = tokio::sync::watch::channel(false);
            std::mem::forget(_stop);
            let mut addrs = Vec::new();
            for role in [Role::Inbound, Role::Submission] {
                let shared = Arc::new(Shared {
                    role,
                    limits: Limits::new(config.max_connections, config.max_connections_per_ip),
                    config: config.clone(),
                    hostname: "mx.hisp-a.example".into(),
                    store: store.clone(),
                    pipeline: Arc::new(Enqueue {
                        store: store.clone(),
                        hostname: "mx.hisp-a.example".into(),
                        give_up_after: Duration::from_secs(3600),
                    }),
                    tls: None,
                    shutdown: rx.clone(),
                });
                let l = Listener::bind("127.0.0.1:0".parse().unwrap(), shared)
                    .await
                    .unwrap();
                addrs.push(l.local_addr());
                tokio::spawn(l.serve(rx.clone()));
            }
            (addrs[0], addrs[1])
        });
        Rig {
            runtime,
            inbound,
            submission,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let rig = rig();
    let addr = if first & 1 == 0 {
        rig.inbound
    } else {
        rig.submission
    };
    let input = input.to_vec();
    rig.runtime.block_on(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = s.split();
        let send = async {
            // The server may close first (QUIT, limits): a failed write is fine.
            let _ = w.write_all(&input).await;
            let _ = w.shutdown().await;
        };
        let mut replies = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut replies));
        let (_, read) = tokio::join!(send, read);
        // The session must end once the client has: a hang past the timeouts is a finding.
        assert!(read.is_ok(), "session did not end after the client closed");
        // Every reply line is well formed.
        for line in replies.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        }
    });
});
