//! `pathgate undo` once its flags are read: the session's entries and window, the plan,
//! the gateway the steps go through (started for the undo, or running), and the report.
//!
//! The steps always go through pathgate, in the session `undo.<ID>`: the undo is gated,
//! recorded and judged like any run (`pathgate autopsy --session undo.<ID>`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::entries::{self, WindowError};
use super::execute::{self, Mode};
use super::plan::{self, ImageProblem, Images};
use super::report::{self, Report, Window};
use crate::autopsy::input::{for_each_entry, InputError, LedgerSource};
use crate::ledger::images::{self, ImageError, ImageStore};
use crate::run::gateway::{GatewayError, StartGateway};
use crate::run::workdir::Throwaway;
use crate::upstream::{Upstream, UpstreamError, UpstreamSource};

/// The gateway the steps go through.
pub enum Target {
    /// A pathgate started for the undo, on loopback, recording into `ledger_dir`.
    Start {
        gateway: Box<StartGateway>,
        /// The CA of its serving certificate.
        ca: PathBuf,
        /// The throwaway certificates, removed when the undo ends.
        certs: Option<Throwaway>,
        ledger_dir: PathBuf,
        /// The bearer token the undo presents (passthrough); `None`: the placeholder a
        /// sidecar gateway drops.
        token: Option<String>,
    },
    /// A running pathgate: the kubeconfig that reaches it, and its URL when given.
    Existing {
        kubeconfig: PathBuf,
        url: Option<String>,
    },
}

/// Everything an undo needs, validated.
pub struct Options {
    pub session: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub mode: Mode,
    pub force_conflicts: bool,
    /// Image store directories, searched in order.
    pub images: Vec<PathBuf>,
    pub secret_key_file: Option<PathBuf>,
    pub ledgers: Vec<String>,
    pub target: Target,
}

/// Why there is no plan.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error(transparent)]
    Ledger(#[from] InputError),
    #[error("session {0} has no entries in the ledger")]
    NoSession(String),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error("--secret-key-file: {0}")]
    Key(ImageError),
    #[error("no image store: give --images DIR (the <ledger.dir>/images of the gateway that recorded the run)")]
    NoImages,
    #[error("the image store {}: {source}", dir.display())]
    Images { dir: PathBuf, source: ImageError },
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("the kubeconfig of the gateway: {0}")]
    Kubeconfig(String),
    #[error("the undo's client: {0}")]
    Client(#[from] UpstreamError),
    #[error("cannot create a private directory: {0}")]
    Dir(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The session the undo of `session` runs in: `undo.<session>`, shortened with a hash of
/// the whole id when that would pass the 128 characters a session id may have.
pub fn undo_session(session: &str) -> String {
    let full = format!("undo.{session}");
    if full.len() <= crate::session::MAX_SESSION_LEN {
        return full;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(session.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    let keep = crate::session::MAX_SESSION_LEN - "undo.".len() - 1 - hex.len();
    format!("undo.{}.{hex}", &session[..keep])
}

/// The image stores `images` names, opened read-only with the key.
pub struct Stores(Vec<(PathBuf, ImageStore)>);

impl Stores {
    pub fn open(dirs: &[PathBuf], key_file: Option<&Path>) -> Result<Stores, UndoError> {
        let mut stores = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let key = match key_file {
                Some(path) => Some(images::load_key(path).map_err(UndoError::Key)?),
                None => None,
            };
            match ImageStore::open_read_only(dir, key) {
                Ok(store) => stores.push((dir.clone(), store)),
                // A spool whose gateway kept no images: its entries carry no digests.
                Err(ImageError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(UndoError::Images {
                        dir: dir.clone(),
                        source,
                    })
                }
            }
        }
        Ok(Stores(stores))
    }
}

impl Images for Stores {
    fn load(&self, digest: &str) -> Result<serde_json::Value, ImageProblem> {
        for (dir, store) in &self.0 {
            match store.get(digest) {
                Ok(image) => return Ok(image),
                Err(ImageError::Missing { .. }) => continue,
                Err(ImageError::Encrypted { .. }) => return Err(ImageProblem::Encrypted),
                Err(ImageError::Corrupt { reason, .. }) => {
                    return Err(ImageProblem::Corrupt(format!(
                        "{}: {reason}",
                        dir.display()
                    )))
                }
                Err(other) => return Err(ImageProblem::Corrupt(other.to_string())),
            }
        }
        Err(ImageProblem::Missing)
    }
}

/// The image directories: `--images`, else each spool's `images/`.
pub fn image_dirs(given: Option<&Path>, ledgers: &[String]) -> Result<Vec<PathBuf>, UndoError> {
    if let Some(dir) = given {
        return Ok(vec![dir.to_path_buf()]);
    }
    let dirs: Vec<_> = ledgers
        .iter()
        .filter_map(|arg| match LedgerSource::from_arg(arg) {
            LedgerSource::Spool(dir) => Some(images::images_dir(&dir)),
            _ => None,
        })
        .collect();
    if dirs.is_empty() {
        return Err(UndoError::NoImages);
    }
    Ok(dirs)
}

/// Reads, plans, and sends the plan; the report (whose exit code says how it ended).
pub fn run(options: Options) -> Result<Report, UndoError> {
    let sources: Vec<_> = options
        .ledgers
        .iter()
        .map(|a| LedgerSource::from_arg(a))
        .collect();
    let mut entries = Vec::new();
    let wanted = |s: &str| s == options.session;
    for_each_entry(&sources, Some(&wanted), &mut |e| entries.push(e))?;
    if entries.is_empty() {
        return Err(UndoError::NoSession(options.session.clone()));
    }
    let window = entries::window(
        &entries,
        &options.session,
        options.since.as_deref(),
        options.until.as_deref(),
    )?;
    let stores = Stores::open(&options.images, options.secret_key_file.as_deref())?;
    let plan = plan::plan(&entries::mutations(window), &stores);
    let undo_session = undo_session(&options.session);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(UndoError::Runtime)?;
    let (gateway, ledger, steps) =
        runtime.block_on(through_gateway(&options, &undo_session, &plan))?;
    let (outcome, message) = report::outcome(options.mode, &steps, &plan.not_undoable);
    Ok(Report {
        schema: report::SCHEMA,
        session: options.session.clone(),
        undo_session,
        mode: options.mode,
        force_conflicts: options.force_conflicts,
        window: Window {
            since: options.since.clone(),
            until: options.until.clone(),
        },
        gateway,
        ledger: ledger.map(|dir| dir.display().to_string()),
        steps,
        not_undoable: plan.not_undoable,
        outcome,
        exit_code: outcome.exit_code(),
        message,
    })
}

type Sent = (String, Option<PathBuf>, Vec<execute::StepReport>);

/// Starts (or reaches) the gateway, sends the steps, stops a started gateway (its drain
/// flushes the undo's entries to its spool).
async fn through_gateway(
    options: &Options,
    undo_session: &str,
    plan: &plan::Plan,
) -> Result<Sent, UndoError> {
    let private = Throwaway::new(undo_session).map_err(UndoError::Dir)?;
    let kubeconfig = private.path().join("kubeconfig");
    match &options.target {
        Target::Start {
            gateway,
            ca,
            ledger_dir,
            token,
            ..
        } => {
            let started = gateway.start().await?;
            let url = started.url.clone();
            let sent = async {
                crate::run::gateway::write_kubeconfig(
                    &url,
                    undo_session,
                    ca,
                    token.as_deref(),
                    None,
                    &kubeconfig,
                )?;
                let client = client(&kubeconfig)?;
                Ok::<_, UndoError>(
                    execute::execute(plan, &client, options.mode, options.force_conflicts).await,
                )
            }
            .await;
            started.stop().await;
            Ok((url, Some(ledger_dir.clone()), sent?))
        }
        Target::Existing {
            kubeconfig: given,
            url,
        } => {
            let url = session_kubeconfig(given, url.as_deref(), undo_session, &kubeconfig)?;
            let client = client(&kubeconfig)?;
            let steps =
                execute::execute(plan, &client, options.mode, options.force_conflicts).await;
            Ok((url, None, steps))
        }
    }
}

fn client(kubeconfig: &Path) -> Result<Upstream, UndoError> {
    Ok(Upstream::load(
        &UpstreamSource::Kubeconfig {
            path: kubeconfig.to_path_buf(),
            context: None,
        },
        Duration::from_secs(10),
        true,
        1,
    )?)
}

/// Writes to `out` the kubeconfig `given` with its current cluster's server set to
/// `url` (else its own scheme and authority) plus `/s/<session>`; returns the gateway URL.
pub fn session_kubeconfig(
    given: &Path,
    url: Option<&str>,
    session: &str,
    out: &Path,
) -> Result<String, UndoError> {
    let bad = |reason: String| UndoError::Kubeconfig(format!("{}: {reason}", given.display()));
    let text = std::fs::read_to_string(given).map_err(|e| bad(e.to_string()))?;
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let context_name = config["current-context"]
        .as_str()
        .ok_or_else(|| bad("no current-context".into()))?
        .to_string();
    let find = |list: &serde_yaml::Value, name: &str| {
        list.as_sequence().and_then(|items| {
            items
                .iter()
                .position(|item| item["name"].as_str() == Some(name))
        })
    };
    let context = find(&config["contexts"], &context_name)
        .ok_or_else(|| bad(format!("no context {context_name}")))?;
    let cluster_name = config["contexts"][context]["context"]["cluster"]
        .as_str()
        .ok_or_else(|| bad(format!("context {context_name} names no cluster")))?
        .to_string();
    let cluster = find(&config["clusters"], &cluster_name)
        .ok_or_else(|| bad(format!("no cluster {cluster_name}")))?;
    let server = config["clusters"][cluster]["cluster"]["server"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let uri: http::Uri = server
                .parse()
                .map_err(|_| bad(format!("server {server:?} is not a URL")))?;
            let authority = uri
                .authority()
                .ok_or_else(|| bad(format!("server {server:?} has no host")))?;
            format!("https://{authority}")
        }
    };
    config["clusters"][cluster]["cluster"]["server"] = format!("{base}/s/{session}").into();
    let rendered = serde_yaml::to_string(&config).map_err(|e| bad(e.to_string()))?;
    std::fs::write(out, rendered).map_err(|e| bad(e.to_string()))?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_undo_session_is_a_valid_id_for_any_valid_session() {
        assert_eq!(undo_session("run-1"), "undo.run-1");
        let long = "a".repeat(128);
        let undo = undo_session(&long);
        assert!(crate::session::is_valid_id(&undo), "{undo}");
        assert_eq!(undo.len(), 128);
        assert_ne!(undo, undo_session(&format!("{}b", "a".repeat(127))));
    }

    #[test]
    fn a_running_gateway_s_kubeconfig_is_pointed_at_the_undo_session() {
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("kc");
        std::fs::write(
            &given,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: other\n  cluster: {server: 'https://10.0.0.1:6443'}\n- name: g\n  cluster: {server: 'https://127.0.0.1:8443/s/run-7', certificate-authority-data: Zm9v}\ncontexts:\n- name: c\n  context: {cluster: g, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
        )
        .unwrap();
        let out = dir.path().join("out");
        let url = session_kubeconfig(&given, None, "undo.run-7", &out).unwrap();
        assert_eq!(url, "https://127.0.0.1:8443");
        let written: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(
            written["clusters"][1]["cluster"]["server"].as_str(),
            Some("https://127.0.0.1:8443/s/undo.run-7")
        );
        assert_eq!(
            written["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://10.0.0.1:6443"),
            "other clusters untouched"
        );
        let url = session_kubeconfig(&given, Some("https://[::1]:9443/"), "undo.x", &out).unwrap();
        assert_eq!(url, "https://[::1]:9443");
    }
}
