//! Starting and stopping a cluster: etcd plus kube-apiserver on free loopback ports, each in
//! its own process group, with the files of [`ClusterDir`] written around them.
//!
//! [`Cluster::start`] returns once `/readyz` answers `ok`, the `default` namespace exists and
//! the agent's RBAC is applied. The returned handle stops both processes when dropped (also
//! while a panic unwinds); [`Cluster::detach`] leaves them running for `cluster up`, and
//! [`stop_dir`] stops them later from the pid file (`cluster down`).
//!
//! There is no controller-manager and no scheduler: objects are stored and validated, but
//! nothing reconciles them (a Deployment gets no pods, a deleted namespace stays
//! `Terminating`). See `docs/control-plane.md`.
//!
//! It does not own building the binaries (see [`crate::binaries`]).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::binaries::{Binaries, Versions};
use crate::layout::{render_exports, ClusterDir, RunningCluster};
use crate::manifests::{self, Credential};
use crate::pki::{Pki, ADMIN_GROUP, ADMIN_USER, AGENT_GROUP, AGENT_USER};
use crate::process;
use crate::{io_error, Error, Result};

/// How long start-up may take before it is declared failed.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long each process gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How many times a start is tried when a chosen port was taken before the server bound it.
const PORT_RACE_ATTEMPTS: u32 = 3;
/// The service IP range; nothing routes to it (there are no nodes), but the apiserver needs one.
const SERVICE_CLUSTER_IP_RANGE: &str = "10.0.0.0/24";

/// A running etcd + kube-apiserver, stopped when dropped unless detached.
#[derive(Debug)]
pub struct Cluster {
    running: RunningCluster,
    /// In start order (etcd, then kube-apiserver); stopped in reverse.
    processes: Vec<(&'static str, Child)>,
}

impl Cluster {
    /// Starts a cluster in `dir` (created if needed; a previous cluster there is stopped and
    /// its files removed) and waits until it is ready.
    ///
    /// Ports are chosen free but released before the servers bind them, so another process
    /// may take one in between; a start that fails that way is retried with new ports.
    pub fn start(dir: &Path, binaries: &Binaries, versions: &Versions) -> Result<Self> {
        Self::start_with(dir, binaries, versions, Durability::Throwaway)
    }

    /// [`Cluster::start`] with etcd's durability chosen: a benchmark that compares a
    /// durable ledger with the apiserver's own writes needs etcd to fsync them as a real
    /// cluster does.
    pub fn start_with(
        dir: &Path,
        binaries: &Binaries,
        versions: &Versions,
        durability: Durability,
    ) -> Result<Self> {
        let mut attempts_left = PORT_RACE_ATTEMPTS;
        loop {
            match Self::start_once(dir, binaries, versions, durability) {
                Err(Error::ExitedEarly { ref tail, .. })
                    if attempts_left > 1 && tail.contains("address already in use") =>
                {
                    attempts_left -= 1;
                    eprintln!("testcluster: a port was taken during start-up; retrying");
                }
                outcome => return outcome,
            }
        }
    }

    fn start_once(
        dir: &Path,
        binaries: &Binaries,
        versions: &Versions,
        durability: Durability,
    ) -> Result<Self> {
        stop_dir(dir)?;
        let dir = prepare_dir(dir)?;
        let pki = Pki::generate()?;
        let ports = free_ports::<3>()?;
        let [etcd_client, etcd_peer, apiserver_port] = ports;
        let apiserver = format!("https://127.0.0.1:{apiserver_port}");
        write_files(&dir, &pki, &apiserver)?;

        let mut cluster = Cluster {
            running: RunningCluster {
                dir: dir.clone(),
                kubectl: binaries.kubectl.clone(),
                apiserver,
                port: apiserver_port,
                kubernetes_version: versions.kubernetes.clone(),
            },
            processes: Vec::new(),
        };
        // From here on, an early return drops `cluster`, which stops what was started.
        let etcd = process::spawn(
            &binaries.etcd,
            &etcd_args(&dir, etcd_client, etcd_peer, durability),
            &dir.etcd_log(),
        )?;
        cluster.processes.push(("etcd", etcd));
        let apiserver = process::spawn(
            &binaries.kube_apiserver,
            &apiserver_args(&dir, apiserver_port, etcd_client),
            &dir.apiserver_log(),
        )?;
        cluster.processes.push(("kube-apiserver", apiserver));
        cluster.write_pid_file()?;

        cluster.wait_ready()?;
        cluster.kubectl_with_stdin(
            &["create", "-f", "-"],
            manifests::agent_rbac().to_string().as_bytes(),
        )?;

        let running = &cluster.running;
        let exports = [
            ("KUBECTL", running.kubectl.display().to_string()),
            ("KUBECONFIG", display(dir.admin_kubeconfig())),
            ("PATHGATE_CLUSTER_DIR", display(dir.root())),
            ("APISERVER", running.apiserver.clone()),
            ("KUBERNETES_VERSION", versions.kubernetes.clone()),
            ("ETCD_VERSION", versions.etcd.clone()),
            ("ETCD_ENDPOINT", format!("http://127.0.0.1:{etcd_client}")),
            ("PATHGATE_CA_CERT", display(dir.ca_cert())),
            ("PATHGATE_ADMIN_KUBECONFIG", display(dir.admin_kubeconfig())),
            (
                "PATHGATE_ADMIN_TOKEN_KUBECONFIG",
                display(dir.admin_token_kubeconfig()),
            ),
            ("PATHGATE_AGENT_KUBECONFIG", display(dir.agent_kubeconfig())),
            (
                "PATHGATE_AGENT_TOKEN_KUBECONFIG",
                display(dir.agent_token_kubeconfig()),
            ),
            ("PATHGATE_AUDIT_LOG", display(dir.audit_log())),
        ];
        write_file(&dir.env_file(), render_exports(&exports).as_bytes(), false)?;
        Ok(cluster)
    }

    /// Where and how to reach the cluster.
    pub fn info(&self) -> &RunningCluster {
        &self.running
    }

    /// Leaves the processes running after this handle is gone (`cluster down` stops them).
    pub fn detach(mut self) -> RunningCluster {
        self.processes.clear();
        self.running.clone()
    }

    /// Stops both processes now and reports a failure to do so.
    pub fn stop(mut self) -> Result<()> {
        self.stop_processes()
    }

    fn stop_processes(&mut self) -> Result<()> {
        if self.processes.is_empty() {
            // Detached (or already stopped): the files describe a cluster still running.
            return Ok(());
        }
        let mut first_error = None;
        while let Some((name, mut child)) = self.processes.pop() {
            let pgid = child.id() as i32;
            if let Err(error) = process::stop_group(pgid, name, Some(&mut child), STOP_GRACE) {
                first_error.get_or_insert(error);
            }
        }
        let _ = fs::remove_file(self.running.dir.pid_file());
        let _ = fs::remove_file(self.running.dir.env_file());
        first_error.map_or(Ok(()), Err)
    }

    fn write_pid_file(&self) -> Result<()> {
        let text: String = self
            .processes
            .iter()
            .map(|(name, child)| format!("{name} {}\n", child.id()))
            .collect();
        write_file(&self.running.dir.pid_file(), text.as_bytes(), false)
    }

    /// Polls until `/readyz` says ok and the `default` namespace exists (the bootstrap
    /// controller creates it shortly after the apiserver starts serving).
    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut last = String::from("nothing yet");
        while started.elapsed() < READY_TIMEOUT {
            self.check_alive()?;
            match self.kubectl(&["--request-timeout=2s", "get", "--raw", "/readyz"]) {
                Ok(output) if output.stdout.starts_with(b"ok") => {
                    match self.kubectl(&[
                        "--request-timeout=2s",
                        "get",
                        "namespace",
                        "default",
                        "-o",
                        "name",
                    ]) {
                        Ok(_) => return Ok(()),
                        Err(error) => last = error.to_string(),
                    }
                }
                Ok(output) => last = String::from_utf8_lossy(&output.stdout).into_owned(),
                Err(error) => last = error.to_string(),
            }
            thread::sleep(Duration::from_millis(250));
        }
        Err(Error::NotReady {
            seconds: READY_TIMEOUT.as_secs(),
            last,
            log: self.running.dir.apiserver_log(),
        })
    }

    fn check_alive(&mut self) -> Result<()> {
        for (name, child) in &mut self.processes {
            if let Ok(Some(status)) = child.try_wait() {
                let log = match *name {
                    "etcd" => self.running.dir.etcd_log(),
                    _ => self.running.dir.apiserver_log(),
                };
                return Err(Error::ExitedEarly {
                    process: name,
                    status,
                    tail: tail(&log, 30),
                    log,
                });
            }
        }
        Ok(())
    }

    fn kubectl(&self, args: &[&str]) -> Result<Output> {
        run_kubectl(&self.running, args, None)
    }

    fn kubectl_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Result<Output> {
        run_kubectl(&self.running, args, Some(stdin))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(error) = self.stop_processes() {
            eprintln!("testcluster: stopping the cluster failed: {error}");
        }
    }
}

/// Stops the cluster whose pid file is in `dir`, if any; returns whether one was found.
///
/// A pid is signalled only if its command line mentions `dir`, so a stale pid file never
/// kills an unrelated process that reused the number.
pub fn stop_dir(dir: &Path) -> Result<bool> {
    let Ok(root) = dir.canonicalize() else {
        return Ok(false);
    };
    let cluster_dir = ClusterDir::new(&root);
    let Ok(pids) = fs::read_to_string(cluster_dir.pid_file()) else {
        return Ok(false);
    };
    let needle = root.display().to_string();
    let mut found = false;
    for line in pids.lines().rev() {
        let Some((name, pid)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            continue;
        };
        if process::is_ours(pid, &needle) {
            found = true;
            process::stop_group(pid, name, None, STOP_GRACE)?;
        }
    }
    let _ = fs::remove_file(cluster_dir.pid_file());
    let _ = fs::remove_file(cluster_dir.env_file());
    Ok(found)
}

fn run_kubectl(running: &RunningCluster, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    let kubeconfig = running.dir.admin_kubeconfig();
    let mut command = Command::new(&running.kubectl);
    command
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(io_error("run", &running.kubectl))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .map_err(io_error("write to", &running.kubectl))?;
    }
    let output = child
        .wait_with_output()
        .map_err(io_error("run", &running.kubectl))?;
    if !output.status.success() {
        return Err(Error::Kubectl {
            args: args.join(" "),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// Creates `dir` (absolute from here on), emptying it first if an earlier run made it.
fn prepare_dir(dir: &Path) -> Result<ClusterDir> {
    if dir.exists() {
        let probe = ClusterDir::new(dir);
        let empty = fs::read_dir(dir)
            .map_err(io_error("read", dir))?
            .next()
            .is_none();
        if probe.marker().exists() {
            fs::remove_dir_all(dir).map_err(io_error("remove", dir))?;
        } else if !empty {
            return Err(Error::ForeignDirectory {
                dir: dir.to_path_buf(),
            });
        }
    }
    fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    let root = dir.canonicalize().map_err(io_error("resolve", dir))?;
    let cluster_dir = ClusterDir::new(root);
    write_file(
        &cluster_dir.marker(),
        b"made by pathgate's testcluster; `cargo xtask cluster up` empties this directory\n",
        false,
    )?;
    Ok(cluster_dir)
}

fn write_files(dir: &ClusterDir, pki: &Pki, apiserver: &str) -> Result<()> {
    let secret = true;
    write_file(&dir.ca_cert(), pki.ca.cert_pem.as_bytes(), !secret)?;
    write_file(&dir.ca_key(), pki.ca.key_pem.as_bytes(), secret)?;
    write_file(
        &dir.serving_cert(),
        pki.serving.cert_pem.as_bytes(),
        !secret,
    )?;
    write_file(&dir.serving_key(), pki.serving.key_pem.as_bytes(), secret)?;
    write_file(&dir.admin_cert(), pki.admin.cert_pem.as_bytes(), !secret)?;
    write_file(&dir.admin_key(), pki.admin.key_pem.as_bytes(), secret)?;
    write_file(&dir.agent_cert(), pki.agent.cert_pem.as_bytes(), !secret)?;
    write_file(&dir.agent_key(), pki.agent.key_pem.as_bytes(), secret)?;
    write_file(
        &dir.admin_token(),
        format!("{}\n", pki.admin_token).as_bytes(),
        secret,
    )?;
    write_file(
        &dir.agent_token(),
        format!("{}\n", pki.agent_token).as_bytes(),
        secret,
    )?;
    write_file(
        &dir.token_auth_file(),
        manifests::token_auth_file(&[
            (&pki.admin_token, ADMIN_USER, ADMIN_GROUP),
            (&pki.agent_token, AGENT_USER, AGENT_GROUP),
        ])
        .as_bytes(),
        secret,
    )?;
    write_file(
        &dir.service_account_key(),
        pki.service_account_key_pem.as_bytes(),
        secret,
    )?;
    write_file(
        &dir.service_account_public_key(),
        pki.service_account_public_key_pem.as_bytes(),
        !secret,
    )?;
    write_file(
        &dir.audit_policy(),
        manifests::AUDIT_POLICY.as_bytes(),
        !secret,
    )?;

    let ca = &pki.ca.cert_pem;
    // The agent lands in its sandbox by default; the admin in `default`, as usual.
    let agent_namespace = Some(manifests::AGENT_NAMESPACES[0]);
    let kubeconfigs = [
        (
            dir.admin_kubeconfig(),
            ADMIN_USER,
            Credential::ClientCertificate {
                cert_pem: &pki.admin.cert_pem,
                key_pem: &pki.admin.key_pem,
            },
            None,
        ),
        (
            dir.admin_token_kubeconfig(),
            ADMIN_USER,
            Credential::Token(&pki.admin_token),
            None,
        ),
        (
            dir.agent_kubeconfig(),
            AGENT_USER,
            Credential::ClientCertificate {
                cert_pem: &pki.agent.cert_pem,
                key_pem: &pki.agent.key_pem,
            },
            agent_namespace,
        ),
        (
            dir.agent_token_kubeconfig(),
            AGENT_USER,
            Credential::Token(&pki.agent_token),
            agent_namespace,
        ),
    ];
    for (path, user, credential, namespace) in kubeconfigs {
        let text = manifests::kubeconfig(apiserver, ca, user, credential, namespace);
        write_file(&path, text.as_bytes(), secret)?;
    }
    Ok(())
}

/// Whether etcd makes its writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `--unsafe-no-fsync`: a test cluster is thrown away after the run, durability buys
    /// nothing, and fsync on every write dominates the apiserver's start-up on slow disks.
    Throwaway,
    /// etcd fsyncs its WAL on every write, as a production cluster does.
    Durable,
}

fn etcd_args(
    dir: &ClusterDir,
    client_port: u16,
    peer_port: u16,
    durability: Durability,
) -> Vec<String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let mut args: Vec<String> = vec![
        "--name=default".into(),
        format!("--data-dir={}", display(dir.etcd_data())),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--initial-cluster-state=new".into(),
        "--log-level=warn".into(),
    ];
    if durability == Durability::Throwaway {
        args.push("--unsafe-no-fsync".into());
    }
    args
}

fn apiserver_args(dir: &ClusterDir, port: u16, etcd_client_port: u16) -> Vec<String> {
    let path = |p: PathBuf| display(p);
    vec![
        // Without a default route the apiserver cannot pick an address to advertise and
        // refuses to start; loopback is the only address this cluster is reachable on anyway.
        "--advertise-address=127.0.0.1".into(),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--etcd-servers=http://127.0.0.1:{etcd_client_port}"),
        "--authorization-mode=Node,RBAC".into(),
        format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
        format!("--client-ca-file={}", path(dir.ca_cert())),
        format!("--tls-cert-file={}", path(dir.serving_cert())),
        format!("--tls-private-key-file={}", path(dir.serving_key())),
        format!("--token-auth-file={}", path(dir.token_auth_file())),
        format!(
            "--service-account-key-file={}",
            path(dir.service_account_public_key())
        ),
        format!(
            "--service-account-signing-key-file={}",
            path(dir.service_account_key())
        ),
        format!("--service-account-issuer=https://127.0.0.1:{port}"),
        format!("--audit-policy-file={}", path(dir.audit_policy())),
        format!("--audit-log-path={}", path(dir.audit_log())),
        // Written before the response is sent, so a test can read its event right after;
        // never rotated, so no event moves to a backup file during a run.
        "--audit-log-mode=blocking".into(),
        "--audit-log-maxsize=0".into(),
        "--audit-log-format=json".into(),
        // The ServiceAccount admission plugin rejects every pod until the `default`
        // service account exists, which only the controller-manager creates.
        "--disable-admission-plugins=ServiceAccount".into(),
        // The `kubernetes` Service may not point at a loopback address; with no nodes and no
        // pods there is nobody to route it for, so do not maintain its endpoints.
        "--endpoint-reconciler-type=none".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
        format!("--cert-dir={}", path(dir.root().join("apiserver-certs"))),
    ]
}

/// `N` distinct free ports on 127.0.0.1. They are released before the servers bind them; a
/// race with another process is possible but shows as an early exit with a clear log.
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io_error("bind", "127.0.0.1:0"))?;
        *port = listener
            .local_addr()
            .map_err(io_error("inspect", "127.0.0.1:0"))?
            .port();
        // Held until all are chosen so the same port is not returned twice.
        listeners.push(listener);
    }
    Ok(ports)
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io_error("create", path))?;
    file.write_all(contents).map_err(io_error("write", path))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn display(path: impl AsRef<Path>) -> String {
    path.as_ref().display().to_string()
}
