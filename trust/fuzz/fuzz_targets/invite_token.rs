//! Fuzzes invite token parsing and opening: a pasted token must never panic the node.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = otto_trust::invite::open_invite(text, 1_800_000_000);
    }
});
