//! The route phase: which backend serves a request (routes in order, first match wins, else the
//! frontend's default), and what the balancer needs to pick a server in it (a persistence cookie that
//! names a server still taking its sessions, or the hash key). Pure functions of the request head.

use std::net::IpAddr;

use crate::balance::{hash_bytes, hash_ip};
use crate::config::{Algorithm, Frontend, HashKey, HostMatch};
use crate::http::request::RequestHead;
use crate::http::{cookie, path, HeaderField};
use crate::upstream::BackendCtx;

/// A routed request, what every phase after routing reads: the frontend, the chosen backend and the
/// request head.
pub(super) struct Req<'a> {
    pub f: &'a Frontend,
    pub backend: &'a BackendCtx,
    pub head: &'a RequestHead,
}

/// Picks the backend: routes in order, first match wins, else the default (host compared
/// case-insensitively, RFC 9110 §4.2.3; path prefixes against the normalized path, see
/// `http::path`, with `scratch` holding it when it differs from the raw one).
pub(super) fn route(f: &Frontend, buf: &[u8], head: &RequestHead, scratch: &mut Vec<u8>) -> usize {
    if f.routes.is_empty() {
        return f.default_backend;
    }
    let host = head.host_name.get(buf);
    // `example.com.` is the same name as `example.com` (RFC 1034 §3.1): route it the same.
    let host = host.strip_suffix(b".").unwrap_or(host);
    let path = path::for_routing(head.path.get(buf), scratch);
    for r in &f.routes {
        if let Some(h) = &r.host {
            let ok = match h {
                HostMatch::Exact(e) => e.as_bytes().eq_ignore_ascii_case(host),
                HostMatch::Suffix(s) => {
                    host.len() > s.len()
                        && host[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
                }
            };
            if !ok {
                continue;
            }
        }
        if let Some(p) = &r.path_prefix {
            if !path.starts_with(p.as_bytes()) {
                continue;
            }
        }
        return r.backend;
    }
    f.default_backend
}

/// What the balancer is given for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PickInput {
    /// The server a persistence cookie names, if it still takes its sticky sessions.
    pub sticky: Option<usize>,
    /// The key of `algorithm = "hash"`.
    pub key: Option<u64>,
}

/// Reads persistence and hash keys from the head (before it leaves the buffer).
pub(super) fn pick_input(
    backend: &BackendCtx,
    buf: &[u8],
    fields: &[HeaderField],
    client: IpAddr,
    head: &RequestHead,
) -> PickInput {
    let sticky = backend.cfg.cookie.as_ref().and_then(|ck| {
        let v = cookie::find(buf, fields, ck.name.as_bytes())?;
        backend.sticky_server(v)
    });
    let key = match &backend.cfg.algorithm {
        Algorithm::Hash(k) if sticky.is_none() => hash_key(k, buf, fields, client, head),
        _ => None,
    };
    PickInput { sticky, key }
}

/// The key of `algorithm = "hash"`; `None` when the request lacks it (then the balancer falls back to
/// round robin, like HAProxy).
fn hash_key(
    k: &HashKey,
    buf: &[u8],
    fields: &[HeaderField],
    client: IpAddr,
    head: &RequestHead,
) -> Option<u64> {
    match k {
        HashKey::Source => Some(hash_ip(client)),
        HashKey::Uri => {
            let path = head.path.get(buf);
            let end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
            Some(hash_bytes(&path[..end]))
        }
        HashKey::Header(name) => fields
            .iter()
            .find(|f| f.name.get(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| hash_bytes(f.value.get(buf))),
        HashKey::Cookie(name) => cookie::find(buf, fields, name.as_bytes()).map(hash_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::board::Board;
    use crate::http::request::parse_request_head_into;

    const CFG: &str = r#"
[[frontend]]
name = "f"
bind = ["127.0.0.1:0"]
default_backend = "web"
  [[frontend.route]]
  host = "api.example.com"
  backend = "api"
  [[frontend.route]]
  path_prefix = "/static/"
  backend = "static"
  [[frontend.route]]
  host = "*.img.example.com"
  backend = "static"

[[backend]]
name = "web"
algorithm = "hash"
hash_key = "uri"
  [backend.cookie]
  name = "SRV"
  [[backend.server]]
  name = "w1"
  address = "127.0.0.1:1001"
  cookie = "one"
  [[backend.server]]
  name = "w2"
  address = "127.0.0.1:1002"
  cookie = "two"
[[backend]]
name = "api"
  [[backend.server]]
  address = "127.0.0.1:1003"
[[backend]]
name = "static"
  [[backend.server]]
  address = "127.0.0.1:1004"
"#;

    fn parse(cfg: &crate::config::Config, req: &str) -> (Vec<u8>, RequestHead, Vec<HeaderField>) {
        let mut fields = Vec::new();
        let buf = req.as_bytes().to_vec();
        let head = parse_request_head_into(&buf, &cfg.frontends[0].limits, &mut fields)
            .unwrap()
            .unwrap();
        (buf, head, fields)
    }

    fn backend_for(cfg: &crate::config::Config, req: &str) -> &'static str {
        let (buf, head, _) = parse(cfg, req);
        let i = route(&cfg.frontends[0], &buf, &head, &mut Vec::new());
        match cfg.backends[i].name.as_str() {
            "web" => "web",
            "api" => "api",
            "static" => "static",
            other => panic!("unexpected backend {other}"),
        }
    }

    #[test]
    fn routes_in_order_first_match_wins() {
        let cfg = crate::config::from_toml(CFG).unwrap();
        let r = |req: &str| backend_for(&cfg, req);
        assert_eq!(r("GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n"), "web");
        assert_eq!(
            r("GET /static/x HTTP/1.1\r\nHost: API.Example.com\r\n\r\n"),
            "api"
        );
        assert_eq!(
            r("GET /static/x HTTP/1.1\r\nHost: api.example.com.\r\n\r\n"),
            "api"
        );
        assert_eq!(
            r("GET /static/x HTTP/1.1\r\nHost: www.example.com\r\n\r\n"),
            "static"
        );
        // The path is normalized before matching: a rule cannot be bypassed by spelling.
        assert_eq!(
            r("GET /a/../static/x HTTP/1.1\r\nHost: a\r\n\r\n"),
            "static"
        );
        assert_eq!(r("GET /%73tatic/x HTTP/1.1\r\nHost: a\r\n\r\n"), "static");
        assert_eq!(
            r("GET / HTTP/1.1\r\nHost: a.img.example.com:8080\r\n\r\n"),
            "static"
        );
        // A suffix rule needs a label before the suffix.
        assert_eq!(r("GET / HTTP/1.1\r\nHost: img.example.com\r\n\r\n"), "web");
    }

    #[test]
    fn sticky_cookie_wins_over_the_hash_key() {
        let cfg = crate::config::from_toml(CFG).unwrap();
        let board = Board::new(&[2, 1, 1]);
        let web = BackendCtx::new(&cfg.backends[0], 0, 0, 1, &board);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let input = |req: &str| {
            let (buf, head, fields) = parse(&cfg, req);
            pick_input(&web, &buf, &fields, ip, &head)
        };
        let sticky = input("GET /a HTTP/1.1\r\nHost: a\r\nCookie: x=1; SRV=two\r\n\r\n");
        assert_eq!(
            sticky,
            PickInput {
                sticky: Some(1),
                key: None
            }
        );
        // Unknown cookie value: no persistence, the URI (without its query) is the key.
        let a = input("GET /a?q=1 HTTP/1.1\r\nHost: a\r\nCookie: SRV=zzz\r\n\r\n");
        let b = input("GET /a?q=2 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(a.sticky, None);
        assert_eq!(a.key, Some(hash_bytes(b"/a")));
        assert_eq!(a, b);
    }
}
