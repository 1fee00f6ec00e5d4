//! The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a proxy puts in front of a TCP
//! stream to pass on the original client and destination addresses. corelb writes it toward servers
//! that ask for it (`send_proxy`) and reads it from trusted peers on frontends with `accept_proxy`.
//! Pure functions over bytes; no allocation beyond the caller's buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature (spec §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included (spec §2.1: 107 bytes).
pub const V1_MAX: usize = 107;
/// Longest v2 header we accept: 16 fixed bytes, 36 of IPv6 addresses and room for the TLVs real
/// load balancers add (AWS, GCP: well under 1 KiB). Longer is refused rather than buffered.
pub const V2_MAX: usize = 1024;
/// The most bytes a reader needs to buffer before `parse` decides.
pub const MAX_HEADER: usize = V2_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A complete header: its length and the addresses it carries (`None` for `UNKNOWN`/`LOCAL`/UNSPEC:
/// the connection's own addresses then apply, spec §2.1/§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub src: Option<SocketAddr>,
    pub dst: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(&'static str),
}

/// Parses a header at the start of `buf`. `Ok(None)`: not enough bytes yet (read more, up to
/// [`MAX_HEADER`]).
pub fn parse(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 { Ok(None) } else { parse_v1(buf) };
    }
    Err(HeaderError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(HeaderError::Invalid("v1 line longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    let line = window[..lf]
        .strip_suffix(b"\r")
        .ok_or(HeaderError::Invalid("v1 line not ended by CRLF"))?;
    let line = std::str::from_utf8(line).map_err(|_| HeaderError::Invalid("v1 not ASCII"))?;
    let mut parts = line.split(' ');
    let _proxy = parts.next();
    let len = lf + 1;
    let family = parts
        .next()
        .ok_or(HeaderError::Invalid("v1 family missing"))?;
    if family == "UNKNOWN" {
        // The rest of the line is to be ignored (spec §2.1).
        return Ok(Some(Header {
            len,
            src: None,
            dst: None,
        }));
    }
    let fields: [&str; 4] = [(); 4].map(|_| parts.next().unwrap_or(""));
    if parts.next().is_some() {
        return Err(HeaderError::Invalid("v1 has extra fields"));
    }
    let ip = |s: &str| -> Result<IpAddr, HeaderError> {
        let ip: IpAddr = s.parse().map_err(|_| HeaderError::Invalid("v1 address"))?;
        match (family, ip) {
            ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(ip),
            ("TCP4" | "TCP6", _) => Err(HeaderError::Invalid("v1 address of the wrong family")),
            _ => Err(HeaderError::Invalid("v1 family not TCP4, TCP6 or UNKNOWN")),
        }
    };
    let port = |s: &str| -> Result<u16, HeaderError> {
        // Spec: decimal without leading zeros, 0-65535.
        if s.is_empty() || s.len() > 5 || (s.len() > 1 && s.starts_with('0')) {
            return Err(HeaderError::Invalid("v1 port"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeaderError::Invalid("v1 port"));
        }
        s.parse().map_err(|_| HeaderError::Invalid("v1 port"))
    };
    let src = SocketAddr::new(ip(fields[0])?, port(fields[2])?);
    let dst = SocketAddr::new(ip(fields[1])?, port(fields[3])?);
    Ok(Some(Header {
        len,
        src: Some(src),
        dst: Some(dst),
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(HeaderError::Invalid("v2 version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(HeaderError::Invalid("v2 command is not LOCAL or PROXY")),
    };
    let fam = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Err(HeaderError::Invalid("v2 header longer than 1024 bytes"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let a = &buf[16..len];
    let (src, dst) = match fam {
        // TCP over IPv4 / IPv6 (UDP and UNIX are refused: corelb proxies TCP only).
        0x11 => {
            if a.len() < 12 {
                return Err(HeaderError::Invalid("v2 IPv4 block too short"));
            }
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            )
        }
        0x21 => {
            if a.len() < 36 {
                return Err(HeaderError::Invalid("v2 IPv6 block too short"));
            }
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            )
        }
        0x00 => {
            return Ok(Some(Header {
                len,
                src: None,
                dst: None,
            }))
        }
        _ if local => {
            return Ok(Some(Header {
                len,
                src: None,
                dst: None,
            }))
        }
        _ => {
            return Err(HeaderError::Invalid(
                "v2 family is not TCP over IPv4 or IPv6",
            ))
        }
    };
    if local {
        // LOCAL: a health check from the proxy itself; the addresses are to be ignored (spec §2.2).
        return Ok(Some(Header {
            len,
            src: None,
            dst: None,
        }));
    }
    Ok(Some(Header {
        len,
        src: Some(src),
        dst: Some(dst),
    }))
}

/// An IPv4-mapped IPv6 address shown as IPv4, so both ends of a header have one family.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// Longest header [`write`] produces: v1 with two full IPv6 addresses is 104 bytes, v2 with IPv6 52.
pub const WRITE_MAX: usize = V1_MAX;

/// Writes the header for a connection from `src` to `dst` (the client and the address it connected to)
/// at the start of `out`; returns its length. No allocation: `out` is the caller's (stack) buffer.
pub fn write(
    out: &mut [u8; WRITE_MAX],
    version: Version,
    src: SocketAddr,
    dst: SocketAddr,
) -> usize {
    let (src, dst) = (unmap(src), unmap(dst));
    let mut cur = std::io::Cursor::new(&mut out[..]);
    // Cannot fail: every header fits WRITE_MAX (spec §2.1 bounds v1 at 107 bytes; v2 here is 52).
    let _ = match version {
        Version::V1 => write_v1(&mut cur, src, dst),
        Version::V2 => write_v2(&mut cur, src, dst),
    };
    cur.position() as usize
}

fn write_v1(
    out: &mut impl std::io::Write,
    src: SocketAddr,
    dst: SocketAddr,
) -> std::io::Result<()> {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            write!(out, "PROXY TCP4 {s} {d} {} {}\r\n", src.port(), dst.port())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            write!(out, "PROXY TCP6 {s} {d} {} {}\r\n", src.port(), dst.port())
        }
        // Mixed families cannot be expressed (spec §2.1): say UNKNOWN.
        _ => write!(out, "PROXY UNKNOWN\r\n"),
    }
}

fn write_v2(
    out: &mut impl std::io::Write,
    src: SocketAddr,
    dst: SocketAddr,
) -> std::io::Result<()> {
    out.write_all(&V2_SIGNATURE)?;
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.write_all(&[0x21, 0x11, 0, 12])?;
            out.write_all(&s.octets())?;
            out.write_all(&d.octets())?;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.write_all(&[0x21, 0x21, 0, 36])?;
            out.write_all(&s.octets())?;
            out.write_all(&d.octets())?;
        }
        // PROXY command, UNSPEC family, no address block.
        _ => return out.write_all(&[0x21, 0x00, 0, 0]),
    }
    out.write_all(&src.port().to_be_bytes())?;
    out.write_all(&dst.port().to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn written(v: Version, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let mut buf = [0u8; WRITE_MAX];
        let n = write(&mut buf, v, src, dst);
        buf[..n].to_vec()
    }

    #[test]
    fn longest_headers_fit() {
        let (a, b) = (
            sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535"),
            sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd]:65535"),
        );
        let v1 = written(Version::V1, a, b);
        assert!(
            v1.ends_with(b"65535 65535\r\n"),
            "{:?}",
            String::from_utf8_lossy(&v1)
        );
        assert_eq!(parse(&v1).unwrap().unwrap().src, Some(a));
        assert_eq!(written(Version::V2, a, b).len(), 52);
        assert_eq!(
            written(Version::V1, sa("1.2.3.4:1"), b),
            b"PROXY UNKNOWN\r\n"
        );
    }

    #[test]
    fn v1_round_trip_and_prefixes() {
        for (src, dst) in [
            ("10.1.2.3:40000", "10.0.0.1:3306"),
            ("[2001:db8::1]:1", "[::1]:65535"),
        ] {
            let mut out = written(Version::V1, sa(src), sa(dst));
            out.extend_from_slice(b"payload");
            let h = parse(&out).unwrap().unwrap();
            assert_eq!(&out[h.len..], b"payload");
            assert_eq!((h.src, h.dst), (Some(sa(src)), Some(sa(dst))));
            for cut in 0..h.len {
                assert_eq!(parse(&out[..cut]), Ok(None), "prefix {cut}");
            }
        }
        let out = written(Version::V1, sa("[::ffff:10.0.0.9]:5"), sa("10.0.0.1:80"));
        assert_eq!(out, b"PROXY TCP4 10.0.0.9 10.0.0.1 5 80\r\n");
        assert_eq!(
            parse(b"PROXY UNKNOWN whatever\r\nx").unwrap().unwrap(),
            Header {
                len: 24,
                src: None,
                dst: None
            }
        );
    }

    #[test]
    fn v1_rejects() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HeaderError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            parse(&[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(30)),
            Err(HeaderError::Invalid(_))
        ));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(HeaderError::Missing));
        assert_eq!(parse(b"PRO"), Ok(None));
    }

    #[test]
    fn v2_round_trip_local_and_rejects() {
        for (src, dst) in [
            ("10.1.2.3:40000", "10.0.0.1:3306"),
            ("[2001:db8::1]:1", "[::1]:65535"),
        ] {
            let mut out = written(Version::V2, sa(src), sa(dst));
            out.push(b'!');
            let h = parse(&out).unwrap().unwrap();
            assert_eq!(&out[h.len..], b"!");
            assert_eq!((h.src, h.dst), (Some(sa(src)), Some(sa(dst))));
            for cut in 0..h.len {
                assert_eq!(parse(&out[..cut]), Ok(None), "prefix {cut}");
            }
        }
        // LOCAL with an address block and a TLV: addresses ignored, whole length consumed.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x11, 0, 15]);
        local.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 0x04, 0, 0]);
        assert_eq!(
            parse(&local).unwrap().unwrap(),
            Header {
                len: 31,
                src: None,
                dst: None
            }
        );
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0, 12]);
        bad.extend_from_slice(&[0; 12]);
        assert!(matches!(parse(&bad), Err(HeaderError::Invalid(_))));
        let mut long = V2_SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(parse(&long), Err(HeaderError::Invalid(_))));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(parse(&short), Err(HeaderError::Invalid(_))));
        let mut udp = V2_SIGNATURE.to_vec();
        udp.extend_from_slice(&[0x21, 0x12, 0, 12]);
        udp.extend_from_slice(&[0; 12]);
        assert!(matches!(parse(&udp), Err(HeaderError::Invalid(_))));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of many pseudo-random buffers, with both signatures.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for round in 0..2000 {
            let mut buf = match round % 3 {
                0 => V2_SIGNATURE.to_vec(),
                1 => b"PROXY ".to_vec(),
                _ => Vec::new(),
            };
            for _ in 0..(round % 64) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            for cut in 0..=buf.len() {
                if let Ok(Some(h)) = parse(&buf[..cut]) {
                    assert!(h.len <= cut);
                }
            }
        }
    }
}
