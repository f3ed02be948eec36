//! CERT record data from a partner's DNS: the rdata decoder, our reading of it, and what
//! follows from each type — DER certificate parsing (PKIX, or a PKCS#7 bundle) and the URL
//! parser for IPKIX.
#![no_main]

use hickory_proto::rr::rdata::CERT;
use hisp::discovery::dns::{CertRecord, cert_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cert) = CERT::try_from(data) else {
        return;
    };
    match cert_record(&cert) {
        CertRecord::Pkix(der) => {
            let _ = openssl::x509::X509::from_der(&der);
            let _ = hisp::trust::parse_certificates(&der);
        }
        CertRecord::Ipkix(url) => {
            let _ = hisp::fetch::Url::parse(&url);
        }
        CertRecord::Other(_) => {}
    }
});
