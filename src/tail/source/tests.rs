use std::fs::{self, OpenOptions};
use std::io::Write;

use super::*;
use crate::ledger::segment_name;

/// What a source handed on: lines as text, notices prefixed with `!`.
fn collect(read: impl FnOnce(&mut dyn FnMut(Event<'_>))) -> Vec<String> {
    let mut seen = Vec::new();
    read(&mut |event| match event {
        Event::Line { bytes, .. } => seen.push(String::from_utf8_lossy(bytes).into_owned()),
        Event::Notice(text) => seen.push(format!("!{text}")),
    });
    seen
}

fn append(path: &Path, bytes: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes.as_bytes())
        .unwrap();
}

fn follow(follower: &mut SpoolFollower) -> Vec<String> {
    collect(|emit| follower.read_available(emit).unwrap())
}

#[test]
fn a_line_is_handed_on_only_once_its_newline_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    append(&path, "{\"n\":1}\n{\"n\":");
    let mut file = GrowingFile::open(&path).unwrap();
    assert_eq!(
        collect(|emit| assert!(file.read_new(emit).unwrap())),
        ["{\"n\":1}"]
    );
    assert_eq!(
        collect(|emit| assert!(!file.read_new(emit).unwrap())),
        Vec::<String>::new()
    );
    append(&path, "2}\n{\"n\":3}\n");
    assert_eq!(
        collect(|emit| assert!(file.read_new(emit).unwrap())),
        ["{\"n\":2}", "{\"n\":3}"]
    );
}

#[test]
fn lines_are_numbered_and_a_final_line_without_newline_can_be_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    append(&path, "a\nb\nc");
    let mut file = GrowingFile::open(&path).unwrap();
    let mut numbers = Vec::new();
    file.read_new(&mut |event| {
        if let Event::Line { number, file, .. } = event {
            assert_eq!(file, path.as_path());
            numbers.push(number);
        }
    })
    .unwrap();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(file.take_partial(), Some((b"c".to_vec(), 3)));
    assert_eq!(file.take_partial(), None);
}

#[test]
fn a_file_cut_back_to_its_last_whole_line_is_read_again_from_there() {
    // pathgate cuts a torn last line when it restarts, then appends after the cut.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    append(&path, "{\"n\":1}\n{\"n\":2,\"to");
    let mut file = GrowingFile::open(&path).unwrap();
    assert_eq!(
        collect(|emit| {
            file.read_new(emit).unwrap();
        }),
        ["{\"n\":1}"]
    );
    let handle = OpenOptions::new().write(true).open(&path).unwrap();
    handle.set_len(8).unwrap();
    append(&path, "{\"n\":3}\n");
    assert_eq!(
        collect(|emit| {
            file.read_new(emit).unwrap();
        }),
        ["{\"n\":3}"]
    );
}

#[test]
fn the_follower_moves_through_segments_in_order_and_reads_a_segment_to_its_end_first() {
    let dir = tempfile::tempdir().unwrap();
    let segment = |seq| dir.path().join(segment_name(seq));
    let mut follower = SpoolFollower::new(dir.path()).unwrap();
    assert!(follow(&mut follower).is_empty(), "no segment yet");

    append(&segment(1), "1\n2\n");
    assert_eq!(follow(&mut follower), ["1", "2"]);
    // The writer appends a last batch and rotates between two polls: the rest of segment
    // 1 comes before segment 2.
    append(&segment(1), "3\n");
    append(&segment(2), "4\n5");
    assert_eq!(follow(&mut follower), ["3", "4"]);
    append(&segment(2), "\n");
    append(&segment(3), "6\n");
    assert_eq!(follow(&mut follower), ["5", "6"]);
    assert!(follow(&mut follower).is_empty());
    append(&segment(3), "7\n");
    assert_eq!(follow(&mut follower), ["7"]);
}

#[test]
fn segments_deleted_before_they_were_read_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let segment = |seq| dir.path().join(segment_name(seq));
    append(&segment(4), "a\n");
    let mut follower = SpoolFollower::new(dir.path()).unwrap();
    assert_eq!(follow(&mut follower), ["a"], "starts at the oldest present");
    append(&segment(5), "b\n");
    append(&segment(6), "c\n");
    append(&segment(7), "d\n");
    fs::remove_file(segment(5)).unwrap();
    fs::remove_file(segment(6)).unwrap();
    let seen = follow(&mut follower);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].starts_with(
            "!segments ledger-0000000005.jsonl to ledger-0000000006.jsonl were deleted"
        ),
        "{seen:?}"
    );
    assert_eq!(seen[1], "d");
}

#[test]
fn a_segment_deleted_while_it_is_read_is_read_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let segment = |seq| dir.path().join(segment_name(seq));
    append(&segment(1), "a\n");
    let mut follower = SpoolFollower::new(dir.path()).unwrap();
    assert_eq!(follow(&mut follower), ["a"]);
    // The follower holds segment 1 open: what was written before retention deleted it
    // is still read.
    let mut writer = OpenOptions::new().append(true).open(segment(1)).unwrap();
    writer.write_all(b"b\n").unwrap();
    append(&segment(2), "c\n");
    fs::remove_file(segment(1)).unwrap();
    assert_eq!(follow(&mut follower), ["b", "c"]);
}

#[test]
fn a_torn_line_in_a_final_segment_is_reported_not_handed_on() {
    let dir = tempfile::tempdir().unwrap();
    let segment = |seq| dir.path().join(segment_name(seq));
    append(&segment(1), "a\n{\"torn");
    append(&segment(2), "b\n");
    let mut follower = SpoolFollower::new(dir.path()).unwrap();
    let seen = follow(&mut follower);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], "a");
    assert!(
        seen[1].contains("ledger-0000000001.jsonl:2: a torn last line (6 bytes)"),
        "{seen:?}"
    );
    assert_eq!(seen[2], "b");
}

#[test]
fn other_files_in_the_spool_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    append(
        &dir.path().join("cursor-webhook.json"),
        "{\"segment\":1,\"offset\":0}\n",
    );
    append(&dir.path().join(segment_name(1)), "a\n");
    let mut follower = SpoolFollower::new(dir.path()).unwrap();
    assert_eq!(follow(&mut follower), ["a"]);
    assert!(
        !dir.path().read_dir().unwrap().any(|item| item
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("tail")),
        "the follower writes nothing in the spool"
    );
}

#[test]
fn stdin_hands_on_lines_across_reads_and_a_last_line_without_newline() {
    let mut lines = StdinLines::default();
    let mut input: &[u8] = b"a\nb";
    let mut seen = collect(|emit| assert!(lines.read_some(&mut input, emit).unwrap()));
    let mut more: &[u8] = b"c\nd";
    seen.extend(collect(|emit| {
        assert!(lines.read_some(&mut more, emit).unwrap())
    }));
    let mut ended: &[u8] = b"";
    seen.extend(collect(|emit| {
        assert!(!lines.read_some(&mut ended, emit).unwrap())
    }));
    assert_eq!(seen, ["a", "bc", "d"]);
}
