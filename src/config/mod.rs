//! Configuration: the YAML file model, its validation, the frozen [`Config`], and policy
//! reloads.
//!
//! Owns: parsing (`serde`, unknown keys refused), validation into [`Config`] (the
//! [`Policy`], [`ServerSettings`], [`LedgerSettings`]), errors that name the file, the key
//! and the reason, the effective configuration printed by `pathgate check-config`, and the
//! [`PolicyHandle`] that swaps the policy atomically on SIGHUP or file change.
//!
//! Command-line flags are an overrides layer ([`Overrides`]) written into the file's raw
//! sections before the one validation ([`Config::load_with`]), so a flag gets every check
//! its key gets and an error names the flag. Every default of a `server:` or `ledger:` key
//! is in [`defaults`].
//!
//! Does not own: the flags' clap definitions (`crate::cli`), the meaning of the ledger
//! settings (the ledger module maps them with `ledger::LedgerSettings::from_config`),
//! or what the policy decides ([`crate::policy`]). No key here is reloadable except the
//! policy ones: `server` and `ledger` changes need a restart, and a reload says so.

mod connections;
pub mod defaults;
mod file;
mod overrides;
mod reload;
mod validate;

#[cfg(test)]
mod doc_table_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use connections::{
    check_value, Bound, ConnectionKeys, ConnectionSettings, BOUNDS as CONNECTION_BOUNDS,
};
pub use file::{
    AuthMode, ConfigFile, LedgerFile, OnFailure, OtlpFile, PreImagesFile, RetryLoopFile,
    SafetyGatesFile, SchemaEnforcementFile, ServerFile, WebhookFile,
};
pub use overrides::{flag_of, Overrides, FLAGS as OVERRIDE_FLAGS};
pub use reload::{watch, watch_with, PolicyHandle};
pub use validate::{
    client_auth_problem, AdminListen, LedgerSettings, OtlpSettings, PreImageSettings,
    ServerSettings, ValidationError, WebhookSettings, MAX_WORKERS,
};

use crate::policy::Policy;

/// The validated configuration, frozen after loading.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub policy: Policy,
    pub server: ServerSettings,
    pub ledger: LedgerSettings,
}

/// Why a configuration file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration file: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key is unknown, has the wrong type, or has a value outside what it accepts.
    #[error("{}{}: {key}: {reason}", file.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        file: PathBuf,
        /// Dotted key path (`safety_gates.max_patch_keys`); `(document)` for the whole file.
        key: String,
        reason: String,
        /// Line and column, when the YAML parser knows them.
        location: Option<(usize, usize)>,
    },
    /// A command-line flag's value is refused (or, with no file, a check between values
    /// that came from flags and defaults).
    #[error("{flag}: {reason}")]
    Flag { flag: String, reason: String },
}

/// A configuration loaded for `pathgate serve`: the file as written, and the file with the
/// command-line overrides, each validated the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The file alone: what a reload compares itself with ([`PolicyHandle::new`]).
    pub file: Config,
    /// The file with the overrides: what pathgate runs with.
    pub effective: Config,
}

impl ConfigError {
    /// The key the error is about (`None` when the file could not be read).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Flag { flag, .. } => Some(flag),
            ConfigError::Read { .. } => None,
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file. Relative paths in it are resolved
    /// against the file's directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let file = read(path)?;
        Config::try_from(file).map_err(|e| invalid_in(path, e))
    }

    /// The file (if any) validated alone, and with `overrides` written over it, validated
    /// again; then the checks that need the final values (a ledger for the sinks). An error
    /// about a key a flag set, or any error when there is no file, names the flag.
    pub fn load_with(path: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        let raw = match path {
            Some(path) => Some((read(path)?, path)),
            None => None,
        };
        Config::validate_with(raw, overrides)
    }

    /// [`Config::load_with`] for YAML text; `file` only names the source in errors.
    pub fn from_yaml_with(
        text: &str,
        file: &Path,
        overrides: &Overrides,
    ) -> Result<Loaded, ConfigError> {
        Config::validate_with(Some((parse(text, file)?, file)), overrides)
    }

    fn validate_with(
        raw: Option<(ConfigFile, &Path)>,
        overrides: &Overrides,
    ) -> Result<Loaded, ConfigError> {
        let path = raw.as_ref().map(|(_, path)| *path);
        let refused = |error: ValidationError| match (path, flag_for(&error.key, overrides)) {
            (Some(path), None) => invalid_in(path, error),
            (Some(_), Some(flag)) => ConfigError::Flag {
                flag: flag.to_string(),
                reason: error.reason,
            },
            // No file: every value is a flag's or a default, so name the flag to set.
            (None, _) => ConfigError::Flag {
                flag: flag_of(&error.key).map(str::to_string).unwrap_or(error.key),
                reason: error.reason,
            },
        };
        let (file, mut with_flags) = match raw {
            Some((raw, path)) => (
                Config::try_from(raw.clone()).map_err(|e| invalid_in(path, e))?,
                raw,
            ),
            None => (Config::default(), ConfigFile::default()),
        };
        overrides.apply(&mut with_flags);
        let effective = Config::try_from(with_flags).map_err(refused)?;
        effective.ledger.check().map_err(refused)?;
        Ok(Loaded { file, effective })
    }

    /// Parses and validates YAML text; `file` only names the source in errors (relative
    /// paths are left as written).
    pub fn from_yaml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let parsed = parse(text, file)?;
        Config::try_from(parsed).map_err(|e| invalid_in(file, e))
    }

    /// The effective configuration as YAML (every key, every rule's action explicit); it
    /// loads back to the same configuration.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.to_file()).expect("the file model always serialises")
    }
}

/// The flag to name in an error about `key`: the one that set it.
fn flag_for(key: &str, overrides: &Overrides) -> Option<&'static str> {
    let set = overrides.keys();
    set.iter().any(|k| k == key).then(|| flag_of(key)).flatten()
}

/// Reads and parses a file, its relative paths resolved against its directory.
fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    let mut file = parse(&text, path)?;
    file.resolve_paths(path.parent().unwrap_or_else(|| Path::new(".")));
    Ok(file)
}

fn invalid_in(file: &Path, error: ValidationError) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        key: error.key,
        reason: error.reason,
        location: None,
    }
}

/// `pathgate check-config FILE`: validates the file and returns the effective
/// configuration as YAML.
pub fn check_config(path: impl AsRef<Path>) -> Result<String, ConfigError> {
    Ok(Config::load(path)?.to_yaml())
}

/// The YAML parse stage, with serde's message split into key and reason.
fn parse(text: &str, file: &Path) -> Result<ConfigFile, ConfigError> {
    // An empty file (or one with only comments) is the default configuration.
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Ok(ConfigFile::default());
    }
    serde_yaml::from_str(text).map_err(|error| {
        let location = error.location().map(|l| (l.line(), l.column()));
        let (key, reason) = split_serde_message(&error.to_string());
        ConfigError::Invalid {
            file: file.to_path_buf(),
            key,
            reason,
            location,
        }
    })
}

/// serde_yaml says `safety_gates.max_patch_keys: invalid type: ... at line 3 column 19`,
/// or `safety_gates: unknown field `foo`, expected one of `a`, `b``. Splits that into the
/// key path and a reason; an unknown field becomes its own key path with the valid keys
/// listed.
fn split_serde_message(message: &str) -> (String, String) {
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    let (path, rest) = match message.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(char::is_whitespace) => {
            (path.to_string(), rest)
        }
        _ => (String::new(), message),
    };
    if let Some(after) = rest.strip_prefix("unknown field `") {
        if let Some((field, expected)) = after.split_once('`') {
            let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let key = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            let reason = if valid.is_empty() {
                "unknown key; this section takes no keys".to_string()
            } else {
                format!("unknown key; valid keys are: {}", valid.join(", "))
            };
            return (key, reason);
        }
    }
    let key = if path.is_empty() {
        "(document)".to_string()
    } else {
        path
    };
    // "expected struct SafetyGatesFile" names a Rust type; say what the file should hold.
    let reason = match rest.find("expected struct ") {
        Some(at) => format!("{}expected a mapping of keys", &rest[..at]),
        None => rest.to_string(),
    };
    (key, reason)
}
