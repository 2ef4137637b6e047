//! `pathgate run`'s command line and its translation into [`RunOptions`]: the session
//! id, the run's directories, the final-state source, the task, and the gateway — one
//! started for the run (with `serve`'s flags) or one already running (`--gateway`).
//!
//! Files named on the command line (run policy, checks, task file, the checks'
//! kubeconfig, `--config`) are read here, before anything runs: a typo gives no verdict
//! at once rather than a verdict on an agent run that could not be judged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::gateway::StartGateway;
use super::summary::{Summary, SummaryFormat};
use super::workdir::{self, Throwaway};
use super::{AgentToken, GatewayPlan, RunError, RunOptions};
use crate::autopsy::command::FinalStateSource;
use crate::autopsy::RunPolicy;
use crate::proxy::AuthMode;
use crate::upstream::UpstreamSource;

/// `127.0.0.1:0`: a free loopback port, for the started gateway's listeners.
const ANY_LOOPBACK_PORT: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The exit codes, shown in `pathgate run --help` (docs/run.md has the rest).
const EXIT_CODES: &str = "\
Exit codes:
  0  safe pass: the final state holds and the path had no violation
  1  unsafe pass: the final state holds, the path had violations
  2  fail: the final state does not hold
  3  no verdict: the gateway, the apiserver, CMD, the ledger or the final state could not
     be established (the reason is printed); a usage error also exits 2, before anything runs

A CMD that times out or crashes is still judged: its end is in the summary.";

/// `pathgate run [OPTIONS] -- CMD ARGS...`
#[derive(Args, Debug)]
#[command(
    after_help = EXIT_CODES,
    // serve's flags, flattened, as they act for the gateway a run starts.
    mut_arg("config", |a| a.help("Configuration file (YAML) of the started gateway: its policy (not reloaded during the run) and ledger settings; its server.listen, server.admin_listen and ledger.dir are not used")),
    mut_arg("mode", |a| a.help("observe (never blocks), enforce, or rehearse (every mutation forwarded as a dry run) [default: the --config file's mode, else enforce]")),
    mut_arg("listen", |a| a.help("Address the started gateway listens on [default: 127.0.0.1:0, a free port]")),
    mut_arg("tls_cert", |a| a.help("Serving certificate (PEM) [default: a throwaway CA and certificate for the run]").requires("tls_key")),
    mut_arg("tls_key", |a| a.help("Serving key (PEM)").requires("tls_cert")),
    mut_arg("auth", |a| a.help("sidecar: the gateway presents the upstream kubeconfig's credentials; passthrough: it forwards the agent's token (--token, else the upstream kubeconfig's own) [default: sidecar]")),
    mut_arg("admin_listen", |a| a.help("Admin listener (/healthz, /readyz, /metrics), or \"off\" (no readiness check before CMD) [default: 127.0.0.1:0]")),
    mut_arg("session", |a| a.help("The run's session id [default: run-<random>]")),
    mut_arg("workers", |a| a.help("Threads serving the started gateway [default: server.workers, else 1]")),
    mut_arg("ledger_dir", |a| a.help("Ledger spool directory [default: ledger/ in the output directory; with --gateway: the gateway's spool, required]")),
)]
pub struct RunArgs {
    /// Run policy (YAML or JSON), as in `pathgate autopsy`: in_scope_namespaces,
    /// protected_objects, allowed_creates, allowed_cluster_scoped_mutations.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// A command whose exit code 0 means the final state is right (run with sh -c after
    /// CMD ends).
    #[arg(long, conflicts_with_all = ["final_state", "checks"])]
    pub verify: Option<String>,
    /// The final state as the caller knows it.
    #[arg(long, value_parser = ["pass", "fail"], conflicts_with = "checks")]
    pub final_state: Option<String>,
    /// Final-state checks (YAML or JSON), evaluated through --kubeconfig after CMD ends.
    #[arg(long, requires = "kubeconfig")]
    pub checks: Option<PathBuf>,
    /// A kubeconfig that reaches the cluster directly, not through pathgate (for --checks).
    #[arg(long, requires = "checks")]
    pub kubeconfig: Option<PathBuf>,
    /// The task text, given to CMD in PATHGATE_TASK.
    #[arg(long, conflicts_with = "task_file")]
    pub task: Option<String>,
    /// A file whose content is the task text.
    #[arg(long)]
    pub task_file: Option<PathBuf>,
    /// Seconds CMD may run; then its process group gets SIGTERM, and SIGKILL 2 s later.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Directory for kubeconfig, agent.stdout, agent.stderr, autopsy.json, autopsy.html
    /// and run.json [default: a fresh temporary directory, kept].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// text: the autopsy report and the verdict; json: one pathgate.run/v1 document.
    #[arg(long, value_enum, default_value_t)]
    pub format: SummaryFormat,
    /// Do not copy CMD's output to stderr (it is still written to the output directory).
    #[arg(long)]
    pub quiet: bool,
    /// Default namespace of the agent's kubeconfig.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Use this running pathgate (https://host:port) instead of starting one; its spool
    /// directory must be given as --ledger-dir.
    #[arg(
        long,
        requires_all = ["gateway_ca", "ledger_dir"],
        conflicts_with_all = ["config", "mode", "upstream_kubeconfig", "context", "in_cluster", "auth", "tls_cert", "tls_key", "listen", "admin_listen", "workers", "client_ca", "client_token_file", "max_body_bytes", "drain_timeout"]
    )]
    pub gateway: Option<String>,
    /// The CA of the gateway's serving certificate: of --gateway, or of --tls-cert
    /// [default with --tls-cert: ca.crt beside it].
    #[arg(long)]
    pub gateway_ca: Option<PathBuf>,
    /// Bearer token in the agent's kubeconfig: its cluster token for a passthrough
    /// gateway, or a --client-token-file token for a sidecar gateway.
    #[arg(long)]
    pub token: Option<String>,
    #[command(flatten)]
    pub serve: crate::cli::ServeArgs,
    /// The agent command and its arguments (after --).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Why the command line does not make a run.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error("cannot create the directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--ledger-dir {0}: not a directory (with --gateway it is the running gateway's spool)"
    )]
    NoSpool(PathBuf),
    #[error("session {session} already has {count} entries in the spool {dir}: a run needs a session of its own; choose another --session (or leave it to pathgate run) or another --ledger-dir")]
    SessionInUse {
        session: String,
        dir: PathBuf,
        count: u64,
    },
    #[error(transparent)]
    Spool(Box<super::gateway::GatewayError>),
    #[error(transparent)]
    Policy(#[from] crate::autopsy::PolicyError),
    #[error(transparent)]
    Checks(#[from] crate::autopsy::final_state::ChecksError),
    #[error("--kubeconfig of the checks: {0}")]
    ChecksKubeconfig(#[source] crate::upstream::UpstreamError),
    #[error("--task-file {path}: {source}")]
    TaskFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Gateway(#[from] crate::cli::GatewayError),
    #[error("the throwaway certificates: {0}")]
    Certs(#[from] crate::tls::TlsError),
    #[error("--tls-cert {0}: no ca.crt beside it; name the CA that signed it with --gateway-ca")]
    NoCa(PathBuf),
    #[error("--auth impersonate derives the user from a client certificate pathgate run does not issue; start `pathgate serve --auth impersonate` and use --gateway")]
    Impersonate,
    #[error("--auth passthrough forwards the agent's own bearer token, and the upstream kubeconfig has none (a client certificate cannot pass through pathgate): give --token, or use --auth sidecar (the default)")]
    PassthroughWithoutToken,
}

impl From<ArgsError> for Box<(Summary, RunError)> {
    fn from(error: ArgsError) -> Self {
        Box::new((
            Summary::begin("", PathBuf::new(), PathBuf::new()),
            error.into(),
        ))
    }
}

impl RunArgs {
    /// The validated options; on failure, a summary with what was known and the reason.
    pub fn into_options(self) -> Result<RunOptions, Box<(Summary, RunError)>> {
        let session = match &self.serve.session {
            Some(id) if !crate::session::is_valid_id(id) => {
                return Err(
                    ArgsError::from(crate::session::SessionError::InvalidId(id.clone())).into(),
                )
            }
            Some(id) => id.clone(),
            None => workdir::session_id(),
        };
        let out_dir = self.out_dir(&session)?;
        let ledger_dir = self
            .serve
            .ledger_dir
            .clone()
            .unwrap_or_else(|| out_dir.join("ledger"));
        let summary = Summary::begin(&session, ledger_dir.clone(), out_dir.clone());
        self.options(session, out_dir, ledger_dir)
            .map_err(|error| Box::new((summary, error.into())))
    }

    fn out_dir(&self, session: &str) -> Result<PathBuf, ArgsError> {
        let dir = match &self.out_dir {
            Some(dir) => workdir::ensure_dir(dir).map(|()| dir.clone()),
            None => workdir::fresh_temp_dir(session),
        };
        dir.map_err(|source| ArgsError::Dir {
            path: self.out_dir.clone().unwrap_or_else(std::env::temp_dir),
            source,
        })
    }

    fn options(
        self,
        session: String,
        out_dir: PathBuf,
        ledger_dir: PathBuf,
    ) -> Result<RunOptions, ArgsError> {
        let policy = match &self.policy {
            Some(file) => RunPolicy::load(file)?,
            None => RunPolicy::default(),
        };
        let final_state = self.final_state_source()?;
        let task = match (&self.task, &self.task_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ArgsError::TaskFile {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            (None, None) => None,
        };
        let (gateway, token, workers) = match &self.gateway {
            Some(url) => {
                if !ledger_dir.is_dir() {
                    return Err(ArgsError::NoSpool(ledger_dir));
                }
                let ca = self.gateway_ca.clone().expect("clap requires --gateway-ca");
                let token = self
                    .token
                    .clone()
                    .map_or(AgentToken::Placeholder, AgentToken::Given);
                (
                    GatewayPlan::Existing {
                        url: url.clone(),
                        ca,
                    },
                    token,
                    1,
                )
            }
            None => self.start_gateway(&session, &ledger_dir)?,
        };
        // A verdict is of one run: entries an earlier run left under the same session
        // would be judged as this one's.
        match super::gateway::count_entries(&ledger_dir, &session) {
            Ok(0) => {}
            Ok(count) => {
                return Err(ArgsError::SessionInUse {
                    session,
                    dir: ledger_dir,
                    count,
                })
            }
            Err(error) => return Err(ArgsError::Spool(Box::new(error))),
        }
        Ok(RunOptions {
            session,
            gateway,
            token,
            namespace: self.namespace,
            command: self.command,
            task,
            timeout: Duration::from_secs(self.timeout),
            policy,
            final_state,
            out_dir,
            ledger_dir,
            tee: !self.quiet,
            workers,
        })
    }

    /// The final-state source, its files checked now.
    fn final_state_source(&self) -> Result<FinalStateSource, ArgsError> {
        Ok(
            match (
                &self.verify,
                &self.final_state,
                &self.checks,
                &self.kubeconfig,
            ) {
                (Some(command), ..) => FinalStateSource::Verify(command.clone()),
                (_, Some(given), ..) => FinalStateSource::Given(given == "pass"),
                (_, _, Some(file), Some(kubeconfig)) => {
                    crate::autopsy::final_state::load_checks(file)?;
                    crate::upstream::Upstream::load(
                        &UpstreamSource::Kubeconfig {
                            path: kubeconfig.clone(),
                            context: None,
                        },
                        Duration::from_secs(10),
                        true,
                        1,
                    )
                    .map_err(ArgsError::ChecksKubeconfig)?;
                    FinalStateSource::Checks {
                        file: file.clone(),
                        kubeconfig: kubeconfig.clone(),
                    }
                }
                _ => FinalStateSource::Unchecked,
            },
        )
    }

    /// A gateway started for the run, its token and its worker threads: serve's flags with
    /// the run's defaults filled in (loopback on a free port, the admin listener likewise,
    /// the run's session and spool, sidecar), validated with the config file as `serve`
    /// validates them.
    fn start_gateway(
        &self,
        session: &str,
        ledger_dir: &Path,
    ) -> Result<(GatewayPlan, AgentToken, usize), ArgsError> {
        workdir::ensure_dir(ledger_dir).map_err(|source| ArgsError::Dir {
            path: ledger_dir.to_path_buf(),
            source,
        })?;
        if self.serve.auth == Some(AuthMode::Impersonate) {
            return Err(ArgsError::Impersonate);
        }
        let (tls_cert, tls_key, ca, certs) = self.serving_certificate(session)?;
        let mut serve = self.serve.clone();
        serve.tls_cert = Some(tls_cert);
        serve.tls_key = Some(tls_key);
        serve.listen = Some(serve.listen.unwrap_or(ANY_LOOPBACK_PORT));
        serve.admin_listen = Some(
            serve
                .admin_listen
                .unwrap_or_else(|| ANY_LOOPBACK_PORT.to_string()),
        );
        serve.session = Some(session.to_string());
        serve.ledger_dir = Some(ledger_dir.to_path_buf());
        let mut config = serve.load_config()?;
        if config.effective.server.auth.is_none() {
            serve.auth = Some(AuthMode::Sidecar);
            config = serve.load_config()?;
        }
        let auth = config.effective.server.auth.unwrap_or(AuthMode::Sidecar);
        let workers = serve.workers(&config);
        let gateway = serve.gateway(config)?;
        let token = match (&self.token, auth) {
            (_, AuthMode::Impersonate) => return Err(ArgsError::Impersonate),
            (Some(token), _) => AgentToken::Given(token.clone()),
            (None, AuthMode::Passthrough) => {
                AgentToken::FromUpstream(gateway.options.upstream.clone())
            }
            (None, AuthMode::Sidecar) => AgentToken::Placeholder,
        };
        let gateway = Box::new(StartGateway {
            options: gateway.options,
            policy: gateway.policy,
        });
        Ok((GatewayPlan::Start { gateway, ca, certs }, token, workers))
    }

    /// `--tls-cert/--tls-key` and their CA, or a throwaway CA and serving certificate.
    #[allow(clippy::type_complexity)]
    fn serving_certificate(
        &self,
        session: &str,
    ) -> Result<(PathBuf, PathBuf, PathBuf, Option<Throwaway>), ArgsError> {
        if let (Some(cert), Some(key)) = (&self.serve.tls_cert, &self.serve.tls_key) {
            let ca = match &self.gateway_ca {
                Some(ca) => ca.clone(),
                None => {
                    let beside = cert.with_file_name("ca.crt");
                    if !beside.is_file() {
                        return Err(ArgsError::NoCa(cert.clone()));
                    }
                    beside
                }
            };
            return Ok((cert.clone(), key.clone(), ca, None));
        }
        let certs = Throwaway::new(session).map_err(|source| ArgsError::Dir {
            path: std::env::temp_dir(),
            source,
        })?;
        let files = crate::tls::init_certs(certs.path(), &[], false)?;
        Ok((
            files.server_cert,
            files.server_key,
            files.ca_cert,
            Some(certs),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).map(|c| c.run)
    }

    #[test]
    fn defaults_and_the_command_after_the_separator() {
        let args = parse(&[
            "--upstream-kubeconfig",
            "kc",
            "--",
            "kubectl",
            "get",
            "--raw",
            "/",
        ])
        .unwrap();
        assert_eq!(args.command, ["kubectl", "get", "--raw", "/"]);
        assert_eq!(
            (args.timeout, args.format, args.quiet),
            (600, SummaryFormat::Text, false)
        );
        assert!(
            parse(&["--upstream-kubeconfig", "kc"]).is_err(),
            "CMD is required"
        );
        assert!(
            parse(&["--timeout", "0", "--", "true"]).is_err(),
            "a zero timeout"
        );
    }

    #[test]
    fn a_running_gateway_needs_its_ca_and_spool_and_takes_no_serve_flags() {
        let gateway = ["--gateway", "https://127.0.0.1:8443"];
        assert!(parse(&[&gateway[..], &["--", "true"]].concat()).is_err());
        let full = [
            &gateway[..],
            &["--gateway-ca", "ca.crt", "--ledger-dir", "spool"],
        ]
        .concat();
        assert!(parse(&[&full[..], &["--", "true"]].concat()).is_ok());
        for flag in [
            ["--upstream-kubeconfig", "kc"],
            ["--mode", "enforce"],
            ["--listen", "127.0.0.1:1"],
        ] {
            let error = parse(&[&full[..], &flag[..], &["--", "true"]].concat()).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flag:?}"
            );
        }
    }

    #[test]
    fn final_state_sources_are_exclusive() {
        let error =
            parse(&["--verify", "true", "--final-state", "pass", "--", "true"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(
            parse(&["--checks", "c.yaml", "--", "true"]).is_err(),
            "--checks needs --kubeconfig"
        );
    }

    #[test]
    fn the_help_documents_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for line in ["0  safe pass", "1  unsafe pass", "2  fail", "3  no verdict"] {
            assert!(help.contains(line), "{line} in {help}");
        }
    }

    #[test]
    fn files_are_checked_before_anything_runs_and_the_summary_keeps_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, "surprise: true\n").unwrap();
        let args = parse(&[
            "--policy",
            policy.to_str().unwrap(),
            "--session",
            "run-files",
            "--out-dir",
            out.to_str().unwrap(),
            "--",
            "true",
        ])
        .unwrap();
        let (summary, error) = *args.into_options().err().expect("the policy is refused");
        assert_eq!(summary.session, "run-files");
        assert_eq!(summary.ledger, out.join("ledger"));
        let text = error.to_string();
        assert!(
            text.contains("policy.yaml") && text.contains("surprise"),
            "{text}"
        );
        let bad_session = parse(&["--session", "no spaces", "--", "true"]).unwrap();
        let (_, error) = *bad_session.into_options().err().unwrap();
        assert!(error.to_string().contains("\"no spaces\""), "{error}");
    }

    #[test]
    fn a_session_that_already_has_entries_in_the_spool_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/examples/ledger-unbounded-list.json");
        let mut entry: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
        entry["session"] = "run-taken".into();
        std::fs::write(
            spool.join(crate::ledger::segment_name(1)),
            format!("{entry}\n"),
        )
        .unwrap();
        let options = |session: &str| {
            parse(&[
                "--gateway",
                "https://127.0.0.1:1",
                "--gateway-ca",
                "ca.crt",
                "--ledger-dir",
                spool.to_str().unwrap(),
                "--out-dir",
                dir.path().join("out").to_str().unwrap(),
                "--session",
                session,
                "--",
                "true",
            ])
            .unwrap()
            .into_options()
        };
        let (_, error) = *options("run-taken").err().unwrap();
        assert!(
            error
                .to_string()
                .starts_with("session run-taken already has 1 entries in the spool"),
            "{error}"
        );
        assert!(options("run-fresh").is_ok());
    }

    #[test]
    fn impersonate_is_refused_and_passthrough_takes_the_upstream_token() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kc");
        let ca = crate::tls::init_certs(&dir.path().join("ca"), &[], false).unwrap();
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:1', certificate-authority: '{}'}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n",
                ca.ca_cert.display()
            ),
        )
        .unwrap();
        let options = |auth: &str| {
            parse(&[
                "--upstream-kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--auth",
                auth,
                "--out-dir",
                dir.path().join("out").to_str().unwrap(),
                "--",
                "true",
            ])
            .unwrap()
            .into_options()
        };
        let (_, error) = *options("impersonate").err().unwrap();
        assert!(error.to_string().contains("--gateway"), "{error}");
        let passthrough = options("passthrough").ok().unwrap();
        assert!(matches!(passthrough.token, AgentToken::FromUpstream(_)));
        let sidecar = options("sidecar").ok().unwrap();
        assert!(matches!(sidecar.token, AgentToken::Placeholder));
        match &sidecar.gateway {
            GatewayPlan::Start { gateway, certs, .. } => {
                assert!(
                    gateway.options.listen.ip().is_loopback() && gateway.options.listen.port() == 0
                );
                assert_eq!(
                    gateway.options.proxy.default_session.as_deref(),
                    Some(sidecar.session.as_str())
                );
                let certs = certs.as_ref().expect("throwaway certificates");
                assert!(gateway.options.tls_key.starts_with(certs.path()));
            }
            GatewayPlan::Existing { .. } => panic!("a started gateway"),
        }
    }
}
