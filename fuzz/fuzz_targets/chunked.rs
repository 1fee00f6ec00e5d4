//! Fuzzes the chunked decoder: no panic on any input, `Decoded` always within bounds, and the result does
//! not depend on how the input is split across `decode` calls (the first input byte drives the splits).
#![no_main]

use corelb::http::chunked::{ChunkError, ChunkedDecoder};
use libfuzzer_sys::fuzz_target;

/// What decoding the whole input gives: payload bytes, bytes consumed, whether the body ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    body: Vec<u8>,
    consumed: usize,
    done: bool,
}

/// xorshift64: deterministic split lengths from the seed byte, so a crash reproduces from its input.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Feeds `input` in pieces of lengths from `next_len`, looping `decode` on each piece like the proxy does.
fn run(input: &[u8], mut next_len: impl FnMut() -> usize) -> Result<Outcome, ChunkError> {
    let mut dec = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut off = 0;
    while off < input.len() && !dec.is_done() {
        let len = next_len().clamp(1, input.len() - off);
        let piece = &input[off..off + len];
        let mut p = 0;
        // Each call consumes at least one byte or ends the message: piece.len() + 1 calls are enough.
        for _ in 0..=piece.len() {
            if p == piece.len() || dec.is_done() {
                break;
            }
            let rest = &piece[p..];
            let d = dec.decode(rest)?;
            assert!(d.consumed <= rest.len(), "consumed past the input");
            assert!(d.data.start <= d.data.end, "inverted data range");
            assert_eq!(d.data.end, d.consumed, "data must end at consumed");
            assert!(d.consumed > 0 || dec.is_done(), "no progress");
            body.extend_from_slice(&rest[d.data.clone()]);
            p += d.consumed;
        }
        assert!(
            p == len || dec.is_done(),
            "piece left unconsumed while not done"
        );
        off += p;
    }
    if dec.is_done() {
        assert_eq!(dec.remaining_in_chunk(), 0);
        assert_eq!(
            dec.decode(input).map(|d| d.consumed),
            Ok(0),
            "consumed after done"
        );
    }
    Ok(Outcome {
        body,
        consumed: off,
        done: dec.is_done(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, || usize::MAX);
    // Seed 0 means 1-byte pieces; otherwise random pieces of 1..=max bytes.
    let max = usize::from(seed % 64) + 1;
    let mut rng = XorShift(u64::from(seed) | 0x9E37_79B9_7F4A_7C00);
    let split = run(input, || {
        if seed == 0 {
            1
        } else {
            (rng.next() % max as u64) as usize + 1
        }
    });
    assert_eq!(whole, split, "result depends on the input split");
    // An error must stick: a failed decoder never accepts more input.
    if let Err(e) = whole {
        let mut dec = ChunkedDecoder::new();
        let mut first_err = None;
        let mut rest = input;
        for _ in 0..=input.len() {
            match dec.decode(rest) {
                Ok(d) if d.consumed > 0 => rest = &rest[d.consumed..],
                Ok(_) => break,
                Err(got) => {
                    first_err = Some(got);
                    break;
                }
            }
        }
        assert_eq!(first_err, Some(e));
        assert_eq!(dec.decode(b"0\r\n\r\n"), Err(e), "error not sticky");
    }
});
