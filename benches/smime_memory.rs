//! Peak memory of sealing and opening one message, as a multiple of its size. Each size runs
//! in a fresh child process (peak RSS only grows within a process).
//!
//!   cargo bench --bench smime_memory

use hisp::config::{ContentCipher, KeyTransport};
use hisp::devpki::Ca;
use hisp::smime::{self, AlgorithmPolicy, LocalKey, SealOptions, mime};

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets the peak (Linux: "5" to clear_refs) and returns the current RSS to measure from.
fn start_phase() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}

fn peak_since(base: u64) -> u64 {
    status_kib("VmHWM:").saturating_sub(base)
}

fn run_child(size: usize) {
    let root = Ca::root("mem root").unwrap();
    let alice = root.leaf().email("alice@hisp-a.example").build().unwrap();
    let bob = root.leaf().email("bob@hisp-b.example").build().unwrap();
    let mut body = vec![0u8; size * 3 / 4];
    openssl::rand::rand_bytes(&mut body).unwrap();
    let mut msg = b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    msg.extend_from_slice(&mime::encode_base64_lines(&body));
    drop(body);
    let options = SealOptions {
        cipher: ContentCipher::Aes256Cbc,
        key_transport: KeyTransport::RsaOaep,
    };
    let signer = [LocalKey {
        cert: alice.cert.clone(),
        key: alice.key.clone(),
        chain: vec![],
    }];
    let reader = [LocalKey {
        cert: bob.cert.clone(),
        key: bob.key.clone(),
        chain: vec![],
    }];
    let base = start_phase();
    let sealed = smime::seal(&msg, &signer, std::slice::from_ref(&bob.cert), &options).unwrap();
    let seal_peak = peak_since(base);
    let len = msg.len();
    drop(msg);
    let base = start_phase();
    let opened = smime::open(&sealed, &reader, &AlgorithmPolicy::default()).unwrap();
    let open_peak = peak_since(base);
    assert_eq!(opened.message.len(), len);
    let mib = |k: u64| k as f64 / 1024.0;
    let size_mib = len as f64 / (1024.0 * 1024.0);
    println!(
        "message {size_mib:.1} MiB: extra peak memory seal {:.1} MiB ({:.1}x the message), open {:.1} MiB ({:.1}x)",
        mib(seal_peak),
        mib(seal_peak) / size_mib,
        mib(open_peak),
        mib(open_peak) / size_mib,
    );
}

fn main() {
    if let Ok(size) = std::env::var("HISP_MEM_CHILD") {
        run_child(size.parse().unwrap());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for size in [1 << 20, 10 << 20, 30 << 20] {
        let out = std::process::Command::new(&exe)
            .env("HISP_MEM_CHILD", size.to_string())
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
}
