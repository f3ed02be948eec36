//! Whole inbound path: MIME → base64 → CMS parse → algorithm policy → decrypt → MIME depth →
//! verify → unwrap, with real keys. Any input must end in Ok or a named error, never a panic.
#![no_main]

use hisp::devpki::Ca;
use hisp::smime::{self, AlgorithmPolicy, LocalKey};
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

fuzz_target!(|data: &[u8]| {
    let legacy = AlgorithmPolicy {
        allow_sha1: true,
        allow_3des: true,
        allow_rc2: true,
    };
    let _ = smime::open(data, keys(), &AlgorithmPolicy::default());
    let _ = smime::open(data, keys(), &legacy);
});
