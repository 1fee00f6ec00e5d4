//! The error collector shared by every validation step ([`super::validate`], [`super::policy`],
//! [`super::tcp`]): range and duration checks that record a [`ConfigError`] and fall back to a
//! default, so one run reports every mistake. It depends on no validation module, so they all depend
//! on it and not on each other.

use std::collections::HashMap;
use std::time::Duration;

use super::error::{ConfigError, ConfigErrors};
use super::parse::{check_name, parse_duration, DurationError};
use crate::limits::{MAX_DURATION, MIN_DURATION};

/// Collects errors while checking.
#[derive(Default)]
pub(super) struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    pub(super) fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    /// `Some(n)` when present and within `[min, max]`; an error when present and outside.
    pub(super) fn int(
        &mut self,
        field: String,
        value: Option<i64>,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let n = value?;
        if n < min || n > max {
            self.push(ConfigError::OutOfRange {
                field,
                value: n,
                min,
                max,
            });
            return None;
        }
        Some(n)
    }

    pub(super) fn duration(
        &mut self,
        field: String,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        let Some(text) = value else {
            return default;
        };
        let out_of_range = |field| ConfigError::DurationOutOfRange {
            field,
            value: text.to_owned(),
            min: MIN_DURATION,
            max: MAX_DURATION,
        };
        match parse_duration(text) {
            Ok(d) if (MIN_DURATION..=MAX_DURATION).contains(&d) => d,
            Ok(_) | Err(DurationError::TooLarge) => {
                self.push(out_of_range(field));
                default
            }
            Err(reason) => {
                self.push(ConfigError::InvalidDuration {
                    field,
                    value: text.to_owned(),
                    reason,
                });
                default
            }
        }
    }

    /// Checks a name and its uniqueness within `seen` (name -> field path of its first entry). Returns
    /// the path to use for the entry: `section["name"]` when the name is valid and new, else
    /// `section[index]`.
    pub(super) fn entry_label(
        &mut self,
        section: &str,
        index: usize,
        name: &str,
        seen: &mut HashMap<String, String>,
        kind: &'static str,
    ) -> String {
        let by_index = format!("{section}[{index}]");
        if let Err(reason) = check_name(name) {
            self.push(ConfigError::InvalidName {
                field: format!("{by_index}.name"),
                value: name.to_owned(),
                reason,
            });
            return by_index;
        }
        if let Some(first) = seen.get(name) {
            self.push(ConfigError::DuplicateName {
                field: format!("{by_index}.name"),
                name: name.to_owned(),
                first: first.clone(),
                kind,
            });
            return by_index;
        }
        let by_name = format!("{section}[\"{name}\"]");
        seen.insert(name.to_owned(), by_name.clone());
        by_name
    }

    pub(super) fn too_many(&mut self, field: String, what: &'static str, count: usize, max: usize) {
        if count > max {
            self.push(ConfigError::TooMany {
                field,
                what,
                count,
                max,
            });
        }
    }

    pub(super) fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        match ConfigErrors::from_vec(self.errors) {
            None => Ok(value),
            Some(errors) => Err(errors),
        }
    }
}
