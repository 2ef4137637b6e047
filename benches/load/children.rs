//! Child processes of the benchmark: starting them with their output in a log file, finding
//! the address they announce, and stopping them (SIGTERM, then SIGKILL) however the run ends.
//!
//! Also the in-process `allow_all` pathgate, which runs as a child of its own (this binary
//! started with [`ALLOW_ALL_COMMAND`]) so that it is measured in a separate process like the
//! real binary. It does not own what is measured (see `wrk`) nor the report.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The first argument that makes this binary an in-process pathgate with the `allow_all` gate.
pub const ALLOW_ALL_COMMAND: &str = "__pathgate-allow-all";

/// How long a child gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running child process, stopped when dropped.
pub struct ChildProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildProcess {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// Waits until the log holds `marker` followed by an address, and returns the address.
    pub fn announced_address(&mut self, marker: &str) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(rest) = text.split(marker).nth(1) {
                let address: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ')')
                    .collect();
                return address.parse().with_context(|| {
                    format!("{} announced {address:?}, not host:port", self.name)
                });
            }
            self.fail_if_exited()?;
            if Instant::now() > deadline {
                bail!(
                    "{} did not announce its address within 30 s; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `address` accepts TCP connections.
    pub fn wait_listening(&mut self, address: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            self.fail_if_exited()?;
            if Instant::now() > deadline {
                bail!(
                    "{} does not listen on {address} after 30 s; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Fails with the end of the log when the child has exited.
    pub fn fail_if_exited(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a child binds: a free loopback port (released before the child binds it, so a
/// start can race another process; callers retry once).
pub fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `__pathgate-allow-all KUBECONFIG CERT KEY`: pathgate in-process with the `allow_all`
/// gate (no classification analysis, no policy), logging as the binary does; prints
/// `pathgate listening on https://ADDR` to stderr and runs until killed.
pub fn allow_all_main(args: &[String]) -> ExitCode {
    let [kubeconfig, cert, key] = args else {
        eprintln!("usage: {ALLOW_ALL_COMMAND} KUBECONFIG CERT KEY");
        return ExitCode::from(2);
    };
    // The same subscriber as the binary's: a structured line per request at info.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = pathgate::serve::ServeOptions {
        upstream: pathgate::upstream::UpstreamSource::Kubeconfig {
            path: PathBuf::from(kubeconfig),
            context: None,
        },
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_listen: None,
        tls_cert: PathBuf::from(cert),
        tls_key: PathBuf::from(key),
        client_ca: None,
        client_token_file: None,
        proxy: pathgate::proxy::ProxySettings::default(),
        drain_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(10),
        ledger: None,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let running = match pathgate::serve::start(
            options,
            pathgate::serve::allow_all(),
            None,
            pathgate::metrics::Metrics::new(),
        )
        .await
        {
            Ok(running) => running,
            Err(error) => {
                eprintln!("pathgate (allow_all) did not start: {error}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("pathgate listening on https://{}", running.addr);
        // SIGTERM's default action ends the process; nothing needs draining here.
        std::future::pending::<()>().await;
        ExitCode::SUCCESS
    })
}
