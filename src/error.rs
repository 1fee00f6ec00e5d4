//! What can go wrong while proxying one request, which side caused it, and the one status code each maps
//! to. Local answers are canned `&'static [u8]`: an error path must not format or allocate.

use std::io;

/// Who caused an error: decides whether the client gets a 4xx, a 5xx, or nothing (its connection is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request line too long")]
    UriTooLong,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("request body larger than max_body")]
    PayloadTooLarge,
    #[error("method not allowed: {0}")]
    MethodNotAllowed(&'static str),
    #[error("transfer coding not implemented")]
    NotImplemented,
    #[error("unsupported expectation")]
    ExpectationFailed,
    #[error("HTTP version not supported")]
    VersionNotSupported,
    #[error("client too slow to send its request head")]
    RequestTimeout,
    /// The client connection failed or timed out mid-exchange: nobody to answer.
    #[error("client connection: {0:?}")]
    ClientIo(io::ErrorKind),
    #[error("bad response from backend: {0}")]
    BadGateway(&'static str),
    #[error("no server available: {0}")]
    ServiceUnavailable(&'static str),
    #[error("backend did not answer in time")]
    GatewayTimeout,
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The response was already under way when the exchange failed: the only honest signal left is to
    /// close the client connection without a clean end (RFC 9112 §8).
    #[error("exchange aborted: {0}")]
    Aborted(&'static str),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        use ProxyError::*;
        match self {
            BadRequest(_) | UriTooLong | HeadersTooLarge | PayloadTooLarge
            | MethodNotAllowed(_) | NotImplemented | ExpectationFailed | VersionNotSupported
            | RequestTimeout | ClientIo(_) => Side::Client,
            BadGateway(_) | ServiceUnavailable(_) | GatewayTimeout | Aborted(_) => Side::Backend,
            Internal(_) => Side::Internal,
        }
    }

    pub fn status(&self) -> u16 {
        self.canned().map(|c| c.status).unwrap_or(0)
    }

    /// The canned answer, or `None` when the client connection is unusable.
    pub fn canned(&self) -> Option<&'static Canned> {
        use ProxyError::*;
        Some(match self {
            BadRequest(_) => &R400,
            UriTooLong => &R414,
            HeadersTooLarge => &R431,
            PayloadTooLarge => &R413,
            MethodNotAllowed(_) => &R405,
            NotImplemented => &R501,
            ExpectationFailed => &R417,
            VersionNotSupported => &R505,
            RequestTimeout => &R408,
            ClientIo(_) | Aborted(_) => return None,
            BadGateway(_) => &R502,
            ServiceUnavailable(_) => &R503,
            GatewayTimeout => &R504,
            Internal(_) => &R500,
        })
    }
}

/// A canned local response: status line, then (after the Date header the caller inserts) the rest.
/// Every canned answer closes the connection: it is sent when the framing may be in doubt.
#[derive(Debug)]
pub struct Canned {
    pub status: u16,
    pub status_line: &'static [u8],
    pub rest: &'static [u8],
}

macro_rules! canned {
    ($name:ident, $code:literal, $reason:literal, $len:literal, $body:literal) => {
        canned!($name, $code, $reason, $len, $body, "");
    };
    ($name:ident, $code:literal, $reason:literal, $len:literal, $body:literal, $extra:literal) => {
        pub static $name: Canned = Canned {
            status: $code,
            status_line: concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n").as_bytes(),
            rest: concat!(
                "content-type: text/plain\r\ncontent-length: ",
                $len,
                "\r\n",
                $extra,
                "connection: close\r\n\r\n",
                $body
            )
            .as_bytes(),
        };
    };
}

canned!(R400, 400, "Bad Request", 12, "bad request\n");
canned!(R405, 405, "Method Not Allowed", 19, "method not allowed\n");
canned!(R408, 408, "Request Timeout", 16, "request timeout\n");
canned!(R413, 413, "Content Too Large", 18, "content too large\n");
canned!(R414, 414, "URI Too Long", 13, "uri too long\n");
canned!(R417, 417, "Expectation Failed", 19, "expectation failed\n");
canned!(
    R431,
    431,
    "Request Header Fields Too Large",
    32,
    "request header fields too large\n"
);
canned!(
    R500,
    500,
    "Internal Server Error",
    22,
    "internal server error\n"
);
canned!(R501, 501, "Not Implemented", 16, "not implemented\n");
canned!(R502, 502, "Bad Gateway", 12, "bad gateway\n");
canned!(
    R503,
    503,
    "Service Unavailable",
    20,
    "service unavailable\n",
    "retry-after: 1\r\n"
);
canned!(R504, 504, "Gateway Timeout", 16, "gateway timeout\n");
canned!(
    R505,
    505,
    "HTTP Version Not Supported",
    27,
    "http version not supported\n"
);

/// `HTTP/1.1 100 Continue`: sent by corelb itself when a client expects it (RFC 9110 §10.1.1).
pub static CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&Canned; 13] = [
        &R400, &R405, &R408, &R413, &R414, &R417, &R431, &R500, &R501, &R502, &R503, &R504, &R505,
    ];

    #[test]
    fn canned_content_length_matches_body() {
        for c in ALL {
            let rest = std::str::from_utf8(c.rest).unwrap();
            let (head, body) = rest.split_once("\r\n\r\n").unwrap();
            let cl: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(cl, body.len(), "status {}", c.status);
            let line = std::str::from_utf8(c.status_line).unwrap();
            assert!(line.starts_with(&format!("HTTP/1.1 {} ", c.status)));
            assert!(head.contains("connection: close"));
        }
    }

    #[test]
    fn every_error_maps_to_one_status() {
        assert_eq!(ProxyError::BadRequest("x").status(), 400);
        assert_eq!(ProxyError::ServiceUnavailable("x").status(), 503);
        assert_eq!(ProxyError::GatewayTimeout.status(), 504);
        assert_eq!(
            ProxyError::ClientIo(io::ErrorKind::Other)
                .canned()
                .map(|c| c.status),
            None
        );
        assert_eq!(ProxyError::BadGateway("x").side(), Side::Backend);
        assert_eq!(ProxyError::UriTooLong.side(), Side::Client);
    }
}
