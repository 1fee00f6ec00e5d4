//! Configuration: the TOML file ([`file`]), its validation ([`validate`], with [`policy`] and [`tcp`],
//! all reporting through one `checker`) into the runtime types ([`runtime`]), and the errors an
//! operator sees ([`error`]; `syntax` and `locate` give each its line in the file).
//!
//! Validation happens once, at startup; the data plane only ever sees [`Config`], whose values are all
//! within the bounds of [`crate::limits`]. See `configs/reference.toml` for every option.

mod checker;
pub mod error;
pub mod file;
mod locate;
pub mod parse;
pub mod policy;
pub mod runtime;
mod syntax;
pub mod tcp;
pub mod validate;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

/// Re-exported from [`crate::limits`], where every bound lives.
pub use crate::limits::MAX_CONFIG_BYTES;
pub use error::{ConfigError, ConfigErrors};
pub use runtime::*;

/// Reads and validates a config file. The errors name the file, and the line and column of each
/// field found in it.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = read_bounded(path).map_err(|source| ConfigError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    from_toml(&text).map_err(|e| e.with_file(path))
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES.saturating_add(1))
        .read_to_string(&mut text)?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// Validates TOML text. A TOML syntax, unknown-key or wrong-type error stops at that first error (the
/// TOML decoder cannot go on); otherwise every validation error is reported, with the line and column
/// of its field in `text` where it has one.
pub fn from_toml(text: &str) -> Result<Config, ConfigErrors> {
    let file: file::FileConfig =
        toml::from_str(text).map_err(|e| ConfigErrors::new(syntax::from_toml_error(text, &e)))?;
    validate::validate(&file).map_err(|errors| {
        let positions = locate::positions(text, errors.iter().map(ConfigError::field));
        errors.with_positions(positions)
    })
}

/// Quick start without a file: `corelb --listen A --backend B --backend C`: one frontend "quick" binding
/// every `listen` address, one backend "quick" with servers named "s1", "s2"... in round robin, defaults
/// everywhere else. Errors when `listen` or `backends` is empty (field path `--listen` / `--backend`),
/// on duplicate listen addresses, or on backend addresses nothing can listen on (port 0, 0.0.0.0).
pub fn quick(listen: &[SocketAddr], backends: &[SocketAddr]) -> Result<Config, ConfigErrors> {
    validate::quick(listen, backends)
}
