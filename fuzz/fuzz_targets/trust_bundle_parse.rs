//! Trust bundles from a URL (SPEC D26): the .p7b / signed-bundle / XML reader, with and without
//! a pinned signer. Each input is also applied as byte edits (offset, xor) to a valid signed
//! bundle made at start-up, so mutations reach signature checking and the inner .p7b, which no
//! seed file can (the signing key is generated here).
#![no_main]

use std::sync::OnceLock;

use hisp::devpki::{Ca, Issued, Usage, certs_only_p7b, signed_bundle};
use hisp::trust::bundle::parse;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    signer: Issued,
    signed: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let publisher = Ca::root("Fuzz Publisher").unwrap();
        let signer = publisher
            .leaf()
            .common_name("Fuzz Bundle Signer")
            .usage(Usage::SignOnly)
            .build()
            .unwrap();
        let community = Ca::root("Fuzz Community").unwrap();
        let p7b = certs_only_p7b(&[&community.cert, &publisher.cert]).unwrap();
        let signed = signed_bundle(&signer, &p7b).unwrap();
        Fixture { signer, signed }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let _ = parse(data, None);
    let _ = parse(data, Some(&f.signer.cert));
    let mut edited = f.signed.clone();
    for edit in data.chunks_exact(3) {
        let offset = usize::from(u16::from_be_bytes([edit[0], edit[1]])) % edited.len();
        edited[offset] ^= edit[2];
    }
    let _ = parse(&edited, Some(&f.signer.cert));
});
