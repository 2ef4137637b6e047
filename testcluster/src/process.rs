//! Processes of the control plane: each runs in its own process group, so a Ctrl-C in the
//! terminal that ran `cluster up` does not reach it, and stopping it means signalling the
//! whole group (SIGTERM, then SIGKILL after a grace period).
//!
//! It does not own deciding what to start or when (see [`crate::launch`]).

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::{io_error, Error, Result};

/// How long a process gets between SIGKILL and being declared unkillable.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Starts `program` as the leader of a new process group, output appended to `log`.
pub(crate) fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Child> {
    let stdout = File::create(log).map_err(io_error("create", log))?;
    let stderr = stdout.try_clone().map_err(io_error("duplicate", log))?;
    Command::new(program)
        .args(args)
        // Never inherit the caller's pipes: `$(cargo xtask cluster up)` must not hang on
        // a background server holding its stdout open.
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(io_error("start", program))
}

/// Stops the process group `pgid`: SIGTERM, up to `grace` for it to exit, then SIGKILL.
///
/// `child` is the leader when this process started it: it must be reaped here, or it would
/// linger as a zombie that still counts as alive.
pub(crate) fn stop_group(
    pgid: i32,
    name: &str,
    mut child: Option<&mut Child>,
    grace: Duration,
) -> Result<()> {
    for (signal, wait) in [(Signal::SIGTERM, grace), (Signal::SIGKILL, AFTER_KILL)] {
        match killpg(Pid::from_raw(pgid), signal) {
            Ok(()) => {}
            Err(Errno::ESRCH) => {
                reap(child.as_deref_mut());
                return Ok(());
            }
            Err(source) => return Err(Error::Signal { pgid, source }),
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if is_gone(pgid, child.as_deref_mut()) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    if is_gone(pgid, child) {
        return Ok(());
    }
    Err(Error::Unkillable {
        pgid,
        process: name.to_string(),
    })
}

fn reap(child: Option<&mut Child>) {
    if let Some(child) = child {
        let _ = child.try_wait();
    }
}

/// True once no process of the group is left (a zombie leader counts as gone: its parent,
/// not us, reaps it when `cluster up` has exited).
fn is_gone(pgid: i32, child: Option<&mut Child>) -> bool {
    if let Some(child) = child {
        if matches!(child.try_wait(), Ok(None)) {
            return false;
        }
    }
    match killpg(Pid::from_raw(pgid), None) {
        Err(Errno::ESRCH) => true,
        Err(_) => false,
        Ok(()) => leader_is_zombie(pgid),
    }
}

fn leader_is_zombie(pid: i32) -> bool {
    // /proc/<pid>/stat is "pid (comm) state ..."; comm may hold spaces, so split after ')'.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_comm = stat.rsplit_once(')')?.1;
            after_comm
                .split_whitespace()
                .next()
                .map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// True when `pid` is alive and its command line mentions `needle` (the cluster directory):
/// a pid file from an old boot must never make us signal an unrelated process.
pub(crate) fn is_ours(pid: i32, needle: &str) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains(needle),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_group_ends_a_process_that_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sh.log");
        // An ignored signal stays ignored across exec: only SIGKILL ends this sleep.
        let mut child = spawn(
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "trap '' TERM; echo started; exec sleep 600".into(),
            ],
            &log,
        )
        .unwrap();
        let pgid = child.id() as i32;
        let started = Instant::now();
        while !fs::read_to_string(&log).unwrap().contains("started") {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "shell never started"
            );
            thread::sleep(Duration::from_millis(20));
        }
        stop_group(pgid, "sh", Some(&mut child), Duration::from_millis(300)).unwrap();
        assert_eq!(
            killpg(Pid::from_raw(pgid), None),
            Err(Errno::ESRCH),
            "the whole group is gone"
        );
    }

    #[test]
    fn is_ours_checks_the_command_line() {
        let me = std::process::id() as i32;
        let exe = std::env::args().next().unwrap();
        assert!(is_ours(me, &exe));
        assert!(!is_ours(me, "/no/such/cluster/dir/anywhere"));
    }
}
