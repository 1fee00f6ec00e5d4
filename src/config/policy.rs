//! Validation of a backend's balancing and health options: `algorithm`/`hash_key`, `[backend.check]`,
//! `[backend.passive]`, `[backend.cookie]`, and each server's `backup`/`state`/`maxconn`/`cookie`.
//! Called by [`super::validate`] (same `Checker`, same rules: report everything, fall back to
//! defaults so later checks still run).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use super::checker::Checker;
use super::error::ConfigError;
use super::file::{BackendFile, CheckFile, CookieFile, PassiveFile, ServerFile};
use super::runtime::{
    AdminState, Algorithm, Check, CheckKind, HashKey, HttpCheck, MysqlCheck, MysqlLogin, MysqlRole,
    Passive, StickyCookie,
};
use crate::limits::{
    MAX_CHECK_TEXT, MAX_ERROR_LIMIT, MAX_HOST_LEN, MAX_JITTER_PERCENT, MAX_METHOD_LEN,
    MAX_MYSQL_PASSWORD, MAX_MYSQL_USER, MAX_NAME_LEN, MAX_RISE_FALL, MAX_SERVER_MAXCONN,
};

/// Default time between checks (HAProxy `inter`).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Default time between checks while a server is transitioning; never above `interval`.
pub const DEFAULT_FASTINTER: Duration = Duration::from_millis(500);
/// Default check timeout (a check slower than this counts as a failure).
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Default spread of check times, in percent of the interval (HAProxy's `spread-checks` advice: 2-5,
/// we take a little more because all workers start at the same instant).
pub const DEFAULT_JITTER_PERCENT: i64 = 10;
/// HAProxy's defaults: 2 passes to come up, 3 failures to go down.
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
/// Default passive ejection: 5 consecutive errors, ejected 10 s, doubling up to 5 min (Envoy's
/// outlier detection defaults are 5 errors and 30 s; we start shorter because active checks confirm).
pub const DEFAULT_ERROR_LIMIT: u32 = 5;
pub const DEFAULT_EJECT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_EJECT: Duration = Duration::from_secs(300);
/// Default bound on a reader's replication lag (Seconds_Behind_Master).
pub const DEFAULT_MAX_REPLICATION_LAG: Duration = Duration::from_secs(10);

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// RFC 9110 §5.6.2 tchar (also RFC 6265's cookie-name token).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && s.bytes().all(is_tchar)
}

pub(super) fn algorithm(c: &mut Checker, label: &str, b: &BackendFile) -> Algorithm {
    let key = b.hash_key.as_ref().and_then(|text| {
        let key = parse_hash_key(text);
        if key.is_none() {
            c.push(ConfigError::InvalidHashKey {
                field: format!("{label}.hash_key"),
                value: text.clone(),
            });
        }
        key
    });
    let algorithm = match b.algorithm.as_deref() {
        None | Some("roundrobin") => Algorithm::RoundRobin,
        Some("leastconn") => Algorithm::LeastConn,
        Some("random") => Algorithm::Random,
        Some("first") => Algorithm::First,
        Some("hash") => match key {
            Some(k) => return Algorithm::Hash(k),
            None => {
                if b.hash_key.is_none() {
                    c.push(ConfigError::Inconsistent {
                        field: format!("{label}.hash_key"),
                        reason: "algorithm = \"hash\" needs a hash_key",
                        hint: "set hash_key = \"source\", \"uri\", \"header:NAME\" or \"cookie:NAME\"",
                    });
                }
                Algorithm::RoundRobin
            }
        },
        Some(other) => {
            c.push(ConfigError::UnknownAlgorithm {
                field: format!("{label}.algorithm"),
                value: other.to_owned(),
            });
            return Algorithm::RoundRobin;
        }
    };
    if b.hash_key.is_some() && b.algorithm.as_deref() != Some("hash") {
        c.push(ConfigError::Inconsistent {
            field: format!("{label}.hash_key"),
            reason: "hash_key has no effect unless algorithm = \"hash\"",
            hint: "set algorithm = \"hash\" or remove hash_key",
        });
    }
    algorithm
}

fn parse_hash_key(text: &str) -> Option<HashKey> {
    match text {
        "source" => return Some(HashKey::Source),
        "uri" => return Some(HashKey::Uri),
        _ => {}
    }
    let (kind, name) = text.split_once(':')?;
    if !is_token(name) {
        return None;
    }
    match kind {
        // Field names are case-insensitive (RFC 9110 §5.1): compare lower case.
        "header" => Some(HashKey::Header(name.to_ascii_lowercase())),
        "cookie" => Some(HashKey::Cookie(name.to_owned())),
        _ => None,
    }
}

pub(super) fn check(c: &mut Checker, label: &str, f: Option<&CheckFile>) -> Option<Check> {
    let f = f?;
    let label = format!("{label}.check");
    let interval = c.duration(
        format!("{label}.interval"),
        f.interval.as_deref(),
        DEFAULT_CHECK_INTERVAL,
    );
    let fastinter = c.duration(
        format!("{label}.fastinter"),
        f.fastinter.as_deref(),
        DEFAULT_FASTINTER.min(interval),
    );
    let timeout = c.duration(
        format!("{label}.timeout"),
        f.timeout.as_deref(),
        DEFAULT_CHECK_TIMEOUT,
    );
    let jitter_percent = c
        .int(
            format!("{label}.jitter_percent"),
            f.jitter_percent,
            0,
            MAX_JITTER_PERCENT,
        )
        .unwrap_or(DEFAULT_JITTER_PERCENT);
    let rise = c
        .int(format!("{label}.rise"), f.rise, 1, MAX_RISE_FALL)
        .map_or(DEFAULT_RISE, |n| n as u32);
    let fall = c
        .int(format!("{label}.fall"), f.fall, 1, MAX_RISE_FALL)
        .map_or(DEFAULT_FALL, |n| n as u32);

    let mysql_only = [
        ("user", f.user.is_some()),
        ("password", f.password.is_some()),
        ("role", f.role.is_some()),
        ("max_replication_lag", f.max_replication_lag.is_some()),
    ];
    if f.kind.as_deref() != Some("mysql") {
        if let Some((name, _)) = mysql_only.iter().find(|(_, set)| *set) {
            c.push(ConfigError::Inconsistent {
                field: format!("{label}.{name}"),
                reason: "this option belongs to MySQL checks",
                hint: "set type = \"mysql\" or remove the option",
            });
        }
    }
    let kind = match f.kind.as_deref() {
        Some("mysql") => {
            if let Some((name, _)) = http_only_set(f) {
                c.push(ConfigError::Inconsistent {
                    field: format!("{label}.{name}"),
                    reason: "this option belongs to HTTP checks, and the check type is \"mysql\"",
                    hint: "set type = \"http\" or remove the option",
                });
            }
            CheckKind::Mysql(mysql_check(c, &label, f))
        }
        None | Some("tcp") => {
            let http_only = [
                ("method", f.method.is_some()),
                ("path", f.path.is_some()),
                ("host", f.host.is_some()),
                ("expect_status", f.expect_status.is_some()),
                ("expect_body", f.expect_body.is_some()),
                ("disable_on_404", f.disable_on_404.is_some()),
            ];
            if let Some((name, _)) = http_only.iter().find(|(_, set)| *set) {
                c.push(ConfigError::Inconsistent {
                    field: format!("{label}.{name}"),
                    reason: "this option belongs to HTTP checks, and the check type is \"tcp\"",
                    hint: "set type = \"http\" or remove the option",
                });
            }
            CheckKind::Tcp
        }
        Some("http") => CheckKind::Http(http_check(c, &label, f)),
        Some(other) => {
            c.push(ConfigError::UnknownCheckType {
                field: format!("{label}.type"),
                value: other.to_owned(),
            });
            CheckKind::Tcp
        }
    };
    Some(Check {
        kind,
        interval,
        fastinter,
        jitter_percent: jitter_percent as u8,
        timeout,
        rise: nz(rise),
        fall: nz(fall),
        start_down: f.start_down.unwrap_or(false),
    })
}

fn http_only_set(f: &CheckFile) -> Option<(&'static str, bool)> {
    [
        ("method", f.method.is_some()),
        ("path", f.path.is_some()),
        ("host", f.host.is_some()),
        ("expect_status", f.expect_status.is_some()),
        ("expect_body", f.expect_body.is_some()),
        ("disable_on_404", f.disable_on_404.is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set)
}

fn mysql_check(c: &mut Checker, label: &str, f: &CheckFile) -> MysqlCheck {
    let login = match (&f.user, &f.password) {
        (Some(user), password) => {
            if user.is_empty()
                || user.len() > MAX_MYSQL_USER
                || !user.bytes().all(|b| b.is_ascii_graphic())
            {
                c.push(ConfigError::InvalidCheckRequest {
                    field: format!("{label}.user"),
                    value: user.clone(),
                    reason: "not a MySQL user name of 1 to 80 visible ASCII characters",
                    hint: "use the account created for checks, such as \"corelb_check\"",
                });
            }
            let password = password.clone().unwrap_or_default();
            if password.len() > MAX_MYSQL_PASSWORD {
                c.push(ConfigError::InvalidCheckRequest {
                    field: format!("{label}.password"),
                    value: "<hidden>".into(),
                    reason: "longer than 256 bytes",
                    hint: "use a shorter password for the check account",
                });
            }
            Some(MysqlLogin {
                user: user.clone(),
                password,
            })
        }
        (None, Some(_)) => {
            c.push(ConfigError::Inconsistent {
                field: format!("{label}.password"),
                reason: "a password without a user",
                hint: "set user = \"...\" too (or remove password for a greeting-only check)",
            });
            None
        }
        (None, None) => None,
    };
    let max_lag = c.duration(
        format!("{label}.max_replication_lag"),
        f.max_replication_lag.as_deref(),
        DEFAULT_MAX_REPLICATION_LAG,
    );
    let role = match f.role.as_deref() {
        None | Some("any") => MysqlRole::Any,
        Some("writer") => MysqlRole::Writer,
        Some("reader") => MysqlRole::Reader { max_lag },
        Some(other) => {
            c.push(ConfigError::UnknownMysqlRole {
                field: format!("{label}.role"),
                value: other.to_owned(),
            });
            MysqlRole::Any
        }
    };
    if f.max_replication_lag.is_some() && !matches!(role, MysqlRole::Reader { .. }) {
        c.push(ConfigError::Inconsistent {
            field: format!("{label}.max_replication_lag"),
            reason: "max_replication_lag only applies to role = \"reader\"",
            hint: "set role = \"reader\" or remove max_replication_lag",
        });
    }
    if role != MysqlRole::Any && login.is_none() {
        c.push(ConfigError::Inconsistent {
            field: format!("{label}.role"),
            reason: "a writer or reader role needs a login to read @@read_only and the replication status",
            hint: "set user and password of a check account (it needs only the REPLICA MONITOR privilege)",
        });
    }
    MysqlCheck { login, role }
}

fn http_check(c: &mut Checker, label: &str, f: &CheckFile) -> HttpCheck {
    let method = f.method.clone().unwrap_or_else(|| "GET".to_owned());
    if method.is_empty()
        || method.len() > MAX_METHOD_LEN
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        c.push(ConfigError::InvalidCheckRequest {
            field: format!("{label}.method"),
            value: method.clone(),
            reason: "not an upper-case method name",
            hint: "use a method such as \"GET\", \"HEAD\" or \"OPTIONS\"",
        });
    }
    let path = f.path.clone().unwrap_or_else(|| "/".to_owned());
    // RFC 9112 §3.2: origin-form; no space, control or non-ASCII byte may reach the request line.
    if !path.starts_with('/')
        || path.len() > MAX_CHECK_TEXT
        || !path.bytes().all(|b| b.is_ascii_graphic())
    {
        c.push(ConfigError::InvalidCheckRequest {
            field: format!("{label}.path"),
            value: path.clone(),
            reason: "not a path of visible ASCII characters starting with '/'",
            hint: "use a path such as \"/health\" (percent-encode anything else)",
        });
    }
    if let Some(host) = &f.host {
        if host.is_empty()
            || host.len() > MAX_HOST_LEN
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        {
            c.push(ConfigError::InvalidCheckRequest {
                field: format!("{label}.host"),
                value: host.clone(),
                reason: "not a host name, optionally with a port",
                hint: "use a value such as \"www.foobar.com\" or \"app1:8080\"",
            });
        }
    }
    let expect_status = match f.expect_status.as_deref() {
        None => (200, 399),
        Some(text) => parse_status_range(text).unwrap_or_else(|| {
            c.push(ConfigError::InvalidStatusRange {
                field: format!("{label}.expect_status"),
                value: text.to_owned(),
            });
            (200, 399)
        }),
    };
    if let Some(body) = &f.expect_body {
        if body.is_empty() || body.len() > MAX_CHECK_TEXT {
            c.push(ConfigError::InvalidCheckRequest {
                field: format!("{label}.expect_body"),
                value: body.clone(),
                reason: "empty or longer than 1024 bytes",
                hint: "use a short text the healthy response always contains, such as \"OK\"",
            });
        }
    }
    HttpCheck {
        method,
        path,
        host: f.host.clone(),
        expect_status,
        expect_body: f.expect_body.clone(),
        disable_on_404: f.disable_on_404.unwrap_or(false),
    }
}

/// "200" or "200-399", within 100..=599, low <= high.
pub fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let status = |s: &str| -> Option<u16> {
        if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|n| (100..=599).contains(n))
    };
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (status(a)?, status(b)?),
        None => {
            let s = status(text)?;
            (s, s)
        }
    };
    (lo <= hi).then_some((lo, hi))
}

pub(super) fn passive(c: &mut Checker, label: &str, f: Option<&PassiveFile>) -> Option<Passive> {
    let f = f?;
    let label = format!("{label}.passive");
    let error_limit = c
        .int(
            format!("{label}.error_limit"),
            f.error_limit,
            1,
            MAX_ERROR_LIMIT,
        )
        .map_or(DEFAULT_ERROR_LIMIT, |n| n as u32);
    let eject = c.duration(format!("{label}.eject"), f.eject.as_deref(), DEFAULT_EJECT);
    let max_eject = c.duration(
        format!("{label}.max_eject"),
        f.max_eject.as_deref(),
        DEFAULT_MAX_EJECT.max(eject),
    );
    if max_eject < eject {
        c.push(ConfigError::Inconsistent {
            field: format!("{label}.max_eject"),
            reason: "max_eject is shorter than eject",
            hint:
                "ejections start at `eject` and double up to `max_eject`: make max_eject >= eject",
        });
    }
    Some(Passive {
        error_limit: nz(error_limit),
        eject,
        max_eject: max_eject.max(eject),
    })
}

pub(super) fn cookie(c: &mut Checker, label: &str, f: Option<&CookieFile>) -> Option<StickyCookie> {
    let f = f?;
    if !is_token(&f.name) {
        c.push(ConfigError::InvalidCookie {
            field: format!("{label}.cookie.name"),
            what: "name",
            value: f.name.clone(),
        });
    }
    Some(StickyCookie {
        name: f.name.clone(),
    })
}

/// A server's `backup`, `state`, `maxconn` and `cookie` (`backend` and `name` build the default cookie).
pub(super) struct ServerExtras {
    pub backup: bool,
    pub admin: AdminState,
    pub maxconn: Option<NonZeroU32>,
    pub cookie: String,
}

pub(super) fn server_extras(
    c: &mut Checker,
    label: &str,
    backend: &str,
    name: &str,
    s: &ServerFile,
) -> ServerExtras {
    let admin = match s.state.as_deref() {
        None | Some("up") => AdminState::Up,
        Some("drain") => AdminState::Drain,
        Some("maint") => AdminState::Maint,
        Some(other) => {
            c.push(ConfigError::UnknownServerState {
                field: format!("{label}.state"),
                value: other.to_owned(),
            });
            AdminState::Up
        }
    };
    let maxconn = c
        .int(format!("{label}.maxconn"), s.maxconn, 1, MAX_SERVER_MAXCONN)
        .and_then(|n| u32::try_from(n).ok())
        .and_then(NonZeroU32::new);
    let cookie = match &s.cookie {
        Some(v) => {
            if !is_token(v) {
                c.push(ConfigError::InvalidCookie {
                    field: format!("{label}.cookie"),
                    what: "value",
                    value: v.clone(),
                });
            }
            v.clone()
        }
        None => default_cookie(backend, name),
    };
    ServerExtras {
        backup: s.backup.unwrap_or(false),
        admin,
        maxconn,
        cookie,
    }
}

/// The default persistence cookie value: a hash of the backend and server names (stable across
/// restarts and identical on every worker), never the address.
pub fn default_cookie(backend: &str, server: &str) -> String {
    // FNV-1a, 64 bits, then a final mix: only needs to be stable and spread, not secret.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in backend.bytes().chain([0u8]).chain(server.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    format!("{h:016x}")
}

/// Two servers of one backend with the same cookie value could not be told apart.
pub(super) fn check_cookie_values(c: &mut Checker, values: &[(String, String)]) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (field, v) in values {
        if seen.insert(v.as_str(), field.as_str()).is_some() {
            c.push(ConfigError::Inconsistent {
                field: format!("{field}.cookie"),
                reason: "two servers of this backend have the same cookie value",
                hint: "give each server its own `cookie` value",
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("200"), Some((200, 200)));
        assert_eq!(parse_status_range("200-399"), Some((200, 399)));
        for bad in [
            "", "20", "2000", "399-200", "099", "600", "200-", "-200", "2x0", " 200",
        ] {
            assert_eq!(parse_status_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_keys() {
        assert_eq!(parse_hash_key("source"), Some(HashKey::Source));
        assert_eq!(parse_hash_key("uri"), Some(HashKey::Uri));
        assert_eq!(
            parse_hash_key("header:X-User"),
            Some(HashKey::Header("x-user".into()))
        );
        assert_eq!(
            parse_hash_key("cookie:Sess"),
            Some(HashKey::Cookie("Sess".into()))
        );
        for bad in ["", "src", "header:", "header:a b", "cookie:a;b", "query:x"] {
            assert_eq!(parse_hash_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn default_cookie_is_stable_opaque_and_distinct() {
        let a = default_cookie("app", "s1");
        assert_eq!(a, default_cookie("app", "s1"));
        assert_ne!(a, default_cookie("app", "s2"));
        assert_ne!(a, default_cookie("ap", "ps1"));
        assert_eq!(a.len(), 16);
        assert!(!default_cookie("app", "10.0.0.1").contains("10.0"));
    }
}
