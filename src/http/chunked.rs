//! Strict, streaming decoder for the HTTP/1.1 chunked transfer coding (RFC 9112 §7.1).
//!
//! Why our own and not `httparse::parse_chunk_size`: httparse accepts an empty size line (`"\r\n"` parses as
//! size 0, a false last-chunk) and needs the whole size line in one buffer. Any leniency here is a
//! request-smuggling hole: if corelb and the backend frame a chunked body differently, the bytes one of them
//! thinks are body become the other's next request. So this decoder accepts exactly the RFC 9112 grammar
//! and nothing else:
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! field-line     = field-name ":" OWS field-value OWS
//! ```
//!
//! It is a byte-at-a-time state machine over the framing (size line, extensions, CRLFs, trailer fields), so
//! it never buffers a line and any split of the input across `decode` calls gives the same result. Payload
//! bytes are not copied: `decode` returns them as a range of the caller's input. `decode` never allocates,
//! every loop is bounded by the input length, and every counter has a limit from `crate::limits`.

use crate::limits::{MAX_CHUNK_LINE, MAX_CHUNK_SIZE_DIGITS, MAX_TRAILER_BYTES, MAX_TRAILER_FIELDS};
use std::ops::Range;

/// A fault in a chunked body. Every one of them means the message framing cannot be trusted: the caller
/// answers 400 (request) or 502 (response) and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The chunk-size is empty or not pure hex (`"\r\n"`, `"x"`, `"+5"`, `"0x5"`, `" 5"`), or is followed by
    /// something that is neither an extension nor CRLF (`"5 \r\n"`: BWS is only allowed before `;`).
    #[error("invalid chunk size")]
    InvalidSize,
    /// More than `MAX_CHUNK_SIZE_DIGITS` hex digits (leading zeros count) or a value that does not fit u64.
    #[error("chunk size has too many digits or overflows")]
    SizeOverflow,
    /// The chunk-size line (size and extensions, CRLF excluded) is longer than `MAX_CHUNK_LINE`.
    #[error("chunk size line too long")]
    LineTooLong,
    /// A chunk extension does not match the RFC 9112 §7.1.1 grammar, or holds a control byte.
    #[error("invalid chunk extension")]
    InvalidExtension,
    /// A CRLF was required and something else came: a bare LF, a CR not followed by LF, or chunk data
    /// longer than its announced size.
    #[error("missing CRLF in chunked framing")]
    MissingCrlf,
    /// A trailer field line is malformed: obs-fold, whitespace before ':', empty or non-token name, missing
    /// ':', control byte in the value.
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// The trailer section is longer than `MAX_TRAILER_BYTES`.
    #[error("trailer section too large")]
    TrailerTooLarge,
    /// The trailer section has more than `MAX_TRAILER_FIELDS` fields.
    #[error("too many trailer fields")]
    TooManyTrailers,
}

/// Where the decoder is in the grammar. The size line states each consume one byte; `Data` consumes a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of chunk-size (none yet when `digits == 0`).
    Size,
    /// BWS after the size: only more BWS or `;` may follow (no BWS before CRLF in the grammar).
    SizeBws,
    /// After `;`: BWS, then the first byte of an extension name.
    ExtNameStart,
    /// Inside an extension name (token).
    ExtName,
    /// BWS after an extension name: `=` or `;` must follow.
    ExtNameBws,
    /// After `=`: BWS, then a token or a quoted-string.
    ExtValueStart,
    /// Inside a token extension value.
    ExtToken,
    /// Inside a quoted-string extension value.
    ExtQuoted,
    /// Right after a `\` inside a quoted-string.
    ExtQuotedPair,
    /// Right after the closing DQUOTE: BWS, `;` or CR.
    ExtAfterQuote,
    /// BWS after an extension value: only `;` may follow.
    ExtValueBws,
    /// CR of the size line seen: LF must follow.
    SizeLf,
    /// Inside chunk-data; `remaining` bytes are still expected.
    Data,
    /// After chunk-data: CR must follow.
    DataCr,
    /// After chunk-data and CR: LF must follow.
    DataLf,
    /// Start of a trailer field line, or of the final CRLF.
    TrailerLineStart,
    /// Inside a trailer field name.
    TrailerName,
    /// After `:`: OWS, then the value (possibly empty).
    TrailerValueStart,
    /// Inside a trailer field value (trailing OWS included).
    TrailerValue,
    /// CR ending a trailer field line seen: LF must follow.
    TrailerLf,
    /// CR of the final (empty) line seen: LF must follow.
    FinalLf,
    /// The whole chunked body was consumed.
    Done,
    /// A fault was found; the decoder stays failed.
    Failed(ChunkError),
}

/// Decodes a chunked body byte by byte as it streams: it never needs a whole line in one buffer (state
/// machine over the size line, extensions, data, CRLFs and trailer fields), so any split of the input
/// across calls gives the same result.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Value of the chunk-size read so far.
    size: u64,
    /// Hex digits read so far in the chunk-size (bounded by `MAX_CHUNK_SIZE_DIGITS`).
    digits: usize,
    /// Bytes of the current size line so far, CRLF excluded (bounded by `MAX_CHUNK_LINE`).
    line_len: usize,
    /// Payload bytes still expected in the current chunk.
    remaining: u64,
    /// Bytes of the trailer section so far, CRLFs and final CRLF included (bounded by `MAX_TRAILER_BYTES`).
    trailer_bytes: usize,
    /// Trailer fields so far (bounded by `MAX_TRAILER_FIELDS`).
    trailer_fields: usize,
}

/// The result of one `decode` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of `input` consumed by this call.
    pub consumed: usize,
    /// Chunk payload found by this call, as a range of `input` (empty when none). Always ends at `consumed`.
    pub data: Range<usize>,
}

const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// tchar (RFC 9110 §5.6.2), as a table: one lookup per byte on the hot path.
const TCHAR: [bool; 256] = {
    const PUNCT: &[u8] = b"!#$%&'*+-.^_`|~";
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < PUNCT.len() {
        t[PUNCT[j] as usize] = true;
        j += 1;
    }
    t
};

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// BWS / OWS = *( SP / HTAB ) (RFC 9110 §5.6.3).
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text (RFC 9110 §5.6.4): no CTL, no DEL.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) (RFC 9110 §5.6.4).
fn is_quoted_pair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

/// field-vchar = VCHAR / obs-text (RFC 9110 §5.5).
fn is_field_vchar(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | 0x80..=0xff)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub const fn new() -> Self {
        Self {
            state: State::Size,
            size: 0,
            digits: 0,
            line_len: 0,
            remaining: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }

    /// Consumes framing bytes (size line, extensions, CRLFs, trailer fields) and then at most one run of
    /// payload bytes, and stops right after that payload run (so the caller can forward it) or at the end of
    /// input or when the message is complete. The caller loops: while input remains and !is_done().
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkError> {
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        let mut pos = 0usize;
        // Bounded by input.len(): every iteration consumes at least one byte or returns.
        while let Some(&b) = input.get(pos) {
            match self.state {
                State::Done => break,
                State::Data => {
                    let avail = input.len().saturating_sub(pos);
                    // remaining > 0 in Data; a u64 that does not fit usize is larger than any slice.
                    let take = usize::try_from(self.remaining).map_or(avail, |r| r.min(avail));
                    // take <= remaining, so no underflow; saturating keeps it panic-free regardless.
                    self.remaining = self.remaining.saturating_sub(take as u64);
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    let end = pos.saturating_add(take);
                    return Ok(Decoded {
                        consumed: end,
                        data: pos..end,
                    });
                }
                _ => {
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                    pos += 1;
                }
            }
        }
        Ok(Decoded {
            consumed: pos,
            data: pos..pos,
        })
    }

    /// True once the last-chunk, the trailer section and its final CRLF were consumed. Input after that is
    /// not consumed (it belongs to the next message: decode() returns consumed = 0 when done).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes still expected in the current chunk (0 between chunks); lets the caller size reads.
    pub fn remaining_in_chunk(&self) -> u64 {
        if self.state == State::Data {
            self.remaining
        } else {
            0
        }
    }

    /// Advances the framing state machine by one byte (never called in `Data`, `Done` or `Failed`).
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        match self.state {
            Size | SizeBws | ExtNameStart | ExtName | ExtNameBws | ExtValueStart | ExtToken
            | ExtQuoted | ExtQuotedPair | ExtAfterQuote | ExtValueBws => self.step_line(b),
            SizeLf => {
                if b != LF {
                    return Err(ChunkError::MissingCrlf);
                }
                if self.size == 0 {
                    // last-chunk (RFC 9112 §7.1): the trailer section follows.
                    self.state = TrailerLineStart;
                } else {
                    self.remaining = self.size;
                    self.state = Data;
                }
                Ok(())
            }
            DataCr => {
                // Anything but CR here means the data was longer than announced (RFC 9112 §7.1).
                if b != CR {
                    return Err(ChunkError::MissingCrlf);
                }
                self.state = DataLf;
                Ok(())
            }
            DataLf => {
                if b != LF {
                    return Err(ChunkError::MissingCrlf);
                }
                self.start_size_line();
                Ok(())
            }
            TrailerLineStart | TrailerName | TrailerValueStart | TrailerValue | TrailerLf
            | FinalLf => self.step_trailer(b),
            // Unreachable by construction (decode handles them); answered safely rather than panicking.
            Data | Done => Ok(()),
            Failed(e) => Err(e),
        }
    }

    fn start_size_line(&mut self) {
        self.state = State::Size;
        self.size = 0;
        self.digits = 0;
        self.line_len = 0;
    }

    /// One byte of the chunk-size line (size, extensions), before its CR.
    fn step_line(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        // A bare LF never ends a line (RFC 9112 §2.2 lets recipients accept it; a proxy must not, because
        // the next hop may not).
        if b == LF {
            return Err(ChunkError::MissingCrlf);
        }
        if b != CR {
            self.line_len = self.line_len.saturating_add(1);
            if self.line_len > MAX_CHUNK_LINE {
                return Err(ChunkError::LineTooLong);
            }
        }
        self.state = match self.state {
            Size => {
                if let Some(v) = hex_value(b) {
                    // Leading zeros count: 17 digits is an overflow attempt even when the value is small.
                    if self.digits >= MAX_CHUNK_SIZE_DIGITS {
                        return Err(ChunkError::SizeOverflow);
                    }
                    self.digits += 1;
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(v)))
                        .ok_or(ChunkError::SizeOverflow)?;
                    Size
                } else if self.digits == 0 {
                    // chunk-size = 1*HEXDIG: an empty size is never a last-chunk.
                    return Err(ChunkError::InvalidSize);
                } else if b == CR {
                    SizeLf
                } else if b == b';' {
                    ExtNameStart
                } else if is_ws(b) {
                    SizeBws
                } else {
                    return Err(ChunkError::InvalidSize);
                }
            }
            SizeBws => match b {
                b';' => ExtNameStart,
                _ if is_ws(b) => SizeBws,
                // "5 \r\n", "5 6": whitespace is only allowed as the BWS of a chunk-ext.
                _ => return Err(ChunkError::InvalidSize),
            },
            ExtNameStart => match b {
                _ if is_ws(b) => ExtNameStart,
                _ if is_tchar(b) => ExtName,
                // Empty name ("5;\r\n", "5;;a", "5;=x").
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtName => match b {
                CR => SizeLf,
                b';' => ExtNameStart,
                b'=' => ExtValueStart,
                _ if is_tchar(b) => ExtName,
                _ if is_ws(b) => ExtNameBws,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtNameBws => match b {
                b';' => ExtNameStart,
                b'=' => ExtValueStart,
                _ if is_ws(b) => ExtNameBws,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtValueStart => match b {
                b'"' => ExtQuoted,
                _ if is_ws(b) => ExtValueStart,
                _ if is_tchar(b) => ExtToken,
                // Empty value ("5;a=\r\n") or a non-token byte.
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtToken => match b {
                CR => SizeLf,
                b';' => ExtNameStart,
                _ if is_tchar(b) => ExtToken,
                _ if is_ws(b) => ExtValueBws,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtQuoted => match b {
                b'"' => ExtAfterQuote,
                b'\\' => ExtQuotedPair,
                // CR inside a quoted-string is a CTL: an unterminated string cannot end the line.
                _ if is_qdtext(b) => ExtQuoted,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtQuotedPair => {
                if is_quoted_pair_char(b) {
                    ExtQuoted
                } else {
                    return Err(ChunkError::InvalidExtension);
                }
            }
            ExtAfterQuote => match b {
                CR => SizeLf,
                b';' => ExtNameStart,
                _ if is_ws(b) => ExtValueBws,
                _ => return Err(ChunkError::InvalidExtension),
            },
            ExtValueBws => match b {
                b';' => ExtNameStart,
                _ if is_ws(b) => ExtValueBws,
                _ => return Err(ChunkError::InvalidExtension),
            },
            // step() only routes the line states here.
            other => other,
        };
        Ok(())
    }

    /// One byte of the trailer section (RFC 9112 §7.1.2). Fields are validated and dropped: a proxy must
    /// not forward trailers it was not asked to merge, and Content-Length/Transfer-Encoding/Host in a
    /// trailer must never affect framing or routing (RFC 9110 §6.5).
    fn step_trailer(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        self.trailer_bytes = self.trailer_bytes.saturating_add(1);
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkError::TrailerTooLarge);
        }
        self.state = match self.state {
            TrailerLineStart => match b {
                CR => FinalLf,
                LF => return Err(ChunkError::MissingCrlf),
                _ if is_tchar(b) => {
                    self.trailer_fields = self.trailer_fields.saturating_add(1);
                    if self.trailer_fields > MAX_TRAILER_FIELDS {
                        return Err(ChunkError::TooManyTrailers);
                    }
                    TrailerName
                }
                // A leading SP/HTAB is obs-fold (RFC 9112 §5.2, not allowed in a message we relay);
                // ':' is an empty name; anything else is not a token.
                _ => return Err(ChunkError::InvalidTrailer),
            },
            TrailerName => match b {
                b':' => TrailerValueStart,
                LF => return Err(ChunkError::MissingCrlf),
                _ if is_tchar(b) => TrailerName,
                // Whitespace before ':' (RFC 9112 §5.1), a line without ':', or a non-token byte.
                _ => return Err(ChunkError::InvalidTrailer),
            },
            TrailerValueStart | TrailerValue => match b {
                CR => TrailerLf,
                LF => return Err(ChunkError::MissingCrlf),
                _ if is_ws(b) || is_field_vchar(b) => TrailerValue,
                // CTL (other than HTAB) or DEL in a value.
                _ => return Err(ChunkError::InvalidTrailer),
            },
            TrailerLf | FinalLf => {
                if b != LF {
                    return Err(ChunkError::MissingCrlf);
                }
                if self.state == FinalLf {
                    Done
                } else {
                    TrailerLineStart
                }
            }
            // step() only routes the trailer states here.
            other => other,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
