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
