//! Request mix: the target URL, named request kinds from a TOML scenario file, and the per-thread PRNG
//! that fills `{rand:LO-HI}` placeholders and picks kinds by weight. Requests are pre-built into byte
//! segments once; sending one is a few memcpys and at most one integer formatting.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use serde::Deserialize;

/// Upper bound on request kinds: the mix is picked by a linear scan and every kind has its own
/// histograms (~140 KiB each per thread), so a scenario stays small.
pub const MAX_KINDS: usize = 64;
/// Upper bound on a pre-built request (head and body): requests are copied into a per-connection buffer.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("URL {0:?}: {1}")]
    Url(String, &'static str),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("scenario file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("scenario kind {kind:?}: {reason}")]
    Kind { kind: String, reason: String },
    #[error("scenario: {0}")]
    Other(String),
}

/// Where the load goes: a resolved address and the Host header value (RFC 9112 §3.2: the authority).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    /// Path and query of the URL; the default request when there is no scenario.
    pub path: String,
}

impl Target {
    /// Parses `http://host[:port][/path]`. Only plain http: the generator measures HTTP/1.1 proxies.
    pub fn parse(url: &str) -> Result<Target, ScenarioError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ScenarioError::Url(url.into(), "only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(ScenarioError::Url(url.into(), "bad authority"));
        }
        check_path(path).map_err(|r| ScenarioError::Url(url.into(), r))?;
        // A bracketed IPv6 literal keeps its colons; the port is what follows the last colon.
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let with_port = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| ScenarioError::Resolve(with_port.clone(), e))?
            .next()
            .ok_or_else(|| ScenarioError::Url(url.into(), "host resolves to no address"))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// RFC 9112 §3.2: the request-target is visible ASCII, no spaces or controls (they would split the
/// request line).
fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("path must start with /");
    }
    if path.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err("path has a space, control or non-ASCII byte");
    }
    Ok(())
}

/// One request kind as written in the scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSpec {
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
}

fn one() -> u32 {
    1
}
fn get() -> String {
    "GET".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(rename = "kind")]
    kinds: Vec<KindSpec>,
}

/// Parses a scenario file's text: `[[kind]]` tables with name, weight, method, path, headers, body.
pub fn parse_scenario(text: &str) -> Result<Vec<KindSpec>, ScenarioError> {
    let f: ScenarioFile = toml::from_str(text)?;
    if f.kinds.is_empty() {
        return Err(ScenarioError::Other("no [[kind]] table".into()));
    }
    if f.kinds.len() > MAX_KINDS {
        return Err(ScenarioError::Other(format!(
            "{} kinds, at most {MAX_KINDS}",
            f.kinds.len()
        )));
    }
    Ok(f.kinds)
}

/// The kind used without a scenario: GET of the URL's path.
pub fn default_kind(target: &Target) -> KindSpec {
    KindSpec {
        name: "default".into(),
        weight: 1,
        method: "GET".into(),
        path: target.path.clone(),
        headers: BTreeMap::new(),
        body: String::new(),
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Lit(Vec<u8>),
    Rand { lo: u64, span: u128 },
}

/// A pre-built request kind.
#[derive(Debug, Clone)]
pub struct Kind {
    pub name: String,
    pub weight: u32,
    /// RFC 9112 §6.3 rule 1: a response to HEAD has no body whatever its headers say.
    pub head: bool,
    segs: Vec<Seg>,
}

impl Kind {
    pub fn build(spec: &KindSpec, host: &str, close: bool) -> Result<Kind, ScenarioError> {
        let err = |reason: String| ScenarioError::Kind {
            kind: spec.name.clone(),
            reason,
        };
        if spec.weight == 0 {
            return Err(err("weight must be at least 1".into()));
        }
        // RFC 9110 §9.1: a method is a token.
        if spec.method.is_empty() || !spec.method.bytes().all(is_tchar) {
            return Err(err(format!("method {:?} is not a token", spec.method)));
        }
        let mut segs = Vec::new();
        let mut lit = Vec::new();
        lit.extend_from_slice(spec.method.as_bytes());
        lit.push(b' ');
        let mut rest = spec.path.as_str();
        let mut plain = String::new();
        while let Some(i) = rest.find('{') {
            plain.push_str(&rest[..i]);
            let close_at = rest[i..]
                .find('}')
                .ok_or_else(|| err("unclosed { in path".into()))?;
            let inner = &rest[i + 1..i + close_at];
            let range = inner
                .strip_prefix("rand:")
                .ok_or_else(|| err(format!("unknown placeholder {{{inner}}}")))?;
            let (lo, hi) = range
                .split_once('-')
                .ok_or_else(|| err(format!("placeholder {{{inner}}}: expected rand:LO-HI")))?;
            let lo: u64 = lo
                .trim()
                .parse()
                .map_err(|_| err(format!("bad LO in {{{inner}}}")))?;
            let hi: u64 = hi
                .trim()
                .parse()
                .map_err(|_| err(format!("bad HI in {{{inner}}}")))?;
            if hi < lo {
                return Err(err(format!("{{{inner}}}: HI < LO")));
            }
            lit.extend_from_slice(plain.as_bytes());
            plain.clear();
            segs.push(Seg::Lit(std::mem::take(&mut lit)));
            segs.push(Seg::Rand {
                lo,
                span: u128::from(hi - lo) + 1,
            });
            rest = &rest[i + close_at + 1..];
        }
        plain.push_str(rest);
        // The path's shape is checked with a digit in place of each placeholder.
        let shape = spec
            .path
            .split('{')
            .map(|p| p.split_once('}').map(|(_, t)| t).unwrap_or(p))
            .collect::<Vec<_>>()
            .join("0");
        check_path(&shape).map_err(|r| err(r.into()))?;
        lit.extend_from_slice(plain.as_bytes());
        lit.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        lit.extend_from_slice(host.as_bytes());
        lit.extend_from_slice(b"\r\n");
        for (k, v) in &spec.headers {
            // RFC 9110 §5.1/§5.5: a field name is a token; a value has no CR, LF or NUL (they would
            // inject header lines).
            if k.is_empty() || !k.bytes().all(is_tchar) {
                return Err(err(format!("header name {k:?} is not a token")));
            }
            if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(err(format!("header {k} has CR, LF or NUL in its value")));
            }
            let lk = k.to_ascii_lowercase();
            if matches!(
                lk.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            ) {
                return Err(err(format!(
                    "header {k} is set by the generator (framing, keep-alive)"
                )));
            }
            lit.extend_from_slice(k.as_bytes());
            lit.extend_from_slice(b": ");
            lit.extend_from_slice(v.as_bytes());
            lit.extend_from_slice(b"\r\n");
        }
        // RFC 9110 §8.6: a request with content says how long it is; POST/PUT without a body send 0.
        if !spec.body.is_empty() || matches!(spec.method.as_str(), "POST" | "PUT" | "PATCH") {
            lit.extend_from_slice(format!("Content-Length: {}\r\n", spec.body.len()).as_bytes());
        }
        if close {
            lit.extend_from_slice(b"Connection: close\r\n");
        }
        lit.extend_from_slice(b"\r\n");
        lit.extend_from_slice(spec.body.as_bytes());
        segs.push(Seg::Lit(lit));
        let total: usize = segs
            .iter()
            .map(|s| match s {
                Seg::Lit(l) => l.len(),
                Seg::Rand { .. } => 20,
            })
            .sum();
        if total > MAX_REQUEST_BYTES {
            return Err(err(format!(
                "request larger than {MAX_REQUEST_BYTES} bytes"
            )));
        }
        Ok(Kind {
            name: spec.name.clone(),
            weight: spec.weight,
            head: spec.method == "HEAD",
            segs,
        })
    }

    /// Appends one request of this kind to `out`.
    pub fn write(&self, out: &mut Vec<u8>, rng: &mut Rng) {
        for s in &self.segs {
            match s {
                Seg::Lit(l) => out.extend_from_slice(l),
                Seg::Rand { lo, span } => {
                    // span <= 2^64, so the offset fits u64 and lo + offset <= HI.
                    let off = ((u128::from(rng.next_u64()) * span) >> 64) as u64;
                    push_u64(out, lo.saturating_add(off));
                }
            }
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Picks kinds by weight.
#[derive(Debug, Clone)]
pub struct Mix {
    cumulative: Vec<u64>,
    total: u64,
}

impl Mix {
    pub fn new(kinds: &[Kind]) -> Mix {
        let mut total = 0u64;
        let cumulative = kinds
            .iter()
            .map(|k| {
                total = total.saturating_add(u64::from(k.weight));
                total
            })
            .collect();
        Mix { cumulative, total }
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.cumulative.len() <= 1 {
            return 0;
        }
        let r = ((u128::from(rng.next_u64()) * u128::from(self.total)) >> 64) as u64;
        self.cumulative
            .iter()
            .position(|&c| r < c)
            .unwrap_or(self.cumulative.len() - 1)
    }
}

/// wyrand: a fast 64-bit PRNG, one per thread (uniformity is all we need, not cryptographic strength).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x2545_f491_4f6c_dd1d)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str) -> KindSpec {
        KindSpec {
            name: "k".into(),
            weight: 1,
            method: "GET".into(),
            path: path.into(),
            headers: BTreeMap::new(),
            body: String::new(),
        }
    }

    #[test]
    fn rand_placeholder_stays_in_range() {
        let k = Kind::build(&spec("/items/{rand:5-7}?x=1"), "h", false).unwrap();
        let mut rng = Rng::new(1);
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            let mut out = Vec::new();
            k.write(&mut out, &mut rng);
            let s = String::from_utf8(out).unwrap();
            let line = s.lines().next().unwrap();
            let id: u64 = line
                .strip_prefix("GET /items/")
                .unwrap()
                .strip_suffix("?x=1 HTTP/1.1")
                .unwrap()
                .parse()
                .unwrap();
            assert!((5..=7).contains(&id), "{id}");
            seen[(id - 5) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn full_u64_range_does_not_overflow() {
        let k = Kind::build(&spec(&format!("/{{rand:0-{}}}", u64::MAX)), "h", false).unwrap();
        let mut out = Vec::new();
        k.write(&mut out, &mut Rng::new(3));
        assert!(out.starts_with(b"GET /"));
    }

    #[test]
    fn rejects_injection_and_bad_placeholders() {
        let mut s = spec("/a");
        s.headers.insert("X-A".into(), "v\r\nEvil: 1".into());
        assert!(Kind::build(&s, "h", false).is_err());
        assert!(Kind::build(&spec("/a b"), "h", false).is_err());
        assert!(Kind::build(&spec("/{rand:9-1}"), "h", false).is_err());
        assert!(Kind::build(&spec("/{nope}"), "h", false).is_err());
        assert!(Kind::build(&spec("/{rand:1-2"), "h", false).is_err());
        let mut s = spec("/a");
        s.headers.insert("Content-Length".into(), "5".into());
        assert!(Kind::build(&s, "h", false).is_err());
    }

    #[test]
    fn post_body_is_framed() {
        let mut s = spec("/items");
        s.method = "POST".into();
        s.body = "{\"a\":1}".into();
        let k = Kind::build(&s, "h:1", true).unwrap();
        let mut out = Vec::new();
        k.write(&mut out, &mut Rng::new(1));
        let t = String::from_utf8(out).unwrap();
        assert_eq!(
            t,
            "POST /items HTTP/1.1\r\nHost: h:1\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}"
        );
    }

    #[test]
    fn url_parsing() {
        let t = Target::parse("http://127.0.0.1:8080/x?y=1").unwrap();
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/x?y=1");
        let t = Target::parse("http://[::1]:9").unwrap();
        assert_eq!(t.path, "/");
        assert_eq!(t.addr.port(), 9);
        assert!(Target::parse("https://a").is_err());
    }

    #[test]
    fn scenario_file_parses() {
        let k = parse_scenario(
            r#"
            [[kind]]
            name = "read"
            weight = 9
            path = "/items/{rand:1-100}"
            [[kind]]
            name = "write"
            weight = 1
            method = "POST"
            path = "/items"
            body = "{}"
            headers = { Content-Type = "application/json" }
            "#,
        )
        .unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k[1].headers["Content-Type"], "application/json");
        assert!(parse_scenario("[[kind]]\nname='a'\npath='/'\nbogus=1").is_err());
    }
}
