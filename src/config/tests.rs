//! Tests of parsing, validation, the effective configuration and reloads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::policy::{Mode, NamespacePattern, RuleAction, RuleId};

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, Path::new("test.yaml"))
}

/// The error's (key, reason) for a file that must be refused.
fn refused(yaml: &str) -> (String, String) {
    match parse(yaml) {
        Ok(config) => panic!("accepted {yaml:?}: {config:?}"),
        Err(ConfigError::Invalid {
            key, reason, file, ..
        }) => {
            assert_eq!(file, PathBuf::from("test.yaml"));
            (key, reason)
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pathgate.example.yaml")
}

#[test]
fn empty_file_is_the_default() {
    assert_eq!(parse("").unwrap(), Config::default());
    assert_eq!(parse("# only a comment\n---\n").unwrap(), Config::default());
    assert_eq!(parse("{}").unwrap(), Config::default());
}

#[test]
fn the_published_template_loads() {
    let config = Config::load(example_path()).expect("config/pathgate.example.yaml loads");
    let policy = &config.policy;
    assert_eq!(policy.mode, Mode::Enforce);
    assert!(policy.safety_gates.dry_run_default);
    assert_eq!(policy.safety_gates.max_patch_keys, 3);
    assert!(!policy.safety_gates.allow_direct_deletion);
    assert!(policy.safety_gates.require_grace_period);
    assert!(!policy.safety_gates.force_full_replace_allowed);
    assert!(policy.schema_enforcement.strict_identity);
    assert!(policy.schema_enforcement.label_selector_filter);
    assert_eq!(policy.schema_enforcement.discovery_payload_limit, Some(50));
    assert_eq!(policy.rule_action(RuleId::PG011), RuleAction::Rewrite);
    assert_eq!(policy.min_grace_period_seconds, 30);
    assert_eq!(config.server.auth, Some(AuthMode::Passthrough));
    assert_eq!(config.server.workers, Some(1));
    assert_eq!(
        config.server.listen,
        Some("127.0.0.1:8443".parse().unwrap())
    );
    assert_eq!(
        config.ledger.dir,
        Some(PathBuf::from("/var/lib/pathgate/ledger"))
    );
    assert_eq!(config.ledger.on_failure, OnFailure::FailOpen);
}

#[test]
fn a_full_file_sets_every_key() {
    let config = parse(
        r#"
mode: rehearse
safety_gates:
  dry_run_default: false
  max_patch_keys: 5
  allow_direct_deletion: true
  require_grace_period: false
  force_full_replace_allowed: true
schema_enforcement:
  strict_identity: false
  label_selector_filter: false
  discovery_payload_limit: null
rules:
  PG004: confirm
  secret-read: off
protected_namespaces: [prod, "prod-*"]
mutation_namespaces: ["agent-*"]
min_grace_period_seconds: 10
confirm_window_seconds: 60
retry_loop: {window_seconds: 120, threshold: 4}
server:
  listen: "[::1]:8443"
  admin_listen: 127.0.0.1:9443
  auth: sidecar
  upstream_kubeconfig: /etc/kube/config
  context: dev
  tls_cert: /c.crt
  tls_key: /c.key
  client_ca: /ca.crt
  max_body_bytes: 1048576
  default_session: run-1
ledger:
  dir: /spool
  on_failure: fail-closed-mutations
  queue_capacity: 1000
  flush_interval_ms: 20
  max_segment_bytes: 1048576
  max_spool_bytes: 10485760
  durable_timeout_ms: 2000
  capture_bodies_max_bytes: 65536
  stdout: true
  webhook: {url: "https://127.0.0.1:9000/hook", ca_file: /hook-ca.pem, batch_size: 10, timeout_ms: 1500}
  otlp:
    endpoint: "http://127.0.0.1:4318"
    batch_size: 20
    timeout_ms: 2500
    spans: true
    logs: false
    service_name: agents
"#,
    )
    .unwrap();
    let p = &config.policy;
    assert_eq!(p.mode, Mode::Rehearse);
    assert_eq!(p.safety_gates.max_patch_keys, 5);
    assert_eq!(p.rule_action(RuleId::PG004), RuleAction::Confirm);
    assert_eq!(p.rule_action(RuleId::PG012), RuleAction::Off);
    assert_eq!(
        p.rule_action(RuleId::PG010),
        RuleAction::Flag,
        "dry_run_default: false"
    );
    assert_eq!(p.rule_action(RuleId::PG002), RuleAction::Flag);
    assert_eq!(p.rule_action(RuleId::PG005), RuleAction::Flag);
    assert_eq!(p.rule_action(RuleId::PG006), RuleAction::Flag);
    assert_eq!(p.rule_action(RuleId::PG011), RuleAction::Off);
    assert_eq!(p.protected_namespaces.len(), 2);
    assert!(p.is_protected("prod-eu"));
    assert!(
        !p.is_protected("kube-system"),
        "the list replaces the defaults"
    );
    assert_eq!(
        p.mutation_namespaces,
        vec![NamespacePattern::new("agent-*").unwrap()]
    );
    assert_eq!(
        (p.min_grace_period_seconds, p.confirm_window_seconds),
        (10, 60)
    );
    assert_eq!(
        (p.retry_loop.window_seconds, p.retry_loop.threshold),
        (120, 4)
    );
    assert_eq!(config.server.listen, Some("[::1]:8443".parse().unwrap()));
    assert_eq!(config.server.default_session.as_deref(), Some("run-1"));
    let l = &config.ledger;
    assert_eq!(l.dir, Some(PathBuf::from("/spool")));
    assert_eq!(l.on_failure, OnFailure::FailClosedMutations);
    assert_eq!(l.queue_capacity, 1000);
    assert_eq!(l.flush_interval_ms, 20);
    assert_eq!(l.max_segment_bytes, 1 << 20);
    assert_eq!(l.max_spool_bytes, 10 << 20);
    assert_eq!(l.durable_timeout_ms, 2000);
    assert_eq!(l.capture_bodies_max_bytes, Some(65536));
    assert!(l.stdout);
    let webhook = l.webhook.as_ref().unwrap();
    assert_eq!(webhook.url, "https://127.0.0.1:9000/hook");
    assert_eq!(webhook.ca_file, Some(PathBuf::from("/hook-ca.pem")));
    assert_eq!((webhook.batch_size, webhook.timeout_ms), (10, 1500));
    let otlp = l.otlp.as_ref().unwrap();
    assert_eq!(otlp.endpoint.authority().unwrap(), "127.0.0.1:4318");
    assert_eq!(otlp.ca_file, None);
    assert_eq!((otlp.batch_size, otlp.timeout_ms), (20, 2500));
    assert_eq!((otlp.spans, otlp.logs), (true, false));
    assert_eq!(otlp.service_name, "agents");
    assert_eq!(l.check(), Ok(()));
}

#[test]
fn unknown_keys_are_named_with_the_valid_ones() {
    let (key, reason) = refused("safety_gates:\n  max_patch_key: 3\n");
    assert_eq!(key, "safety_gates.max_patch_key");
    assert!(
        reason.contains("valid keys are: dry_run_default, max_patch_keys"),
        "{reason}"
    );

    let (key, reason) = refused("modes: enforce\n");
    assert_eq!(key, "modes");
    assert!(reason.contains("mode, safety_gates"), "{reason}");

    let (key, reason) =
        refused("ledger:\n  otlp:\n    endpoint: http://127.0.0.1:4318\n    insecure: true\n");
    assert_eq!(key, "ledger.otlp.insecure");
    assert!(
        reason.contains(
            "valid keys are: endpoint, ca_file, batch_size, timeout_ms, spans, logs, service_name"
        ),
        "{reason}"
    );

    // The ledger's own field names are not file keys: the file speaks in its own units.
    let (key, reason) =
        refused("ledger:\n  webhook: {url: 'http://127.0.0.1:1/', batch_max_entries: 5}\n");
    assert_eq!(key, "ledger.webhook.batch_max_entries");
    assert!(
        reason.contains("valid keys are: url, ca_file, batch_size, timeout_ms"),
        "{reason}"
    );
}

#[test]
fn fsync_and_jsonl_are_gone() {
    // The spool segments in `dir` are the JSONL ledger and are always fsynced (group
    // commit): there is neither a separate JSONL file nor a switch to turn fsync off.
    for (yaml, want) in [
        ("ledger: {fsync: false}", "ledger.fsync"),
        ("ledger: {jsonl: /l.jsonl}", "ledger.jsonl"),
    ] {
        let (key, reason) = refused(yaml);
        assert_eq!(key, want);
        assert!(
            reason.starts_with("unknown key; valid keys are: dir,"),
            "{reason}"
        );
        assert!(reason.contains("max_spool_bytes"), "{reason}");
    }
}

#[test]
fn type_errors_name_the_key_and_line() {
    let error = parse("safety_gates:\n  max_patch_keys: many\n").unwrap_err();
    let ConfigError::Invalid {
        key,
        reason,
        location,
        ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(key, "safety_gates.max_patch_keys");
    assert!(reason.contains("invalid type"), "{reason}");
    assert_eq!(location.map(|l| l.0), Some(2));
    let shown = error.to_string();
    assert!(shown.starts_with("test.yaml:2:"), "{shown}");
    assert!(
        shown.contains("safety_gates.max_patch_keys: invalid type"),
        "{shown}"
    );

    let (key, reason) = refused("mode: enforcing\n");
    assert_eq!(key, "mode");
    assert!(
        reason.contains("observe") && reason.contains("rehearse"),
        "{reason}"
    );

    let (key, reason) = refused("rules:\n  PG004: block\n");
    assert_eq!(key, "rules.PG004");
    assert!(reason.contains("confirm"), "{reason}");

    let (key, _) = refused("protected_namespaces: kube-system\n");
    assert_eq!(key, "protected_namespaces");

    let (key, reason) = refused("safety_gates: true\n");
    assert_eq!(key, "safety_gates");
    assert!(reason.ends_with("expected a mapping of keys"), "{reason}");

    let (key, reason) = refused("- 1\n");
    assert_eq!(key, "(document)");
    assert!(reason.contains("mapping"), "{reason}");
}

#[test]
fn values_are_validated() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "safety_gates: {max_patch_keys: 0}",
            "safety_gates.max_patch_keys",
            "out of range",
        ),
        (
            "min_grace_period_seconds: -1",
            "min_grace_period_seconds",
            "out of range",
        ),
        (
            "confirm_window_seconds: 1",
            "confirm_window_seconds",
            "out of range",
        ),
        (
            "retry_loop: {threshold: 1}",
            "retry_loop.threshold",
            "out of range",
        ),
        (
            "schema_enforcement: {discovery_payload_limit: 0}",
            "schema_enforcement.discovery_payload_limit",
            "null",
        ),
        ("rules: {PG020: deny}", "rules.PG020", "PG001..PG019"),
        ("rules: {PG019: rewrite}", "rules.PG019", "has no rewrite"),
        ("budgets: {mutations: -1}", "budgets.mutations", "invalid"),
        (
            "budgets: {deletes: 1000000001}",
            "budgets.deletes",
            "set null to turn the budget off",
        ),
        (
            "budgets: {requests_per_window: 0}",
            "budgets.requests_per_window",
            "1 to 10000",
        ),
        (
            "budgets: {window_seconds: 0}",
            "budgets.window_seconds",
            "1 to 86400",
        ),
        ("budgets: {tokens: 5}", "budgets.tokens", "unknown"),
        ("rules: {PG004: rewrite}", "rules.PG004", "has no rewrite"),
        (
            "rules: {PG011: rewrite}",
            "rules.PG011",
            "discovery_payload_limit",
        ),
        (
            "rules: {PG004: deny, direct-pod-delete: flag}",
            "rules.direct-pod-delete",
            "twice",
        ),
        (
            "protected_namespaces: [ok, Not_OK]",
            "protected_namespaces[1]",
            "namespace name",
        ),
        (
            "mutation_namespaces: ['']",
            "mutation_namespaces[0]",
            "namespace name",
        ),
        (
            "server: {listen: localhost}",
            "server.listen",
            "address:port",
        ),
        ("server: {tls_cert: /a.crt}", "server.tls_key", "both"),
        (
            "server: {in_cluster: true, upstream_kubeconfig: /k}",
            "server.in_cluster",
            "exclusive",
        ),
        (
            "server: {auth: impersonate}",
            "server.client_ca",
            "client certificates",
        ),
        ("server: {auth: token}", "server.auth", "passthrough"),
        (
            "server: {max_body_bytes: 10}",
            "server.max_body_bytes",
            "out of range",
        ),
        (
            "server: {default_session: 'a b'}",
            "server.default_session",
            "session id",
        ),
        ("server: {workers: 0}", "server.workers", "out of range"),
        (
            "server: {workers: 100000}",
            "server.workers",
            "out of range",
        ),
        (
            "ledger: {otlp: {endpoint: '127.0.0.1:4318'}}",
            "ledger.otlp.endpoint",
            "http://",
        ),
        (
            "ledger: {otlp: {endpoint: 'ftp://127.0.0.1:4318'}}",
            "ledger.otlp.endpoint",
            "http://",
        ),
        (
            "ledger: {otlp: {endpoint: 'http://127.0.0.1:4318/?x=1'}}",
            "ledger.otlp.endpoint",
            "remove the query",
        ),
        (
            "ledger: {webhook: {url: 'http://'}}",
            "ledger.webhook.url",
            "host",
        ),
        (
            "ledger: {webhook: {url: 'http://a b/'}}",
            "ledger.webhook.url",
            "host",
        ),
        (
            "ledger: {webhook: {url: 'https://hooks:9443/'}}",
            "ledger.webhook.ca_file",
            "required",
        ),
        (
            "ledger: {webhook: {url: 'http://hooks/', ca_file: /ca.pem}}",
            "ledger.webhook.ca_file",
            "https",
        ),
        (
            "ledger: {otlp: {endpoint: 'https://otel:4318'}}",
            "ledger.otlp.ca_file",
            "required",
        ),
        (
            "ledger: {webhook: {url: 'http://h/', batch_size: 0}}",
            "ledger.webhook.batch_size",
            "out of range",
        ),
        (
            "ledger: {webhook: {url: 'http://h/', timeout_ms: 10}}",
            "ledger.webhook.timeout_ms",
            "out of range",
        ),
        (
            "ledger: {otlp: {endpoint: 'http://h:4318', batch_size: 10001}}",
            "ledger.otlp.batch_size",
            "out of range",
        ),
        (
            "ledger: {otlp: {endpoint: 'http://h:4318', timeout_ms: 300001}}",
            "ledger.otlp.timeout_ms",
            "out of range",
        ),
        (
            "ledger: {otlp: {endpoint: 'http://h:4318', spans: false, logs: false}}",
            "ledger.otlp",
            "nothing would be exported",
        ),
        (
            "ledger: {otlp: {endpoint: 'http://h:4318', service_name: ''}}",
            "ledger.otlp.service_name",
            "service name",
        ),
        (
            "ledger: {on_failure: fail-closed}",
            "ledger.on_failure",
            "fail-open",
        ),
        (
            "ledger: {queue_capacity: 0}",
            "ledger.queue_capacity",
            "out of range",
        ),
        (
            "ledger: {flush_interval_ms: 0}",
            "ledger.flush_interval_ms",
            "out of range",
        ),
        (
            "ledger: {max_segment_bytes: 1000}",
            "ledger.max_segment_bytes",
            "out of range",
        ),
        (
            "ledger: {max_spool_bytes: 1000}",
            "ledger.max_spool_bytes",
            "out of range",
        ),
        (
            "ledger: {max_segment_bytes: 67108864, max_spool_bytes: 100000000}",
            "ledger.max_spool_bytes",
            "at least 134217728",
        ),
        (
            "ledger: {durable_timeout_ms: 5}",
            "ledger.durable_timeout_ms",
            "out of range",
        ),
        (
            "ledger: {capture_bodies_max_bytes: 0}",
            "ledger.capture_bodies_max_bytes",
            "null",
        ),
        (
            "ledger: {capture_bodies_max_bytes: 1073741824}",
            "ledger.capture_bodies_max_bytes",
            "out of range",
        ),
    ];
    for (yaml, want_key, want_reason) in cases {
        let (key, reason) = refused(yaml);
        assert_eq!(&key, want_key, "{yaml}: {reason}");
        assert!(reason.contains(want_reason), "{yaml}: {key}: {reason}");
    }
}

#[test]
fn protected_objects_are_validated_naming_file_key_and_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "protected_objects:\n- {resource: configmaps, nam: x}\n",
            "protected_objects[0].nam",
            "valid keys are: group, resource, namespace, name",
        ),
        (
            "protected_objects:\n- {name: db}\n- {}\n",
            "protected_objects[1]",
            "at least one of group, resource, namespace, name",
        ),
        (
            "protected_objects:\n- {resource: deployments/scale}\n",
            "protected_objects[0]",
            "without a subresource",
        ),
        (
            "protected_objects:\n- {namespace: 'shop/*'}\n",
            "protected_objects[0]",
            "never contains '/'",
        ),
        (
            "protected_objects:\n- {resource: configmaps, name: 'app *'}\n",
            "protected_objects[0].name",
            "match nothing",
        ),
        (
            "protected_objects: {resource: configmaps}\n",
            "protected_objects",
            "invalid type",
        ),
    ];
    for (yaml, key, reason) in cases {
        let (got_key, got_reason) = refused(yaml);
        assert_eq!(&got_key, key, "{yaml}: {got_reason}");
        assert!(got_reason.contains(reason), "{yaml}: {got_reason}");
    }
    let error = Config::from_yaml(
        "protected_objects:\n- {}\n",
        Path::new("/etc/pathgate/config.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("/etc/pathgate/config.yaml: protected_objects[0]: a pattern needs"),
        "{error}"
    );
}

#[test]
fn protected_objects_load_print_and_reload() {
    let config = parse(
        "protected_objects:\n- {group: apps, resource: deployments, namespace: shop, name: db}\n\
         - {resource: configmaps, name: 'app-*'}\n",
    )
    .unwrap();
    let patterns = &config.policy.protected_objects;
    assert_eq!(patterns.len(), 2);
    assert!(patterns[0].matches("apps", "deployments", "shop", "db"));
    assert!(patterns[1].matches("", "configmaps", "any", "app-1"));
    assert!(
        patterns[1].matches("x.io", "configmaps", "any", "app-1"),
        "absent = *"
    );
    assert_eq!(config.policy.rule_action(RuleId::PG018), RuleAction::Deny);

    let printed = config.to_yaml();
    assert!(printed.contains("protected_objects:"), "{printed}");
    assert!(printed.contains("name: app-*"), "{printed}");
    assert!(printed.contains("PG018: deny"), "{printed}");
    let again = Config::from_yaml(&printed, Path::new("printed.yaml")).unwrap();
    assert_eq!(
        again.policy.protected_objects,
        config.policy.protected_objects
    );
    assert_eq!(again.to_yaml(), printed, "printing is a fixed point");
    assert!(Config::default()
        .to_yaml()
        .contains("protected_objects: []"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(&path, "mode: enforce\n");
    let handle = PolicyHandle::new(&Config::load(&path).unwrap(), None);
    assert!(handle.current().protected_objects.is_empty());
    write(
        &path,
        "protected_objects:\n- {resource: secrets, name: db-*}\n",
    );
    let after = handle.reload_from(&path).unwrap();
    assert!(after.protected_objects[0].matches("", "secrets", "shop", "db-password"));
    write(&path, "protected_objects:\n- {resource: 'secrets/x'}\n");
    let error = handle.reload_from(&path).unwrap_err();
    assert_eq!(error.key(), Some("protected_objects[0]"));
    assert_eq!(
        handle.current().protected_objects.len(),
        1,
        "the old policy stays"
    );
}

#[test]
fn settings_that_need_a_ledger_wait_for_the_command_line_dir() {
    // Loading accepts them (`--ledger-dir` may still supply the dir); `check` after the
    // merge refuses them when no dir came from anywhere, instead of ignoring them.
    for (yaml, want) in [
        ("ledger: {stdout: true}", "ledger.stdout"),
        ("ledger: {webhook: {url: 'http://h/'}}", "ledger.webhook"),
        ("ledger: {otlp: {endpoint: 'http://h:4318'}}", "ledger.otlp"),
        (
            "ledger: {on_failure: fail-closed-mutations}",
            "ledger.on_failure",
        ),
        (
            "ledger: {capture_bodies_max_bytes: 4096}",
            "ledger.capture_bodies_max_bytes",
        ),
    ] {
        let config = parse(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        let error = config.ledger.check().unwrap_err();
        assert_eq!(error.key, want, "{yaml}");
        assert!(error.reason.contains("--ledger-dir"), "{yaml}: {error}");
        assert!(
            error.to_string().starts_with(&format!("{want}: ")),
            "{error}"
        );
        let flag = Overrides {
            ledger_dir: Some("/flag/spool".into()),
            ..Overrides::default()
        };
        let merged = Config::from_yaml_with(yaml, Path::new("test.yaml"), &flag)
            .unwrap_or_else(|e| panic!("{yaml} with --ledger-dir: {e}"));
        assert_eq!(
            merged.effective.ledger.dir,
            Some(PathBuf::from("/flag/spool"))
        );
        // Without the flag, loading for serve refuses what `check` refuses.
        let error = Config::from_yaml_with(yaml, Path::new("test.yaml"), &Overrides::default())
            .unwrap_err();
        assert_eq!(error.key(), Some(want), "{yaml}");
    }
    assert_eq!(
        parse("").unwrap().ledger.check(),
        Ok(()),
        "no ledger at all is fine"
    );
}

#[test]
fn the_ledger_defaults() {
    let l = parse("ledger: {dir: /d}").unwrap().ledger;
    assert_eq!(l.on_failure, OnFailure::FailOpen);
    assert_eq!(l.queue_capacity, 8192);
    assert_eq!(l.flush_interval_ms, 50);
    assert_eq!(l.max_segment_bytes, 64 << 20);
    assert_eq!(l.max_spool_bytes, 1 << 30);
    assert_eq!(l.durable_timeout_ms, 5000);
    assert_eq!(l.capture_bodies_max_bytes, None);
    assert!(!l.stdout);
    let sinks =
        parse("ledger: {dir: /d, webhook: {url: 'http://h/'}, otlp: {endpoint: 'http://h:4318'}}")
            .unwrap()
            .ledger;
    let webhook = sinks.webhook.unwrap();
    assert_eq!((webhook.batch_size, webhook.timeout_ms), (256, 10_000));
    let otlp = sinks.otlp.unwrap();
    assert_eq!((otlp.batch_size, otlp.timeout_ms), (256, 10_000));
    assert_eq!((otlp.spans, otlp.logs), (true, true));
    assert_eq!(otlp.service_name, "pathgate");
}

#[test]
fn rules_accept_ids_and_names() {
    let config = parse("rules: {pg001: deny, unbounded-list: off}").unwrap();
    assert_eq!(config.policy.rule_action(RuleId::PG001), RuleAction::Deny);
    assert_eq!(config.policy.rule_action(RuleId::PG011), RuleAction::Off);
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pathgate.yaml");
    std::fs::write(
        &path,
        "server: {upstream_kubeconfig: kube/config, tls_cert: /abs.crt, tls_key: k.key}\n\
         ledger:\n  dir: spool\n  webhook: {url: 'https://h/', ca_file: ca/hooks.pem}\n  \
         otlp: {endpoint: 'https://o:4318', ca_file: /etc/otel-ca.pem}\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(
        config.server.upstream_kubeconfig,
        Some(dir.path().join("kube/config"))
    );
    assert_eq!(config.server.tls_cert, Some(PathBuf::from("/abs.crt")));
    assert_eq!(config.server.tls_key, Some(dir.path().join("k.key")));
    assert_eq!(config.ledger.dir, Some(dir.path().join("spool")));
    assert_eq!(
        config.ledger.webhook.unwrap().ca_file,
        Some(dir.path().join("ca/hooks.pem"))
    );
    assert_eq!(
        config.ledger.otlp.unwrap().ca_file,
        Some(PathBuf::from("/etc/otel-ca.pem"))
    );
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let error = Config::load("/nonexistent/pathgate.yaml").unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/pathgate.yaml: cannot read"),
        "{error}"
    );
}

#[test]
fn check_config_prints_a_file_that_loads_back_the_same() {
    let printed = check_config(example_path()).unwrap();
    assert!(printed.contains("PG011: rewrite"), "{printed}");
    assert!(printed.contains("max_patch_keys: 3"), "{printed}");
    let again = Config::from_yaml(&printed, Path::new("printed.yaml")).unwrap();
    let original = Config::load(example_path()).unwrap();
    assert_eq!(
        again.policy.effective_rules(),
        original.policy.effective_rules()
    );
    assert_eq!(again.server, original.server);
    assert_eq!(again.ledger, original.ledger);
    assert_eq!(again.to_yaml(), printed, "printing is a fixed point");

    let default = Config::default().to_yaml();
    let reparsed = Config::from_yaml(&default, Path::new("default.yaml")).unwrap();
    assert_eq!(
        reparsed.policy.effective_rules(),
        Config::default().policy.effective_rules()
    );
    assert!(
        default.contains("discovery_payload_limit: null"),
        "{default}"
    );
}

#[test]
fn the_ledger_section_prints_and_loads_back_the_same() {
    let config = parse(
        "ledger:\n  dir: /spool\n  capture_bodies_max_bytes: 2048\n  \
         webhook: {url: 'https://hooks.internal/ledger', ca_file: /ca.pem}\n  \
         otlp: {endpoint: 'http://127.0.0.1:4318', logs: false}\n",
    )
    .unwrap();
    let printed = config.to_yaml();
    assert!(
        printed.contains("capture_bodies_max_bytes: 2048"),
        "{printed}"
    );
    let again = Config::from_yaml(&printed, Path::new("printed.yaml")).unwrap();
    assert_eq!(again.ledger, config.ledger);
    assert_eq!(again.to_yaml(), printed, "printing is a fixed point");

    // Off is printed as null, so the effective configuration shows the key.
    let default = Config::default().to_yaml();
    assert!(
        default.contains("capture_bodies_max_bytes: null"),
        "{default}"
    );
}

/// Every key of a fully populated file, as dotted paths.
fn all_keys() -> Vec<String> {
    fn walk(value: &serde_yaml::Value, prefix: &str, out: &mut Vec<String>) {
        if let serde_yaml::Value::Mapping(map) = value {
            for (k, v) in map {
                let k = k.as_str().unwrap();
                let path = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                if prefix == "rules" {
                    continue;
                }
                out.push(path.clone());
                walk(v, &path, out);
            }
        }
    }
    let mut config = Config::load(example_path()).unwrap();
    config.server.upstream_kubeconfig = Some("/k".into());
    config.server.context = Some("c".into());
    config.server.tls_cert = Some("/c".into());
    config.server.tls_key = Some("/k".into());
    config.server.client_ca = Some("/ca".into());
    for (_, slot) in config.server.connections.slots() {
        *slot = Some(30);
    }
    config.ledger.capture_bodies_max_bytes = Some(4096);
    config.ledger.otlp = Some(OtlpSettings {
        endpoint: "https://127.0.0.1:4318".parse().unwrap(),
        ca_file: Some("/ca".into()),
        batch_size: 1,
        timeout_ms: 1000,
        spans: true,
        logs: true,
        service_name: "pathgate".into(),
    });
    config.ledger.webhook = Some(WebhookSettings {
        url: "https://127.0.0.1:1/".parse().unwrap(),
        ca_file: Some("/ca".into()),
        batch_size: 1,
        timeout_ms: 1000,
    });
    let value = serde_yaml::to_value(config.to_file()).unwrap();
    let mut keys = Vec::new();
    walk(&value, "", &mut keys);
    keys
}

#[test]
fn docs_config_md_documents_every_key() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md"))
            .expect("docs/config.md exists");
    let keys = all_keys();
    assert!(keys.len() > 40, "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !docs.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/config.md does not document {missing:?}"
    );
}

#[test]
fn docs_rules_md_has_an_entry_per_rule() {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rules.md"))
        .expect("docs/rules.md exists");
    for rule in crate::policy::catalog() {
        let heading = format!("## {} {}", rule.id, rule.name);
        assert!(docs.contains(&heading), "docs/rules.md lacks {heading:?}");
    }
}

// ---- reloads ----

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn reload_swaps_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(&path, "safety_gates: {max_patch_keys: 3}\n");
    let handle = PolicyHandle::new(&Config::load(&path).unwrap(), None);
    let before = handle.current();
    write(&path, "safety_gates: {max_patch_keys: 7}\n");
    let after = handle.reload_from(&path).unwrap();
    assert_eq!(after.safety_gates.max_patch_keys, 7);
    assert_eq!(handle.current().safety_gates.max_patch_keys, 7);
    assert_eq!(
        before.safety_gates.max_patch_keys, 3,
        "a snapshot taken before stays whole"
    );
    assert_eq!(handle.generation(), 1);
}

#[test]
fn a_bad_reload_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(&path, "mode: observe\n");
    let handle = PolicyHandle::new(&Config::load(&path).unwrap(), None);
    write(&path, "mode: observe\nsafety_gates: {max_patch_keys: 0}\n");
    let error = handle.reload_from(&path).unwrap_err();
    assert_eq!(error.key(), Some("safety_gates.max_patch_keys"));
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    assert_eq!(handle.current().mode, Mode::Observe);
    assert_eq!(handle.current().safety_gates.max_patch_keys, 3);
    assert_eq!(handle.generation(), 0);

    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        handle.reload_from(&path),
        Err(ConfigError::Read { .. })
    ));
    assert_eq!(handle.current().mode, Mode::Observe);
}

#[test]
fn the_command_line_mode_survives_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(&path, "mode: enforce\n");
    let handle = PolicyHandle::new(&Config::load(&path).unwrap(), Some(Mode::Observe));
    assert_eq!(handle.current().mode, Mode::Observe);
    write(&path, "mode: rehearse\nmin_grace_period_seconds: 5\n");
    handle.reload_from(&path).unwrap();
    assert_eq!(handle.current().mode, Mode::Observe);
    assert_eq!(handle.current().min_grace_period_seconds, 5);
}

async fn wait_for(handle: &PolicyHandle, generation: u64) -> bool {
    for _ in 0..200 {
        if handle.generation() >= generation {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn the_watcher_reloads_on_change_and_skips_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(&path, "min_grace_period_seconds: 30\n");
    let handle = PolicyHandle::new(&Config::load(&path).unwrap(), None);
    let task = tokio::spawn(watch_with(
        path.clone(),
        handle.clone(),
        Duration::from_millis(20),
        None,
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(handle.generation(), 0, "unchanged content does not reload");

    write(&path, "min_grace_period_seconds: 45\n");
    assert!(wait_for(&handle, 1).await, "change picked up");
    assert_eq!(handle.current().min_grace_period_seconds, 45);

    write(&path, "min_grace_period_seconds: [oops]\n");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(handle.generation(), 1, "a bad file is not applied");
    assert_eq!(handle.current().min_grace_period_seconds, 45);

    write(&path, "min_grace_period_seconds: 60\n");
    assert!(wait_for(&handle, 2).await, "a fixed file is applied");
    assert_eq!(handle.current().min_grace_period_seconds, 60);
    task.abort();
}

#[tokio::test]
async fn sighup_reloads() {
    use tokio::signal::unix::{signal, SignalKind};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(&path, "confirm_window_seconds: 300\n");
    let handle = PolicyHandle::new(&Config::load(&path).unwrap(), None);
    // Registered before the signal is raised: an unhandled SIGHUP would end the process.
    let hangup = signal(SignalKind::hangup()).unwrap();
    // Polling is effectively off, so only the signal can trigger this reload.
    let task = tokio::spawn(watch_with(
        path.clone(),
        handle.clone(),
        Duration::from_secs(3600),
        Some(hangup),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    write(&path, "confirm_window_seconds: 120\n");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(wait_for(&handle, 1).await, "SIGHUP reloaded the policy");
    assert_eq!(handle.current().confirm_window_seconds, 120);
    task.abort();
}

#[test]
fn connection_defaults_protect_a_laptop_without_closing_what_kubectl_keeps_open() {
    let settings = Config::default().server.connections.settings();
    assert_eq!(settings, ConnectionSettings::default());
    assert_eq!(settings.tls_handshake_timeout, Duration::from_secs(10));
    assert_eq!(settings.header_read_timeout, Duration::from_secs(30));
    // Above client-go's own 90 s idle timeout: the client normally closes first.
    assert_eq!(settings.idle_timeout, Duration::from_secs(120));
    assert_eq!(settings.body_read_timeout, Duration::from_secs(60));
    assert_eq!(settings.http2_keepalive_interval, Duration::from_secs(30));
    assert_eq!(settings.http2_keepalive_timeout, Duration::from_secs(20));
    assert_eq!(settings.http2_max_concurrent_streams, 250);
    assert_eq!(settings.max_connections, 1024);
    assert_eq!(settings.max_connections_per_peer, 256);
}

#[test]
fn every_connection_key_is_set_from_the_file_and_prints_back() {
    let config = parse(
        "server:\n  tls_handshake_timeout_seconds: 3\n  header_read_timeout_seconds: 4\n  \
         idle_timeout_seconds: 5\n  body_read_timeout_seconds: 6\n  \
         http2_keepalive_interval_seconds: 8\n  http2_keepalive_timeout_seconds: 7\n  \
         http2_max_concurrent_streams: 100\n  max_connections: 50\n  \
         max_connections_per_peer: 10\n",
    )
    .unwrap();
    let settings = config.server.connections.settings();
    assert_eq!(settings.tls_handshake_timeout, Duration::from_secs(3));
    assert_eq!(settings.header_read_timeout, Duration::from_secs(4));
    assert_eq!(settings.idle_timeout, Duration::from_secs(5));
    assert_eq!(settings.body_read_timeout, Duration::from_secs(6));
    assert_eq!(settings.http2_keepalive_interval, Duration::from_secs(8));
    assert_eq!(settings.http2_keepalive_timeout, Duration::from_secs(7));
    assert_eq!(settings.http2_max_concurrent_streams, 100);
    assert_eq!(settings.max_connections, 50);
    assert_eq!(settings.max_connections_per_peer, 10);
    let printed = config.to_yaml();
    assert!(printed.contains("idle_timeout_seconds: 5"), "{printed}");
    let again = Config::from_yaml(&printed, Path::new("printed.yaml")).unwrap();
    assert_eq!(again.server, config.server);
}

#[test]
fn every_connection_key_is_refused_outside_its_range_naming_file_key_and_range() {
    for bound in CONNECTION_BOUNDS {
        let key = format!("server.{}", bound.key);
        for value in [bound.min - 1, bound.max + 1] {
            let (refused_key, reason) = refused(&format!("server: {{{}: {value}}}", bound.key));
            assert_eq!(refused_key, key, "{value}: {reason}");
            assert!(
                reason.contains(&format!("use {} to {}", bound.min, bound.max)),
                "{key} {value}: {reason}"
            );
        }
        let (_, reason) = refused(&format!("server: {{{}: 0}}", bound.key));
        assert!(
            reason.contains("would not turn the limit off"),
            "{key}: {reason}"
        );
    }
    // Too few streams would serialise an ordinary client: refused, not just 0.
    let (key, reason) = refused("server: {http2_max_concurrent_streams: 4}");
    assert_eq!(key, "server.http2_max_concurrent_streams");
    assert!(reason.contains("use 16 to 10000"), "{reason}");
    let error = parse("server: {idle_timeout_seconds: 0}")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("test.yaml: server.idle_timeout_seconds: 0 is out of range"),
        "{error}"
    );
}

#[test]
fn connection_limits_and_keepalives_are_checked_across_keys() {
    let (key, reason) = refused("server: {max_connections: 10, max_connections_per_peer: 11}");
    assert_eq!(key, "server.max_connections_per_peer");
    assert!(reason.contains("above max_connections (10)"), "{reason}");
    // A per-peer limit left at its default (256) follows a lower global limit.
    let lowered = parse("server: {max_connections: 100}").unwrap();
    assert_eq!(
        lowered
            .server
            .connections
            .settings()
            .max_connections_per_peer,
        100
    );
    let (key, reason) = refused("server: {http2_keepalive_interval_seconds: 10}");
    assert_eq!(key, "server.http2_keepalive_timeout_seconds");
    assert!(
        reason.contains("20s (the default) is not below"),
        "{reason}"
    );
    let (key, reason) = refused(
        "server: {http2_keepalive_interval_seconds: 10, http2_keepalive_timeout_seconds: 10}",
    );
    assert_eq!(key, "server.http2_keepalive_timeout_seconds");
    assert!(reason.contains("not below"), "{reason}");
    parse("server: {max_connections: 100, max_connections_per_peer: 100}").unwrap();
}

#[test]
fn each_connection_flag_is_the_key_spelled_as_a_flag_and_names_itself_in_errors() {
    for bound in CONNECTION_BOUNDS {
        assert_eq!(bound.flag, format!("--{}", bound.key.replace('_', "-")));
        assert!(
            bound.min <= bound.default && bound.default <= bound.max,
            "{bound:?}"
        );
        let error = check_value(&bound, bound.flag, bound.max + 1).unwrap_err();
        assert_eq!(error.key, bound.flag);
    }
    // Flags merged over the file get the cross-key checks again.
    let mut keys = ConnectionKeys::default();
    for (bound, slot) in keys.slots() {
        if bound.key == "max_connections_per_peer" {
            *slot = Some(2000);
        }
    }
    assert_eq!(
        keys.check().unwrap_err().key,
        "server.max_connections_per_peer"
    );
}
