//! Fuzzes the trust store's TOML reader: a damaged file must give an error, not a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = otto_trust::TrustStore::from_toml(text);
    }
});
