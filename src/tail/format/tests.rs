use super::*;
use crate::ledger::{
    testing, Action, DecisionRecord, ErrorKind, ErrorRecord, FindingRecord, Mode, SentForwarded,
    Side,
};

const PLAIN: Style = Style {
    color: false,
    width: None,
    show_session: false,
};
const COLOUR: Style = Style {
    color: true,
    width: None,
    show_session: false,
};

fn decision(action: Action, enforce_action: Action, findings: &[(&str, Action)]) -> DecisionRecord {
    DecisionRecord {
        mode: if action == enforce_action {
            Mode::Enforce
        } else {
            Mode::Observe
        },
        action,
        enforce_action,
        findings: findings
            .iter()
            .map(|(rule, action)| FindingRecord {
                rule: (*rule).into(),
                action: *action,
                message: "m".into(),
            })
            .collect(),
        rewrites: vec![],
        confirmed: false,
        budget: None,
    }
}

/// A create of ConfigMap `agent-sandbox/demo`, answered 201.
fn create() -> Entry {
    let mut entry = testing::mutation("t-create");
    let request = &mut entry.request;
    (request.method, request.verb) = ("POST".into(), "create".into());
    (request.resource, request.namespace) = ("configmaps".into(), "agent-sandbox".into());
    request.name = "demo".into();
    entry.decision = Some(decision(Action::Allow, Action::Allow, &[]));
    entry.dry_run = Some(SentForwarded::unchanged(false));
    if let Some(response) = entry.response.as_mut() {
        (response.status_code, response.reason) = (201, None);
    }
    entry
}

/// Every column removed of its SGR codes: what a reader sees.
fn visible(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn each_kind_of_request_is_one_line_with_its_columns() {
    let denied = testing::mutation("t1");
    let read = testing::read("t2");

    let mut list = testing::read("t3");
    (list.request.verb, list.request.name) = ("list".into(), String::new());

    let mut dry_run = create();
    dry_run.dry_run = Some(SentForwarded::unchanged(true));
    dry_run.decision = Some(decision(
        Action::Flag,
        Action::Flag,
        &[("PG010", Action::Flag)],
    ));

    let mut rehearsed = create();
    rehearsed.dry_run = Some(SentForwarded {
        sent: false,
        forwarded: true,
    });

    let mut observed = create();
    observed.decision = Some(decision(
        Action::Flag,
        Action::Deny,
        &[("PG001", Action::Flag), ("PG010", Action::Deny)],
    ));

    let mut intent = testing::mutation("t4");
    intent.phase = Phase::Intent;
    intent.response = None;

    let mut failed = testing::read("t5");
    failed.response = None;
    failed.error = Some(ErrorRecord {
        side: Side::Upstream,
        kind: ErrorKind::Reset,
        message: "connection reset".into(),
    });

    let mut discovery = testing::read("t6");
    let request = &mut discovery.request;
    (request.verb, request.path) = ("nonresource".into(), "/apis".into());
    (request.resource, request.namespace, request.name) = Default::default();

    let mut unclassified = testing::read("t7");
    (unclassified.request.verb, unclassified.request.path) =
        (String::new(), "/api/v1/x/y/z/w".into());
    unclassified.decision = None;

    let mut scale = testing::read("t8");
    let request = &mut scale.request;
    (request.verb, request.api_group) = ("update".into(), "apps".into());
    (request.resource, request.subresource) = ("deployments".into(), "scale".into());
    request.name = "web".into();
    request.mutation = true;

    let mut namespace = testing::mutation("t9");
    (namespace.request.resource, namespace.request.namespace) =
        ("namespaces".into(), String::new());
    namespace.request.name = "prod".into();
    namespace.decision = Some(decision(
        Action::Confirm,
        Action::Confirm,
        &[("PG007", Action::Confirm)],
    ));

    let table: [(&str, Entry, &str); 12] = [
        ("denied delete", denied, "13:00:00.250 delete  403 deny    PG004       pods shop/web-5d9c7-abcde"),
        ("allowed read", read, "13:00:00.250 get     200 allow               pods shop/web-5d9c7-abcde"),
        ("list in a namespace", list, "13:00:00.250 list    200 allow               pods shop/*"),
        ("client dry run", dry_run, "13:00:00.250 create  201 flag    PG010       [dry-run] configmaps agent-sandbox/demo"),
        ("dry run added by pathgate", rehearsed, "13:00:00.250 create  201 allow               [dry-run added] configmaps agent-sandbox/demo"),
        ("observe", observed, "13:00:00.250 create  201 flag    PG001,PG010 [would deny] configmaps agent-sandbox/demo"),
        ("intent", intent, "13:00:00.250 delete  ... deny    PG004       [intent] pods shop/web-5d9c7-abcde"),
        ("upstream error", failed, "13:00:00.250 get       - allow               [error upstream reset] pods shop/web-5d9c7-abcde"),
        ("discovery", discovery, "13:00:00.250 get     200 allow               /apis"),
        ("unclassified", unclassified, "13:00:00.250 ?       200 -                   GET /api/v1/x/y/z/w"),
        ("group and subresource", scale, "13:00:00.250 update  200 allow               deployments.apps/scale shop/web"),
        ("cluster-scoped", namespace, "13:00:00.250 delete  403 confirm PG007       namespaces prod"),
    ];
    for (name, entry, expected) in table {
        assert_eq!(format_line(&entry, &PLAIN), expected, "{name}");
    }
}

#[test]
fn a_refusal_is_shown_by_its_decision_and_other_errors_by_a_mark() {
    // pathgate records its own refusal as a client-side error as well.
    let mut denied = testing::mutation("t");
    denied.error = Some(ErrorRecord {
        side: Side::Client,
        kind: ErrorKind::Other,
        message: "pathgate denied this request: PG004".into(),
    });
    assert!(!format_line(&denied, &PLAIN).contains("[error"));
    // A 413 is pathgate's answer too, but no rule refused it.
    let mut too_large = denied.clone();
    too_large.decision = None;
    too_large.error.as_mut().unwrap().kind = ErrorKind::TooLarge;
    too_large.response.as_mut().unwrap().status_code = 413;
    let line = format_line(&too_large, &PLAIN);
    assert!(
        line.contains(" 413 -       ") && line.contains("[error client too_large] "),
        "{line}"
    );
}

#[test]
fn a_create_names_its_object_when_the_body_was_captured() {
    let mut entry = create();
    entry.request.name = String::new();
    assert!(format_line(&entry, &PLAIN).ends_with(" configmaps agent-sandbox/"));
    entry.body = Some(crate::ledger::CapturedBody {
        json: Some(serde_json::json!({"metadata": {"name": "demo\x1b"}})),
        original_bytes: 40,
        truncated: false,
    });
    assert!(format_line(&entry, &PLAIN).ends_with(r" configmaps agent-sandbox/demo\u{1b}"));
}

#[test]
fn a_create_names_its_object_from_the_ledgers_object_name() {
    let mut entry = create();
    entry.request.name = String::new();
    entry.analysis = Some(crate::ledger::AnalysisRecord {
        patch_type: None,
        touched_paths: vec![],
        effect_paths: None,
        whole_object: None,
        body_format: "protobuf".into(),
        opaque_reason: None,
        object_name: Some("from-protobuf".into()),
    });
    assert!(
        format_line(&entry, &PLAIN).ends_with(" configmaps agent-sandbox/from-protobuf"),
        "{}",
        format_line(&entry, &PLAIN)
    );
}

#[test]
fn the_session_column_is_shown_when_asked() {
    let style = Style {
        show_session: true,
        ..PLAIN
    };
    assert_eq!(
        format_line(&testing::read("t"), &style),
        "13:00:00.250 agent-run-7  get     200 allow               pods shop/web-5d9c7-abcde"
    );
    let mut long = testing::read("t");
    long.session = "a-session-id-longer-than-twelve".into();
    assert!(format_line(&long, &style).starts_with("13:00:00.250 a-session-i… get "));
}

#[test]
fn without_colour_no_escape_code_is_written() {
    for entry in [testing::mutation("t"), testing::read("t"), create()] {
        let line = format_line(&entry, &PLAIN);
        assert!(!line.contains('\x1b'), "{line:?}");
    }
}

#[test]
fn a_denied_mutation_is_bold_with_its_denial_in_red() {
    let line = format_line(&testing::mutation("t"), &COLOUR);
    assert!(line.starts_with(sgr::BOLD), "{line:?}");
    assert!(!line.contains(sgr::DIM), "{line:?}");
    let red = |text: &str| format!("{}{text}{}", sgr::RED, sgr::DEFAULT_FOREGROUND);
    assert!(line.contains(&red("deny   ")), "{line:?}");
    assert!(line.contains(&red("PG004")), "{line:?}");
    assert!(line.contains(&format!("{}403{}", sgr::YELLOW, sgr::DEFAULT_FOREGROUND)));
    assert!(line.ends_with(sgr::RESET), "{line:?}");
    assert_eq!(visible(&line), format_line(&testing::mutation("t"), &PLAIN));
}

#[test]
fn a_read_is_dim_and_an_allow_is_not_coloured() {
    let line = format_line(&testing::read("t"), &COLOUR);
    assert!(line.starts_with(sgr::DIM), "{line:?}");
    assert!(!line.contains(sgr::BOLD));
    for colour in [sgr::RED, sgr::YELLOW, sgr::CYAN, sgr::MAGENTA] {
        assert!(!line.contains(colour), "{line:?}");
    }
    assert!(line.ends_with(sgr::RESET));
}

#[test]
fn flags_rewrites_confirmations_and_dry_runs_have_their_colours() {
    let painted = |colour: &str, text: &str| format!("{colour}{text}{}", sgr::DEFAULT_FOREGROUND);
    let mut flagged = create();
    flagged.dry_run = Some(SentForwarded::unchanged(true));
    flagged.decision = Some(decision(
        Action::Flag,
        Action::Flag,
        &[("PG010", Action::Flag)],
    ));
    let line = format_line(&flagged, &COLOUR);
    assert!(line.contains(&painted(sgr::YELLOW, "flag   ")), "{line:?}");
    assert!(line.contains(&painted(sgr::YELLOW, "PG010")), "{line:?}");
    assert!(line.contains(&painted(sgr::CYAN, "[dry-run]")), "{line:?}");

    let mut rewritten = testing::mutation("t");
    rewritten.decision = Some(decision(
        Action::Rewrite,
        Action::Rewrite,
        &[("PG005", Action::Rewrite)],
    ));
    let line = format_line(&rewritten, &COLOUR);
    assert!(line.contains(&painted(sgr::CYAN, "rewrite")), "{line:?}");

    let mut confirm = testing::mutation("t");
    confirm.decision = Some(decision(
        Action::Confirm,
        Action::Confirm,
        &[("PG007", Action::Confirm)],
    ));
    let line = format_line(&confirm, &COLOUR);
    assert!(line.contains(&painted(sgr::MAGENTA, "confirm")), "{line:?}");

    let mut observed = create();
    observed.decision = Some(decision(
        Action::Flag,
        Action::Deny,
        &[("PG010", Action::Deny)],
    ));
    let line = format_line(&observed, &COLOUR);
    assert!(
        line.contains(&painted(sgr::RED, "[would deny]")),
        "{line:?}"
    );

    let mut server_error = testing::read("t");
    server_error.response.as_mut().unwrap().status_code = 503;
    let line = format_line(&server_error, &COLOUR);
    assert!(line.contains(&painted(sgr::RED, "503")), "{line:?}");
}

#[test]
fn a_long_target_is_shortened_in_the_middle_to_the_terminal_width() {
    let mut entry = testing::read("t");
    entry.request.name = format!("web-{}-tail7", "x".repeat(80));
    let whole = format_line(&entry, &PLAIN);
    assert!(whole.chars().count() > 100);
    for style in [PLAIN, COLOUR] {
        let line = format_line(
            &entry,
            &Style {
                width: Some(80),
                ..style
            },
        );
        let seen = visible(&line);
        assert_eq!(seen.chars().count(), 80, "{seen:?}");
        assert!(
            seen.starts_with("13:00:00.250 get     200 allow               pods shop/w…"),
            "{seen:?}"
        );
        assert!(
            seen.ends_with("xxx-tail7"),
            "the name's end stays: {seen:?}"
        );
        assert_eq!(seen.matches('…').count(), 1, "{seen:?}");
    }
}

#[test]
fn a_target_that_fits_or_a_terminal_too_narrow_keeps_the_line_whole() {
    let entry = testing::read("t");
    let whole = format_line(&entry, &PLAIN);
    let width = whole.chars().count();
    for width in [width, width + 40, 40, 0] {
        let line = format_line(
            &entry,
            &Style {
                width: Some(width),
                ..PLAIN
            },
        );
        assert_eq!(line, whole, "width {width}");
    }
}

#[test]
fn shorten_keeps_the_start_and_the_end() {
    assert_eq!(shorten("abcdefghijklmnopqrstuvwxyz", 13), "abcd…stuvwxyz");
    assert_eq!(
        shorten("abcdefghijklmnopqrstuvwxyz", 13).chars().count(),
        13
    );
    assert_eq!(shorten("short", 13), "short");
}

#[test]
fn control_characters_from_a_client_cannot_reach_the_terminal() {
    let mut entry = testing::read("t");
    entry.request.name = "evil\x1b[2J\x07\u{202e}txt.exe\u{9b}".into();
    entry.session = "s\x1b]0;title\x07".into();
    for style in [
        PLAIN,
        COLOUR,
        Style {
            show_session: true,
            ..COLOUR
        },
    ] {
        let line = visible(&format_line(&entry, &style));
        assert!(!line.chars().any(is_unsafe), "{line:?}");
    }
    let line = format_line(&entry, &PLAIN);
    assert!(
        line.ends_with(r"pods shop/evil\u{1b}[2J\u{7}\u{202e}txt.exe\u{9b}"),
        "{line:?}"
    );
    let unclassified = {
        let mut entry = testing::read("t");
        (entry.request.verb, entry.request.path) = (String::new(), "/x\x1b[31m".into());
        entry
    };
    assert!(format_line(&unclassified, &PLAIN).ends_with(r"GET /x\u{1b}[31m"));
}
