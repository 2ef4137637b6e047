//! Reading ledger input as a stream of entries: a spool directory (its `ledger-<seq>.jsonl`
//! segments in sequence order), a JSONL file, or `-` for standard input (what the
//! `stdout` sink or a webhook receiver wrote).
//!
//! One line is in memory at a time. A last line without its newline is a line still
//! being written (or torn by a crash, which pathgate cuts off when it restarts): it is
//! left out, as every ledger reader does. Any other line that is not a
//! `pathgate.ledger/v1` entry is an error naming the file and line.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ledger::{Entry, SCHEMA};

/// Why ledger input cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{source_name}: {error}")]
    Io {
        source_name: String,
        error: io::Error,
    },
    #[error("{source_name}:{line}: not a ledger entry: {reason}")]
    Entry {
        source_name: String,
        line: u64,
        reason: String,
    },
    #[error("{0}: a spool directory without ledger-<seq>.jsonl segments")]
    EmptySpool(PathBuf),
}

/// One ledger input as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerSource {
    /// A spool directory.
    Spool(PathBuf),
    /// A JSONL file.
    File(PathBuf),
    /// Standard input.
    Stdin,
}

impl LedgerSource {
    /// `-` is standard input, a directory a spool, anything else a JSONL file.
    pub fn from_arg(arg: &str) -> LedgerSource {
        if arg == "-" {
            return LedgerSource::Stdin;
        }
        let path = PathBuf::from(arg);
        if path.is_dir() {
            LedgerSource::Spool(path)
        } else {
            LedgerSource::File(path)
        }
    }
}

/// The segments of a spool directory in sequence order.
pub fn spool_segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut segments = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ledger-")?.strip_suffix(".jsonl"))
            .filter(|seq| !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|seq| seq.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push((seq, item.path()));
    }
    segments.sort();
    Ok(segments.into_iter().map(|(_, path)| path).collect())
}

/// Just the session of a line, read without allocating the rest of the entry: lines of
/// sessions not asked for are skipped at this cost.
#[derive(Deserialize)]
struct SessionOnly<'a> {
    #[serde(borrow)]
    session: Cow<'a, str>,
}

/// Calls `visit` with every entry of `sources`, in order. With `wanted`, only entries
/// whose session passes it are decoded in full (`None`: every entry is).
pub fn for_each_entry(
    sources: &[LedgerSource],
    wanted: Option<&dyn Fn(&str) -> bool>,
    visit: &mut dyn FnMut(Entry),
) -> Result<(), InputError> {
    for source in sources {
        match source {
            LedgerSource::Stdin => read_lines(io::stdin().lock(), "-", wanted, visit)?,
            LedgerSource::File(path) => read_file(path, wanted, visit)?,
            LedgerSource::Spool(dir) => {
                let segments = spool_segments(dir).map_err(|error| InputError::Io {
                    source_name: dir.display().to_string(),
                    error,
                })?;
                if segments.is_empty() {
                    return Err(InputError::EmptySpool(dir.clone()));
                }
                for segment in segments {
                    read_file(&segment, wanted, visit)?;
                }
            }
        }
    }
    Ok(())
}

fn read_file(
    path: &Path,
    wanted: Option<&dyn Fn(&str) -> bool>,
    visit: &mut dyn FnMut(Entry),
) -> Result<(), InputError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|error| InputError::Io {
        source_name: name.clone(),
        error,
    })?;
    read_lines(
        BufReader::with_capacity(1 << 20, file),
        &name,
        wanted,
        visit,
    )
}

/// Reads JSONL from `reader`; `name` names it in errors.
pub fn read_lines(
    mut reader: impl BufRead,
    name: &str,
    wanted: Option<&dyn Fn(&str) -> bool>,
    visit: &mut dyn FnMut(Entry),
) -> Result<(), InputError> {
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .by_ref()
            .read_until(b'\n', &mut line)
            .map_err(|error| InputError::Io {
                source_name: name.to_string(),
                error,
            })?;
        if read == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        number += 1;
        let text = trim(&line);
        if text.is_empty() {
            continue;
        }
        let bad = |reason: String| InputError::Entry {
            source_name: name.to_string(),
            line: number,
            reason,
        };
        if let Some(wanted) = wanted {
            let session: SessionOnly =
                serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
            if !wanted(&session.session) {
                continue;
            }
        }
        let entry: Entry = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        if entry.schema != SCHEMA {
            return Err(bad(format!(
                "schema {:?}, this autopsy reads {SCHEMA}",
                entry.schema
            )));
        }
        visit(entry);
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// Reads everything from a reader of JSONL into entries (tests and small inputs).
pub fn read_all(reader: impl Read, name: &str) -> Result<Vec<Entry>, InputError> {
    let mut entries = Vec::new();
    read_lines(BufReader::new(reader), name, None, &mut |e| entries.push(e))?;
    Ok(entries)
}
