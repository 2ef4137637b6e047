//! The faults, each a handle the run drives: the `pathgate serve` binary that is killed
//! with SIGKILL and restarted on the same spool and port, a webhook receiver that refuses
//! (503) or blackholes (holds every request unanswered) and recovers, and a spool on a
//! tmpfs of its own that is filled to the last byte and freed.
//!
//! FAULT INJECTION: the receiver is a test server because its outage is the fault; the
//! tmpfs needs root to mount (this workplace's tests run as root; the guard unmounts).

use std::collections::HashSet;
use std::convert::Infallible;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// The real `pathgate serve`, restartable with the same flags.
pub struct Pathgate {
    child: tokio::process::Child,
    args: Vec<OsString>,
    log: PathBuf,
    pub port: u16,
}

impl Pathgate {
    /// Starts `pathgate serve ARGS --listen 127.0.0.1:<port>` and waits until it listens.
    pub async fn start(args: Vec<OsString>, port: u16, log: PathBuf) -> Self {
        let child = spawn(&args, port, &log);
        crate::gateway::wait_listening(port).await;
        Pathgate {
            child,
            args,
            log,
            port,
        }
    }

    /// `kill -9`, then the same command again on the same spool and port.
    pub async fn kill_and_restart(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("pathgate exits");
        self.child = spawn(&self.args, self.port, &self.log);
        crate::gateway::wait_listening(self.port).await;
    }

    /// SIGTERM (a drain) and the exit.
    pub async fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        self.child.wait().await.expect("pathgate exits");
    }
}

fn spawn(args: &[OsString], port: u16, log: &Path) -> tokio::process::Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pathgate"))
        .args(args)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("the pathgate binary runs")
}

/// How the webhook receiver treats a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SinkMode {
    Accept = 0,
    /// 503: the sink retries with backoff.
    Refuse = 1,
    /// Never answers: the sink's POST times out.
    Blackhole = 2,
}

/// A webhook receiver whose mode the run switches.
pub struct Sink {
    mode: Arc<AtomicU8>,
    /// `trace_id/phase` of every entry accepted.
    pub received: Arc<Mutex<HashSet<String>>>,
    pub port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(SinkMode::Accept as u8));
        let received = Arc::new(Mutex::new(HashSet::new()));
        let server = tokio::spawn(serve(listener, mode.clone(), received.clone()));
        Sink {
            mode,
            received,
            port,
            server,
        }
    }

    pub fn set(&self, mode: SinkMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn received(&self) -> HashSet<String> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    mode: Arc<AtomicU8>,
    received: Arc<Mutex<HashSet<String>>>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (mode, received) = (mode.clone(), received.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let (mode, received) = (mode.clone(), received.clone());
                async move { Ok::<_, Infallible>(receive(request, &mode, &received).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn receive(
    request: http::Request<hyper::body::Incoming>,
    mode: &AtomicU8,
    received: &Mutex<HashSet<String>>,
) -> http::Response<Full<Bytes>> {
    match mode.load(Ordering::SeqCst) {
        m if m == SinkMode::Refuse as u8 => {
            let mut response = http::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            return response;
        }
        m if m == SinkMode::Blackhole as u8 => std::future::pending().await,
        _ => {}
    }
    let Ok(body) = request.into_body().collect().await else {
        let mut response = http::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
        return response;
    };
    let entries: Vec<Value> = serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
    let mut seen = received.lock().unwrap();
    for entry in entries {
        seen.insert(format!(
            "{}/{}",
            entry["trace_id"].as_str().unwrap_or_default(),
            entry["phase"].as_str().unwrap_or_default()
        ));
    }
    http::Response::new(Full::new(Bytes::new()))
}

/// A tmpfs of `megabytes` for the spool, filled and freed on demand; unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs for the full-disk fault needs root"
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Writes a file until the filesystem has no byte left (ENOSPC).
    pub fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while file.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
    }

    pub fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}
