//! The pre-image store: the objects as they were before a mutation (and as the apiserver
//! answered it), content-addressed beside the spool, so that `pathgate undo` can compute
//! inverses from what the ledger names.
//!
//! Owns: the files under `<ledger.dir>/images` (one per image, named by the SHA-256 of its
//! stored bytes), their bounds (`ledger.pre_images.*`: a total size with the oldest evicted
//! first, a size per object, a length per collection), sealing Secret images with the
//! configured key ([`key`]), the [`ImageRecord`] an entry carries, and the store's metrics.
//!
//! Does not own: which requests are imaged or when (the proxy decides and calls
//! [`ImageStore::put`] off the event loop), or what undo does with an image.
//!
//! # Files
//!
//! - Ordinary objects are stored as the JSON they were read as; a reader verifies the file
//!   against its name before trusting it.
//! - Secrets (and collections of them) are stored sealed: a nonce and the AES-256-GCM
//!   ciphertext. The digest is over the ciphertext: a digest of the plaintext would let
//!   anyone holding the ledger test guesses of a secret value. Without a key they are not
//!   stored at all (`withheld: secret`).
//! - A write is a temporary file, `fdatasync` and a rename: the file's bytes are durable
//!   before its name appears. The name (the rename) is made durable by the next fsync of
//!   the outcome that names it: on ext4 and XFS, whose metadata journal commits in order,
//!   that fsync commits every earlier rename too. A directory fsync per image would be a
//!   second journal commit on every mutation, for filesystems (btrfs) without that order;
//!   there a crash can lose a name, which a reader sees as a missing image.
//! - The temporary file is taken from a few empty files created and made durable ahead of
//!   the writes ([`Spares`], on a thread of their own): creating a file costs a journal
//!   commit of its inode and directory entry, about 1 ms on the test machine's ext4, while
//!   filling an existing empty file and making it durable costs about 0.2 ms
//!   (BENCHMARKS.md, "Ninth session"). Without a spare, a write creates its own file.
//! - Eviction removes the least recently written images first (by modification time,
//!   which a rewrite of the same digest refreshes) until the new one fits.

mod key;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::{ImageOutcome, Metrics};

pub use key::{load_key, SecretKey, KEY_BYTES};

/// The name of the store's directory inside `ledger.dir`.
pub const IMAGES_DIR: &str = "images";

/// The prefix of a digest as an [`ImageRecord`] writes it.
pub const DIGEST_PREFIX: &str = "sha256:";

/// Where the images of the spool in `ledger_dir` are stored.
pub fn images_dir(ledger_dir: &Path) -> PathBuf {
    ledger_dir.join(IMAGES_DIR)
}

/// What an entry says about one image: where it is, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageRecord {
    /// The image is in the store under `digest`.
    Stored {
        /// `sha256:` and 64 lowercase hex digits of the stored bytes.
        digest: String,
        /// Size of the stored file.
        bytes: u64,
        /// Sealed with the key (a Secret); written only when `true`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        encrypted: bool,
    },
    /// The image was not stored.
    Withheld {
        #[serde(rename = "withheld")]
        reason: Withheld,
    },
}

impl ImageRecord {
    /// The digest of a stored image.
    pub fn digest(&self) -> Option<&str> {
        match self {
            ImageRecord::Stored { digest, .. } => Some(digest),
            ImageRecord::Withheld { .. } => None,
        }
    }
}

/// Why an image was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Withheld {
    /// A Secret, and no `ledger.pre_images.secret_key_file` is configured.
    Secret,
    /// Larger than `max_object_bytes`, or a collection longer than `max_list_items`.
    TooLarge,
    /// No room could be made within `max_bytes`.
    StoreFull,
    /// The object could not be read (the GET failed) or the image could not be written.
    Unavailable,
    /// The request reused its dry run's pre-image, and the real answer did not confirm the
    /// dry run's prediction: the object may have changed in between.
    Unconfirmed,
}

impl Withheld {
    /// Every reason, in schema order.
    pub const ALL: [Withheld; 5] = [
        Withheld::Secret,
        Withheld::TooLarge,
        Withheld::StoreFull,
        Withheld::Unavailable,
        Withheld::Unconfirmed,
    ];

    /// The name the schema uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Withheld::Secret => "secret",
            Withheld::TooLarge => "too-large",
            Withheld::StoreFull => "store-full",
            Withheld::Unavailable => "unavailable",
            Withheld::Unconfirmed => "unconfirmed",
        }
    }
}

/// Why an image could not be read (or a key loaded).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No file for the digest: evicted by retention, or never written.
    #[error("image {digest} is not in the store (evicted by ledger.pre_images.max_bytes, or never written)")]
    Missing { digest: String },
    /// The image is sealed and no key was given.
    #[error("image {digest} is a sealed Secret image; give the key (ledger.pre_images.secret_key_file) to read it")]
    Encrypted { digest: String },
    /// The file does not match its digest, is not JSON, or does not open with the key.
    #[error("image {digest} is corrupt: {reason}")]
    Corrupt { digest: String, reason: String },
    /// The store's directory or file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A key file is unreadable or malformed.
    #[error("{}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    /// The system's random generator failed (no nonce, so nothing was sealed).
    #[error("the system random generator failed; a Secret image cannot be sealed")]
    Random,
}

/// Whether images of a resource are sealed (or withheld without a key): Secrets.
pub fn is_secret(api_group: &str, resource: &str) -> bool {
    api_group.is_empty() && resource == "secrets"
}

/// The bounds of a writable store (`ledger.pre_images.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Total size of the files; the oldest are evicted past it.
    pub max_bytes: u64,
    /// Largest image (its JSON, before sealing).
    pub max_object_bytes: u64,
    /// Most items a collection's image keeps ([`list_image`]).
    pub max_list_items: usize,
}

impl Default for ImageLimits {
    /// 256 MiB in all, 1 MiB an object, 500 items a collection.
    fn default() -> Self {
        ImageLimits {
            max_bytes: 256 << 20,
            max_object_bytes: 1 << 20,
            max_list_items: 500,
        }
    }
}

/// `ledger.pre_images` as the ledger uses it (when enabled).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSettings {
    pub limits: ImageLimits,
    /// The key file Secret images are sealed with (validated when the config loaded).
    pub secret_key_file: Option<PathBuf>,
}

impl ImageSettings {
    /// Opens the store of the spool in `ledger_dir` (its key read from the key file).
    pub fn open(&self, ledger_dir: &Path, metrics: Metrics) -> Result<ImageStore, ImageError> {
        let key = self.secret_key_file.as_deref().map(load_key).transpose()?;
        ImageStore::open(&images_dir(ledger_dir), self.limits, key, metrics)
    }
}

/// What is known of the files on disk: sizes and the order eviction takes them in.
#[derive(Default)]
struct Index {
    /// Bytes of every file plus writes in progress.
    total: u64,
    /// Write order (oldest first) -> digest.
    by_age: BTreeMap<u64, String>,
    /// Digest -> (write order, size).
    files: HashMap<String, (u64, u64)>,
    next: u64,
}

impl Index {
    fn insert(&mut self, digest: String, size: u64) {
        let order = self.next;
        self.next += 1;
        self.by_age.insert(order, digest.clone());
        if let Some((old, _)) = self.files.insert(digest, (order, size)) {
            self.by_age.remove(&old);
        }
    }

    fn remove_oldest(&mut self) -> Option<(String, u64)> {
        let (_, digest) = self.by_age.pop_first()?;
        let (_, size) = self.files.remove(&digest)?;
        self.total -= size;
        Some((digest, size))
    }
}

/// The image store over one directory. Writes are blocking file I/O: call
/// [`ImageStore::put`] from a blocking thread.
pub struct ImageStore {
    dir: PathBuf,
    key: Option<SecretKey>,
    /// `None` for a store opened read-only (`pathgate undo`).
    limits: Option<ImageLimits>,
    index: Mutex<Index>,
    metrics: Option<Metrics>,
    /// `None` for a store opened read-only.
    spares: Option<Arc<Spares>>,
}

impl Drop for ImageStore {
    fn drop(&mut self) {
        if let Some(spares) = &self.spares {
            spares.close();
        }
    }
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("dir", &self.dir)
            .field("key", &self.key.is_some())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ImageStore {
    /// Opens (creating it if missing) the store in `dir` for writing, within `limits`:
    /// leftovers of interrupted writes are removed, and the existing images are indexed
    /// oldest first by modification time.
    pub fn open(
        dir: &Path,
        limits: ImageLimits,
        key: Option<SecretKey>,
        metrics: Metrics,
    ) -> Result<ImageStore, ImageError> {
        let io_error = |source| ImageError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_error)?;
        let mut found = Vec::new();
        for item in fs::read_dir(dir).map_err(io_error)? {
            let item = item.map_err(io_error)?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(item.path());
                continue;
            }
            if !is_hex_digest(name) {
                continue;
            }
            let metadata = item.metadata().map_err(io_error)?;
            let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((modified, name.to_owned(), metadata.len()));
        }
        found.sort();
        let mut index = Index::default();
        for (_, digest, size) in found {
            index.total += size;
            index.insert(digest, size);
        }
        metrics.pre_image_bytes.set(gauge_value(index.total));
        let store = ImageStore {
            dir: dir.to_path_buf(),
            key,
            limits: Some(limits),
            index: Mutex::new(index),
            metrics: Some(metrics),
            spares: Some(Arc::new(Spares::new(dir))),
        };
        store.make_room(0)?;
        Ok(store)
    }

    /// The store without spare files: every write creates its own (the reference
    /// `cargo bench --bench image_write` measures the spares against).
    pub fn without_spares(mut self) -> ImageStore {
        if let Some(spares) = self.spares.take() {
            spares.close();
        }
        self
    }

    /// Opens the store in `dir` for reading only; `key` opens sealed Secret images.
    pub fn open_read_only(dir: &Path, key: Option<SecretKey>) -> Result<ImageStore, ImageError> {
        let metadata = fs::metadata(dir).map_err(|source| ImageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if !metadata.is_dir() {
            return Err(ImageError::Io {
                path: dir.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
            });
        }
        Ok(ImageStore {
            dir: dir.to_path_buf(),
            key,
            limits: None,
            index: Mutex::new(Index::default()),
            metrics: None,
            spares: None,
        })
    }

    /// The store's bounds; `None` when it was opened read-only.
    pub fn limits(&self) -> Option<ImageLimits> {
        self.limits
    }

    /// Stores the JSON of one image (`secret`: seal it, or withhold it without a key) and
    /// returns what the entry records. Never fails: what could not be stored is withheld,
    /// with the reason.
    pub fn put(&self, json: &[u8], secret: bool) -> ImageRecord {
        self.put_announcing(json, secret, |_| {})
    }

    /// [`ImageStore::put`], calling `announce` with the record as soon as it is known,
    /// before the file is written: a caller can record the entry that names the image
    /// while the image's own fsync runs. If the write then fails, the returned record is
    /// `withheld: unavailable` and a reader of the announced one finds the image missing.
    pub fn put_announcing(
        &self,
        json: &[u8],
        secret: bool,
        announce: impl FnOnce(&ImageRecord),
    ) -> ImageRecord {
        let record = self.try_put(json, secret, announce);
        if let Some(metrics) = &self.metrics {
            let outcome = match record {
                ImageRecord::Stored { .. } => ImageOutcome::Stored,
                ImageRecord::Withheld { .. } => ImageOutcome::Withheld,
            };
            metrics.pre_image(outcome, 1);
        }
        record
    }

    fn try_put(
        &self,
        json: &[u8],
        secret: bool,
        announce: impl FnOnce(&ImageRecord),
    ) -> ImageRecord {
        let staged = self.stage(json, secret);
        let (bytes, size) = match &staged {
            Ok(bytes) => (&bytes[..], bytes.len() as u64),
            Err(reason) => {
                let record = ImageRecord::Withheld { reason: *reason };
                announce(&record);
                return record;
            }
        };
        let digest = hex_digest(bytes);
        let stored = ImageRecord::Stored {
            digest: format!("{DIGEST_PREFIX}{digest}"),
            bytes: size,
            encrypted: secret,
        };
        if self.refresh(&digest) {
            announce(&stored);
            return stored;
        }
        if let Err(reason) = self.reserve(size) {
            let record = ImageRecord::Withheld { reason };
            announce(&record);
            return record;
        }
        announce(&stored);
        match self.write(&digest, bytes) {
            Ok(()) => {
                self.commit(digest, size);
                stored
            }
            Err(error) => {
                tracing::error!(%error, %digest, "an image could not be written");
                self.release(size);
                ImageRecord::Withheld {
                    reason: Withheld::Unavailable,
                }
            }
        }
    }

    /// The bytes to store: the JSON, or a Secret's sealed; why not, when they cannot be.
    fn stage<'a>(&self, json: &'a [u8], secret: bool) -> Result<Cow<'a, [u8]>, Withheld> {
        let limits = self.limits.ok_or(Withheld::Unavailable)?;
        if json.len() as u64 > limits.max_object_bytes {
            return Err(Withheld::TooLarge);
        }
        match (secret, &self.key) {
            (false, _) => Ok(Cow::Borrowed(json)),
            (true, None) => Err(Withheld::Secret),
            (true, Some(key)) => key.seal(json).map(Cow::Owned).map_err(|error| {
                tracing::error!(%error, "a Secret image could not be sealed");
                Withheld::Unavailable
            }),
        }
    }

    /// An image already stored under `digest` is kept, as the newest: its modification
    /// time is refreshed, so eviction after a restart sees the same order.
    fn refresh(&self, digest: &str) -> bool {
        let mut index = self.index.lock().expect("image index lock");
        let Some(&(_, size)) = index.files.get(digest) else {
            return false;
        };
        let path = self.dir.join(digest);
        let touched = fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(SystemTime::now()));
        if touched.is_err() {
            // Gone under us (removed by hand): write it again.
            index.files.remove(digest);
            index.by_age.retain(|_, d| d != digest);
            index.total -= size;
            return false;
        }
        index.insert(digest.to_owned(), size);
        true
    }

    /// Makes room for `size` more bytes and counts them as in progress.
    fn reserve(&self, size: u64) -> Result<(), Withheld> {
        let limits = self.limits.expect("a writable store");
        if size > limits.max_bytes {
            return Err(Withheld::StoreFull);
        }
        self.make_room(size).map_err(|error| {
            tracing::error!(%error, "no room could be made for an image");
            Withheld::StoreFull
        })?;
        self.index.lock().expect("image index lock").total += size;
        Ok(())
    }

    /// Evicts the oldest images until `size` more bytes fit within `max_bytes`.
    fn make_room(&self, size: u64) -> Result<(), ImageError> {
        let max = self.limits.map_or(u64::MAX, |l| l.max_bytes);
        let mut index = self.index.lock().expect("image index lock");
        let mut evicted = 0;
        while index.total + size > max {
            let Some((digest, bytes)) = index.remove_oldest() else {
                break;
            };
            let path = self.dir.join(&digest);
            match fs::remove_file(&path) {
                Ok(()) => evicted += 1,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    // Still on disk: still counted, so the bound holds.
                    index.total += bytes;
                    index.insert(digest, bytes);
                    return Err(ImageError::Io { path, source });
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.pre_image(ImageOutcome::Evicted, evicted);
            metrics.pre_image_bytes.set(gauge_value(index.total));
        }
        if index.total + size > max {
            return Err(ImageError::Io {
                path: self.dir.clone(),
                source: io::Error::other("images in progress fill the store"),
            });
        }
        Ok(())
    }

    fn commit(&self, digest: String, size: u64) {
        let mut index = self.index.lock().expect("image index lock");
        if let Some(&(_, old)) = index.files.get(&digest) {
            // A concurrent write of the same bytes got there first: counted once.
            index.total -= old;
        }
        index.insert(digest, size);
        if let Some(metrics) = &self.metrics {
            metrics.pre_image_bytes.set(gauge_value(index.total));
        }
    }

    fn release(&self, size: u64) {
        self.index.lock().expect("image index lock").total -= size;
    }

    /// Temporary file, `fdatasync`, rename (see the module docs for the rename's
    /// durability).
    fn write(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ImageError::Io { path, source }
        };
        let spare = self.spares.as_ref().and_then(|spares| spares.take());
        let (temp, file) = match spare {
            Some(spare) => {
                let file = fs::OpenOptions::new().write(true).open(&spare);
                (spare, file)
            }
            None => {
                let temp = self
                    .dir
                    .join(format!("{TEMP_PREFIX}{digest}-{}", rand::random::<u64>()));
                let file = fs::File::create_new(&temp);
                (temp, file)
            }
        };
        let written = file.and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_data()
        });
        let renamed = written.and_then(|()| fs::rename(&temp, self.dir.join(digest)));
        renamed.map_err(|source| {
            let _ = fs::remove_file(&temp);
            io_error(&temp)(source)
        })
    }

    /// Reads the image stored under `digest` (`sha256:<hex>` or the bare hex), verified
    /// against its digest, opened with the key when sealed.
    pub fn get(&self, digest: &str) -> Result<serde_json::Value, ImageError> {
        let hex = digest.strip_prefix(DIGEST_PREFIX).unwrap_or(digest);
        let corrupt = |reason: &str| ImageError::Corrupt {
            digest: digest.to_owned(),
            reason: reason.to_owned(),
        };
        if !is_hex_digest(hex) {
            return Err(corrupt("not a sha256 digest"));
        }
        let path = self.dir.join(hex);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::Missing {
                    digest: digest.to_owned(),
                })
            }
            Err(source) => return Err(ImageError::Io { path, source }),
        };
        if hex_digest(&bytes) != hex {
            return Err(corrupt("the file does not match its digest"));
        }
        // A sealed image starts with a random nonce: never a JSON document in practice.
        if let Ok(value) = serde_json::from_slice(&bytes) {
            return Ok(value);
        }
        let Some(key) = &self.key else {
            return Err(ImageError::Encrypted {
                digest: digest.to_owned(),
            });
        };
        let plaintext = key
            .open(&bytes)
            .ok_or_else(|| corrupt("not JSON, and it does not open with the key given"))?;
        serde_json::from_slice(&plaintext).map_err(|_| corrupt("the opened image is not JSON"))
    }
}

/// The image of a collection: `{"kind":"List","items":[...]}` of at most
/// `max_list_items` items; `Err(TooLarge)` past it (a partial list would restore a part
/// and say it was the whole).
pub fn list_image(
    items: Vec<serde_json::Value>,
    max_list_items: usize,
) -> Result<serde_json::Value, Withheld> {
    if items.len() > max_list_items {
        return Err(Withheld::TooLarge);
    }
    Ok(serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// Empty files in the store's directory, each created and made durable (the file and the
/// directory fsynced) by a thread of its own before a write takes it, so that a write pays
/// for filling a file, not for creating one. The thread starts with the first write and
/// keeps between [`Spares::LOW`] and [`Spares::HIGH`] ready; it ends with the store.
/// Spares are named like temporary files: the next open removes those left unused.
struct Spares {
    dir: PathBuf,
    state: Mutex<SpareState>,
    wanted: Condvar,
}

#[derive(Default)]
struct SpareState {
    ready: Vec<PathBuf>,
    started: bool,
    closed: bool,
}

impl Spares {
    const LOW: usize = 4;
    const HIGH: usize = 16;

    fn new(dir: &Path) -> Spares {
        Spares {
            dir: dir.to_path_buf(),
            state: Mutex::default(),
            wanted: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SpareState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A ready spare, if any; asks for more when few are left.
    fn take(self: &Arc<Self>) -> Option<PathBuf> {
        let mut state = self.lock();
        let spare = state.ready.pop();
        if !state.started {
            state.started = true;
            let spares = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("pg-image-spares".into())
                .spawn(move || spares.refill());
            if let Err(error) = spawned {
                tracing::warn!(%error, "no spare image files: each write creates its own");
            }
        } else if state.ready.len() < Self::LOW {
            self.wanted.notify_one();
        }
        spare
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wanted.notify_one();
    }

    /// The spare thread: tops the spares up to [`Spares::HIGH`] whenever fewer than
    /// [`Spares::LOW`] are left, until the store closes or a file cannot be created.
    fn refill(&self) {
        loop {
            let missing = {
                let mut state = self.lock();
                while !state.closed && state.ready.len() >= Self::LOW {
                    state = self
                        .wanted
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if state.closed {
                    return;
                }
                Self::HIGH - state.ready.len()
            };
            match self.create(missing) {
                Ok(created) => self.lock().ready.extend(created),
                Err(error) => {
                    tracing::warn!(%error, dir = %self.dir.display(), "no more spare image files");
                    return;
                }
            }
        }
    }

    /// `n` new empty files, durable with their names. All are created before any is
    /// synced: the first fsync commits the journal transaction that holds every creation,
    /// so the batch costs about one commit instead of one per file (each commit is one the
    /// request path's fsyncs may have to wait behind).
    fn create(&self, n: usize) -> io::Result<Vec<PathBuf>> {
        let mut created = Vec::with_capacity(n);
        for _ in 0..n {
            let path = self
                .dir
                .join(format!("{SPARE_PREFIX}{:016x}", rand::random::<u64>()));
            created.push((fs::File::create_new(&path)?, path));
        }
        for (file, _) in &created {
            file.sync_all()?;
        }
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(created.into_iter().map(|(_, path)| path).collect())
    }
}

/// Names of files being written; removed at open (a write that never finished).
const TEMP_PREFIX: &str = ".tmp-";

/// Names of the [`Spares`] (temporary files too).
const SPARE_PREFIX: &str = ".tmp-spare-";

fn hex_digest(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut text = String::with_capacity(64);
    for byte in digest {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn is_hex_digest(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| HEX.contains(&b))
}

fn gauge_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
