//! Parsers for the string-typed values of the file: durations, CIDR networks, host patterns, path
//! prefixes, names and socket addresses. Each returns a small reason enum; [`super::validate`] turns it
//! into a [`super::ConfigError`] carrying the field path and a hint.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::runtime::{HostMatch, IpNet};
use crate::limits::{MAX_HOST_LABEL_LEN, MAX_HOST_LEN, MAX_NAME_LEN, MAX_PATH_PREFIX_LEN};

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    Empty,
    Whitespace,
    Negative,
    Fraction,
    MissingNumber,
    MissingUnit,
    UnknownUnit(String),
    /// The number does not fit in a `u64` count of milliseconds.
    TooLarge,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str("it is empty"),
            DurationError::Whitespace => f.write_str("it contains whitespace"),
            DurationError::Negative => f.write_str("it is negative"),
            DurationError::Fraction => {
                f.write_str("fractions are not supported (use \"1500ms\", not \"1.5s\")")
            }
            DurationError::MissingNumber => f.write_str("it does not start with a number"),
            DurationError::MissingUnit => f.write_str("the unit is missing"),
            DurationError::UnknownUnit(u) => write!(f, "unknown unit {u:?}"),
            DurationError::TooLarge => f.write_str("the number is too large"),
        }
    }
}

/// Parses `"250ms"`, `"5s"`, `"2m"`, `"1h"`: ASCII digits then one unit, nothing else.
///
/// Zero is accepted here; whether zero (or a very long duration) makes sense is the caller's call.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.chars().any(char::is_whitespace) {
        return Err(DurationError::Whitespace);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    if number.is_empty() {
        return Err(DurationError::MissingNumber);
    }
    if unit.starts_with('.') || unit.starts_with(',') {
        return Err(DurationError::Fraction);
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(DurationError::MissingUnit),
        other => return Err(DurationError::UnknownUnit(other.to_owned())),
    };
    // Only ASCII digits reach here (no sign: `"+5".parse::<u64>()` would be Ok), so the only possible
    // failure is overflow.
    let n: u64 = number.parse().map_err(|_| DurationError::TooLarge)?;
    let millis = n
        .checked_mul(millis_per_unit)
        .ok_or(DurationError::TooLarge)?;
    Ok(Duration::from_millis(millis))
}

/// Why a trusted-proxy network was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    BadAddress,
    BadPrefix,
    PrefixTooLong {
        max: u8,
    },
    /// Bits set after the prefix, as in `10.0.0.1/8`: almost always a typo for the network address.
    HostBits {
        network: IpNet,
    },
    /// `::ffff:a.b.c.d/n`: peers are compared in IPv4 form, so a mapped network would never match.
    Ipv4Mapped,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::BadAddress => f.write_str("the address part is not an IP address"),
            CidrError::BadPrefix => f.write_str("the prefix length after '/' is not a number"),
            CidrError::PrefixTooLong { max } => write!(f, "the prefix length is above {max}"),
            CidrError::HostBits { network } => write!(
                f,
                "bits are set after the prefix length (did you mean \"{}/{}\"?)",
                network.addr, network.prefix
            ),
            CidrError::Ipv4Mapped => f.write_str(
                "IPv4-mapped IPv6 networks never match (peers are compared in IPv4 form); \
                 write the IPv4 network instead",
            ),
        }
    }
}

/// Parses `"10.0.0.0/8"`, `"::1/128"`, or a plain IP meaning a /32 or /128.
pub fn parse_cidr(s: &str) -> Result<IpNet, CidrError> {
    let (addr_text, prefix_text) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| CidrError::BadAddress)?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max,
        Some(p) => {
            // Digits only: u8's parser would accept "+8". Three digits cover 0..=128.
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CidrError::BadPrefix);
            }
            let n: u8 = p.parse().map_err(|_| CidrError::PrefixTooLong { max })?;
            if n > max {
                return Err(CidrError::PrefixTooLong { max });
            }
            n
        }
    };
    if let IpAddr::V6(v6) = addr {
        if v6.to_ipv4_mapped().is_some() {
            return Err(CidrError::Ipv4Mapped);
        }
    }
    let network = IpNet {
        addr: mask(addr, prefix),
        prefix,
    };
    if network.addr != addr {
        return Err(CidrError::HostBits { network });
    }
    Ok(network)
}

/// Clears the bits of `addr` after the first `prefix` bits.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

/// Why a route host pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    Empty,
    BadChar(char),
    Scheme,
    Path,
    Port,
    LoneWildcard,
    MisplacedWildcard,
    EmptyLabel,
    TooLong,
    LabelTooLong,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Empty => f.write_str("it is empty"),
            HostError::BadChar(c) => write!(f, "it contains {c:?}"),
            HostError::Scheme => f.write_str("it contains a scheme (\"http://\")"),
            HostError::Path => f.write_str("it contains '/' (put the path in `path_prefix`)"),
            HostError::Port => f.write_str(
                "it contains ':' (hosts are matched without the port; IPv6 literals are not supported)",
            ),
            HostError::LoneWildcard => {
                f.write_str("a lone \"*\" would match every host (leave `host` out instead)")
            }
            HostError::MisplacedWildcard => {
                f.write_str("'*' is only allowed as the whole first label, as in \"*.foobar.com\"")
            }
            HostError::EmptyLabel => f.write_str("it has an empty label (leading, trailing or doubled '.')"),
            HostError::TooLong => write!(f, "it is longer than {MAX_HOST_LEN} characters"),
            HostError::LabelTooLong => {
                write!(f, "a label is longer than {MAX_HOST_LABEL_LEN} characters")
            }
        }
    }
}

/// Parses `"api.foobar.com"` (exact) or `"*.foobar.com"` (any subdomain), stored lower case because
/// host names are case-insensitive (RFC 9110 §4.2.3) and the data plane lower-cases the request's Host.
pub fn parse_host_pattern(s: &str) -> Result<HostMatch, HostError> {
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    if s.contains("://") {
        return Err(HostError::Scheme);
    }
    if s.contains('/') {
        return Err(HostError::Path);
    }
    if s.contains(':') || s.contains('[') {
        return Err(HostError::Port);
    }
    if s == "*" {
        return Err(HostError::LoneWildcard);
    }
    let (suffix, name) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if name.contains('*') {
        return Err(HostError::MisplacedWildcard);
    }
    check_host_name(name)?;
    let lower = name.to_ascii_lowercase();
    Ok(if suffix {
        HostMatch::Suffix(format!(".{lower}"))
    } else {
        HostMatch::Exact(lower)
    })
}

/// Letters, digits, '-' and '_' (seen in internal names) in non-empty dot-separated labels.
fn check_host_name(name: &str) -> Result<(), HostError> {
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(HostError::BadChar(c));
    }
    if name.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if label.len() > MAX_HOST_LABEL_LEN {
            return Err(HostError::LabelTooLong);
        }
    }
    Ok(())
}

/// Why a route path prefix was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPrefixError {
    NoLeadingSlash,
    BadChar(char),
    NonAscii,
    QueryOrFragment,
    TooLong,
}

impl fmt::Display for PathPrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPrefixError::NoLeadingSlash => f.write_str("it does not start with '/'"),
            PathPrefixError::BadChar(c) => write!(f, "it contains {c:?}"),
            PathPrefixError::NonAscii => f.write_str(
                "it contains non-ASCII characters (request targets are ASCII, RFC 3986: percent-encode them)",
            ),
            PathPrefixError::QueryOrFragment => {
                f.write_str("it contains '?' or '#' (routes match the path only)")
            }
            PathPrefixError::TooLong => {
                write!(f, "it is longer than the longest request line ({MAX_PATH_PREFIX_LEN} bytes)")
            }
        }
    }
}

/// Checks a path prefix: it is compared byte for byte with the request's origin-form path (RFC 9112 §3.2.1).
pub fn check_path_prefix(s: &str) -> Result<(), PathPrefixError> {
    if !s.starts_with('/') {
        return Err(PathPrefixError::NoLeadingSlash);
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(PathPrefixError::BadChar(c));
    }
    if !s.is_ascii() {
        return Err(PathPrefixError::NonAscii);
    }
    if s.contains(['?', '#']) {
        return Err(PathPrefixError::QueryOrFragment);
    }
    if s.len() > MAX_PATH_PREFIX_LEN {
        return Err(PathPrefixError::TooLong);
    }
    Ok(())
}

/// Why a frontend/backend/server name was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong(usize),
    BadChar(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("it is empty"),
            NameError::TooLong(n) => {
                write!(f, "it is {n} characters long (at most {MAX_NAME_LEN})")
            }
            NameError::BadChar(c) => write!(f, "it contains {c:?}"),
        }
    }
}

/// Names go into logs and field paths unquoted, so they are restricted to `[A-Za-z0-9_.-]{1,64}`.
pub fn check_name(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::BadChar(c));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(s.len()));
    }
    Ok(())
}

/// Why an address was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    MissingPort,
    HostName,
    Malformed,
    /// Server addresses only: nothing listens on port 0.
    PortZero,
    /// Server addresses only: connecting to 0.0.0.0 or :: reaches the local host by accident.
    Unspecified,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::MissingPort => f.write_str("the port is missing"),
            AddressError::HostName => f.write_str("host names are not resolved"),
            AddressError::Malformed => f.write_str("it is not an IP:port address"),
            AddressError::PortZero => f.write_str("port 0 cannot be connected to"),
            AddressError::Unspecified => {
                f.write_str("the unspecified address (0.0.0.0 or ::) cannot be connected to")
            }
        }
    }
}

/// Parses `"127.0.0.1:8080"` or `"[::1]:8080"`. No DNS: resolving at startup would pin one answer
/// forever and block startup on the resolver.
pub fn parse_address(s: &str) -> Result<SocketAddr, AddressError> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let unbracketed = s.trim_start_matches('[').trim_end_matches(']');
    if unbracketed.parse::<IpAddr>().is_ok() {
        return Err(AddressError::MissingPort);
    }
    let host = s.rsplit_once(':').map_or(s, |(h, _)| h);
    if !host.is_empty()
        && host.parse::<IpAddr>().is_err()
        && host.chars().any(|c| c.is_ascii_alphabetic())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(AddressError::HostName);
    }
    Err(AddressError::Malformed)
}

/// Extra rules for an address corelb connects to.
pub fn check_server_address(addr: SocketAddr) -> Result<(), AddressError> {
    if addr.port() == 0 {
        return Err(AddressError::PortZero);
    }
    if addr.ip().is_unspecified() {
        return Err(AddressError::Unspecified);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn durations_valid() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn durations_invalid() {
        use DurationError::*;
        assert_eq!(parse_duration(""), Err(Empty));
        assert_eq!(parse_duration("5"), Err(MissingUnit));
        assert_eq!(parse_duration("5sec"), Err(UnknownUnit("sec".into())));
        assert_eq!(parse_duration("5S"), Err(UnknownUnit("S".into())));
        assert_eq!(parse_duration("5d"), Err(UnknownUnit("d".into())));
        assert_eq!(parse_duration("5s5"), Err(UnknownUnit("s5".into())));
        assert_eq!(parse_duration("-1s"), Err(Negative));
        assert_eq!(parse_duration("+1s"), Err(MissingNumber));
        assert_eq!(parse_duration("s"), Err(MissingNumber));
        assert_eq!(parse_duration("1.5s"), Err(Fraction));
        assert_eq!(parse_duration("1,5s"), Err(Fraction));
        assert_eq!(parse_duration(" 5s"), Err(Whitespace));
        assert_eq!(parse_duration("5s "), Err(Whitespace));
        assert_eq!(parse_duration("5 s"), Err(Whitespace));
        assert_eq!(parse_duration("5\ts"), Err(Whitespace));
        assert_eq!(
            parse_duration("５s"),
            Err(MissingNumber),
            "non-ASCII digits"
        );
    }

    #[test]
    fn durations_overflow_is_an_error_not_a_panic() {
        // u64::MAX fits the number but not the conversion to milliseconds.
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::TooLarge)
        );
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Err(DurationError::TooLarge)
        );
        assert_eq!(
            parse_duration("18446744073709551615ms"),
            Ok(Duration::from_millis(u64::MAX))
        );
        assert_eq!(
            parse_duration("18446744073709551616ms"),
            Err(DurationError::TooLarge)
        );
        assert_eq!(
            parse_duration(&"9".repeat(1000)),
            Err(DurationError::MissingUnit)
        );
        assert_eq!(
            parse_duration(&format!("{}s", "9".repeat(1000))),
            Err(DurationError::TooLarge)
        );
    }

    #[test]
    fn cidr_valid() {
        let v4 = |a, b, c, d, prefix| IpNet {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        };
        assert_eq!(parse_cidr("10.0.0.0/8"), Ok(v4(10, 0, 0, 0, 8)));
        assert_eq!(parse_cidr("127.0.0.1"), Ok(v4(127, 0, 0, 1, 32)));
        assert_eq!(parse_cidr("127.0.0.1/32"), Ok(v4(127, 0, 0, 1, 32)));
        assert_eq!(parse_cidr("0.0.0.0/0"), Ok(v4(0, 0, 0, 0, 0)));
        assert_eq!(parse_cidr("10.0.0.0/08"), Ok(v4(10, 0, 0, 0, 8)));
        let v6 = |addr: Ipv6Addr, prefix| IpNet {
            addr: IpAddr::V6(addr),
            prefix,
        };
        assert_eq!(parse_cidr("::1/128"), Ok(v6(Ipv6Addr::LOCALHOST, 128)));
        assert_eq!(parse_cidr("::1"), Ok(v6(Ipv6Addr::LOCALHOST, 128)));
        assert_eq!(parse_cidr("::/0"), Ok(v6(Ipv6Addr::UNSPECIFIED, 0)));
        assert_eq!(
            parse_cidr("fd00::/8"),
            Ok(v6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 8))
        );
        // The parsed network behaves: mapped IPv4 peers match IPv4 networks.
        let net = parse_cidr("10.0.0.0/8").unwrap();
        assert!(net.contains(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains(IpAddr::V4(Ipv4Addr::new(11, 0, 0, 0))));
    }

    #[test]
    fn cidr_invalid() {
        use CidrError::*;
        assert_eq!(parse_cidr(""), Err(BadAddress));
        assert_eq!(parse_cidr("10.0.0/8"), Err(BadAddress));
        assert_eq!(parse_cidr("localhost"), Err(BadAddress));
        assert_eq!(parse_cidr("fe80::1%eth0"), Err(BadAddress));
        assert_eq!(parse_cidr(" 10.0.0.0/8"), Err(BadAddress));
        assert_eq!(parse_cidr("10.0.0.0/"), Err(BadPrefix));
        assert_eq!(parse_cidr("10.0.0.0/+8"), Err(BadPrefix));
        assert_eq!(parse_cidr("10.0.0.0/-1"), Err(BadPrefix));
        assert_eq!(parse_cidr("10.0.0.0/8/8"), Err(BadPrefix));
        assert_eq!(parse_cidr("10.0.0.0/0008"), Err(BadPrefix));
        assert_eq!(parse_cidr("10.0.0.0/33"), Err(PrefixTooLong { max: 32 }));
        assert_eq!(parse_cidr("10.0.0.0/999"), Err(PrefixTooLong { max: 32 }));
        assert_eq!(parse_cidr("::/129"), Err(PrefixTooLong { max: 128 }));
        assert_eq!(parse_cidr("::ffff:10.0.0.0/104"), Err(Ipv4Mapped));
        assert_eq!(
            parse_cidr("10.0.0.1/8"),
            Err(HostBits {
                network: IpNet {
                    addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)),
                    prefix: 8
                }
            })
        );
        assert!(matches!(parse_cidr("::1/64"), Err(HostBits { .. })));
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            parse_host_pattern("API.FooBar.com"),
            Ok(HostMatch::Exact("api.foobar.com".into()))
        );
        assert_eq!(
            parse_host_pattern("*.foobar.com"),
            Ok(HostMatch::Suffix(".foobar.com".into()))
        );
        assert_eq!(
            parse_host_pattern("10.0.0.1"),
            Ok(HostMatch::Exact("10.0.0.1".into()))
        );
        use HostError::*;
        assert_eq!(parse_host_pattern(""), Err(Empty));
        assert_eq!(parse_host_pattern("foobar.com:80"), Err(Port));
        assert_eq!(parse_host_pattern("[::1]"), Err(Port));
        assert_eq!(parse_host_pattern("http://foobar.com"), Err(Scheme));
        assert_eq!(parse_host_pattern("foobar.com/api"), Err(Path));
        assert_eq!(parse_host_pattern("foo bar.com"), Err(BadChar(' ')));
        assert_eq!(parse_host_pattern("*"), Err(LoneWildcard));
        assert_eq!(parse_host_pattern("*foobar.com"), Err(MisplacedWildcard));
        assert_eq!(parse_host_pattern("a.*.com"), Err(MisplacedWildcard));
        assert_eq!(parse_host_pattern("foobar..com"), Err(EmptyLabel));
        assert_eq!(parse_host_pattern("foobar.com."), Err(EmptyLabel));
        assert_eq!(parse_host_pattern("*."), Err(EmptyLabel));
        assert_eq!(parse_host_pattern(&"a".repeat(64)), Err(LabelTooLong));
        let long = vec!["a".repeat(63); 5].join(".");
        assert_eq!(parse_host_pattern(&long), Err(TooLong));
    }

    #[test]
    fn path_prefixes() {
        assert_eq!(check_path_prefix("/"), Ok(()));
        assert_eq!(check_path_prefix("/api/v1%20x/"), Ok(()));
        use PathPrefixError::*;
        assert_eq!(check_path_prefix(""), Err(NoLeadingSlash));
        assert_eq!(check_path_prefix("api/"), Err(NoLeadingSlash));
        assert_eq!(check_path_prefix("/a b"), Err(BadChar(' ')));
        assert_eq!(check_path_prefix("/a\u{7f}"), Err(BadChar('\u{7f}')));
        assert_eq!(check_path_prefix("/é"), Err(NonAscii));
        assert_eq!(check_path_prefix("/a?b"), Err(QueryOrFragment));
        assert_eq!(check_path_prefix("/a#b"), Err(QueryOrFragment));
        let long = format!("/{}", "a".repeat(MAX_PATH_PREFIX_LEN));
        assert_eq!(check_path_prefix(&long), Err(TooLong));
    }

    #[test]
    fn names() {
        assert_eq!(check_name("app-1.v2_x"), Ok(()));
        assert_eq!(check_name(&"a".repeat(MAX_NAME_LEN)), Ok(()));
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("my app"), Err(NameError::BadChar(' ')));
        assert_eq!(check_name("a\"b"), Err(NameError::BadChar('"')));
        assert_eq!(check_name("é"), Err(NameError::BadChar('é')));
        assert_eq!(
            check_name(&"a".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong(MAX_NAME_LEN + 1))
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("127.0.0.1:0"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
        assert!(parse_address("[::1]:80").is_ok());
        assert_eq!(parse_address("127.0.0.1"), Err(AddressError::MissingPort));
        assert_eq!(parse_address("::1"), Err(AddressError::MissingPort));
        assert_eq!(parse_address("[::1]"), Err(AddressError::MissingPort));
        assert_eq!(parse_address("localhost:80"), Err(AddressError::HostName));
        assert_eq!(
            parse_address("app.internal:9001"),
            Err(AddressError::HostName)
        );
        assert_eq!(
            parse_address("127.0.0.1:99999"),
            Err(AddressError::Malformed)
        );
        assert_eq!(parse_address("127.0.0.1:"), Err(AddressError::Malformed));
        assert_eq!(parse_address(""), Err(AddressError::Malformed));
        assert_eq!(parse_address(" 127.0.0.1:80"), Err(AddressError::Malformed));
        let zero = SocketAddr::from(([127, 0, 0, 1], 0));
        assert_eq!(check_server_address(zero), Err(AddressError::PortZero));
        let any = SocketAddr::from(([0, 0, 0, 0], 80));
        assert_eq!(check_server_address(any), Err(AddressError::Unspecified));
    }
}
