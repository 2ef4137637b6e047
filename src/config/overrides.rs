//! Command-line overrides: the values of `pathgate serve`'s flags, applied to the file's
//! raw sections *before* the one validation, so a flag is checked exactly as the key it
//! overrides (`--max-body-bytes 0` is refused as `server.max_body_bytes: 0` is), and an
//! error about a key a flag set names the flag.
//!
//! Owns: which flag overrides which key ([`FLAGS`], and `Bound::flag` for the connection
//! keys). Does not own: the flags' clap definitions (`crate::cli::ServeArgs`) nor what a
//! key accepts ([`super::validate`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::connections::BOUNDS;
use super::file::{AuthMode, ConfigFile, LedgerFile, ServerFile};
use crate::policy::Mode;

/// Every flag that overrides a key, by the key's dotted path (connection keys aside: their
/// flags are in [`super::CONNECTION_BOUNDS`]).
pub const FLAGS: [(&str, &str); 15] = [
    ("mode", "--mode"),
    ("server.listen", "--listen"),
    ("server.admin_listen", "--admin-listen"),
    ("server.auth", "--auth"),
    ("server.upstream_kubeconfig", "--upstream-kubeconfig"),
    ("server.context", "--context"),
    ("server.in_cluster", "--in-cluster"),
    ("server.tls_cert", "--tls-cert"),
    ("server.tls_key", "--tls-key"),
    ("server.client_ca", "--client-ca"),
    ("server.client_token_file", "--client-token-file"),
    ("server.max_body_bytes", "--max-body-bytes"),
    ("server.default_session", "--session"),
    ("server.workers", "--workers"),
    ("server.drain_timeout_seconds", "--drain-timeout"),
];
/// `--ledger-dir` overrides `ledger.dir`.
const LEDGER_DIR: (&str, &str) = ("ledger.dir", "--ledger-dir");

/// The flag that overrides `key`, if any.
pub fn flag_of(key: &str) -> Option<&'static str> {
    let connection = BOUNDS.iter().find_map(|b| {
        let bare = key.strip_prefix("server.")?;
        (b.key == bare).then_some(b.flag)
    });
    FLAGS
        .iter()
        .chain([&LEDGER_DIR])
        .find(|(k, _)| *k == key)
        .map(|(_, flag)| *flag)
        .or(connection)
}

/// The values given on the command line; `None` (or `false`) leaves the file's key alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub mode: Option<Mode>,
    pub listen: Option<SocketAddr>,
    /// An address or `off`.
    pub admin_listen: Option<String>,
    pub auth: Option<AuthMode>,
    pub upstream_kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// `--in-cluster` (a switch: absent leaves the file's `in_cluster` alone).
    pub in_cluster: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub client_token_file: Option<PathBuf>,
    pub max_body_bytes: Option<u64>,
    pub default_session: Option<String>,
    pub workers: Option<u64>,
    pub drain_timeout_seconds: Option<u64>,
    pub ledger_dir: Option<PathBuf>,
    /// The connection keys in [`super::CONNECTION_BOUNDS`] order.
    pub connections: [Option<u64>; 9],
}

impl Overrides {
    /// The dotted keys these overrides set.
    pub fn keys(&self) -> Vec<String> {
        let mut file = ConfigFile::default();
        self.apply(&mut file);
        let mut keys = Vec::new();
        if file.mode.is_some() {
            keys.push("mode".to_string());
        }
        if let Some(server) = file.server {
            let value = serde_yaml::to_value(server).expect("the file model always serialises");
            if let serde_yaml::Value::Mapping(map) = value {
                keys.extend(
                    map.keys()
                        .filter_map(|k| k.as_str())
                        .map(|k| format!("server.{k}")),
                );
            }
        }
        if self.ledger_dir.is_some() {
            keys.push(LEDGER_DIR.0.to_string());
        }
        keys
    }

    /// Writes the overrides into the file's raw sections (after its relative paths were
    /// resolved against its directory).
    pub fn apply(&self, file: &mut ConfigFile) {
        if self.mode.is_some() {
            file.mode = self.mode;
        }
        let server = file.server.get_or_insert_with(ServerFile::default);
        set(&mut server.listen, self.listen.map(|a| a.to_string()));
        set(&mut server.admin_listen, self.admin_listen.clone());
        set(&mut server.auth, self.auth);
        set(
            &mut server.upstream_kubeconfig,
            self.upstream_kubeconfig.clone(),
        );
        set(&mut server.context, self.context.clone());
        set(&mut server.in_cluster, self.in_cluster.then_some(true));
        set(&mut server.tls_cert, self.tls_cert.clone());
        set(&mut server.tls_key, self.tls_key.clone());
        set(&mut server.client_ca, self.client_ca.clone());
        set(
            &mut server.client_token_file,
            self.client_token_file.clone(),
        );
        set(&mut server.max_body_bytes, self.max_body_bytes);
        set(&mut server.default_session, self.default_session.clone());
        set(&mut server.workers, self.workers);
        set(
            &mut server.drain_timeout_seconds,
            self.drain_timeout_seconds,
        );
        for (slot, value) in server.connection_slots().into_iter().zip(self.connections) {
            set(slot, value);
        }
        if let Some(dir) = &self.ledger_dir {
            file.ledger.get_or_insert_with(LedgerFile::default).dir = Some(dir.clone());
        }
    }
}

fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}
