//! Fuzzes the request head parser: it must never panic (or overflow, or loop) on any input.
#![no_main]

use corelb::config::HttpLimits;
use libfuzzer_sys::fuzz_target;
use std::num::NonZeroUsize;

fuzz_target!(|data: &[u8]| {
    // The defaults from corelb::limits; constants, so the unwraps cannot fail.
    let limits = HttpLimits {
        max_request_line: NonZeroUsize::new(8192).unwrap(),
        max_header_bytes: NonZeroUsize::new(16384).unwrap(),
        max_headers: NonZeroUsize::new(100).unwrap(),
        max_body: None,
    };
    let _ = corelb::http::request::parse_request_head(data, &limits);
});
