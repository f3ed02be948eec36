//! Whole inbound path: MIME → base64 → CMS parse → algorithm policy → decrypt → MIME depth →
//! verify → unwrap, with real keys. Any input must end in Ok or a named error, never a panic.
//!
//! The input is used twice: as a message, and as byte edits to valid messages sealed to the
//! target's own key (generated at start-up, so no seed file can be encrypted to it) — the
//! only way mutated input reaches key unwrap, content decryption and verification of the
//! decrypted entity, on both the direct and the OpenSSL path.
#![no_main]

use hisp::config::{ContentCipher, KeyTransport};
use hisp::devpki::Ca;
use hisp::smime::{self, AlgorithmPolicy, LocalKey, SealOptions, mime};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn keys() -> &'static [LocalKey] {
    static KEYS: OnceLock<Vec<LocalKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let root = Ca::root("fuzz root").expect("root");
        let bob = root.leaf().email("bob@hisp-b.example").build().expect("leaf");
        vec![LocalKey {
            cert: bob.cert,
            key: bob.key,
            chain: vec![],
        }]
    })
}

/// DER of a valid message to our key for every cipher and key transport.
fn valid() -> &'static [Vec<u8>] {
    static DER: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    DER.get_or_init(|| {
        let original = b"From: a@hisp-a.example\r\nTo: bob@hisp-b.example\r\nSubject: s\r\n\r\nbody\r\n";
        let mut out = Vec::new();
        for cipher in [ContentCipher::Aes128Cbc, ContentCipher::Aes256Gcm] {
            for key_transport in [KeyTransport::RsaOaep, KeyTransport::RsaPkcs1] {
                let options = SealOptions {
                    cipher,
                    key_transport,
                };
                let sealed =
                    smime::seal(original, keys(), &[keys()[0].cert.clone()], &options).expect("seal");
                out.push(mime::decode_base64(mime::split(&sealed).body).expect("base64"));
            }
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let legacy = AlgorithmPolicy {
        allow_sha1: true,
        allow_3des: true,
        allow_rc2: true,
    };
    let _ = smime::open(data, keys(), &AlgorithmPolicy::default());
    let _ = smime::open(data, keys(), &legacy);
    if let Some((&which, edits)) = data.split_first() {
        let mut der = valid()[usize::from(which) % valid().len()].clone();
        for e in edits.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([e[0], e[1]])) % der.len();
            der[at] ^= e[2];
        }
        let mut msg = b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        msg.extend_from_slice(&mime::encode_base64_lines(&der));
        let _ = smime::open(&msg, keys(), &AlgorithmPolicy::default());
    }
});
