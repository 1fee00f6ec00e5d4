//! Configuration errors: one variant per kind of mistake, each with the field path (such as
//! `frontend["www"].bind[1]`), what is wrong, and a hint on how to fix it. Every message is one line, so
//! [`ConfigErrors`] prints one error per line.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::parse::{AddressError, CidrError, DurationError, HostError, NameError, PathPrefixError};

/// One configuration mistake.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8, too large).
    #[error("{}: cannot read the config file: {source}; hint: {}", .file.display(), io_hint(.source))]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// TOML syntax error, unknown key, missing key, or a value of the wrong TOML type. `field` is the key
    /// path found at the error position (best effort, by index: names are not known yet); may be empty
    /// when the error is not inside any key. `line` and `column` are 1-based.
    #[error("{}{}{message}; hint: {hint}", location(.file.as_deref(), *.line, *.column), prefix(.field))]
    Syntax {
        file: Option<PathBuf>,
        line: usize,
        column: usize,
        field: String,
        message: String,
        hint: String,
    },

    #[error(
        "{field}: invalid address {value:?}: {reason}; hint: expected an IP address and port such as \
         \"127.0.0.1:8080\" or \"[::1]:8080\" (host names are not resolved: write the IP address)"
    )]
    InvalidAddress {
        field: String,
        value: String,
        reason: AddressError,
    },

    #[error(
        "{field}: invalid duration {value:?}: {reason}; hint: expected a whole number and a unit \
         (ms, s, m or h) such as \"5s\" or \"250ms\""
    )]
    InvalidDuration {
        field: String,
        value: String,
        reason: DurationError,
    },

    /// Zero, or longer than the ceiling (`max`).
    #[error("{field}: duration {value:?} is out of range; hint: use a duration from {} to {}", human(*.min), human(*.max))]
    DurationOutOfRange {
        field: String,
        value: String,
        min: Duration,
        max: Duration,
    },

    /// A number outside `[min, max]`.
    #[error("{field}: {value} is out of range; hint: {}", range_hint(*.min, *.max))]
    OutOfRange {
        field: String,
        value: i64,
        min: i64,
        max: i64,
    },

    /// `first` is the field path of the earlier entry with the same name; `kind` says among what names
    /// must be unique ("frontend", "backend", "server of this backend").
    #[error("{field}: the name {name:?} is already used by {first}; hint: give each {kind} a unique name")]
    DuplicateName {
        field: String,
        name: String,
        first: String,
        kind: &'static str,
    },

    #[error("{field}: no backend is named {name:?}; hint: {}", defined_hint(.defined))]
    UnknownBackend {
        field: String,
        name: String,
        /// The names of the backends that are defined, in file order.
        defined: Vec<String>,
    },

    #[error(
        "frontend: no frontend is defined; hint: add a [[frontend]] section with name, bind and \
         default_backend"
    )]
    NoFrontends,

    #[error(
        "backend: no backend is defined; hint: add a [[backend]] section with a name and at least one \
         [[backend.server]]"
    )]
    NoBackends,

    #[error(
        "{field}: no server is defined; hint: add a [[backend.server]] section with address = \"IP:port\" \
         (or pass --backend IP:port)"
    )]
    NoServers { field: String },

    #[error(
        "{field}: no listening address is defined; hint: set bind = [\"IP:port\"] (or pass --listen IP:port)"
    )]
    NoBinds { field: String },

    /// The same address twice, or an address overlapping a wildcard of the same family and port
    /// (`0.0.0.0:80` and `127.0.0.1:80`). `other` is the address at `first`.
    #[error(
        "{field}: {} at {first}; hint: list each listening address once (0.0.0.0:P already covers every \
         IPv4 address on port P, [::]:P every IPv6 address)",
        bind_clash(*.addr, *.other)
    )]
    DuplicateBind {
        field: String,
        addr: SocketAddr,
        other: SocketAddr,
        first: String,
    },

    #[error(
        "{field}: invalid network {value:?}: {reason}; hint: expected an IP address or network such as \
         \"10.0.0.0/8\", \"::1/128\" or \"127.0.0.1\""
    )]
    InvalidCidr {
        field: String,
        value: String,
        reason: CidrError,
    },

    #[error(
        "{field}: invalid host {value:?}: {reason}; hint: expected a host name such as \"api.foobar.com\" \
         or a wildcard such as \"*.foobar.com\", without scheme or port"
    )]
    InvalidHostPattern {
        field: String,
        value: String,
        reason: HostError,
    },

    #[error("{field}: invalid path prefix {value:?}: {reason}; hint: expected a path starting with '/' such as \"/api/\"")]
    InvalidPathPrefix {
        field: String,
        value: String,
        reason: PathPrefixError,
    },

    #[error(
        "{field}: unknown algorithm {value:?}; hint: use \"roundrobin\" (the default), \"leastconn\", \
         \"random\" (two random choices), \"first\" or \"hash\" (with hash_key)"
    )]
    UnknownAlgorithm { field: String, value: String },

    #[error(
        "{field}: invalid name {value:?}: {reason}; hint: use 1 to {max} characters among A-Z a-z 0-9 _ . -",
        max = crate::limits::MAX_NAME_LEN
    )]
    InvalidName {
        field: String,
        value: String,
        reason: NameError,
    },

    /// More entries than a compiled-in bound of `crate::limits` allows.
    #[error("{field}: {count} {what}, more than the {max} allowed; hint: at most {max} {what} are supported")]
    TooMany {
        field: String,
        what: &'static str,
        count: usize,
        max: usize,
    },

    /// A route with neither `host` nor `path_prefix`.
    #[error(
        "{field}: the route has neither `host` nor `path_prefix`; hint: set one or both (requests that \
         match no route go to default_backend)"
    )]
    EmptyRoute { field: String },

    #[error(
        "{field}: invalid hash key {value:?}; hint: use \"source\" (client IP), \"uri\" (path), \
         \"header:NAME\" or \"cookie:NAME\""
    )]
    InvalidHashKey { field: String, value: String },

    #[error(
        "{field}: unknown check type {value:?}; hint: use \"http\" (a request and an expected status), \
         \"tcp\" (a connect) or \"mysql\" (a MySQL/MariaDB greeting, or a login with user/password)"
    )]
    UnknownCheckType { field: String, value: String },

    #[error(
        "{field}: invalid status range {value:?}; hint: use one status such as \"200\" or a range such as \
         \"200-399\", within 100-599"
    )]
    InvalidStatusRange { field: String, value: String },

    #[error("{field}: unknown server state {value:?}; hint: use \"up\" (the default), \"drain\" or \"maint\"")]
    UnknownServerState { field: String, value: String },

    /// An HTTP check's method, path or host that would not make a valid request line or Host field.
    #[error("{field}: invalid value {value:?} for a health check request: {reason}; hint: {hint}")]
    InvalidCheckRequest {
        field: String,
        value: String,
        reason: &'static str,
        hint: &'static str,
    },

    /// A cookie name or value that is not an RFC 6265 token / cookie-octet string.
    #[error(
        "{field}: invalid cookie {what} {value:?}; hint: use 1 to {max} characters among A-Z a-z 0-9 and \
         !#$%&'*+-.^_`|~ (RFC 6265 §4.1.1)",
        max = crate::limits::MAX_NAME_LEN
    )]
    InvalidCookie {
        field: String,
        what: &'static str,
        value: String,
    },

    #[error(
        "{field}: unknown MySQL role {value:?}; hint: use \"writer\" (read_only = 0 only), \"reader\" \
         (replicas within max_replication_lag, backups when none) or \"any\" (the default)"
    )]
    UnknownMysqlRole { field: String, value: String },

    #[error("{field}: unknown mode {value:?}; hint: use \"http\" (the default) or \"tcp\" (a byte stream, e.g. for MySQL)")]
    UnknownMode { field: String, value: String },

    #[error("{field}: unknown PROXY protocol version {value:?}; hint: use \"v1\" (text) or \"v2\" (binary)")]
    UnknownProxyVersion { field: String, value: String },

    /// Options that contradict each other or one that has no effect where it is set.
    #[error("{field}: {reason}; hint: {hint}")]
    Inconsistent {
        field: String,
        reason: &'static str,
        hint: &'static str,
    },
}

impl ConfigError {
    /// The field path of the mistake, such as `backend["app"].server[2].address`, or `--listen` /
    /// `--backend` for [`super::quick`]. Empty for [`ConfigError::Io`], and for a
    /// [`ConfigError::Syntax`] error outside any key.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Io { .. } => "",
            ConfigError::NoFrontends => "frontend",
            ConfigError::NoBackends => "backend",
            ConfigError::Syntax { field, .. }
            | ConfigError::InvalidAddress { field, .. }
            | ConfigError::InvalidDuration { field, .. }
            | ConfigError::DurationOutOfRange { field, .. }
            | ConfigError::OutOfRange { field, .. }
            | ConfigError::DuplicateName { field, .. }
            | ConfigError::UnknownBackend { field, .. }
            | ConfigError::NoServers { field }
            | ConfigError::NoBinds { field }
            | ConfigError::DuplicateBind { field, .. }
            | ConfigError::InvalidCidr { field, .. }
            | ConfigError::InvalidHostPattern { field, .. }
            | ConfigError::InvalidPathPrefix { field, .. }
            | ConfigError::UnknownAlgorithm { field, .. }
            | ConfigError::InvalidName { field, .. }
            | ConfigError::TooMany { field, .. }
            | ConfigError::EmptyRoute { field }
            | ConfigError::InvalidHashKey { field, .. }
            | ConfigError::UnknownCheckType { field, .. }
            | ConfigError::InvalidStatusRange { field, .. }
            | ConfigError::UnknownServerState { field, .. }
            | ConfigError::InvalidCheckRequest { field, .. }
            | ConfigError::InvalidCookie { field, .. }
            | ConfigError::UnknownMysqlRole { field, .. }
            | ConfigError::UnknownMode { field, .. }
            | ConfigError::UnknownProxyVersion { field, .. }
            | ConfigError::Inconsistent { field, .. } => field,
        }
    }
}

fn io_hint(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::InvalidData => format!(
            "the file must be UTF-8 text of at most {} bytes",
            crate::limits::MAX_CONFIG_BYTES
        ),
        _ => "check the path and its permissions".to_owned(),
    }
}

fn location(file: Option<&Path>, line: usize, column: usize) -> String {
    match file {
        Some(f) => format!("{}:{line}:{column}: ", f.display()),
        None => format!("line {line}, column {column}: "),
    }
}

fn prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

fn range_hint(min: i64, max: i64) -> String {
    if max == i64::MAX {
        format!("use a value of at least {min}")
    } else {
        format!("use a value from {min} to {max}")
    }
}

fn defined_hint(defined: &[String]) -> String {
    if defined.is_empty() {
        return "no backend is defined: add a [[backend]] section".to_owned();
    }
    let names: Vec<String> = defined.iter().map(|n| format!("{n:?}")).collect();
    format!("defined backends: {}", names.join(", "))
}

fn bind_clash(addr: SocketAddr, other: SocketAddr) -> String {
    if addr == other {
        format!("{addr} is already bound")
    } else {
        format!("{addr} overlaps {other} bound")
    }
}

/// Formats a duration in the largest unit that shows it exactly, in the file's own syntax.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000)] {
        if ms != 0 && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// A non-empty list of configuration errors, in file order. `Display` prints one error per line,
/// each starting with where it is: `FILE:LINE:COLUMN: ` (or as much of that as is known).
#[derive(Debug)]
pub struct ConfigErrors {
    // Split so that non-emptiness holds by construction; boxed to keep `Result<Config, ConfigErrors>`
    // small.
    first: Box<ConfigError>,
    rest: Vec<ConfigError>,
    /// The file the errors are in (Syntax and Io errors also carry it themselves).
    file: Option<PathBuf>,
    /// 1-based (line, column) of each error's field, by index; empty when not known.
    /// Syntax errors keep theirs in the variant.
    positions: Vec<Option<(usize, usize)>>,
}

impl ConfigErrors {
    pub fn new(first: ConfigError) -> Self {
        ConfigErrors {
            first: Box::new(first),
            rest: Vec::new(),
            file: None,
            positions: Vec::new(),
        }
    }

    /// `None` when `errors` is empty.
    pub fn from_vec(errors: Vec<ConfigError>) -> Option<Self> {
        let mut it = errors.into_iter();
        let first = it.next()?;
        Some(ConfigErrors {
            first: Box::new(first),
            rest: it.collect(),
            file: None,
            positions: Vec::new(),
        })
    }

    pub fn first(&self) -> &ConfigError {
        &self.first
    }

    pub fn len(&self) -> usize {
        self.rest.len().saturating_add(1)
    }

    /// Always false; present because clippy expects it next to `len`.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(&*self.first).chain(self.rest.iter())
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        let mut v = Vec::with_capacity(self.len());
        v.push(*self.first);
        v.extend(self.rest);
        v
    }

    /// The file the errors were found in, when they came from [`super::load`].
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// 1-based (line, column) in the file of error `index`'s field, when known: for a Syntax error
    /// its own position; for a validation error, where its field path is in the text (found
    /// by `config::locate`); `None` for a field that is not in the file at all.
    pub fn position(&self, index: usize) -> Option<(usize, usize)> {
        match self.iter().nth(index)? {
            ConfigError::Syntax { line, column, .. } => Some((*line, *column)),
            _ => self.positions.get(index).copied().flatten(),
        }
    }

    /// Records the file name, here and in errors that carry one (Syntax).
    pub(crate) fn with_file(mut self, path: &Path) -> Self {
        for e in std::iter::once(&mut *self.first).chain(self.rest.iter_mut()) {
            if let ConfigError::Syntax { file, .. } = e {
                *file = Some(path.to_path_buf());
            }
        }
        self.file = Some(path.to_path_buf());
        self
    }

    /// Records the 1-based (line, column) of each error's field, by index (`None`: not in the file).
    pub(crate) fn with_positions(mut self, positions: Vec<Option<(usize, usize)>>) -> Self {
        self.positions = positions;
        self
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors::new(e)
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            // Io and Syntax errors print their own file and position.
            if !matches!(e, ConfigError::Io { .. } | ConfigError::Syntax { .. }) {
                match (self.file.as_deref(), self.position(i)) {
                    (file, Some((line, column))) => f.write_str(&location(file, line, column))?,
                    (Some(file), None) => write!(f, "{}: ", file.display())?,
                    (None, None) => {}
                }
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(1)), "1ms");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_secs(120)), "2m");
        assert_eq!(human(Duration::from_secs(86_400)), "24h");
        assert_eq!(human(Duration::ZERO), "0ms");
    }

    #[test]
    fn errors_print_one_per_line() {
        let errors = ConfigErrors::from_vec(vec![
            ConfigError::NoFrontends,
            ConfigError::NoBackends,
            ConfigError::InvalidName {
                field: "backend[0].name".into(),
                value: "a\nb".into(),
                reason: NameError::BadChar('\n'),
            },
        ])
        .unwrap();
        assert_eq!(errors.len(), 3);
        let text = errors.to_string();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().next().unwrap().starts_with("frontend: "));
        assert!(ConfigErrors::from_vec(Vec::new()).is_none());
    }
}
