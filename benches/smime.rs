//! Cost of the S/MIME agent relative to the RSA-2048 private-key operation each message
//! contains, measured in the same run (the machine is shared and noisy: compare ratios, not
//! absolute times across runs), and throughput for a 10 MB attachment.
//!
//!   cargo bench --bench smime
//!
//! Targets (issue 3): seal (sign+encrypt) and open (decrypt+verify) of a 10 KB message each
//! at most 1.25x one private-key operation; 10 MB through at >= 200 MB/s.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hisp::config::{ContentCipher, KeyTransport};
use hisp::devpki::Ca;
use hisp::smime::{self, AlgorithmPolicy, LocalKey, SealOptions, mime};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Padding;
use openssl::sign::Signer;
use std::hint::black_box;
use std::time::Duration;

fn message(size: usize) -> Vec<u8> {
    let mut body = vec![0u8; size * 3 / 4];
    openssl::rand::rand_bytes(&mut body).unwrap();
    let mut m = b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nSubject: bench\r\nMessage-ID: <b@hisp-a.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    m.extend_from_slice(&mime::encode_base64_lines(&body));
    m.extend_from_slice(b"--x--\r\n");
    m
}

fn bench(c: &mut Criterion) {
    let root = Ca::root("bench root").unwrap();
    let alice = root.leaf().email("alice@hisp-a.example").build().unwrap();
    let bob = root.leaf().email("bob@hisp-b.example").build().unwrap();
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
    let recipients = [bob.cert.clone()];
    let options = SealOptions {
        cipher: ContentCipher::Aes256Cbc,
        key_transport: KeyTransport::RsaOaep,
    };
    let policy = AlgorithmPolicy::default();

    let mut g = c.benchmark_group("rsa2048");
    g.measurement_time(Duration::from_secs(5));
    let digest = [7u8; 32];
    g.bench_function("private_sign", |b| {
        b.iter(|| {
            let mut s = Signer::new(MessageDigest::sha256(), &alice.key).unwrap();
            s.update(black_box(&digest)).unwrap();
            s.sign_to_vec().unwrap()
        })
    });
    let rsa = bob.key.rsa().unwrap();
    let mut wrapped = vec![0u8; 256];
    let n = bob
        .cert
        .public_key()
        .unwrap()
        .rsa()
        .unwrap()
        .public_encrypt(&digest, &mut wrapped, Padding::PKCS1_OAEP)
        .unwrap();
    wrapped.truncate(n);
    g.bench_function("private_decrypt", |b| {
        b.iter(|| {
            let mut out = vec![0u8; 256];
            rsa.private_decrypt(black_box(&wrapped), &mut out, Padding::PKCS1_OAEP)
                .unwrap()
        })
    });
    g.finish();
    let _ = PKey::from_rsa(rsa.clone());

    for size in [10 * 1024, 10 * 1024 * 1024] {
        let msg = message(size);
        let sealed = smime::seal(&msg, &signer, &recipients, &options).unwrap();
        let mut g = c.benchmark_group(if size < 1024 * 1024 {
            "smime_10KB"
        } else {
            "smime_10MB"
        });
        g.throughput(Throughput::Bytes(msg.len() as u64));
        if size > 1024 * 1024 {
            g.sample_size(10);
        }
        g.measurement_time(Duration::from_secs(if size > 1024 * 1024 { 20 } else { 5 }));
        g.bench_with_input(BenchmarkId::new("seal", size), &msg, |b, m| {
            b.iter(|| smime::seal(black_box(m), &signer, &recipients, &options).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| {
            b.iter(|| smime::open(black_box(s), &reader, &policy).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
