//! Notifications from partners: MDN and DSN parsing, the final-delivery request and the
//! notification-kind checks every inbound message goes through.
#![no_main]

use hisp::notify::mdn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mdn::parse(data);
    let _ = hisp::notify::dsn::parse(data);
    let header = hisp::smime::mime::split(data).header;
    let _ = mdn::final_delivery_requested(header);
    let _ = mdn::notification_kind(header);
});
