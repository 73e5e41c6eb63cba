//! Fuzzes the DSSE JSON envelope parser used for exported attestations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = otto_trust::dsse::from_json(text);
    }
});
