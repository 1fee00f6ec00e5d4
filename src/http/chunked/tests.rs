//! Tests of the strict chunked decoder: valid and invalid inputs, every split of the input, limits.
use super::*;

/// What decoding a whole input gives: the payload, total bytes consumed, and whether the body ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    body: Vec<u8>,
    consumed: usize,
    done: bool,
}

/// Feeds `input` in pieces whose lengths come from `next_len`, looping decode() on each piece the way
/// the proxy does, and checks the Decoded invariants on every call.
fn run(input: &[u8], mut next_len: impl FnMut() -> usize) -> Result<Outcome, ChunkError> {
    let mut dec = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut off = 0;
    while off < input.len() && !dec.is_done() {
        let len = next_len().clamp(1, input.len() - off);
        let piece = &input[off..off + len];
        let mut p = 0;
        // Every call makes progress or ends the message, so piece.len() + 1 calls are enough.
        for _ in 0..=piece.len() {
            if p == piece.len() || dec.is_done() {
                break;
            }
            let d = dec.decode(&piece[p..])?;
            assert!(d.consumed <= piece.len() - p);
            assert_eq!(d.data.end, d.consumed, "data must end at consumed");
            assert!(d.data.start <= d.data.end);
            assert!(d.consumed > 0 || dec.is_done(), "no progress");
            body.extend_from_slice(&piece[p + d.data.start..p + d.data.end]);
            p += d.consumed;
        }
        off += p;
        if p < len {
            assert!(dec.is_done(), "piece not consumed but decoder not done");
        }
    }
    if dec.is_done() {
        assert_eq!(dec.decode(b"more").unwrap().consumed, 0);
    }
    Ok(Outcome {
        body,
        consumed: off,
        done: dec.is_done(),
    })
}

/// xorshift64: a tiny deterministic PRNG for random splits (reproducible failures).
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

/// Decodes whole, 1 byte at a time and in many random splits; all must agree. Returns the result.
fn decode_all(input: &[u8]) -> Result<Outcome, ChunkError> {
    let whole = run(input, || usize::MAX);
    let bytewise = run(input, || 1);
    assert_eq!(whole, bytewise, "1-byte splits differ for {input:?}");
    for seed in 1..=20u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let max = (rng.next() % 16 + 1) as usize;
        let split = run(input, || (rng.next() as usize) % max + 1);
        assert_eq!(
            whole, split,
            "random split (seed {seed}) differs for {input:?}"
        );
    }
    whole
}

fn ok(input: &[u8]) -> Outcome {
    decode_all(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e:?}"))
}

fn err(input: &[u8]) -> ChunkError {
    match decode_all(input) {
        Ok(o) => panic!("{input:?} accepted: {o:?}"),
        Err(e) => e,
    }
}

fn complete(input: &[u8], body: &[u8]) {
    let o = ok(input);
    assert!(o.done, "{input:?} not done");
    assert_eq!(o.consumed, input.len());
    assert_eq!(o.body, body);
}

#[test]
fn simple_bodies() {
    complete(b"0\r\n\r\n", b"");
    complete(b"5\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world");
    complete(b"1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n", b"\r\n");
    complete(b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789");
}

#[test]
fn uppercase_and_mixed_hex() {
    complete(b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789");
    let mut input = b"1aB\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 0x1ab));
    input.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(ok(&input).body.len(), 0x1ab);
}

#[test]
fn leading_zeros_up_to_16_digits() {
    complete(b"0000000000000005\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(b"0000000000000000\r\n\r\n", b"");
    complete(b"00\r\n\r\n", b"");
}

#[test]
fn max_u64_size_announced() {
    let mut dec = ChunkedDecoder::new();
    let d = dec.decode(b"ffffffffffffffff\r\nab").unwrap();
    assert_eq!(d.consumed, 20);
    assert_eq!(d.data, 18..20);
    assert_eq!(dec.remaining_in_chunk(), u64::MAX - 2);
    assert!(!dec.is_done());

    let mut dec = ChunkedDecoder::new();
    assert_eq!(dec.decode(b"FFFFFFFFFFFFFFFF\r\n").unwrap().consumed, 18);
    assert_eq!(dec.remaining_in_chunk(), u64::MAX);
}

#[test]
fn remaining_in_chunk_tracks_data() {
    let mut dec = ChunkedDecoder::new();
    assert_eq!(dec.remaining_in_chunk(), 0);
    let d = dec.decode(b"5\r\nhe").unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 5,
            data: 3..5
        }
    );
    assert_eq!(dec.remaining_in_chunk(), 3);
    let d = dec.decode(b"llo\r\n0\r\n\r\n").unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 3,
            data: 0..3
        }
    );
    assert_eq!(dec.remaining_in_chunk(), 0);
    let d = dec.decode(b"\r\n0\r\n\r\n").unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 7,
            data: 7..7
        }
    );
    assert!(dec.is_done());
}

#[test]
fn stops_after_each_payload_run() {
    let mut dec = ChunkedDecoder::new();
    let input = b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n";
    let d = dec.decode(input).unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 5,
            data: 3..5
        }
    );
    let d = dec.decode(&input[5..]).unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 8,
            data: 5..8
        }
    );
    let d = dec.decode(&input[13..]).unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 7,
            data: 7..7
        }
    );
    assert!(dec.is_done());
}

#[test]
fn extensions() {
    complete(b"5;a\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(b"5;a=b\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(b"5;a=b;c;d=e\r\nhello\r\n0;x=y\r\n\r\n", b"hello");
    complete(b"5 ;a\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(b"5\t; a = b ; c\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(
        b"5;!#$%&'*+-.^_`|~09az=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n",
        b"hello",
    );
}

#[test]
fn quoted_extension_values() {
    complete(b"5;a=\"b c\"\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(b"5;a=\"\"\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(b"5;a=\"x;y=\\\"z\\\\\"\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(b"5;a=\"tab\there\" ;b\r\nhello\r\n0\r\n\r\n", b"hello");
    // obs-text is allowed inside a quoted-string.
    complete(b"5;a=\"\x80\xff\"\r\nhello\r\n0\r\n\r\n", b"hello");
    complete(b"5;a=\"\\\x80\"\r\nhello\r\n0\r\n\r\n", b"hello");
}

#[test]
fn trailers_dropped() {
    complete(b"5\r\nhello\r\n0\r\nFoo: bar\r\n\r\n", b"hello");
    complete(b"0\r\nFoo: bar\r\nContent-Length: 5\r\n\r\n", b"");
    complete(b"0\r\nFoo:\r\nBar:  \t \r\nBaz:a b\t\r\n\r\n", b"");
    complete(b"0\r\nX: \x80obs\xff\r\n\r\n", b"");
}

#[test]
fn pipelined_bytes_not_consumed() {
    let input = b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    let o = ok(input);
    assert!(o.done);
    assert_eq!(o.consumed, 15);
    assert_eq!(o.body, b"hello");

    let mut dec = ChunkedDecoder::new();
    let input = b"0\r\n\r\n0\r\n\r\n";
    let d = dec.decode(input).unwrap();
    assert_eq!(
        d,
        Decoded {
            consumed: 5,
            data: 5..5
        }
    );
    assert!(dec.is_done());
    assert_eq!(
        dec.decode(&input[5..]).unwrap(),
        Decoded {
            consumed: 0,
            data: 0..0
        }
    );
    assert_eq!(
        dec.decode(b"").unwrap(),
        Decoded {
            consumed: 0,
            data: 0..0
        }
    );
}

#[test]
fn incomplete_input_is_not_done() {
    for input in [
        &b""[..],
        b"5",
        b"5\r",
        b"5\r\nhel",
        b"5\r\nhello",
        b"5\r\nhello\r",
        b"5\r\nhello\r\n0\r\n",
        b"5\r\nhello\r\n0\r\nFoo: bar\r\n",
        b"5\r\nhello\r\n0\r\n\r",
        b"5;a=\"b",
    ] {
        let o = ok(input);
        assert!(!o.done, "{input:?}");
        assert_eq!(o.consumed, input.len());
    }
}

#[test]
fn invalid_size() {
    use ChunkError::InvalidSize;
    // httparse::parse_chunk_size(b"\r\n") returns 0: a false last-chunk. Not here.
    assert_eq!(err(b"\r\n"), InvalidSize);
    assert_eq!(err(b"\r\n\r\n"), InvalidSize);
    assert_eq!(err(b"x\r\n"), InvalidSize);
    assert_eq!(err(b"+5\r\n"), InvalidSize);
    assert_eq!(err(b"-5\r\n"), InvalidSize);
    assert_eq!(err(b"0x5\r\n"), InvalidSize);
    assert_eq!(err(b" 5\r\n"), InvalidSize);
    assert_eq!(err(b"\t5\r\n"), InvalidSize);
    assert_eq!(err(b";a\r\n"), InvalidSize);
    assert_eq!(err(b"5 \r\n"), InvalidSize);
    assert_eq!(err(b"5 6\r\n"), InvalidSize);
    assert_eq!(err(b"5g\r\n"), InvalidSize);
    assert_eq!(err(b"5\x00\r\n"), InvalidSize);
    assert_eq!(err(b"5\x0b\r\n"), InvalidSize);
    assert_eq!(err(b"\xef\xbc\x95\r\n"), InvalidSize);
    assert_eq!(err(b"5\r\nhello\r\nz\r\n"), InvalidSize);
}

#[test]
fn size_overflow() {
    use ChunkError::SizeOverflow;
    assert_eq!(err(b"00000000000000005\r\n"), SizeOverflow); // 17 digits, small value
    assert_eq!(err(b"ffffffffffffffff1\r\n"), SizeOverflow);
    assert_eq!(err(b"10000000000000000\r\n"), SizeOverflow);
    assert_eq!(err(&[b'f'; 100]), SizeOverflow);
}

#[test]
fn missing_crlf() {
    use ChunkError::MissingCrlf;
    assert_eq!(err(b"5\n"), MissingCrlf);
    assert_eq!(err(b"5\rhello"), MissingCrlf);
    assert_eq!(err(b"5\r\r\n"), MissingCrlf);
    assert_eq!(err(b"5;a\n"), MissingCrlf);
    assert_eq!(err(b"5;a=b\n"), MissingCrlf);
    assert_eq!(err(b"5\r\nhello\n"), MissingCrlf);
    assert_eq!(err(b"5\r\nhelloXX"), MissingCrlf);
    assert_eq!(err(b"5\r\nhello\rX"), MissingCrlf);
    assert_eq!(err(b"5\r\nhello\r\r\n"), MissingCrlf);
    assert_eq!(err(b"5\r\nhello\r\n0\n\r\n"), MissingCrlf);
    assert_eq!(err(b"0\r\n\n"), MissingCrlf);
    assert_eq!(err(b"0\r\n\rX"), MissingCrlf);
    assert_eq!(err(b"0\r\nFoo: bar\n\r\n"), MissingCrlf);
    assert_eq!(err(b"0\r\nFoo: bar\rX"), MissingCrlf);
    assert_eq!(err(b"0\r\nFoo\n"), MissingCrlf);
}

#[test]
fn invalid_extensions() {
    use ChunkError::InvalidExtension;
    assert_eq!(err(b"5;\r\n"), InvalidExtension);
    assert_eq!(err(b"5; \r\n"), InvalidExtension);
    assert_eq!(err(b"5;;a\r\n"), InvalidExtension);
    assert_eq!(err(b"5;=b\r\n"), InvalidExtension);
    assert_eq!(err(b"5;a=\r\n"), InvalidExtension);
    assert_eq!(err(b"5;a= \r\n"), InvalidExtension);
    assert_eq!(err(b"5;a \r\n"), InvalidExtension);
    assert_eq!(err(b"5;a=b \r\n"), InvalidExtension);
    assert_eq!(err(b"5;a=b c\r\n"), InvalidExtension);
    assert_eq!(err(b"5;a b\r\n"), InvalidExtension);
    assert_eq!(err(b"5;a=\"b\"c\r\n"), InvalidExtension);
    assert_eq!(err(b"5;a=\"unterminated\r\n"), InvalidExtension);
    assert_eq!(err(b"5;a=b\"c\"\r\n"), InvalidExtension);
    assert_eq!(err(b"5;a@b\r\n"), InvalidExtension);
    assert_eq!(err(b"5;a=b,c\r\n"), InvalidExtension);
    assert_eq!(err(b"5;\x80\r\n"), InvalidExtension);
    assert_eq!(err(b"5;a=\x80\r\n"), InvalidExtension);
    // Control bytes in names, token values, quoted values and quoted-pairs.
    for ctl in (0u8..0x20)
        .filter(|c| !matches!(c, b'\t' | b'\r' | b'\n'))
        .chain([0x7f])
    {
        assert_eq!(err(&[b'5', b';', ctl]), InvalidExtension, "{ctl:#x}");
        assert_eq!(err(&[b'5', b';', b'a', ctl]), InvalidExtension, "{ctl:#x}");
        assert_eq!(
            err(&[b'5', b';', b'a', b'=', ctl]),
            InvalidExtension,
            "{ctl:#x}"
        );
        assert_eq!(err(&[b'5', b';', b'a', b'=', b'b', ctl]), InvalidExtension);
        assert_eq!(err(&[b'5', b';', b'a', b'=', b'"', ctl]), InvalidExtension);
        assert_eq!(
            err(&[b'5', b';', b'a', b'=', b'"', b'\\', ctl]),
            InvalidExtension
        );
    }
    assert_eq!(err(b"5;a=\"\\\r\n"), InvalidExtension);
}

#[test]
fn line_length_limit() {
    let ext_len = MAX_CHUNK_LINE - 3; // "5;a" + "x"... totals exactly MAX_CHUNK_LINE
    let mut at_limit = b"5;a".to_vec();
    at_limit.extend(std::iter::repeat_n(b'x', ext_len));
    at_limit.truncate(MAX_CHUNK_LINE);
    assert_eq!(at_limit.len(), MAX_CHUNK_LINE);
    let mut input = at_limit.clone();
    input.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    complete(&input, b"hello");

    let mut over = at_limit;
    over.push(b'x');
    over.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    assert_eq!(err(&over), ChunkError::LineTooLong);

    // Whitespace counts too: an endless BWS run is bounded.
    let mut ws = b"5".to_vec();
    ws.extend(std::iter::repeat_n(b' ', MAX_CHUNK_LINE));
    assert_eq!(err(&ws), ChunkError::LineTooLong);
    // The limit applies to every size line, not only the first.
    let mut later = b"1\r\na\r\n0;".to_vec();
    later.extend(std::iter::repeat_n(b'q', MAX_CHUNK_LINE));
    assert_eq!(err(&later), ChunkError::LineTooLong);
}

#[test]
fn invalid_trailers() {
    use ChunkError::InvalidTrailer;
    assert_eq!(err(b"0\r\nFoo : bar\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\nFoo\t: bar\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\nFoo: bar\r\n continued\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\nFoo: bar\r\n\tcontinued\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\n Foo: bar\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\n: bar\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\nFoo\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\nF(o): bar\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\nFoo: b\x00r\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\nFoo: b\x7fr\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\nFoo: bar\x0b\r\n\r\n"), InvalidTrailer);
    assert_eq!(err(b"0\r\n\x80: bar\r\n\r\n"), InvalidTrailer);
}

#[test]
fn trailer_limits() {
    // MAX_TRAILER_FIELDS fields pass, one more fails.
    let mut input = b"0\r\n".to_vec();
    for i in 0..MAX_TRAILER_FIELDS {
        input.extend_from_slice(format!("F{i}: v\r\n").as_bytes());
    }
    let mut at_limit = input.clone();
    at_limit.extend_from_slice(b"\r\n");
    complete(&at_limit, b"");
    input.extend_from_slice(b"X: y\r\n\r\n");
    assert_eq!(err(&input), ChunkError::TooManyTrailers);

    // A trailer section of exactly MAX_TRAILER_BYTES (final CRLF included) passes, one byte more fails.
    let overhead = "X: ".len() + 2 + 2; // name, colon, space, line CRLF, final CRLF
    let value = "v".repeat(MAX_TRAILER_BYTES - overhead);
    let exact = format!("0\r\nX: {value}\r\n\r\n");
    complete(exact.as_bytes(), b"");
    let over = format!("0\r\nX: {value}v\r\n\r\n");
    assert_eq!(err(over.as_bytes()), ChunkError::TrailerTooLarge);
}

#[test]
fn error_is_sticky() {
    let mut dec = ChunkedDecoder::new();
    assert_eq!(dec.decode(b"\r\n"), Err(ChunkError::InvalidSize));
    assert_eq!(dec.decode(b"0\r\n\r\n"), Err(ChunkError::InvalidSize));
    assert!(!dec.is_done());
    assert_eq!(dec.remaining_in_chunk(), 0);

    let mut dec = ChunkedDecoder::new();
    assert!(dec.decode(b"5\r\nhello").is_ok());
    assert_eq!(dec.decode(b"XX"), Err(ChunkError::MissingCrlf));
    assert_eq!(dec.decode(b"\r\n"), Err(ChunkError::MissingCrlf));
}

#[test]
fn tchar_table_is_rfc_9110_token() {
    for b in 0..=255u8 {
        let expected = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        assert_eq!(is_tchar(b), expected, "{b:#x}");
    }
}

#[test]
fn every_byte_in_every_position_never_panics() {
    // Cheap exhaustive sweep: each byte value substituted at each position of a body using every
    // construct; the split-equivalence checks in decode_all run on all of them.
    let base = b"5;a=\"q\\\"\";b\r\nhello\r\n0;z\r\nFoo: bar\r\n\r\n";
    for i in 0..base.len() {
        for v in 0..=255u8 {
            let mut m = base.to_vec();
            m[i] = v;
            let _ = decode_all(&m);
        }
    }
}
