#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = otto_protocol::decode("log_lines", data);
});
