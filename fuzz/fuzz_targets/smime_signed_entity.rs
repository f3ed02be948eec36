//! The decrypted side: multipart/signed splitting, signature parsing and verification,
//! unwrapping and envelope binding — reachable here without a matching encryption key.
#![no_main]

use hisp::smime::{self, AlgorithmPolicy, Envelope, mime};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mime::check_depth(data, smime::MAX_MIME_DEPTH);
    if let Ok(v) = smime::verify_entity(data, &AlgorithmPolicy::default()) {
        let (inner, _) = smime::wrap::unwrap(&v.content);
        let _ = smime::check_envelope(
            inner,
            &Envelope {
                mail_from: "a@hisp-a.example".into(),
                rcpt_to: vec!["b@hisp-b.example".into()],
            },
        );
    }
    let _ = smime::wrap::routing_headers(data);
    let _ = smime::check_envelope(
        data,
        &Envelope {
            mail_from: "a@hisp-a.example".into(),
            rcpt_to: vec!["b@hisp-b.example".into()],
        },
    );
});
