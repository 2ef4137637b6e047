use std::ffi::OsStr;

use super::*;
use crate::ledger::{segment_name, testing, write_line, Phase};

fn options(input: Input, sessions: &[&str], json: bool) -> TailOptions {
    TailOptions {
        input,
        selection: Selection {
            sessions: sessions.iter().map(|s| (*s).to_owned()).collect(),
            intents: false,
        },
        follow: false,
        json,
        color: ColorChoice::Never,
    }
}

/// Runs the view over `options.input` into memory: (stdout, result).
fn tail(options: &TailOptions, style: Style) -> (String, Result<(), TailError>) {
    let mut printer = Printer::new(Vec::new(), options, style);
    let result = drive(options, &mut printer).and_then(|()| printer.unreadable_result());
    (String::from_utf8(printer.out).unwrap(), result)
}

fn line(entry: &crate::ledger::Entry) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_line(&mut bytes, entry).unwrap();
    bytes
}

fn in_session(mut entry: crate::ledger::Entry, session: &str) -> crate::ledger::Entry {
    entry.session = session.into();
    entry
}

fn intent(trace_id: &str) -> crate::ledger::Entry {
    let mut entry = testing::mutation(trace_id);
    entry.phase = Phase::Intent;
    entry.response = None;
    entry.ended_at = None;
    entry.duration_ms = None;
    entry
}

#[test]
fn colour_follows_the_terminal_no_color_term_and_the_flag() {
    let set = Some(OsStr::new("1"));
    let empty = Some(OsStr::new(""));
    let xterm = Some(OsStr::new("xterm-256color"));
    let dumb = Some(OsStr::new("dumb"));
    let table = [
        (ColorChoice::Auto, true, None, xterm, true),
        (ColorChoice::Auto, false, None, xterm, false),
        (ColorChoice::Auto, true, set, xterm, false),
        (ColorChoice::Auto, true, empty, xterm, true),
        (ColorChoice::Auto, true, None, dumb, false),
        (ColorChoice::Auto, true, None, None, true),
        (ColorChoice::Always, false, set, dumb, true),
        (ColorChoice::Never, true, None, xterm, false),
    ];
    for (choice, terminal, no_color, term, expected) in table {
        assert_eq!(
            choice.enabled(terminal, no_color, term),
            expected,
            "{choice:?} terminal={terminal} NO_COLOR={no_color:?} TERM={term:?}"
        );
    }
    assert_eq!("always".parse(), Ok(ColorChoice::Always));
    assert!("sometimes"
        .parse::<ColorChoice>()
        .unwrap_err()
        .contains("auto, always or never"));
}

#[test]
fn a_spool_is_shown_in_order_for_the_chosen_session_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = line(&in_session(testing::read("r1"), "run-1"));
    first.extend(line(&in_session(testing::read("other"), "run-2")));
    std::fs::write(dir.path().join(segment_name(1)), first).unwrap();
    let mut second = line(&in_session(testing::mutation("m1"), "run-1"));
    // The writer is still writing this one: not an entry yet.
    second.extend_from_slice(b"{\"schema\":\"pathgate.ledger/v1\",\"phase\":");
    std::fs::write(dir.path().join(segment_name(2)), second).unwrap();

    let options = options(Input::Spool(dir.path().to_owned()), &["run-1"], false);
    let (out, result) = tail(&options, Style::default());
    result.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains(" get ") && lines[0].contains("200 allow"),
        "{out}"
    );
    assert!(
        lines[1].contains(" delete ") && lines[1].contains("403 deny    PG004"),
        "{out}"
    );
}

#[test]
fn json_prints_the_matching_entries_unchanged_intents_included() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let entries = [
        in_session(intent("m1"), "run-1"),
        in_session(testing::read("other"), "run-2"),
        in_session(testing::mutation("m1"), "run-1"),
    ];
    let bytes: Vec<u8> = entries.iter().flat_map(line).collect();
    std::fs::write(&path, &bytes).unwrap();

    let (out, result) = tail(
        &options(Input::File(path), &["run-1"], true),
        Style::default(),
    );
    result.unwrap();
    let expected: Vec<u8> = [&entries[0], &entries[2]]
        .into_iter()
        .flat_map(line)
        .collect();
    assert_eq!(
        out.as_bytes(),
        expected,
        "byte for byte as the ledger holds them"
    );
}

#[test]
fn an_intent_and_its_outcome_are_one_line_and_a_lone_intent_shows_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let entries = [
        intent("paired"),
        testing::mutation("paired"),
        intent("crashed"),
    ];
    std::fs::write(&path, entries.iter().flat_map(line).collect::<Vec<u8>>()).unwrap();

    let (out, result) = tail(&options(Input::File(path), &[], false), Style::default());
    result.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains(" 403 deny ") && !lines[0].contains("[intent]"),
        "{out}"
    );
    assert!(
        lines[1].contains(" ... ") && lines[1].contains("[intent]"),
        "{out}"
    );
}

#[test]
fn lines_that_are_not_entries_are_counted_and_the_rest_still_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.jsonl");
    let mut future = serde_json::to_value(testing::read("v2")).unwrap();
    future["schema"] = "pathgate.ledger/v2".into();
    let mut bytes = b"not json\n\n".to_vec();
    bytes.extend(serde_json::to_vec(&future).unwrap());
    bytes.push(b'\n');
    bytes.extend(line(&testing::read("ok")));
    // A finite file's last line needs no newline.
    let last = line(&testing::mutation("last"));
    bytes.extend_from_slice(&last[..last.len() - 1]);
    std::fs::write(&path, bytes).unwrap();

    let (out, result) = tail(&options(Input::File(path), &[], false), Style::default());
    assert_eq!(out.lines().count(), 2, "{out}");
    match result {
        Err(TailError::Unreadable(2)) => {}
        other => panic!("expected two unreadable lines, got {other:?}"),
    }
}

#[test]
fn the_session_column_shows_unless_exactly_one_session_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    std::fs::write(&path, line(&testing::read("r"))).unwrap();
    for (sessions, shown) in [
        (&[][..], true),
        (&["agent-run-7"][..], false),
        (&["agent-run-7", "x"][..], true),
    ] {
        let options = options(Input::File(path.clone()), sessions, false);
        let style = Style {
            show_session: options.selection.sessions.len() != 1,
            ..Style::default()
        };
        let (out, _) = tail(&options, style);
        assert_eq!(out.contains("agent-run-7"), shown, "{sessions:?}: {out}");
    }
}

#[test]
fn a_missing_input_names_its_path() {
    let error = drive(
        &options(Input::File("/nonexistent/ledger.jsonl".into()), &[], false),
        &mut Printer::new(
            Vec::new(),
            &options(Input::Stdin, &[], false),
            Style::default(),
        ),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/ledger.jsonl"),
        "{error}"
    );
}
