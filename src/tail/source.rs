//! Where entries come from: the spool directory (followed across segment rotation), one
//! JSONL file (followed as it grows), or standard input; each yields whole lines.
//!
//! The spool's contract (src/ledger/spool.rs): segments are `ledger-<seq>.jsonl`, only the
//! newest is appended to, and a segment is final once a newer one exists; a line without
//! its `\n` is still being written (or was torn by a crash, and pathgate cuts it off when
//! it restarts). So a line is handed on only once its newline is read, the follower moves
//! to the next segment only after that segment exists (reading the current one once more
//! first, as the writer may have appended just before it rotated), and a file that shrank
//! under the follower (the cut after a crash) is read again from its last whole line.
//!
//! The sinks' `SpoolReader` is not reused: it persists a cursor file in the ledger
//! directory, which retention then counts losses against for ever, and it needs write
//! access there. The follower keeps its position in memory and only reads; it holds the
//! segment open, so retention deleting it mid-read loses nothing already written.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Bytes asked of a file at a time.
const CHUNK: usize = 64 * 1024;

/// What a source hands to its caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// One whole line, without its `\n`; `number` counts from 1 within `file`.
    Line {
        bytes: &'a [u8],
        file: &'a Path,
        number: u64,
    },
    /// Something the operator should know about the input (skipped segments, a cut file).
    Notice(String),
}

/// A file read by whole lines as it grows.
#[derive(Debug)]
pub struct GrowingFile {
    path: PathBuf,
    file: File,
    /// Offset just past the last whole line handed on.
    whole: u64,
    /// Bytes read after `whole`: the start of a line whose `\n` has not arrived.
    partial: Vec<u8>,
    /// Lines handed on so far.
    lines: u64,
}

impl GrowingFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(GrowingFile {
            path: path.to_owned(),
            file: File::open(path)?,
            whole: 0,
            partial: Vec::new(),
            lines: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what was appended since the last call and hands on every whole line.
    /// Returns whether any byte was read.
    pub fn read_new(&mut self, emit: &mut dyn FnMut(Event<'_>)) -> io::Result<bool> {
        self.reread_if_cut(emit)?;
        let mut any = false;
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let read = match self.file.read(&mut chunk) {
                Ok(0) => return Ok(any),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            any = true;
            self.take_lines(&chunk[..read], emit);
        }
    }

    /// Splits `bytes` (read after `partial`) into whole lines.
    fn take_lines(&mut self, mut bytes: &[u8], emit: &mut dyn FnMut(Event<'_>)) {
        while let Some(newline) = memchr::memchr(b'\n', bytes) {
            let (line, rest) = (&bytes[..newline], &bytes[newline + 1..]);
            self.whole += (self.partial.len() + newline + 1) as u64;
            self.lines += 1;
            let number = self.lines;
            if self.partial.is_empty() {
                emit(Event::Line {
                    bytes: line,
                    file: &self.path,
                    number,
                });
            } else {
                self.partial.extend_from_slice(line);
                emit(Event::Line {
                    bytes: &self.partial,
                    file: &self.path,
                    number,
                });
                self.partial.clear();
            }
            bytes = rest;
        }
        self.partial.extend_from_slice(bytes);
    }

    /// A file shorter than what was read was cut (pathgate removing a torn line when it
    /// restarts): drop the partial line and read again from the last whole line.
    fn reread_if_cut(&mut self, emit: &mut dyn FnMut(Event<'_>)) -> io::Result<()> {
        let length = self.file.metadata()?.len();
        let read_to = self.whole + self.partial.len() as u64;
        if length >= read_to {
            return Ok(());
        }
        let from = if length >= self.whole {
            self.whole
        } else {
            emit(Event::Notice(format!(
                "{} was cut to {length} bytes below the {} already read: reading it again from the start",
                self.path.display(),
                self.whole
            )));
            self.lines = 0;
            0
        };
        self.partial.clear();
        self.whole = from;
        self.file.seek(SeekFrom::Start(from))?;
        Ok(())
    }

    /// The bytes after the last `\n`, taken: a final line without its newline.
    pub fn take_partial(&mut self) -> Option<(Vec<u8>, u64)> {
        if self.partial.is_empty() {
            return None;
        }
        self.lines += 1;
        self.whole += self.partial.len() as u64;
        Some((std::mem::take(&mut self.partial), self.lines))
    }
}

/// The spool directory, segment after segment.
#[derive(Debug)]
pub struct SpoolFollower {
    dir: PathBuf,
    current: Option<(u64, GrowingFile)>,
}

impl SpoolFollower {
    /// A follower starting at the oldest segment of `dir`, which must be a directory.
    pub fn new(dir: &Path) -> io::Result<Self> {
        crate::ledger::list_segments(dir)?;
        Ok(SpoolFollower {
            dir: dir.to_owned(),
            current: None,
        })
    }

    /// Hands on every whole line the spool holds now, moving through the segments that
    /// are final; returns at the end of the newest.
    pub fn read_available(&mut self, emit: &mut dyn FnMut(Event<'_>)) -> io::Result<()> {
        loop {
            let Some((seq, file)) = self.current.as_mut() else {
                match self.open_after(None, emit)? {
                    true => continue,
                    false => return Ok(()),
                }
            };
            file.read_new(emit)?;
            let seq = *seq;
            let newer = crate::ledger::list_segments(&self.dir)?
                .iter()
                .any(|(other, _)| *other > seq);
            if !newer {
                return Ok(());
            }
            // Final now: what the writer appended before rotating is read first, and a
            // line still without its newline can never be finished.
            file.read_new(emit)?;
            if let Some((bytes, number)) = file.take_partial() {
                emit(Event::Notice(format!(
                    "{}:{number}: a torn last line ({} bytes) in a final segment, skipped",
                    file.path().display(),
                    bytes.len()
                )));
            }
            self.open_after(Some(seq), emit)?;
        }
    }

    /// Opens the oldest segment after `seq` (the oldest of all for `None`); false when
    /// there is none yet.
    fn open_after(
        &mut self,
        seq: Option<u64>,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<bool> {
        loop {
            let next = crate::ledger::list_segments(&self.dir)?
                .into_iter()
                .map(|(other, _)| other)
                .find(|other| seq.is_none_or(|seq| *other > seq));
            let Some(next) = next else {
                self.current = None;
                return Ok(false);
            };
            if let Some(seq) = seq.filter(|seq| next > seq + 1) {
                emit(Event::Notice(format!(
                    "segments {} to {} were deleted by retention before they were read",
                    crate::ledger::segment_name(seq + 1),
                    crate::ledger::segment_name(next - 1)
                )));
            }
            match GrowingFile::open(&self.dir.join(crate::ledger::segment_name(next))) {
                Ok(file) => {
                    self.current = Some((next, file));
                    return Ok(true);
                }
                // Retention deleted it between the listing and the open: look again.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

/// Standard input, read until it ends.
pub struct StdinLines {
    lines: u64,
    partial: Vec<u8>,
    name: PathBuf,
}

impl Default for StdinLines {
    fn default() -> Self {
        StdinLines {
            lines: 0,
            partial: Vec::new(),
            name: PathBuf::from("-"),
        }
    }
}

impl StdinLines {
    /// Reads what `input` has now (blocking until something arrives) and hands on whole
    /// lines; false once `input` ended, after handing on a last line without `\n`.
    pub fn read_some(
        &mut self,
        input: &mut dyn Read,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<bool> {
        let mut chunk = vec![0u8; CHUNK];
        let read = loop {
            match input.read(&mut chunk) {
                Ok(read) => break read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        };
        if read == 0 {
            if !self.partial.is_empty() {
                self.lines += 1;
                emit(Event::Line {
                    bytes: &self.partial,
                    file: &self.name,
                    number: self.lines,
                });
                self.partial.clear();
            }
            return Ok(false);
        }
        let mut bytes = &chunk[..read];
        while let Some(newline) = memchr::memchr(b'\n', bytes) {
            self.partial.extend_from_slice(&bytes[..newline]);
            self.lines += 1;
            emit(Event::Line {
                bytes: &self.partial,
                file: &self.name,
                number: self.lines,
            });
            self.partial.clear();
            bytes = &bytes[newline + 1..];
        }
        self.partial.extend_from_slice(bytes);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
