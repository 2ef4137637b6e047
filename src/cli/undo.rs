//! `pathgate undo`: its flags and their translation into [`crate::undo::command`]'s
//! options — the session and window, dry run or apply, the image store and its key, and
//! the gateway the steps go through: a running one (`--kubeconfig` that reaches it,
//! `--gateway` to override its URL) or one started for the undo with `serve`'s flags.

use std::path::PathBuf;

use clap::Args;

use crate::proxy::AuthMode;
use crate::run::gateway::StartGateway;
use crate::run::workdir::{self, Throwaway};
use crate::undo::command::{self, Options, Target, UndoError};
use crate::undo::execute::Mode;
use crate::undo::report::EXIT_CODES;

/// `127.0.0.1:0`: a free loopback port, for the started gateway's listeners.
const ANY_LOOPBACK_PORT: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Text or JSON.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UndoFormat {
    #[default]
    Text,
    Json,
}

/// `pathgate undo --session ID [OPTIONS] LEDGER...`
#[derive(Args, Debug)]
#[command(
    after_help = EXIT_CODES,
    mut_arg("session", |a| a.required(true).help("The session (run) to undo; the undo runs in session undo.<ID>")),
    mut_arg("config", |a| a.help("Configuration file (YAML) of the started gateway: its policy and ledger settings; its listeners and ledger.dir are not used")),
    mut_arg("listen", |a| a.help("Address the started gateway listens on [default: 127.0.0.1:0, a free port]")),
    mut_arg("tls_cert", |a| a.help("Not used: the started gateway serves a throwaway certificate only the undo trusts")),
    mut_arg("tls_key", |a| a.help("Not used (see --tls-cert)")),
    mut_arg("auth", |a| a.help("sidecar: the started gateway presents the upstream kubeconfig's credentials; passthrough: the undo presents the upstream kubeconfig's token through it [default: sidecar]")),
    mut_arg("admin_listen", |a| a.help("Admin listener of the started gateway, or \"off\" [default: 127.0.0.1:0]")),
    mut_arg("ledger_dir", |a| a.help("The started gateway's spool, where the undo session is recorded [default: a fresh temporary directory, printed]")),
)]
pub struct UndoArgs {
    /// Start at the first entry of this trace id [default: the session's first].
    #[arg(long)]
    since: Option<String>,
    /// End at the last entry of this trace id [default: the session's last].
    #[arg(long)]
    until: Option<String>,
    /// Send every step with dryRun=All and report the answers (the default).
    #[arg(long, conflicts_with = "apply")]
    dry_run: bool,
    /// Send each step as a dry run, then for real, stopping at the first failure.
    #[arg(long)]
    apply: bool,
    /// Send a step whose object changed since the run anyway: a patch without its
    /// resourceVersion test (it still writes only the run's fields), a delete guarded by
    /// the uid only.
    #[arg(long)]
    force_conflicts: bool,
    /// text: the readable plan; json: one pathgate.undo/v1 document.
    #[arg(long, value_enum, default_value_t)]
    format: UndoFormat,
    /// The image store [default: images/ in each spool directory given].
    #[arg(long)]
    images: Option<PathBuf>,
    /// The key that opens sealed Secret images (ledger.pre_images.secret_key_file).
    #[arg(long)]
    secret_key_file: Option<PathBuf>,
    /// The URL (https://host:port) of the running pathgate [default: --kubeconfig's server].
    #[arg(long, requires = "kubeconfig")]
    gateway: Option<String>,
    /// A kubeconfig that reaches a running pathgate (its session prefix is replaced by
    /// undo.<ID>); without it, a gateway is started with serve's flags.
    #[arg(
        long,
        conflicts_with_all = ["config", "mode", "upstream_kubeconfig", "context", "in_cluster", "auth", "listen", "admin_listen", "workers", "client_ca", "client_token_file", "ledger_dir"]
    )]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    serve: crate::cli::ServeArgs,
    /// The run's ledger: spool directories or JSONL files.
    #[arg(required = true)]
    ledgers: Vec<String>,
}

/// Why the flags do not make an undo.
#[derive(Debug, thiserror::Error)]
pub enum UndoArgsError {
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Gateway(#[from] crate::cli::GatewayError),
    #[error("the throwaway certificates: {0}")]
    Certs(#[from] crate::tls::TlsError),
    #[error("cannot create the directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--auth impersonate derives the user from a client certificate the undo does not have; start `pathgate serve --auth impersonate` and give --kubeconfig")]
    Impersonate,
    #[error("--auth passthrough: the upstream kubeconfig has no token to present: {0}")]
    Token(String),
    #[error(transparent)]
    Undo(#[from] UndoError),
}

/// `pathgate undo`: prints the report; returns its exit code (1 with the reason when
/// there is no plan).
pub fn run(args: UndoArgs) -> u8 {
    let format = args.format;
    let given_ledger = args.serve.ledger_dir.is_some();
    let outcome = args.into_options().and_then(|options| {
        // A spool made for this undo and left empty (no plan, so no gateway ran) is
        // removed again; `remove_dir` leaves a directory that holds anything.
        let fresh = match &options.target {
            Target::Start { ledger_dir, .. } if !given_ledger => Some(ledger_dir.clone()),
            _ => None,
        };
        command::run(options).map_err(|error| {
            if let Some(dir) = fresh {
                let _ = std::fs::remove_dir(dir);
            }
            UndoArgsError::from(error)
        })
    });
    match outcome {
        Ok(report) => {
            match format {
                UndoFormat::Text => print!("{}", report.text()),
                UndoFormat::Json => print!("{}", report.json()),
            }
            report.exit_code
        }
        Err(error) => {
            eprintln!("pathgate undo: {error}");
            1
        }
    }
}

impl UndoArgs {
    fn into_options(self) -> Result<Options, UndoArgsError> {
        let session = self.serve.session.clone().expect("clap requires --session");
        if !crate::session::is_valid_id(&session) {
            return Err(crate::session::SessionError::InvalidId(session).into());
        }
        let images = command::image_dirs(self.images.as_deref(), &self.ledgers)?;
        let target = match &self.kubeconfig {
            Some(kubeconfig) => Target::Existing {
                kubeconfig: kubeconfig.clone(),
                url: self.gateway.clone(),
            },
            None => self.start_gateway(&command::undo_session(&session))?,
        };
        Ok(Options {
            session,
            since: self.since,
            until: self.until,
            mode: if self.apply {
                Mode::Apply
            } else {
                Mode::DryRun
            },
            force_conflicts: self.force_conflicts,
            images,
            secret_key_file: self.secret_key_file,
            ledgers: self.ledgers,
            target,
        })
    }

    /// A gateway for the undo: serve's flags with the undo's session, loopback listeners
    /// on free ports, throwaway certificates, its own spool, sidecar unless told.
    fn start_gateway(&self, undo_session: &str) -> Result<Target, UndoArgsError> {
        let dir_error = |path: PathBuf| move |source| UndoArgsError::Dir { path, source };
        let ledger_dir = match &self.serve.ledger_dir {
            Some(dir) => {
                workdir::ensure_dir(dir).map_err(dir_error(dir.clone()))?;
                dir.clone()
            }
            None => workdir::fresh_temp_dir(&format!("{undo_session}-ledger"))
                .map_err(dir_error(std::env::temp_dir()))?,
        };
        let certs = Throwaway::new(undo_session).map_err(dir_error(std::env::temp_dir()))?;
        let files = crate::tls::init_certs(certs.path(), &[], false)?;
        let mut serve = self.serve.clone();
        serve.tls_cert = Some(files.server_cert);
        serve.tls_key = Some(files.server_key);
        serve.listen = Some(serve.listen.unwrap_or(ANY_LOOPBACK_PORT));
        serve.admin_listen = Some(
            serve
                .admin_listen
                .clone()
                .unwrap_or_else(|| ANY_LOOPBACK_PORT.to_string()),
        );
        serve.session = Some(undo_session.to_string());
        serve.ledger_dir = Some(ledger_dir.clone());
        if serve.auth.is_none() {
            serve.auth = Some(AuthMode::Sidecar);
        }
        let config = serve.load_config()?;
        let auth = config.effective.server.auth.unwrap_or(AuthMode::Sidecar);
        let gateway = serve.gateway(config)?;
        let token = match auth {
            AuthMode::Impersonate => return Err(UndoArgsError::Impersonate),
            AuthMode::Sidecar => None,
            AuthMode::Passthrough => Some(upstream_token(&gateway.options.upstream)?),
        };
        Ok(Target::Start {
            gateway: Box::new(StartGateway {
                options: gateway.options,
                policy: gateway.policy,
            }),
            ca: files.ca_cert,
            certs: Some(certs),
            ledger_dir,
            token,
        })
    }
}

/// The upstream kubeconfig's own bearer token (passthrough presents it through pathgate).
fn upstream_token(source: &crate::upstream::UpstreamSource) -> Result<String, UndoArgsError> {
    let upstream =
        crate::upstream::Upstream::load(source, std::time::Duration::from_secs(10), true, 1)
            .map_err(|e| UndoArgsError::Token(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UndoArgsError::Token(e.to_string()))?;
    match runtime.block_on(upstream.own_token()) {
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err(UndoArgsError::Token("it authenticates with a client certificate, which cannot pass through pathgate; use --auth sidecar".into())),
        Err(error) => Err(UndoArgsError::Token(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        undo: UndoArgs,
    }

    fn parse(args: &[&str]) -> Result<UndoArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("undo").chain(args.iter().copied())).map(|c| c.undo)
    }

    #[test]
    fn the_session_and_a_ledger_are_required_and_dry_run_is_the_default() {
        assert!(parse(&["spool"]).is_err(), "--session is required");
        assert!(
            parse(&["--session", "run-1"]).is_err(),
            "a ledger is required"
        );
        let args = parse(&["--session", "run-1", "spool"]).unwrap();
        assert!(!args.apply && !args.force_conflicts);
        assert_eq!(args.format, UndoFormat::Text);
        let error = parse(&["--session", "r", "--dry-run", "--apply", "spool"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn a_running_gateway_takes_no_serve_flags() {
        let running = ["--session", "r", "--kubeconfig", "kc"];
        assert!(parse(&[&running[..], &["spool"]].concat()).is_ok());
        for flag in [
            ["--upstream-kubeconfig", "x"],
            ["--mode", "observe"],
            ["--ledger-dir", "d"],
        ] {
            let error = parse(&[&running[..], &flag[..], &["spool"]].concat()).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flag:?}"
            );
        }
        assert!(
            parse(&[
                "--session",
                "r",
                "--gateway",
                "https://127.0.0.1:1",
                "spool"
            ])
            .is_err(),
            "--gateway needs --kubeconfig"
        );
    }

    #[test]
    fn the_help_documents_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for line in [
            "0  every step",
            "3  a conflict",
            "4  a step failed",
            "5  every step went through",
        ] {
            assert!(help.contains(line), "{line} in {help}");
        }
    }

    #[test]
    fn without_a_spool_the_image_store_must_be_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ledger.jsonl");
        std::fs::write(&file, "").unwrap();
        let args = parse(&[
            "--session",
            "r",
            "--kubeconfig",
            "kc",
            file.to_str().unwrap(),
        ])
        .unwrap();
        let error = args.into_options().err().expect("no image store");
        assert!(error.to_string().contains("--images"), "{error}");
    }
}
