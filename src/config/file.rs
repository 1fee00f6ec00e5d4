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
}
