//! Why a configuration was refused. Every variant names what to fix: the file, the key, the
//! value and where it came from.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown config key `{key}` {origin} (`kvtablet serve --help` lists the keys)")]
    UnknownKey { key: String, origin: String },
    #[error("bad value {value:?} for `{key}` {origin}: {reason}")]
    BadValue { key: String, value: String, origin: String, reason: String },
    #[error("`{argument}` is not KEY=VALUE")]
    BadAssignment { argument: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}
