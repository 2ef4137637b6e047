//! Reading ledger input as a stream of entries: a spool directory (its `ledger-<seq>.jsonl`
//! segments in sequence order), a JSONL file, or `-` for standard input (what the
//! `stdout` sink or a webhook receiver wrote), or what an OpenTelemetry Collector's file
//! exporter wrote from pathgate's OTLP sink (the fleet path, docs/reliability.md).
//!
//! A file exporter line (`format: json`) is one OTLP export request. A `resourceLogs`
//! line holds log records whose body is a whole ledger line; those entries are read in
//! record order. A `resourceSpans` line is skipped: the spans carry the same entries as
//! the log records, and reading both would count each entry twice, so the collector must
//! write the logs pipeline to the file the autopsy reads (deploy/otel-collector/).
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
        match otlp_kind(text) {
            Some(OtlpKind::Logs) => {
                let request: OtlpLogs =
                    serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
                for (index, body) in request.ledger_lines().enumerate() {
                    let body = body.ok_or_else(|| {
                        bad(format!(
                            "log record {index} has no string body (a ledger line)"
                        ))
                    })?;
                    read_entry(body.as_bytes(), wanted, visit)
                        .map_err(|reason| bad(format!("log record {index}: {reason}")))?;
                }
            }
            Some(OtlpKind::Spans) => {}
            None => read_entry(text, wanted, visit).map_err(bad)?,
        }
    }
}

/// Decodes one ledger line and visits it (when its session is wanted).
fn read_entry(
    text: &[u8],
    wanted: Option<&dyn Fn(&str) -> bool>,
    visit: &mut dyn FnMut(Entry),
) -> Result<(), String> {
    if let Some(wanted) = wanted {
        let session: SessionOnly = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        if !wanted(&session.session) {
            return Ok(());
        }
    }
    let entry: Entry = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    if entry.schema != SCHEMA {
        return Err(format!(
            "schema {:?}, this autopsy reads {SCHEMA}",
            entry.schema
        ));
    }
    visit(entry);
    Ok(())
}

/// Which OTLP export request a file exporter line is.
enum OtlpKind {
    Logs,
    Spans,
}

/// A line is an OTLP export request when its first key is one (the file exporter writes
/// protobuf's JSON mapping, which puts `resourceLogs` / `resourceSpans` first); a ledger
/// entry's first key is `schema`.
fn otlp_kind(text: &[u8]) -> Option<OtlpKind> {
    if text.starts_with(br#"{"resourceLogs""#) {
        Some(OtlpKind::Logs)
    } else if text.starts_with(br#"{"resourceSpans""#) {
        Some(OtlpKind::Spans)
    } else {
        None
    }
}

/// The parts of an OTLP/JSON `ExportLogsServiceRequest` that carry ledger lines.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OtlpLogs {
    #[serde(default)]
    resource_logs: Vec<ResourceLogs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceLogs {
    #[serde(default)]
    scope_logs: Vec<ScopeLogs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeLogs {
    #[serde(default)]
    log_records: Vec<LogRecord>,
}

#[derive(Deserialize)]
struct LogRecord {
    body: Option<AnyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValue {
    string_value: Option<String>,
}

impl OtlpLogs {
    /// Each log record's string body, in order (`None` for a record without one).
    fn ledger_lines(&self) -> impl Iterator<Item = Option<&str>> {
        self.resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|record| record.body.as_ref()?.string_value.as_deref())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::testing;
    use crate::ledger::write_line;

    fn ledger_line(entry: &Entry) -> String {
        let mut line = Vec::new();
        write_line(&mut line, entry).unwrap();
        String::from_utf8(line).unwrap().trim_end().to_owned()
    }

    /// One file exporter line of log records with these bodies: a string is a ledger line
    /// (`stringValue`), anything else an `AnyValue` as given.
    fn logs_line(bodies: &[serde_json::Value]) -> String {
        let records: Vec<_> = bodies
            .iter()
            .map(|body| match body {
                serde_json::Value::String(line) => {
                    serde_json::json!({"body": {"stringValue": line}})
                }
                other => serde_json::json!({"body": other}),
            })
            .collect();
        serde_json::json!({"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": records}]}]})
            .to_string()
    }

    #[test]
    fn a_collector_file_yields_the_entries_of_its_log_records_in_order() {
        let (a, b, c) = (
            testing::mutation("t-1"),
            testing::read("t-2"),
            testing::mutation("t-3"),
        );
        let lines = [
            logs_line(&[ledger_line(&a).into(), ledger_line(&b).into()]),
            // The same entries as spans: skipped, or every entry would count twice.
            serde_json::json!({"resourceSpans": [{"scopeSpans": []}]}).to_string(),
            logs_line(&[ledger_line(&c).into()]),
        ];
        let text = lines.join("\n") + "\n";
        let entries = read_all(text.as_bytes(), "collector.jsonl").unwrap();
        let ids: Vec<_> = entries.iter().map(|e| e.trace_id.as_str()).collect();
        assert_eq!(ids, ["t-1", "t-2", "t-3"]);
    }

    #[test]
    fn a_log_record_that_is_not_a_ledger_line_names_its_line_and_record() {
        let entry = ledger_line(&testing::read("t-1"));
        let text = logs_line(&[entry.into(), serde_json::json!({"intValue": "3"})]) + "\n";
        let error = read_all(text.as_bytes(), "collector.jsonl")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("collector.jsonl:1: "), "{error}");
        assert!(error.contains("log record 1 has no string body"), "{error}");
    }

    #[test]
    fn the_session_filter_applies_to_collector_records() {
        let entry = ledger_line(&testing::read("t-1"));
        let text = logs_line(&[entry.into()]) + "\n";
        let mut seen = 0;
        let none = |_: &str| false;
        read_lines(text.as_bytes(), "c", Some(&none), &mut |_| seen += 1).unwrap();
        assert_eq!(seen, 0);
    }
}
