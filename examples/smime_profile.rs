//! Runs seal/open in a loop for profiling: `perf record cargo run --release --example smime_profile -- 10240 2000`.
use hisp::config::{ContentCipher, KeyTransport};
use hisp::devpki::Ca;
use hisp::smime::{self, AlgorithmPolicy, LocalKey, SealOptions, mime};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10240);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let what = args.get(3).map(String::as_str).unwrap_or("both");
    let root = Ca::root("p").unwrap();
    let alice = root.leaf().email("alice@hisp-a.example").build().unwrap();
    let bob = root.leaf().email("bob@hisp-b.example").build().unwrap();
    let mut body = vec![0u8; size * 3 / 4];
    openssl::rand::rand_bytes(&mut body).unwrap();
    let mut msg = if std::env::var_os("MULTIPART").is_some() {
        b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec()
    } else {
        b"From: alice@hisp-a.example\r\nTo: bob@hisp-b.example\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec()
    };
    msg.extend_from_slice(&mime::encode_base64_lines(&body));
    if std::env::var_os("MULTIPART").is_some() {
        msg.extend_from_slice(b"--x--\r\n");
    }
    let o = SealOptions {
        cipher: ContentCipher::Aes256Cbc,
        key_transport: KeyTransport::RsaOaep,
    };
    let signer = [LocalKey {
        cert: alice.cert.clone(),
        key: alice.key.clone(),
        chain: vec![],
    }];
    let key = match std::env::var("KEYMODE").as_deref() {
        Ok("pkcs8") => {
            openssl::pkey::PKey::private_key_from_pkcs8(&bob.key.private_key_to_pkcs8().unwrap())
                .unwrap()
        }
        Ok("der") => {
            openssl::pkey::PKey::private_key_from_der(&bob.key.private_key_to_der().unwrap())
                .unwrap()
        }
        _ => bob.key.clone(),
    };
    let reader = [LocalKey {
        cert: bob.cert.clone(),
        key,
        chain: vec![],
    }];
    let sealed = smime::seal(&msg, &signer, std::slice::from_ref(&bob.cert), &o).unwrap();
    if what == "seal-breakdown" {
        seal_breakdown(&msg, &signer, &bob.cert);
        return;
    }
    if what == "ratios" {
        ratios(&msg, &signer, &reader, &sealed, rounds);
        return;
    }
    if what == "breakdown" {
        breakdown(&sealed, &reader);
        return;
    }
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        if what != "open" {
            std::hint::black_box(
                smime::seal(&msg, &signer, std::slice::from_ref(&bob.cert), &o).unwrap(),
            );
        }
        if what != "seal" {
            std::hint::black_box(
                smime::open(&sealed, &reader, &AlgorithmPolicy::default()).unwrap(),
            );
        }
    }
    eprintln!("{what}: {:?} per round", t.elapsed() / rounds as u32);
}

#[allow(dead_code)]
pub fn breakdown(sealed: &[u8], reader: &[LocalKey]) {
    let n = 500;
    let time = |label: &str, f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        eprintln!("{label:>28}: {:?}", t.elapsed() / n);
    };
    let p = AlgorithmPolicy::default();
    let (entity, _, _, _) = smime::decrypt(sealed, reader, &p).unwrap();
    time("decrypt", &mut || {
        std::hint::black_box(smime::decrypt(sealed, reader, &p).unwrap());
    });
    time("verify_entity", &mut || {
        std::hint::black_box(smime::verify_entity(&entity, &p).unwrap());
    });
    time("check_depth", &mut || {
        mime::check_depth(std::hint::black_box(&entity), 32).unwrap();
    });
    let outer = mime::split(sealed);
    time("decode_base64 outer", &mut || {
        std::hint::black_box(mime::decode_base64(outer.body).unwrap());
    });
    let der = mime::decode_base64(outer.body).unwrap();
    time("from_der enveloped", &mut || {
        std::hint::black_box(openssl::cms::CmsContentInfo::from_der(&der).unwrap());
    });
    let cms = openssl::cms::CmsContentInfo::from_der(&der).unwrap();
    time("to_der enveloped", &mut || {
        std::hint::black_box(cms.to_der().unwrap());
    });
    time("cms.decrypt", &mut || {
        std::hint::black_box(cms.decrypt(&reader[0].key, &reader[0].cert).unwrap());
    });
    let cert_der = reader[0].cert.to_der().unwrap();
    time("X509::from_der", &mut || {
        std::hint::black_box(openssl::x509::X509::from_der(&cert_der).unwrap());
    });
    time("certinfo", &mut || {
        std::hint::black_box(hisp::certinfo::CertInfo::of(&reader[0].cert));
    });
}

#[allow(dead_code)]
pub fn seal_breakdown(msg: &[u8], signer: &[LocalKey], recipient: &openssl::x509::X509) {
    let n = if msg.len() > 1_000_000 { 5 } else { 400 };
    let time = |label: &str, f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        eprintln!("{label:>28}: {:?}", t.elapsed() / n);
    };
    let o = SealOptions {
        cipher: ContentCipher::Aes256Cbc,
        key_transport: KeyTransport::RsaOaep,
    };
    let entity = smime::wrap::wrap(msg);
    let signed = smime::sign_entity(&entity, signer).unwrap();
    time("rsa sign (EVP Signer)", &mut || {
        let mut s =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &signer[0].key)
                .unwrap();
        s.update(b"x").unwrap();
        std::hint::black_box(s.sign_to_vec().unwrap());
    });
    time("wrap", &mut || {
        std::hint::black_box(smime::wrap::wrap(msg));
    });
    time("sign_entity", &mut || {
        std::hint::black_box(smime::sign_entity(&entity, signer).unwrap());
    });
    time("encrypt_entity", &mut || {
        std::hint::black_box(
            smime::encrypt_entity(&signed, std::slice::from_ref(recipient), &o).unwrap(),
        );
    });
    let pkey = recipient.public_key().unwrap();
    time("rsa oaep public encrypt", &mut || {
        let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&pkey).unwrap();
        ctx.encrypt_init().unwrap();
        ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
            .unwrap();
        let mut out = vec![];
        ctx.encrypt_to_vec(&[1u8; 32], &mut out).unwrap();
        std::hint::black_box(out);
    });
    time("base64 lines", &mut || {
        std::hint::black_box(mime::encode_base64_lines(&signed));
    });
    time("routing headers", &mut || {
        std::hint::black_box(smime::wrap::routing_headers(msg));
    });
}

fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// seal/open against the RSA-2048 private operation they contain, interleaved round by round
/// so that load from other processes on a shared machine hits all four alike; medians of
/// both wall-clock and thread CPU time.
pub fn ratios(msg: &[u8], signer: &[LocalKey], reader: &[LocalKey], sealed: &[u8], rounds: usize) {
    let o = SealOptions {
        cipher: ContentCipher::Aes256Cbc,
        key_transport: KeyTransport::RsaOaep,
    };
    let bob_cert = reader[0].cert.clone();
    let rsa = reader[0].key.rsa().unwrap();
    let mut wrapped = vec![0u8; 256];
    let n = bob_cert
        .public_key()
        .unwrap()
        .rsa()
        .unwrap()
        .public_encrypt(&[7u8; 32], &mut wrapped, openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    wrapped.truncate(n);
    let policy = AlgorithmPolicy::default();
    type Op<'a> = (&'static str, Box<dyn FnMut() + 'a>);
    let mut ops: Vec<Op> = vec![
        (
            "rsa sign",
            Box::new(|| {
                let mut s = openssl::sign::Signer::new(
                    openssl::hash::MessageDigest::sha256(),
                    &signer[0].key,
                )
                .unwrap();
                s.update(std::hint::black_box(&[7u8; 32])).unwrap();
                std::hint::black_box(s.sign_to_vec().unwrap());
            }),
        ),
        (
            "seal",
            Box::new(|| {
                std::hint::black_box(
                    smime::seal(msg, signer, std::slice::from_ref(&bob_cert), &o).unwrap(),
                );
            }),
        ),
        (
            "rsa decrypt",
            Box::new(|| {
                let mut out = vec![0u8; 256];
                std::hint::black_box(
                    rsa.private_decrypt(&wrapped, &mut out, openssl::rsa::Padding::PKCS1_OAEP)
                        .unwrap(),
                );
            }),
        ),
        (
            "open",
            Box::new(|| {
                std::hint::black_box(smime::open(sealed, reader, &policy).unwrap());
            }),
        ),
    ];
    let mut wall = vec![Vec::with_capacity(rounds); ops.len()];
    let mut cpu = vec![Vec::with_capacity(rounds); ops.len()];
    for _ in 0..rounds {
        for (i, (_, op)) in ops.iter_mut().enumerate() {
            let (w, c) = (std::time::Instant::now(), thread_cpu());
            op();
            cpu[i].push(thread_cpu() - c);
            wall[i].push(w.elapsed());
        }
    }
    let median = |v: &mut Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    let m: Vec<(f64, f64)> = (0..ops.len())
        .map(|i| (median(&mut wall[i]), median(&mut cpu[i])))
        .collect();
    for (i, (name, _)) in ops.iter().enumerate() {
        eprintln!("{name:>12}: wall {:8.1} µs   cpu {:8.1} µs", m[i].0, m[i].1);
    }
    eprintln!(
        "seal/sign: wall {:.3}x cpu {:.3}x   open/decrypt: wall {:.3}x cpu {:.3}x",
        m[1].0 / m[0].0,
        m[1].1 / m[0].1,
        m[3].0 / m[2].0,
        m[3].1 / m[2].1
    );
}
