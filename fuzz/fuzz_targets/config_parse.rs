//! The config file: any text gives a Config or a one-line error naming the key, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hisp::config::Config::from_toml(text, std::path::Path::new("fuzz.toml"));
    }
});
