//! The corpus replay CI runs (`cargo test -p pathgate-fuzz`): every file under
//! `fuzz/corpus/<target>/` through its target, each within a time bound, and the hostile
//! inputs the evasion tests send (70,000 nested `[`, YAML merge keys, ...) through every
//! target that reads a body.

use std::time::Duration;

use pathgate_fuzz::{corpus, execute, Outcome, Target};

/// Per input, in a debug build on a shared two-core machine; the release figures in
/// docs/reliability.md are two orders of magnitude below.
const BOUND: Duration = Duration::from_secs(2);

fn assert_returns_in_time(target: Target, name: &str, input: &[u8]) {
    match execute(target, input) {
        Outcome::Returned(took) => assert!(
            took <= BOUND,
            "{}: {name} took {took:?}, over the {BOUND:?} bound",
            target.name()
        ),
        Outcome::Panicked(message) => panic!("{}: {name} panicked: {message}", target.name()),
    }
}

#[test]
fn every_corpus_file_returns_within_the_bound() {
    for target in Target::ALL {
        let files = corpus(target).unwrap_or_else(|e| panic!("{}: {e}", target.name()));
        assert!(
            files.len() >= 3,
            "{}: only {} corpus files",
            target.name(),
            files.len()
        );
        for (path, input) in files {
            assert_returns_in_time(target, &path.display().to_string(), &input);
        }
    }
}

/// The inputs of tests/integration/evasion/parsers.rs, built here rather than stored: five
/// of them are 100 KB or more.
fn hostile_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("100,000 [", "[".repeat(100_000).into_bytes()),
        ("70,000 [ closed", ("[".repeat(70_000) + &"]".repeat(70_000)).into_bytes()),
        ("70,000 - ", ("- ".repeat(70_000) + "1").into_bytes()),
        ("x: and 70,000 {", ("x: ".to_owned() + &"{".repeat(70_000)).into_bytes()),
        ("70,000 [ on lines", "[\n".repeat(70_000).into_bytes()),
        ("50,000 nested objects", ("{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000)).into_bytes()),
        ("a merge key", b"<<: {gracePeriodSeconds: 0}\n".to_vec()),
        ("merge key list", b"<<: [{propagationPolicy: Background}, {gracePeriodSeconds: 0}]\n".to_vec()),
        ("anchor and alias", b"defaults: &d {gracePeriodSeconds: 0}\n<<: *d\n".to_vec()),
        ("a billion laughs", b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n".to_vec()),
    ]
}

#[test]
fn the_evasion_tests_hostile_bodies_return_within_the_bound_in_every_body_target() {
    let body_targets = [
        Target::DeleteOptionsJson,
        Target::DeleteOptionsYaml,
        Target::ApplyYaml,
        Target::ProtobufEnvelope,
        Target::DeleteOptionsProtobuf,
    ];
    for (name, body) in hostile_bodies() {
        for target in body_targets {
            assert_returns_in_time(target, name, &body);
        }
        for content_type in [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ] {
            let mut input = format!("{content_type}\n").into_bytes();
            input.extend_from_slice(&body);
            assert_returns_in_time(Target::Patch, name, &input);
        }
    }
}

#[test]
fn a_long_path_and_query_return_within_the_bound() {
    let path = "/api/v1/namespaces/default/pods/".to_owned() + &"a/".repeat(50_000);
    let query = "dryRun=All&".repeat(20_000) + &"%zz".repeat(1000);
    let input = format!("DELETE {path}?{query}");
    assert_returns_in_time(Target::RequestInfo, "a long path", input.as_bytes());
    assert_returns_in_time(Target::Query, "a long query", query.as_bytes());
}
