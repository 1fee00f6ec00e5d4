//! The shape of the TOML file, exactly as written by the operator.
//!
//! Nothing here is checked beyond TOML types and key names: numbers are kept as `i64` (TOML's integer
//! type) and addresses, durations and names as strings, so that [`super::validate`] can report a wrong
//! value with its field path, the allowed range and a hint, instead of serde's terse type error.
//! `deny_unknown_fields` everywhere: a misspelt key (`max_conn`) must be an error, never a silently
//! ignored setting.

use serde::Deserialize;

/// The whole file: `[global]`, `[[frontend]]`, `[[backend]]` (singular names, like HAProxy's sections).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub global: GlobalFile,
    #[serde(default)]
    pub frontend: Vec<FrontendFile>,
    #[serde(default)]
    pub backend: Vec<BackendFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalFile {
    pub workers: Option<i64>,
    pub grace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendFile {
    pub name: String,
    /// "http" (default) or "tcp".
    pub mode: Option<String>,
    pub accept_proxy: Option<bool>,
    /// Defaults to empty so that a missing `bind` is reported as `NoBinds`, like `bind = []`.
    #[serde(default)]
    pub bind: Vec<String>,
    pub default_backend: String,
    pub maxconn: Option<i64>,
    pub backlog: Option<i64>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub timeouts: ClientTimeoutsFile,
    #[serde(default)]
    pub route: Vec<RouteFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_request_line: Option<i64>,
    pub max_header_bytes: Option<i64>,
    pub max_headers: Option<i64>,
    pub max_body: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTimeoutsFile {
    pub client_header: Option<String>,
    pub client_keepalive: Option<String>,
    pub client_body: Option<String>,
    /// TCP mode only.
    pub idle: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub backend: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    pub name: String,
    pub algorithm: Option<String>,
    /// For `algorithm = "hash"`: "source", "uri", "header:NAME" or "cookie:NAME".
    pub hash_key: Option<String>,
    pub allbackups: Option<bool>,
    pub slowstart: Option<String>,
    pub check: Option<CheckFile>,
    pub passive: Option<PassiveFile>,
    pub cookie: Option<CookieFile>,
    #[serde(default)]
    pub timeouts: BackendTimeoutsFile,
    #[serde(default)]
    pub pool: PoolFile,
    /// Defaults to empty so that a missing `[[backend.server]]` is reported as `NoServers`.
    #[serde(default)]
    pub server: Vec<ServerFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTimeoutsFile {
    pub connect: Option<String>,
    pub response: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    pub max_idle_per_server: Option<i64>,
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub name: Option<String>,
    pub address: String,
    pub weight: Option<i64>,
    pub backup: Option<bool>,
    /// "up", "drain" or "maint".
    pub state: Option<String>,
    pub maxconn: Option<i64>,
    /// The persistence cookie value for this server.
    pub cookie: Option<String>,
    /// "v1" or "v2".
    pub send_proxy: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    /// "http" or "tcp".
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub interval: Option<String>,
    pub fastinter: Option<String>,
    pub jitter_percent: Option<i64>,
    pub timeout: Option<String>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    /// "200" or "200-399".
    pub expect_status: Option<String>,
    pub expect_body: Option<String>,
    pub disable_on_404: Option<bool>,
    pub start_down: Option<bool>,
    /// MySQL checks: the check account (level 2), the role and the replication lag bound.
    pub user: Option<String>,
    pub password: Option<String>,
    pub role: Option<String>,
    pub max_replication_lag: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveFile {
    pub error_limit: Option<i64>,
    pub eject: Option<String>,
    pub max_eject: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieFile {
    pub name: String,
}
