//! Fuzzes the Ottofile parser: it must never panic, whatever the text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = otto_pipeline::parse(otto_pipeline::span::FileId(0), text);
    }
});
