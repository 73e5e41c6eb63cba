#![no_main]
libfuzzer_sys::fuzz_target!(|data: &str| {
    let _ = otto_protocol::Envelope::from_json(data);
});
