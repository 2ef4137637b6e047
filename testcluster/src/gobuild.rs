//! Building Go binaries into the cache, once, however many callers ask at the same time.
//!
//! Every binary the test suite needs (the control plane, and the [`crate::tools`]) is built
//! here: into `<final dir>.partial`, renamed into place only when the whole build
//! succeeded (an interrupted build is never mistaken for a finished one), under a file lock
//! beside it (concurrent callers wait for the first instead of racing it). `go build`'s
//! output goes to a log file; while it runs, a line every half minute says what is being
//! built, for how long, and where the log is.
//!
//! It does not own what to build or where the cache is: [`crate::binaries`] and
//! [`crate::tools`] decide that.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{io_error, Error, Result};

/// How often a running build reports that it is still running.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// How much of a failed build's log is printed.
const FAILED_LOG_TAIL: u64 = 4096;

/// Makes `final_dir` exist with what `build` puts into the directory it is given, unless
/// `done(final_dir)` already holds. `build` runs at most once across processes at a time.
pub(crate) fn build_locked(
    final_dir: &Path,
    done: impl Fn(&Path) -> bool,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if done(final_dir) {
        return Ok(());
    }
    let parent = final_dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_error("create", parent))?;
    let lock_path = with_suffix(final_dir, ".lock");
    let lock = File::create(&lock_path).map_err(io_error("create", &lock_path))?;
    if lock.try_lock().is_err() {
        eprintln!(
            "testcluster: another build holds {}; waiting for it",
            lock_path.display()
        );
        lock.lock().map_err(io_error("lock", &lock_path))?;
    }
    // Another builder may have finished while we waited.
    if done(final_dir) {
        return Ok(());
    }
    let partial = with_suffix(final_dir, ".partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(io_error("remove", &partial))?;
    }
    fs::create_dir_all(&partial).map_err(io_error("create", &partial))?;
    build(&partial)?;
    if final_dir.exists() {
        // An incomplete directory from an older layout: replace it.
        fs::remove_dir_all(final_dir).map_err(io_error("remove", final_dir))?;
    }
    fs::rename(&partial, final_dir).map_err(io_error("rename", &partial))?;
    eprintln!("testcluster: cached in {}", final_dir.display());
    Ok(())
}

/// `path` with `suffix` appended to its last component (not `with_extension`: cache
/// directory names contain dots, as in `v1.37.2`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// One `go build` of `packages` in `module_dir`.
pub(crate) struct GoBuild<'a> {
    /// What is built, for people: "Jaeger v1.76.0".
    pub what: &'a str,
    /// How long a cold build takes, for people: "about 5 minutes on two cores".
    pub expected: &'a str,
    /// The Go module (a directory with go.mod and go.sum) that pins the packages.
    pub module_dir: &'a Path,
    /// `-ldflags`.
    pub ldflags: &'a str,
    /// `-o`: a file for one package, a directory ending in `/` for several.
    pub output: &'a str,
    /// The packages to build.
    pub packages: &'a [&'a str],
    /// Extra environment, e.g. `GOFLAGS`.
    pub env: &'a [(&'a str, &'a str)],
    /// Where `go build` writes its output.
    pub log: &'a Path,
}

impl GoBuild<'_> {
    /// Runs the build, reporting progress on stderr, and fails with the log's end.
    pub(crate) fn run(&self) -> Result<()> {
        let go = go_command()?;
        eprintln!(
            "testcluster: building {} (cold: {}; cached afterwards; log: {})",
            self.what,
            self.expected,
            self.log.display()
        );
        let log = File::create(self.log).map_err(io_error("create", self.log))?;
        let log_err = log.try_clone().map_err(io_error("open", self.log))?;
        let started = Instant::now();
        let mut child = Command::new(&go)
            .current_dir(self.module_dir)
            // Static binaries need no C toolchain; `local` forbids a toolchain download.
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", "local")
            .envs(self.env.iter().copied())
            .args([
                "build",
                "-trimpath",
                "-ldflags",
                self.ldflags,
                "-o",
                self.output,
            ])
            .args(self.packages)
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io_error("run", &go))?;
        let mut reported = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(io_error("wait for", &go))? {
                break status;
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                eprintln!(
                    "testcluster: still building {}: {} so far (log: {})",
                    self.what,
                    minutes(started.elapsed()),
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        if !status.success() {
            eprintln!(
                "testcluster: the end of {}:\n{}",
                self.log.display(),
                log_tail(self.log)
            );
            return Err(Error::GoBuild {
                what: self.what.to_string(),
                status,
            });
        }
        eprintln!(
            "testcluster: built {} in {}",
            self.what,
            minutes(started.elapsed())
        );
        Ok(())
    }
}

/// `4m07s`.
pub(crate) fn minutes(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    format!("{}m{:02}s", seconds / 60, seconds % 60)
}

/// The last few KiB of a log, or why it could not be read.
fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(FAILED_LOG_TAIL)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|error| format!("(cannot read it: {error})"))
}

fn go_command() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("go"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/local/go/bin/go")])
        .find(|candidate| candidate.is_file())
        .ok_or(Error::GoMissing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_lands_whole_and_only_once() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("tool-v1.2.3-abc");
        let done = |dir: &Path| dir.join("bin").is_file();
        build_locked(&target, done, |partial| {
            assert!(partial.ends_with("tool-v1.2.3-abc.partial"));
            fs::write(partial.join("bin"), b"x").map_err(io_error("write", partial))
        })
        .unwrap();
        assert!(target.join("bin").is_file());
        assert!(!with_suffix(&target, ".partial").exists());
        build_locked(&target, done, |_| panic!("built twice")).unwrap();
    }

    #[test]
    fn a_failed_build_leaves_nothing_in_place() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("tool-v1.2.3-abc");
        let failed = build_locked(
            &target,
            |dir| dir.join("bin").is_file(),
            |_| Err(Error::GoMissing),
        );
        assert!(matches!(failed, Err(Error::GoMissing)));
        assert!(!target.exists());
    }

    #[test]
    fn concurrent_callers_wait_for_the_first_build() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("tool-v1.2.3-abc");
        let builds = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    build_locked(
                        &target,
                        |dir| dir.join("bin").is_file(),
                        |partial| {
                            builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(200));
                            fs::write(partial.join("bin"), b"x").map_err(io_error("write", partial))
                        },
                    )
                    .unwrap();
                });
            }
        });
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(target.join("bin").is_file());
    }

    #[test]
    fn minutes_read_as_minutes_and_seconds() {
        assert_eq!(minutes(Duration::from_secs(247)), "4m07s");
        assert_eq!(minutes(Duration::from_secs(5)), "0m05s");
    }
}
