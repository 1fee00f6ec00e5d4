//! Fuzzes the response head parser: it must never panic (or overflow, or loop) on any input, and what it
//! returns must lie within the input. The first input byte chooses whether the request was HEAD.
#![no_main]

use corelb::http::response::{parse_response_head_into, RespFraming};
use corelb::http::Span;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let mut fields = Vec::new();
    let Ok(Some(head)) = parse_response_head_into(input, head_request, &mut fields) else {
        return;
    };
    assert!(head.head_len <= input.len(), "head past the input");
    assert!((100..=599).contains(&head.status), "status out of range");
    let within = |s: Span| s.start <= s.end && s.end as usize <= head.head_len;
    assert!(within(head.reason), "reason outside the head");
    assert!(head.upgrade.is_none_or(within), "upgrade outside the head");
    for f in &fields {
        assert!(within(f.name) && within(f.value), "field outside the head");
        assert!(!f.name.is_empty(), "empty field name");
    }
    if head_request || head.status == 204 || head.status == 304 || head.status < 200 {
        assert_eq!(
            head.framing,
            RespFraming::NoBody,
            "body where none is allowed"
        );
    }
});
