use std::path::Path;

use serde_json::{json, Value};

use super::*;

fn store(dir: &Path, limits: ImageLimits, key: Option<SecretKey>) -> (ImageStore, Metrics) {
    let metrics = Metrics::new();
    let store = ImageStore::open(dir, limits, key, metrics.clone()).expect("store opens");
    (store, metrics)
}

fn limits(max_bytes: u64) -> ImageLimits {
    ImageLimits {
        max_bytes,
        ..ImageLimits::default()
    }
}

/// A ConfigMap whose JSON is about `size` bytes.
fn config_map(name: &str, size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "7"},
        "data": {"blob": "x".repeat(size)}
    }))
    .unwrap()
}

fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes(&[byte; KEY_BYTES])
}

fn digest_of(record: &ImageRecord) -> String {
    record.digest().expect("stored").to_owned()
}

fn count(metrics: &Metrics, outcome: ImageOutcome) -> u64 {
    metrics
        .pre_images
        .with_label_values(&[outcome.as_str()])
        .get()
}

const SECRET_VALUE: &str = "hunter2-do-not-leak";

fn secret_json() -> Vec<u8> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE);
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop", "resourceVersion": "11"},
        "data": {"password": encoded},
        "stringData": {"plain": SECRET_VALUE}
    }))
    .unwrap()
}

/// Every byte of every file under `dir`, recursively.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for item in std::fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        if path.is_dir() {
            bytes.extend(all_bytes(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn an_image_reads_back_as_stored_and_is_named_by_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (store, metrics) = store(dir.path(), ImageLimits::default(), None);
    let json = config_map("web", 10);
    let record = store.put(&json, false);
    let ImageRecord::Stored {
        digest,
        bytes,
        encrypted,
    } = &record
    else {
        panic!("{record:?}");
    };
    assert!(!encrypted);
    assert_eq!(*bytes, json.len() as u64);
    let hex = digest.strip_prefix("sha256:").unwrap();
    assert_eq!(std::fs::read(dir.path().join(hex)).unwrap(), json);
    let expected: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(store.get(digest).unwrap(), expected);
    assert_eq!(
        store.get(hex).unwrap(),
        expected,
        "the bare hex names it too"
    );
    assert_eq!(count(&metrics, ImageOutcome::Stored), 1);
    assert_eq!(metrics.pre_image_bytes.get(), json.len() as i64);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| {
            let name = n.to_str().unwrap();
            name.starts_with(TEMP_PREFIX) && !name.starts_with(SPARE_PREFIX)
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The empty spare files in `dir`, by inode.
fn spares(dir: &Path) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().unwrap().starts_with(SPARE_PREFIX))
        .map(|e| e.metadata().unwrap().ino())
        .collect()
}

#[test]
fn writes_fill_spare_files_made_ahead_and_a_reopen_removes_the_unused_ones() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = store(dir.path(), ImageLimits::default(), None);
    assert!(spares(dir.path()).is_empty(), "none before the first write");
    images.put(&config_map("first", 10), false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ready = || images.spares.as_ref().unwrap().lock().ready.len();
    while ready() < Spares::LOW {
        assert!(std::time::Instant::now() < deadline, "spares were made");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let ready = spares(dir.path());
    let record = images.put(&config_map("second", 10), false);
    let hex = record.digest().unwrap().strip_prefix("sha256:").unwrap();
    let written = std::fs::metadata(dir.path().join(hex)).unwrap().ino();
    assert!(ready.contains(&written), "the write filled a spare");
    let expected: Value = serde_json::from_slice(&config_map("second", 10)).unwrap();
    assert_eq!(images.get(hex).unwrap(), expected);
    drop(images);
    let (_store, _) = store(dir.path(), ImageLimits::default(), None);
    assert!(
        spares(dir.path()).is_empty(),
        "an open removes unused spares"
    );
}

#[test]
fn a_full_store_evicts_the_oldest_images_first() {
    let dir = tempfile::tempdir().unwrap();
    let one = config_map("a", 1000).len() as u64;
    // Room for three images of this size, not four.
    let (store, metrics) = store(dir.path(), limits(one * 3 + one / 2), None);
    let records: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| digest_of(&store.put(&config_map(name, 1000), false)))
        .collect();
    assert!(
        matches!(store.get(&records[0]), Err(ImageError::Missing { .. })),
        "the oldest is evicted"
    );
    for digest in &records[1..] {
        assert!(store.get(digest).is_ok(), "{digest} kept");
    }
    assert_eq!(count(&metrics, ImageOutcome::Evicted), 1);
    assert_eq!(metrics.pre_image_bytes.get(), (one * 3) as i64);
}

#[test]
fn rewriting_an_image_makes_it_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let one = config_map("a", 1000).len() as u64;
    let (store, _) = store(dir.path(), limits(one * 2 + one / 2), None);
    let a = digest_of(&store.put(&config_map("a", 1000), false));
    let b = digest_of(&store.put(&config_map("b", 1000), false));
    assert_eq!(digest_of(&store.put(&config_map("a", 1000), false)), a);
    store.put(&config_map("c", 1000), false);
    assert!(store.get(&a).is_ok(), "refreshed: not the oldest any more");
    assert!(matches!(store.get(&b), Err(ImageError::Missing { .. })));
}

#[test]
fn reopening_indexes_what_is_there_and_removes_unfinished_writes() {
    let dir = tempfile::tempdir().unwrap();
    let one = config_map("a", 1000).len() as u64;
    let (first, second) = {
        let (store, _) = store(dir.path(), ImageLimits::default(), None);
        let first = digest_of(&store.put(&config_map("a", 1000), false));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = digest_of(&store.put(&config_map("b", 1000), false));
        (first, second)
    };
    let temp = dir.path().join(format!("{TEMP_PREFIX}abc-1"));
    std::fs::write(&temp, b"half an image").unwrap();
    // A smaller bound than the files on disk: the oldest goes at open.
    let (store, metrics) = store(dir.path(), limits(one + one / 2), None);
    assert!(!temp.exists());
    assert!(matches!(store.get(&first), Err(ImageError::Missing { .. })));
    assert!(store.get(&second).is_ok());
    assert_eq!(metrics.pre_image_bytes.get(), one as i64);
}

#[test]
fn a_too_large_object_is_withheld_and_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let bounds = ImageLimits {
        max_object_bytes: 4096,
        ..ImageLimits::default()
    };
    let (store, metrics) = store(dir.path(), bounds, None);
    let record = store.put(&config_map("big", 5000), false);
    assert_eq!(
        record,
        ImageRecord::Withheld {
            reason: Withheld::TooLarge
        }
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(count(&metrics, ImageOutcome::Withheld), 1);
    assert!(matches!(
        store.put(&config_map("small", 100), false),
        ImageRecord::Stored { .. }
    ));
}

#[test]
fn an_image_larger_than_the_whole_store_is_store_full() {
    let dir = tempfile::tempdir().unwrap();
    let bounds = ImageLimits {
        max_bytes: 2048,
        max_object_bytes: 1 << 20,
        max_list_items: 10,
    };
    let (store, _) = store(dir.path(), bounds, None);
    let kept = digest_of(&store.put(&config_map("small", 100), false));
    assert_eq!(
        store.put(&config_map("big", 4000), false),
        ImageRecord::Withheld {
            reason: Withheld::StoreFull
        }
    );
    assert!(store.get(&kept).is_ok(), "nothing evicted for it");
}

#[test]
fn a_collection_past_max_list_items_is_too_large() {
    let items = |n| {
        (0..n)
            .map(|i| json!({"metadata": {"name": format!("cm-{i}")}}))
            .collect()
    };
    let list = list_image(items(3), 3).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert_eq!(list_image(items(4), 3), Err(Withheld::TooLarge));
}

#[test]
fn a_missing_digest_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path(), ImageLimits::default(), None);
    let absent = format!("sha256:{}", "0".repeat(64));
    assert!(matches!(
        store.get(&absent),
        Err(ImageError::Missing { .. })
    ));
    assert!(matches!(
        store.get("sha256:not-a-digest"),
        Err(ImageError::Corrupt { .. })
    ));
}

#[test]
fn a_corrupt_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path(), ImageLimits::default(), None);
    let digest = digest_of(&store.put(&config_map("web", 10), false));
    let path = dir.path().join(digest.strip_prefix("sha256:").unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let error = store.get(&digest).unwrap_err();
    assert!(
        matches!(&error, ImageError::Corrupt { reason, .. } if reason.contains("does not match")),
        "{error}"
    );
    // Bytes that match their name but are neither JSON nor sealed with the key.
    let garbage = b"\x00\x01 not json";
    let name = hex_digest(garbage);
    std::fs::write(dir.path().join(&name), garbage).unwrap();
    let keyed = ImageStore::open_read_only(dir.path(), Some(key(1))).unwrap();
    assert!(matches!(keyed.get(&name), Err(ImageError::Corrupt { .. })));
}

#[test]
fn a_secret_without_a_key_is_withheld_and_written_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path(), ImageLimits::default(), None);
    assert_eq!(
        store.put(&secret_json(), true),
        ImageRecord::Withheld {
            reason: Withheld::Secret
        }
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_secret_is_sealed_never_in_clear_and_opens_with_its_key() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path(), ImageLimits::default(), Some(key(7)));
    let json = secret_json();
    let record = store.put(&json, true);
    let ImageRecord::Stored {
        digest, encrypted, ..
    } = &record
    else {
        panic!("{record:?}");
    };
    assert!(encrypted);
    assert_ne!(
        digest.strip_prefix("sha256:").unwrap(),
        hex_digest(&json),
        "the digest is not the plaintext's"
    );
    let on_disk = all_bytes(dir.path());
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE);
    for needle in [SECRET_VALUE, encoded.as_str(), "password", "Secret"] {
        assert!(
            !contains(&on_disk, needle),
            "{needle:?} is on disk in clear"
        );
    }
    let expected: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(store.get(digest).unwrap(), expected);
    let reader = ImageStore::open_read_only(dir.path(), Some(key(7))).unwrap();
    assert_eq!(reader.get(digest).unwrap(), expected);

    let without_key = ImageStore::open_read_only(dir.path(), None).unwrap();
    assert!(matches!(
        without_key.get(digest),
        Err(ImageError::Encrypted { .. })
    ));
    let wrong_key = ImageStore::open_read_only(dir.path(), Some(key(8))).unwrap();
    assert!(matches!(
        wrong_key.get(digest),
        Err(ImageError::Corrupt { .. })
    ));
}

#[test]
fn the_same_secret_sealed_twice_gets_two_digests() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path(), ImageLimits::default(), Some(key(7)));
    let first = digest_of(&store.put(&secret_json(), true));
    let second = digest_of(&store.put(&secret_json(), true));
    assert_ne!(
        first, second,
        "a fresh nonce each time: equal secrets are not linkable"
    );
}

#[test]
fn a_read_only_store_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open_read_only(dir.path(), None).unwrap();
    assert_eq!(
        store.put(&config_map("web", 10), false),
        ImageRecord::Withheld {
            reason: Withheld::Unavailable
        }
    );
    assert!(ImageStore::open_read_only(&dir.path().join("absent"), None).is_err());
}

#[test]
fn key_files_are_64_hex_digits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
    let sealed = load_key(&path).unwrap().seal(b"{}").unwrap();
    assert_eq!(
        key(0xab).open(&sealed).as_deref(),
        Some(&b"{}"[..]),
        "the file's bytes are the key"
    );
    for (text, reason) in [
        ("abcd", "holds 4 characters"),
        (&"zz".repeat(32), "not hexadecimal at character 1"),
        (&format!("{}é", "a".repeat(62)), "not hexadecimal"),
    ] {
        std::fs::write(&path, text).unwrap();
        let error = load_key(&path).unwrap_err();
        assert!(
            matches!(&error, ImageError::Key { reason: r, .. } if r.contains(reason)),
            "{text}: {error}"
        );
    }
    let error = load_key(&dir.path().join("absent")).unwrap_err();
    assert!(error.to_string().contains("cannot be read"), "{error}");
}

#[test]
fn records_are_written_as_the_schema_says() {
    let stored = ImageRecord::Stored {
        digest: format!("sha256:{}", "a".repeat(64)),
        bytes: 12,
        encrypted: false,
    };
    let text = serde_json::to_string(&stored).unwrap();
    assert_eq!(
        text,
        format!(r#"{{"digest":"sha256:{}","bytes":12}}"#, "a".repeat(64))
    );
    assert_eq!(serde_json::from_str::<ImageRecord>(&text).unwrap(), stored);
    let sealed = ImageRecord::Stored {
        digest: format!("sha256:{}", "b".repeat(64)),
        bytes: 40,
        encrypted: true,
    };
    let text = serde_json::to_string(&sealed).unwrap();
    assert!(text.ends_with(r#","encrypted":true}"#), "{text}");
    assert_eq!(serde_json::from_str::<ImageRecord>(&text).unwrap(), sealed);
    for reason in Withheld::ALL {
        let record = ImageRecord::Withheld { reason };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(text, format!(r#"{{"withheld":"{}"}}"#, reason.as_str()));
        assert_eq!(serde_json::from_str::<ImageRecord>(&text).unwrap(), record);
    }
}

#[test]
fn the_record_is_announced_before_the_write_and_matches_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path(), ImageLimits::default(), None);
    let mut announced = None;
    let record = store.put_announcing(&config_map("web", 10), false, |record| {
        let hex = record.digest().unwrap().strip_prefix("sha256:").unwrap();
        assert!(!dir.path().join(hex).exists(), "announced before the write");
        announced = Some(record.clone());
    });
    assert_eq!(announced, Some(record.clone()));
    assert!(store.get(record.digest().unwrap()).is_ok());
    let mut withheld = None;
    store.put_announcing(&secret_json(), true, |record| {
        withheld = Some(record.clone())
    });
    assert_eq!(
        withheld,
        Some(ImageRecord::Withheld {
            reason: Withheld::Secret
        })
    );
}
