//! A real Kubernetes control plane on loopback for pathgate's tests and demos.
//!
//! pathgate is only as correct as the apiserver it is tested against, so this crate builds
//! `kube-apiserver`, `kubectl` and `etcd` from their Go modules (pinned in `controlplane/`),
//! caches the binaries outside the clone, and starts etcd plus kube-apiserver on free loopback
//! ports with certificates, static tokens, an audit log and a limited `agent` identity.
//!
//! It is written once and used twice: by `cargo xtask` (for humans and CI) and by the
//! integration tests (which read the files a running cluster left in its directory).
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`binaries`] | the control plane's pinned versions and cache key |
//! | [`tools`] | the other Go-built tools the tests (and the load benchmark) run (Jaeger, ...): pins, cache, look-up |
//! | `gobuild` | building into the cache once, under a lock, with progress and a log |
//! | [`layout`] | the names of every file in a cluster directory, and reading a running cluster back |
//! | [`pki`] | the CA, serving and client certificates, the service-account key pair, tokens |
//! | [`launch`] | starting etcd + kube-apiserver, waiting for readiness, applying RBAC, stopping |
//! | `process` | process groups, pid files, SIGTERM-then-SIGKILL |
//! | `manifests` | kubeconfigs, the audit policy, the token file and the agent RBAC objects |
//! | [`testing`] | for tests against a running cluster: kubectl, unique names, an apiserver client |
//!
//! It does not own anything about pathgate itself: no proxy, no policy, no test assertions.

#![forbid(unsafe_code)]

pub mod binaries;
mod gobuild;
pub mod launch;
pub mod layout;
mod manifests;
pub mod pki;
mod process;
pub mod testing;
pub mod tools;

use std::path::PathBuf;
use std::process::ExitStatus;

pub use binaries::ControlPlaneSource;
pub use binaries::{Binaries, Versions};
pub use launch::{stop_dir, Cluster, Durability};
pub use layout::{ClusterDir, RunningCluster};
pub use manifests::{AGENT_EDITOR_ROLE, AGENT_NAMESPACES, AGENT_READER_ROLE};
pub use pki::{ADMIN_GROUP, ADMIN_USER, AGENT_GROUP, AGENT_USER};

/// The environment variable naming the directory of a running cluster.
pub const CLUSTER_DIR_ENV: &str = "PATHGATE_CLUSTER_DIR";

/// The command that builds the binaries, starts a cluster and runs every test against it.
pub const TEST_COMMAND: &str = "cargo xtask test";

/// Everything that can go wrong while building, starting, finding or stopping a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being attempted ("read", "create", "rename"...).
        action: &'static str,
        /// The path it was attempted on.
        path: PathBuf,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// A `go.mod` under `controlplane/` does not pin the module the build needs.
    #[error("{} has no `require {module} vX.Y.Z` line; regenerate it (see controlplane/)", path.display())]
    MissingPin {
        /// The go.mod that was read.
        path: PathBuf,
        /// The module whose version was looked for.
        module: &'static str,
    },
    /// No Go toolchain was found to build the binaries with.
    #[error("no `go` command on PATH (nor /usr/local/go/bin/go): a Go toolchain is needed once to build the control plane")]
    GoMissing,
    /// A tool the tests need is not in the cache: only `cargo xtask test` builds tools, so
    /// that no two tests build the same one at once.
    #[error("{what} is not built (no {}); run the tests with `{}`, which builds every test prerequisite first", path.display(), TEST_COMMAND)]
    NotBuilt {
        /// The tool and its release.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `go build` failed.
    #[error("`go build` of {what} failed ({status}); its output is above")]
    GoBuild {
        /// The packages being built.
        what: String,
        /// How `go build` exited.
        status: ExitStatus,
    },
    /// rcgen refused to generate or sign a certificate.
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The system's random generator failed.
    #[error("no randomness for tokens: {0}")]
    Random(getrandom::Error),
    /// A process of the control plane exited while it was starting.
    #[error("{process} exited during start-up ({status}); last lines of {}:\n{tail}", log.display())]
    ExitedEarly {
        /// `etcd` or `kube-apiserver`.
        process: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of that log.
        tail: String,
    },
    /// The apiserver did not become ready (readyz and the `default` namespace) in time.
    #[error("the control plane was not ready after {seconds} s (last answer: {last}); see {}", log.display())]
    NotReady {
        /// How long was waited.
        seconds: u64,
        /// The last thing the readiness probe saw.
        last: String,
        /// The apiserver's log.
        log: PathBuf,
    },
    /// A kubectl command run by the launcher failed.
    #[error("`kubectl {args}` failed ({status}): {stderr}")]
    Kubectl {
        /// The arguments after `kubectl`.
        args: String,
        /// How it exited.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A process of the control plane survived SIGTERM and SIGKILL.
    #[error("process group {pgid} ({process}) is still alive after SIGKILL")]
    Unkillable {
        /// The process group id (also the leader's pid).
        pgid: i32,
        /// `etcd` or `kube-apiserver`.
        process: String,
    },
    /// Sending a signal failed for a reason other than "no such process".
    #[error("cannot signal process group {pgid}: {source}")]
    Signal {
        /// The process group id.
        pgid: i32,
        /// The errno.
        source: nix::Error,
    },
    /// The cluster directory holds files that this crate did not write.
    #[error("{} exists and was not made by testcluster (no {} marker); refusing to empty it", dir.display(), layout::MARKER)]
    ForeignDirectory {
        /// The directory.
        dir: PathBuf,
    },
    /// No running cluster was found where one was expected.
    #[error("no control plane: {reason}. Run `{TEST_COMMAND}` (or `cargo xtask cluster up` and set {CLUSTER_DIR_ENV}=target/cluster)")]
    NoCluster {
        /// Why none was found.
        reason: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an `io::Error` with what was being done and where.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// The root of the pathgate workspace (this crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}
