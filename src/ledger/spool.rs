//! The durable spool: JSONL segment files in `ledger.dir`, the source of truth.
//!
//! Layout of the directory:
//!
//! - `ledger-<seq>.jsonl`: segments, `<seq>` zero-padded to 10 digits so names sort in
//!   order. Only the newest segment is appended to; a segment is final once a newer one
//!   exists. Each line is one complete entry; a crash can only leave a torn last line in
//!   the newest segment, which [`SpoolWriter::open`] cuts off.
//! - `cursor-<sink>.json`: how far a sink has delivered (`{"segment":N,"offset":BYTES}`),
//!   rewritten atomically (temporary file + rename) at most once a second while the sink
//!   delivers, and when it stops.
//!
//! The writer ([`SpoolWriter`]) is used by one thread only; readers ([`SpoolReader`]) never
//! take locks: they read complete lines only, and move to the next segment only after it
//! exists (which proves the previous one is final).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const SEGMENT_PREFIX: &str = "ledger-";
const SEGMENT_SUFFIX: &str = ".jsonl";

/// The file name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq:010}{SEGMENT_SUFFIX}")
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_name(seq))
}

/// The newest synced spool bytes left in the page cache for the sinks to read; older pages
/// are released after each fsync. 32 MiB is over a second of entries at the load
/// benchmark's ~24,000 requests/s, while sinks read within a tenth of a second.
pub const CACHE_TAIL: u64 = 32 << 20;

/// Pages are released in steps of at least this much, so an fsync does not pay a system
/// call for a few pages.
const RELEASE_STEP: u64 = 1 << 20;

/// `posix_fadvise(DONTNEED)` on `len` bytes from `offset` (`len` 0: to the end). Only
/// clean pages are dropped, so it never loses data; it is a hint, so errors are ignored.
fn drop_cached(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
        use nix::libc::off_t;
        let (Ok(offset), Ok(len)) = (off_t::try_from(offset), off_t::try_from(len)) else {
            return;
        };
        let _ = posix_fadvise(file, offset, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?
        .parse()
        .ok()
}

/// Segments present in `dir`, oldest first, with their sizes.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut segments = Vec::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        if let Some(seq) = name.to_str().and_then(parse_segment_name) {
            // Retention may delete a segment between the listing and this look.
            match item.metadata() {
                Ok(metadata) => segments.push((seq, metadata.len())),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// A position in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

fn cursor_path(dir: &Path, sink: &str) -> PathBuf {
    dir.join(format!("cursor-{sink}.json"))
}

/// Reads a sink's persisted cursor; a sink seen for the first time starts at the oldest
/// segment (it receives the whole spool).
pub fn load_cursor(dir: &Path, sink: &str) -> io::Result<Option<Cursor>> {
    match fs::read(cursor_path(dir, sink)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Persists a cursor atomically. Not fsynced: a cursor lost in a power failure only makes
/// the sink send a batch again, and delivery is at-least-once anyway.
pub fn store_cursor(dir: &Path, sink: &str, cursor: Cursor) -> io::Result<()> {
    let path = cursor_path(dir, sink);
    let temporary = path.with_extension("json.tmp");
    fs::write(
        &temporary,
        serde_json::to_vec(&cursor).map_err(io::Error::other)?,
    )?;
    fs::rename(&temporary, &path)
}

/// Every persisted sink cursor, by sink name.
fn all_cursors(dir: &Path) -> io::Result<Vec<(String, Cursor)>> {
    let mut cursors = Vec::new();
    for item in fs::read_dir(dir)? {
        let name = item?.file_name();
        let Some(sink) = name
            .to_str()
            .and_then(|name| name.strip_prefix("cursor-")?.strip_suffix(".json"))
        else {
            continue;
        };
        if let Some(cursor) = load_cursor(dir, sink)? {
            cursors.push((sink.to_owned(), cursor));
        }
    }
    Ok(cursors)
}

/// Counts complete lines in `path` from byte `offset` on.
fn count_lines_from(path: &Path, offset: u64) -> io::Result<u64> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut count = 0;
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(count);
        }
        count += buffer[..read].iter().filter(|byte| **byte == b'\n').count() as u64;
    }
}

/// Entries a sink lost because retention deleted a segment it had not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionLoss {
    pub sink: String,
    pub entries: u64,
}

/// Appends to the newest segment; owned by the writer thread.
pub struct SpoolWriter {
    dir: PathBuf,
    segment_max_bytes: u64,
    spool_max_bytes: u64,
    seq: u64,
    file: File,
    /// Bytes in the current segment known to be whole lines.
    len: u64,
    /// Bytes in all segments, current included.
    total_bytes: u64,
    /// Offset in the current segment before which its pages were already released from
    /// the page cache (see [`Self::release_cache`]).
    released: u64,
    /// The segment before the current one, until its cached pages are released.
    previous: Option<File>,
    /// [`CACHE_TAIL`] and [`RELEASE_STEP`] (smaller in tests).
    cache_tail: u64,
    release_step: u64,
}

impl SpoolWriter {
    /// Opens the spool in `dir` (created if missing), continuing the newest segment after
    /// cutting a torn last line left by a crash.
    pub fn open(dir: &Path, segment_max_bytes: u64, spool_max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let segments = list_segments(dir)?;
        let seq = segments.last().map(|(seq, _)| *seq).unwrap_or(1);
        let path = segment_path(dir, seq);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let len = whole_lines_len(&mut file)?;
        let on_disk = file.metadata()?.len();
        if len < on_disk {
            tracing::warn!(
                segment = %path.display(),
                cut_bytes = on_disk - len,
                "ledger spool: cutting a torn last line left by a crash"
            );
            file.set_len(len)?;
            file.sync_all()?;
        }
        let older: u64 = segments
            .iter()
            .filter(|(other, _)| *other != seq)
            .map(|(_, size)| size)
            .sum();
        sync_dir(dir)?;
        Ok(SpoolWriter {
            dir: dir.to_owned(),
            segment_max_bytes,
            spool_max_bytes,
            seq,
            file,
            len,
            total_bytes: older + len,
            released: 0,
            previous: None,
            cache_tail: CACHE_TAIL,
            release_step: RELEASE_STEP,
        })
    }

    /// Appends whole lines (each ending in `\n`), starting a new segment first when this
    /// one is full. The data reaches the OS (survives a crash of pathgate) but not
    /// necessarily the disk until [`Self::sync`]. On a failed write the segment is cut
    /// back to its last whole line, so a partial batch never becomes visible.
    #[cfg(test)]
    pub fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        self.append_all(&[lines])
    }

    /// [`Self::append`] for lines held in several buffers, written in order as one batch
    /// (the whole batch lands in one segment).
    pub fn append_all(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let size: u64 = parts.iter().map(|part| part.len() as u64).sum();
        if self.len > 0 && self.len + size > self.segment_max_bytes {
            self.rotate()?;
        }
        for part in parts.iter().filter(|part| !part.is_empty()) {
            if let Err(error) = self.file.write_all(part) {
                // Best effort: the original error is the one worth reporting.
                let _ = self.file.set_len(self.len);
                return Err(error);
            }
        }
        self.len += size;
        self.total_bytes += size;
        Ok(())
    }

    /// Makes every appended line durable (`fdatasync`), then lets the kernel drop the
    /// page-cache pages of what lies more than [`CACHE_TAIL`] behind the end.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.release_cache();
        Ok(())
    }

    /// Releases the page cache the spool no longer needs: everything synced except the
    /// newest [`CACHE_TAIL`] bytes, which the sinks are about to read. Without it the
    /// spool's whole history (up to `spool_max_bytes`) stays cached: memory charged to
    /// pathgate's cgroup, and every new page a fresh one, which costs several times more to
    /// write than a recycled page (measured in BENCHMARKS.md). Advisory: a sink that lags
    /// further simply reads from the disk, and an error is ignored.
    fn release_cache(&mut self) {
        let keep_from = self.len.saturating_sub(self.cache_tail);
        if keep_from >= self.released + self.release_step {
            drop_cached(&self.file, self.released, keep_from - self.released);
            self.released = keep_from;
        }
        if self.len >= self.cache_tail {
            if let Some(previous) = self.previous.take() {
                drop_cached(&previous, 0, 0);
            }
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        if let Some(older) = self.previous.take() {
            drop_cached(&older, 0, 0);
        }
        let next = self.seq + 1;
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(segment_path(&self.dir, next))?;
        // The new name must survive a power failure too, or the lines synced into it later
        // could vanish with their directory entry.
        sync_dir(&self.dir)?;
        self.previous = Some(std::mem::replace(&mut self.file, file));
        self.seq = next;
        self.len = 0;
        self.released = 0;
        Ok(())
    }

    /// Deletes the oldest final segments while the spool is over its size limit, and says
    /// which sinks lost undelivered entries with them.
    pub fn enforce_retention(&mut self) -> io::Result<Vec<RetentionLoss>> {
        let mut losses: Vec<RetentionLoss> = Vec::new();
        if self.total_bytes <= self.spool_max_bytes {
            return Ok(losses);
        }
        for (seq, size) in list_segments(&self.dir)? {
            if seq >= self.seq || self.total_bytes <= self.spool_max_bytes {
                break;
            }
            let path = segment_path(&self.dir, seq);
            for (sink, cursor) in all_cursors(&self.dir)? {
                let from = match cursor.segment.cmp(&seq) {
                    std::cmp::Ordering::Less => 0,
                    std::cmp::Ordering::Equal => cursor.offset,
                    std::cmp::Ordering::Greater => continue,
                };
                let entries = count_lines_from(&path, from)?;
                if entries > 0 {
                    match losses.iter_mut().find(|loss| loss.sink == sink) {
                        Some(loss) => loss.entries += entries,
                        None => losses.push(RetentionLoss { sink, entries }),
                    }
                }
            }
            fs::remove_file(&path)?;
            self.total_bytes = self.total_bytes.saturating_sub(size);
        }
        Ok(losses)
    }

    /// Where the next line will be written.
    pub fn position(&self) -> Cursor {
        Cursor {
            segment: self.seq,
            offset: self.len,
        }
    }

    /// Bytes in all segments.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}

/// The length of the longest prefix of `file` made of whole lines.
fn whole_lines_len(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Scan backwards in blocks for the last newline.
    let mut end = len;
    let mut buffer = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buffer.len() as u64);
        let chunk = &mut buffer[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(position) = chunk.iter().rposition(|byte| *byte == b'\n') {
            return Ok(start + position as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Lines read for one sink, and the cursor to store once they are delivered.
#[derive(Debug, Default)]
pub struct Batch {
    /// Whole lines as the spool holds them, each ending in `\n`.
    pub bytes: Vec<u8>,
    /// How many lines `bytes` holds.
    pub entries: usize,
    pub next: Cursor,
}

impl Batch {
    /// The lines, without their `\n` (bytes that are not UTF-8, which pathgate never
    /// writes, are replaced).
    pub fn lines(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        self.bytes
            .split(|byte| *byte == b'\n')
            .take(self.entries)
            .map(String::from_utf8_lossy)
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// How often a sink's cursor file is rewritten while it delivers (and once more when it
/// stops). Rewriting it after every batch cost a file create and rename per batch; a crash
/// now makes the sink send at most this much again, which at-least-once delivery (receivers
/// dedupe on `(trace_id, phase)`) already allows.
pub const CURSOR_STORE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A sink's view of the spool.
pub struct SpoolReader {
    dir: PathBuf,
    sink: String,
    cursor: Cursor,
    /// The cursor as its file holds it, and when that was written.
    stored: Cursor,
    stored_at: std::time::Instant,
}

impl SpoolReader {
    /// Opens the reader of `sink` at its persisted cursor, or at the start of the oldest
    /// segment for a new sink.
    pub fn open(dir: &Path, sink: &str) -> io::Result<Self> {
        let cursor = match load_cursor(dir, sink)? {
            Some(cursor) => cursor,
            None => {
                let cursor = Cursor {
                    segment: list_segments(dir)?
                        .first()
                        .map(|(seq, _)| *seq)
                        .unwrap_or(1),
                    offset: 0,
                };
                // Persisted at once: retention counts what a sink loses from its cursor
                // file, and a sink that never delivered anything must be counted too.
                store_cursor(dir, sink, cursor)?;
                cursor
            }
        };
        Ok(SpoolReader {
            dir: dir.to_owned(),
            sink: sink.to_owned(),
            cursor,
            stored: cursor,
            stored_at: std::time::Instant::now(),
        })
    }

    /// Whether the lines after the cursor are among the newest [`CACHE_TAIL`] bytes of the
    /// segment the writer is at (`written`): the pages the writer keeps in the page cache,
    /// so reading them copies memory and does not wait on the disk.
    pub fn reads_cached_tail(&self, written: Cursor) -> bool {
        self.cursor.segment == written.segment
            && written.offset.saturating_sub(self.cursor.offset) <= CACHE_TAIL
    }

    /// [`Self::read_batch_into`] into a new batch (tests).
    #[cfg(test)]
    pub fn read_batch(&mut self, max_entries: usize) -> io::Result<Batch> {
        let mut batch = Batch::default();
        self.read_batch_into(max_entries, &mut batch)?;
        Ok(batch)
    }

    /// Up to `max_entries` complete lines after the cursor into `batch` (fewer at the end
    /// of the spool; none when the sink is caught up). `batch`'s buffer is reused: a sink
    /// reads every batch into the same memory instead of faulting in a fresh buffer each
    /// time. Does not move the cursor: call [`Self::commit`] with [`Batch::next`] after
    /// delivery.
    pub fn read_batch_into(&mut self, max_entries: usize, batch: &mut Batch) -> io::Result<()> {
        loop {
            self.read_segment(max_entries, batch)?;
            if !batch.is_empty() {
                return Ok(());
            }
            // The current segment is exhausted for now. Move on only if a newer segment
            // exists: that proves this one is final. Read once more after seeing it, since
            // the writer may have appended between our read and its rotation.
            let segments = list_segments(&self.dir)?;
            let Some((next, _)) = segments
                .iter()
                .find(|(seq, _)| *seq > self.cursor.segment)
                .copied()
            else {
                return Ok(());
            };
            self.read_segment(max_entries, batch)?;
            if !batch.is_empty() {
                return Ok(());
            }
            self.cursor = Cursor {
                segment: next,
                offset: 0,
            };
            self.store()?;
        }
    }

    fn read_segment(&self, max_entries: usize, batch: &mut Batch) -> io::Result<()> {
        /// Bytes asked of the file at a time (about 64 entries of a small request).
        const CHUNK: u64 = 64 * 1024;
        batch.bytes.clear();
        batch.entries = 0;
        batch.next = self.cursor;
        let mut file = match File::open(segment_path(&self.dir, self.cursor.segment)) {
            Ok(file) => file,
            // Deleted by retention (the loss was counted then): nothing more here.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        file.seek(SeekFrom::Start(self.cursor.offset))?;
        // Read whole chunks, then keep the bytes up to the last newline wanted: a line
        // still being written (no newline yet) is left for the next batch.
        let mut whole = 0;
        'read: while batch.entries < max_entries {
            let scanned = batch.bytes.len();
            if (&mut file).take(CHUNK).read_to_end(&mut batch.bytes)? == 0 {
                break;
            }
            for newline in memchr::memchr_iter(b'\n', &batch.bytes[scanned..]) {
                whole = scanned + newline + 1;
                batch.entries += 1;
                if batch.entries == max_entries {
                    break 'read;
                }
            }
        }
        batch.bytes.truncate(whole);
        batch.next.offset += whole as u64;
        Ok(())
    }

    /// Records that everything before `next` was delivered (in memory: no I/O). Returns
    /// true when the cursor's file is due to be rewritten ([`CURSOR_STORE_INTERVAL`] since
    /// the last time): the caller then calls [`Self::flush`], as it does when the sink stops.
    pub fn commit(&mut self, next: Cursor) -> bool {
        self.cursor = next;
        self.stored != self.cursor && self.stored_at.elapsed() >= CURSOR_STORE_INTERVAL
    }

    /// Writes the cursor's file if it is behind what was delivered.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.stored != self.cursor {
            self.store()?;
        }
        Ok(())
    }

    fn store(&mut self) -> io::Result<()> {
        store_cursor(&self.dir, &self.sink, self.cursor)?;
        self.stored = self.cursor;
        self.stored_at = std::time::Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<u32>) -> Vec<u8> {
        range
            .map(|i| format!("{{\"n\":{i}}}\n"))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn segments_rotate_by_size_and_a_reader_follows_them_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path(), 64, u64::MAX).unwrap();
        for i in 0..20 {
            writer.append(&lines(i..i + 1)).unwrap();
        }
        writer.sync().unwrap();
        let segments = list_segments(dir.path()).unwrap();
        assert!(segments.len() > 2, "expected rotation, got {segments:?}");
        assert!(segments.iter().all(|(_, size)| *size <= 64 + 9));

        let mut reader = SpoolReader::open(dir.path(), "test").unwrap();
        let mut seen = Vec::new();
        loop {
            let batch = reader.read_batch(3).unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.entries <= 3);
            seen.extend(batch.lines().map(String::from));
            reader.commit(batch.next);
        }
        let expected: Vec<String> = (0..20).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_reader_within_the_writers_cached_tail_is_told_so() {
        let dir = tempfile::tempdir().unwrap();
        let reader = SpoolReader::open(dir.path(), "webhook").unwrap();
        let at = |segment, offset| Cursor { segment, offset };
        assert_eq!(reader.cursor, at(1, 0));
        assert!(reader.reads_cached_tail(at(1, 0)), "caught up");
        assert!(
            reader.reads_cached_tail(at(1, CACHE_TAIL)),
            "the whole tail behind"
        );
        assert!(
            !reader.reads_cached_tail(at(1, CACHE_TAIL + 1)),
            "older than the tail"
        );
        assert!(
            !reader.reads_cached_tail(at(2, 10)),
            "the writer moved to a newer segment"
        );
    }

    #[test]
    fn synced_pages_past_the_cache_tail_are_released_and_still_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        const TAIL: u64 = 64 << 10;
        const STEP: u64 = 16 << 10;
        // Segments larger than the tail: the first releases pages, rotates, and is released
        // whole once the second has grown past the tail.
        let mut writer = SpoolWriter::open(dir.path(), TAIL + 4 * STEP, u64::MAX).unwrap();
        (writer.cache_tail, writer.release_step) = (TAIL, STEP);
        let line = |i: u32| format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(1000));
        let per_write = 4;
        let mut written = 0u32;
        let mut rotated = false;
        while !rotated || writer.len < TAIL + 2 * STEP {
            let batch: String = (written..written + per_write).map(line).collect();
            writer.append(batch.as_bytes()).unwrap();
            written += per_write;
            writer.sync().unwrap();
            rotated |= writer.seq > 1;
            assert!(writer.seq <= 2, "the loop should end in the second segment");
            // Before the segment outgrows the tail nothing of it is released, and the
            // previous segment waits for it.
            if writer.len < TAIL {
                assert_eq!(writer.released, 0);
                assert_eq!(writer.previous.is_some(), rotated);
            } else {
                assert!(writer.previous.is_none());
                assert!(writer.released + TAIL <= writer.len);
                assert!(writer.len - writer.released < TAIL + STEP);
            }
        }
        assert!(writer.released > 0);

        let mut reader = SpoolReader::open(dir.path(), "test").unwrap();
        let mut seen = 0u32;
        loop {
            let batch = reader.read_batch(4096).unwrap();
            if batch.is_empty() {
                break;
            }
            for text in batch.lines() {
                assert_eq!(format!("{text}\n"), line(seen));
                seen += 1;
            }
            reader.commit(batch.next);
        }
        assert_eq!(seen, written);
    }

    #[test]
    fn a_reader_resumes_from_its_persisted_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        writer.append(&lines(0..5)).unwrap();
        let mut reader = SpoolReader::open(dir.path(), "sink").unwrap();
        let batch = reader.read_batch(2).unwrap();
        reader.commit(batch.next);
        // Within CURSOR_STORE_INTERVAL of the last store the file is not rewritten: a
        // reader opened now would send those two lines again (at-least-once)...
        assert_eq!(load_cursor(dir.path(), "sink").unwrap().unwrap().offset, 0);
        // ...until the sink flushes it when it stops.
        reader.flush().unwrap();
        assert_eq!(load_cursor(dir.path(), "sink").unwrap(), Some(batch.next));
        drop(reader);
        writer.append(&lines(5..7)).unwrap();

        let mut reader = SpoolReader::open(dir.path(), "sink").unwrap();
        let batch = reader.read_batch(100).unwrap();
        let read: Vec<_> = batch.lines().collect();
        assert_eq!(
            read,
            [
                "{\"n\":2}",
                "{\"n\":3}",
                "{\"n\":4}",
                "{\"n\":5}",
                "{\"n\":6}"
            ]
        );
        assert_eq!(batch.bytes, lines(2..7));
    }

    #[test]
    fn batches_end_on_a_whole_line_across_read_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path(), 1 << 30, u64::MAX).unwrap();
        let padding = "x".repeat(190);
        let line = |i: u32| format!("{{\"n\":{i},\"p\":\"{padding}\"}}\n");
        let all: String = (0..1000).map(line).collect();
        writer.append(all.as_bytes()).unwrap();
        // A line still being written is never part of a batch.
        writer.append(b"{\"n\":1000,").unwrap();

        let mut reader = SpoolReader::open(dir.path(), "chunks").unwrap();
        let mut expected = 0u32;
        for size in [300, 300, 300, 300] {
            let batch = reader.read_batch(size).unwrap();
            let wanted = size.min(1000 - expected as usize);
            assert_eq!(batch.entries, wanted);
            let text: String = (expected..expected + wanted as u32).map(line).collect();
            assert_eq!(batch.bytes, text.as_bytes());
            let before: usize = (0..expected).map(|i| line(i).len()).sum();
            assert_eq!(batch.next.offset, (before + text.len()) as u64);
            reader.commit(batch.next);
            expected += wanted as u32;
        }
        assert!(reader.read_batch(300).unwrap().is_empty());
    }

    #[test]
    fn a_torn_last_line_is_cut_on_open_and_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        writer.append(&lines(0..2)).unwrap();
        drop(writer);
        let path = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"n\":2,\"torn").unwrap();

        let mut reader = SpoolReader::open(dir.path(), "early").unwrap();
        assert_eq!(
            reader.read_batch(10).unwrap().entries,
            2,
            "partial line not read"
        );

        let mut writer = SpoolWriter::open(dir.path(), 1 << 20, u64::MAX).unwrap();
        writer.append(&lines(3..4)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"n\":0}\n{\"n\":1}\n{\"n\":3}\n");
    }

    #[test]
    fn retention_deletes_oldest_segments_and_reports_undelivered_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path(), 40, 100).unwrap();
        // The sink delivered the first two entries of segment 1.
        store_cursor(
            dir.path(),
            "slow",
            Cursor {
                segment: 1,
                offset: 16,
            },
        )
        .unwrap();
        for i in 0..30 {
            writer.append(&lines(i..i + 1)).unwrap();
        }
        let losses = writer.enforce_retention().unwrap();
        assert!(writer.total_bytes() <= 100);
        let on_disk: u64 = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|(_, s)| s)
            .sum();
        assert_eq!(on_disk, writer.total_bytes());
        let kept_entries: u64 = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|(seq, _)| count_lines_from(&segment_path(dir.path(), *seq), 0).unwrap())
            .sum();
        // 30 written, 2 delivered: every other entry is either still on disk or counted lost.
        assert_eq!(
            losses,
            vec![RetentionLoss {
                sink: "slow".into(),
                entries: 28 - kept_entries
            }]
        );

        // The reader skips the deleted segments and continues with what is left.
        let mut reader = SpoolReader::open(dir.path(), "slow").unwrap();
        let mut read = 0;
        loop {
            let batch = reader.read_batch(100).unwrap();
            if batch.is_empty() {
                break;
            }
            read += batch.entries as u64;
            reader.commit(batch.next);
        }
        assert_eq!(read, kept_entries);
    }
}
