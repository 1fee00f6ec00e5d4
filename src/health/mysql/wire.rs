//! MySQL client/server protocol packets, without I/O: the 4-byte packet header, a bounds-checked
//! cursor over a payload ([`Reader`]: fixed and length-encoded integers and strings), ERR packets,
//! and server text made safe for a one-line detail.

/// Bytes of a packet header: 3-byte little-endian payload length, 1-byte sequence id.
pub(super) const HEADER_LEN: usize = 4;
/// Largest packet payload read or written. The greeting is ~100 bytes, a column definition ~50, and
/// the longest row, SHOW SLAVE STATUS's, a few hundred bytes plus error texts and filter lists; 64
/// KiB leaves room for those and fits the scratch buffer. Larger (and 16 MiB multi-packet) payloads
/// are no answer this check asks for.
pub const MAX_PACKET: usize = 64 * 1024;
/// Server texts (error messages, versions, plugin names) are quoted up to this many characters.
pub(super) const MAX_DETAIL_TEXT: usize = 120;
/// The commands the check sends (text protocol).
pub(super) const COM_QUIT: u8 = 0x01;
pub(super) const COM_QUERY: u8 = 0x03;

/// (payload length, sequence id) of a packet header.
pub(super) fn parse_header(h: [u8; HEADER_LEN]) -> (usize, u8) {
    let len = usize::from(h[0]) | (usize::from(h[1]) << 8) | (usize::from(h[2]) << 16);
    (len, h[3])
}

/// One packet: header with sequence id `seq`, then `payload` (at most [`MAX_PACKET`] bytes, which
/// the 3-byte length holds).
pub(super) fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(HEADER_LEN + payload.len());
    pkt.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
    pkt.push(seq);
    pkt.extend_from_slice(payload);
    pkt
}

/// An ERR packet (0xff, code, optional "#" + SQLSTATE, message) as a detail string.
pub(super) fn server_error(p: &[u8]) -> String {
    let (Some(&lo), Some(&hi)) = (p.get(1), p.get(2)) else {
        return "malformed MySQL error packet".into();
    };
    let code = u16::from_le_bytes([lo, hi]);
    let mut msg = &p[3..];
    // The SQLSTATE marker is absent before the handshake (the greeting can be an ERR packet).
    if msg.first() == Some(&b'#') && msg.len() >= 6 {
        msg = &msg[6..];
    }
    format!("MySQL error {code}: {}", text_bytes(msg))
}

/// Server text, on one line and cut to MAX_DETAIL_TEXT characters, for a detail.
pub(super) fn text_bytes(b: &[u8]) -> String {
    text(&String::from_utf8_lossy(b))
}

pub(super) fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_DETAIL_TEXT));
    for c in s.chars().take(MAX_DETAIL_TEXT) {
        // Control characters would break the log line; quotes stay readable.
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().nth(MAX_DETAIL_TEXT).is_some() {
        out.push_str("...");
    }
    out
}

/// A cursor over a packet payload; every read is bounds-checked (None past the end).
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(a)
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(super) fn nul_terminated(&mut self) -> Option<&'a [u8]> {
        let i = self.0.iter().position(|&b| b == 0)?;
        let s = &self.0[..i];
        self.0 = &self.0[i + 1..];
        Some(s)
    }

    /// A length-encoded integer; Some(None) is the NULL marker 0xfb; None: truncated or 0xff.
    pub(super) fn lenenc_int(&mut self) -> Option<Option<u64>> {
        let width = match self.u8()? {
            b @ 0..=0xfa => return Some(Some(u64::from(b))),
            0xfb => return Some(None),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            0xff => return None,
        };
        let b = self.take(width)?;
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(b);
        Some(Some(u64::from_le_bytes(le)))
    }

    /// A length-encoded string; Some(None) is SQL NULL; None: malformed or longer than the packet.
    pub(super) fn lenenc_str(&mut self) -> Option<Option<&'a [u8]>> {
        let Some(len) = self.lenenc_int()? else {
            return Some(None);
        };
        let len = usize::try_from(len).ok()?;
        Some(Some(self.take(len)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_ints() {
        let cases: &[(&[u8], Option<Option<u64>>)] = &[
            (&[0x00], Some(Some(0))),
            (&[0xfa], Some(Some(250))),
            (&[0xfb], Some(None)),
            (&[0xfc, 0xfb, 0x00], Some(Some(251))),
            (&[0xfc, 0x34, 0x12], Some(Some(0x1234))),
            (&[0xfd, 0x56, 0x34, 0x12], Some(Some(0x12_3456))),
            (
                &[0xfe, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01],
                Some(Some(0x0102_0304_0506_0708)),
            ),
            (&[0xff], None),
            (&[], None),
            (&[0xfc, 0x01], None),
            (&[0xfd, 0x01, 0x02], None),
            (&[0xfe, 1, 2, 3, 4, 5, 6, 7], None),
        ];
        for (bytes, want) in cases {
            assert_eq!(Reader(bytes).lenenc_int(), *want, "{bytes:02x?}");
        }
        // Strings: length, NULL, and a length beyond the packet.
        let mut r = Reader(&[3, b'a', b'b', b'c', 0xfb, 0]);
        assert_eq!(r.lenenc_str(), Some(Some(&b"abc"[..])));
        assert_eq!(r.lenenc_str(), Some(None));
        assert_eq!(r.lenenc_str(), Some(Some(&b""[..])));
        assert_eq!(r.lenenc_str(), None);
        assert_eq!(Reader(&[5, b'a']).lenenc_str(), None);
        assert_eq!(
            Reader(&[0xfe, 0, 0, 0, 0, 0, 0, 0, 0x80]).lenenc_str(),
            None
        );
    }

    #[test]
    fn headers_round_trip() {
        let pkt = frame(7, &[0xaa; 300]);
        assert_eq!(pkt.len(), HEADER_LEN + 300);
        let h: [u8; HEADER_LEN] = pkt[..HEADER_LEN].try_into().unwrap();
        assert_eq!(parse_header(h), (300, 7));
        assert_eq!(parse_header([0xff, 0xff, 0xff, 0]), (0xff_ffff, 0));
        assert_eq!(frame(0, &[]), [0, 0, 0, 0]);
    }
}
