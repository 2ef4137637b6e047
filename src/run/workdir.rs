//! Where a run keeps its files, and its session id.
//!
//! Owns: generating `run-<random>` session ids, creating private directories (mode 0700,
//! never an existing one reused by accident), and the throwaway certificate directory
//! that is removed when the run ends.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// `run-` and 12 random hex digits: unique across runs on one gateway.
pub fn session_id() -> String {
    format!("run-{}", random_hex(6))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the system has randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a fresh private directory `pathgate-<session>-<random>` under the system's
/// temporary directory. `create` (not `create_dir_all`) fails on an existing path, so a
/// directory planted in advance by someone else is never adopted.
pub fn fresh_temp_dir(session: &str) -> std::io::Result<PathBuf> {
    loop {
        let path = std::env::temp_dir().join(format!("pathgate-{session}-{}", random_hex(4)));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Creates `path` and its parents (mode 0700 for what it creates); an existing directory
/// is used as it is.
pub fn ensure_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// A directory removed with everything in it when dropped: the throwaway CA's private
/// key must not outlive the run (the agent's kubeconfig embeds only the certificate).
#[derive(Debug)]
pub struct Throwaway(PathBuf);

impl Throwaway {
    /// A fresh private temporary directory for `session`.
    pub fn new(session: &str) -> std::io::Result<Throwaway> {
        fresh_temp_dir(&format!("{session}-certs")).map(Throwaway)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), %error, "cannot remove the run's throwaway certificates");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_valid_and_distinct() {
        let a = session_id();
        let b = session_id();
        assert!(crate::session::is_valid_id(&a), "{a}");
        assert!(a.starts_with("run-") && a.len() == 16, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn temp_dirs_are_private_and_throwaway_dirs_vanish() {
        use std::os::unix::fs::PermissionsExt;
        let dir = fresh_temp_dir("run-test").unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir(&dir).unwrap();
        let throwaway = Throwaway::new("run-test").unwrap();
        let inside = throwaway.path().join("ca.key");
        std::fs::write(&inside, "secret").unwrap();
        let path = throwaway.path().to_path_buf();
        drop(throwaway);
        assert!(!path.exists(), "{} still exists", path.display());
    }
}
