//! The container image of the top-level `Containerfile`, built here with podman (buildah
//! inside) from the static binary `cargo xtask test` builds, in a throwaway image store:
//! the binary needs no loader and no library, the image holds that binary and nothing else,
//! its user, entrypoint and port are the manifests', and it runs as that user on a
//! read-only root filesystem with every capability dropped.
//!
//! No container registry is reachable from these machines, so the Containerfile's builder
//! stage (which pulls a Rust image) is replaced by the host-built binary with
//! `--build-context build=DIR`; see deploy/README.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{container, documents, only, repository, run_ok, USER_ID};

/// The static (musl) pathgate `cargo xtask test` builds for the image (profile `image`).
/// `PATHGATE_STATIC_BINARY` names another one.
fn static_binary() -> PathBuf {
    let path = std::env::var_os("PATHGATE_STATIC_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repository().join("target"))
                .join("x86_64-unknown-linux-musl/image/pathgate")
        });
    assert!(
        path.is_file(),
        "no static pathgate binary at {}: run the tests with `cargo xtask test`, which builds it \
         (cargo build --profile image --target x86_64-unknown-linux-musl --bin pathgate)",
        path.display()
    );
    path
}

/// podman with its own image store in a temporary directory (vfs: no overlay mounts needed),
/// runc with cgroupfs (crun refuses a cgroup v1 host with an empty v2 mount, as these
/// machines have), and no daemon.
struct Podman {
    store: tempfile::TempDir,
}

impl Podman {
    fn new() -> Self {
        Podman {
            store: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self) -> Command {
        let store = self.store.path();
        let mut command = Command::new(podman());
        command
            .arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("run"))
            .arg("--tmpdir")
            .arg(store.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
        command
    }

    /// Builds the Containerfile with the static binary as its `build` stage; returns the tag.
    fn build_image(&self) -> String {
        let binary_dir = tempfile::tempdir().unwrap();
        std::fs::copy(static_binary(), binary_dir.path().join("pathgate")).unwrap();
        let tag = "localhost/pathgate:test".to_string();
        run_ok(
            self.command()
                .arg("build")
                .arg("--build-context")
                .arg(format!("build={}", binary_dir.path().display()))
                .arg("--file")
                .arg(repository().join("Containerfile"))
                .args(["--tag", &tag])
                .arg(repository()),
        );
        tag
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // vfs layers may hold files only root can remove, which TempDir already is; an
        // image mount must be released first.
        let _ = self.command().args(["image", "unmount", "--all"]).output();
    }
}

fn podman() -> PathBuf {
    ["/usr/bin/podman", "/usr/local/bin/podman"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("no podman: run the tests with `cargo xtask test`, which installs it")
        })
}

/// The ELF program headers' types, and the libraries the dynamic section needs.
fn elf_interpreter_and_needed(binary: &[u8]) -> (bool, usize) {
    const PT_DYNAMIC: u32 = 2;
    const PT_INTERP: u32 = 3;
    const DT_NEEDED: u64 = 1;
    assert_eq!(&binary[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(binary[4], 2, "not a 64-bit ELF file");
    assert_eq!(binary[5], 1, "not little-endian");
    let u16_at = |at: usize| u16::from_le_bytes(binary[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(binary[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(binary[at..at + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    let mut interpreter = false;
    let mut needed = 0;
    for header in (0..phnum).map(|i| phoff + i * phentsize) {
        match u32_at(header) {
            PT_INTERP => interpreter = true,
            PT_DYNAMIC => {
                let (offset, size) = (u64_at(header + 8) as usize, u64_at(header + 0x20) as usize);
                needed += (offset..offset + size)
                    .step_by(16)
                    .take_while(|&entry| u64_at(entry) != 0)
                    .filter(|&entry| u64_at(entry) == DT_NEEDED)
                    .count();
            }
            _ => {}
        }
    }
    (interpreter, needed)
}

#[test]
fn the_images_binary_needs_no_loader_and_no_shared_library() {
    let binary = std::fs::read(static_binary()).unwrap();
    assert_eq!(elf_interpreter_and_needed(&binary), (false, 0));
    // The check itself sees a dynamic binary for what it is: the test binary is one.
    let dynamic = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let (interpreter, needed) = elf_interpreter_and_needed(&dynamic);
    assert!(interpreter && needed > 0, "{interpreter} {needed}");
}

/// Every file and directory below `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            found.insert(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                pending.push(path);
            }
        }
    }
    found
}

#[test]
fn the_image_holds_only_pathgate_and_runs_it_as_the_manifests_user_on_a_read_only_root() {
    let podman = Podman::new();
    let tag = podman.build_image();

    let inspected: serde_json::Value =
        serde_json::from_str(&run_ok(podman.command().args(["image", "inspect", &tag]))).unwrap();
    let config = &inspected[0]["Config"];
    assert_eq!(config["User"], format!("{USER_ID}:{USER_ID}").as_str());
    assert_eq!(config["Entrypoint"], serde_json::json!(["/pathgate"]));
    let chart = documents(&run_ok(
        Command::new(super::helm())
            .args(["template", "agent"])
            .arg(repository().join("deploy/helm/pathgate")),
    ));
    let pathgate = container(only(&chart, "Deployment"), "pathgate");
    let manifest_ports: BTreeSet<String> = pathgate["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|port| format!("{}/tcp", port["containerPort"].as_u64().unwrap()))
        .collect();
    let image_ports: BTreeSet<String> = config["ExposedPorts"]
        .as_object()
        .expect("the image exposes its admin port")
        .keys()
        .cloned()
        .collect();
    assert_eq!(image_ports, manifest_ports);
    assert_eq!(pathgate["securityContext"]["runAsGroup"], USER_ID);
    // The chart's default command is the image's, so a bare `docker run IMAGE` and the pod
    // start the same server.
    assert_eq!(
        config["Cmd"],
        serde_json::to_value(&pathgate["args"].as_sequence().unwrap()[..3]).unwrap()
    );

    let root = run_ok(podman.command().args(["image", "mount", &tag]));
    let files = tree(Path::new(root.trim()));
    run_ok(podman.command().args(["image", "unmount", &tag]));
    assert_eq!(files, BTreeSet::from(["pathgate".to_string()]));

    let version = run_ok(podman.command().args([
        "run",
        "--rm",
        "--read-only",
        "--user",
        &format!("{USER_ID}:{USER_ID}"),
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--network",
        "none",
        // Lower than the host's: podman's defaults (the host's maximum) are refused here.
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=1024:1024",
        &tag,
        "--version",
    ]));
    assert_eq!(
        version.trim(),
        concat!("pathgate ", env!("CARGO_PKG_VERSION"))
    );
}

/// A container started with `podman run --detach`, removed (with its logs shown on failure)
/// when dropped.
struct RunningContainer<'a> {
    podman: &'a Podman,
    name: String,
}

impl RunningContainer<'_> {
    fn logs(&self) -> String {
        let output = self
            .podman
            .command()
            .args(["logs", &self.name])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

impl Drop for RunningContainer<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("pathgate's log in the container:\n{}", self.logs());
        }
        let _ = self
            .podman
            .command()
            .args(["rm", "--force", "--time", "2", &self.name])
            .output();
    }
}

/// Writes `files` (name, content) into a new directory `dir/name`, readable by anyone (the
/// container's user is not the test's).
fn directory_with(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir(&path).unwrap();
    for (file, content) in files {
        std::fs::write(path.join(file), content).unwrap();
    }
    path
}

/// The HTTP status of a plain GET on the loopback `port`.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The chart's Secret value `key`, decoded.
fn secret_data(secret: &serde_yaml::Value, key: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(secret["data"][key].as_str().unwrap())
        .unwrap()
}

#[test]
fn the_image_serves_the_agent_as_its_service_account_from_the_charts_own_files() {
    use crate::support::{admin, cluster, kubectl_ok, kubectl_with_stdin_ok, unique_namespace};

    let podman = Podman::new();
    let tag = podman.build_image();
    let cluster = cluster();
    let namespace = unique_namespace("image");
    let (port, admin_port) = (crate::gateway::free_port(), crate::gateway::free_port());
    let rendered = super::chart::render(
        "agent",
        &namespace,
        &[
            "tls.generate=true",
            &format!("pathgate.port={port}"),
            &format!("pathgate.adminPort={admin_port}"),
        ],
    );
    // Created for real: the ServiceAccount, its RBAC, the ConfigMap and the Secret are what
    // the container runs with (the Deployment's pod never starts: the cluster has no nodes).
    kubectl_with_stdin_ok(&admin(), &["apply", "-n", &namespace, "-f", "-"], &rendered);
    let docs = documents(&rendered);
    let config_map = only(&docs, "ConfigMap");
    let secret = only(&docs, "Secret");
    let pathgate = container(only(&docs, "Deployment"), "pathgate");
    let service_account = "agent-pathgate";
    let token = kubectl_ok(
        &admin(),
        &["create", "token", service_account, "-n", &namespace],
    );

    // The pod's mounts, as the kubelet would lay them out.
    let dir = tempfile::tempdir().unwrap();
    let text = |key: &str| {
        config_map["data"][key]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec()
    };
    let config = directory_with(
        dir.path(),
        "config",
        &[("pathgate.yaml", &text("pathgate.yaml"))],
    );
    let tls_files = ["tls.crt", "tls.key", "ca.crt"].map(|key| (key, secret_data(secret, key)));
    let tls_refs: Vec<(&str, &[u8])> = tls_files.iter().map(|(k, v)| (*k, &v[..])).collect();
    let tls = directory_with(dir.path(), "tls", &tls_refs);
    let cluster_ca = std::fs::read(cluster.dir.ca_cert()).unwrap();
    let sa = directory_with(
        dir.path(),
        "sa",
        &[
            ("token", token.trim().as_bytes()),
            ("ca.crt", &cluster_ca),
            ("namespace", namespace.as_bytes()),
        ],
    );
    let ledger = directory_with(dir.path(), "ledger", &[]);
    // pathgate's user must write the spool; the other mounts stay read-only.
    std::fs::set_permissions(&ledger, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();

    let pod_name = crate::support::unique_name("agent-pod");
    let args: Vec<String> = pathgate["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap().replace("$(POD_NAME)", &pod_name))
        .collect();
    let mount =
        |source: &Path, target: &str, mode: &str| format!("{}:{target}:{mode}", source.display());
    let name = crate::support::unique_name("pathgate");
    run_ok(
        podman
            .command()
            .args(["run", "--detach", "--name", &name, "--read-only"])
            .args(["--user", &format!("{USER_ID}:{USER_ID}")])
            .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
            .args(["--network", "host"])
            .args([
                "--ulimit",
                "nofile=4096:4096",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(["--env", "KUBERNETES_SERVICE_HOST=127.0.0.1"])
            .args([
                "--env",
                &format!("KUBERNETES_SERVICE_PORT={}", cluster.port),
            ])
            .args(["--volume", &mount(&config, "/etc/pathgate/config", "ro")])
            .args(["--volume", &mount(&tls, "/etc/pathgate/tls", "ro")])
            .args([
                "--volume",
                &mount(&sa, "/var/run/secrets/kubernetes.io/serviceaccount", "ro"),
            ])
            .args([
                "--volume",
                &mount(&ledger, "/var/lib/pathgate/ledger", "rw"),
            ])
            .arg(&tag)
            .args(&args),
    );
    let running = RunningContainer {
        podman: &podman,
        name,
    };
    crate::support::eventually(
        std::time::Duration::from_secs(30),
        "pathgate's /readyz in the container",
        || (http_status(admin_port, "/readyz") == Some(200)).then_some(()),
    );

    // The agent's side: the chart's kubeconfig, its CA path where this test put the file,
    // kubectl with stdin closed (it must not prompt for anything).
    let kubeconfig = dir.path().join("agent.kubeconfig");
    std::fs::write(
        &kubeconfig,
        String::from_utf8(text("agent.kubeconfig"))
            .unwrap()
            .replace(
                "/etc/pathgate-agent/pathgate-ca.crt",
                &tls.join("ca.crt").display().to_string(),
            ),
    )
    .unwrap();
    let listed = crate::support::kubectl(&kubeconfig, &["get", "configmaps", "-o", "name"]);
    assert!(
        listed.status.success(),
        "kubectl through the image failed: {}\n{}",
        String::from_utf8_lossy(&listed.stderr),
        running.logs()
    );
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("configmap/agent-pathgate"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    // The Role grants no Secrets: the apiserver refuses the ServiceAccount pathgate forwards as.
    let refused = crate::support::kubectl_err(&kubeconfig, &["get", "secrets"]);
    assert!(
        refused.contains(&format!(
            "system:serviceaccount:{namespace}:{service_account}"
        )) && refused.contains("cannot list resource \"secrets\""),
        "{refused}"
    );

    // The ledger, written by uid 65532 on the only writable mount, carries the pod's session.
    let entries = crate::support::eventually(
        std::time::Duration::from_secs(10),
        "ledger entries of the pod's session",
        || {
            let text: String = std::fs::read_dir(&ledger)
                .unwrap()
                .filter_map(|entry| std::fs::read_to_string(entry.unwrap().path()).ok())
                .collect();
            text.contains(&format!("\"session\":\"{pod_name}\""))
                .then_some(text)
        },
    );
    assert!(entries.contains("\"resource\":\"configmaps\""), "{entries}");
    drop(running);
}
