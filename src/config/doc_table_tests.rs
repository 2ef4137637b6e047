//! docs/config.md's key tables against the code: every documented integer range is the
//! range validation enforces (both ends accepted, one past each refused under that key),
//! and every documented default is the value the code uses when the key is left out.

use std::path::Path;

use serde_yaml::Value;

use super::*;

/// A row of a key table: `| `key` | type | default | meaning |`.
struct Row {
    key: String,
    kind: String,
    default: Option<String>,
}

fn rows() -> Vec<Row> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md"))
        .expect("docs/config.md");
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let key = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            if cells.len() < 4 || key.contains('`') {
                return None; // a row naming several keys, or not a key row
            }
            let default = cells[2]
                .strip_prefix('`')
                .and_then(|d| d.split('`').next())
                .map(str::to_string);
            Some(Row {
                key: key.to_string(),
                kind: cells[1].to_string(),
                default,
            })
        })
        .collect()
}

/// `integer A–B` as (A, B).
fn range(kind: &str) -> Option<(u64, u64)> {
    let rest = kind.strip_prefix("integer ")?;
    let (min, max) = rest.split_once('–')?;
    let max: String = max.chars().take_while(char::is_ascii_digit).collect();
    Some((min.parse().ok()?, max.parse().ok()?))
}

/// Keys that other keys constrain, with the values that leave their whole range valid.
const COMPANIONS: [(&str, &str); 7] = [
    (
        "ledger.pre_images.max_object_bytes",
        "ledger: {pre_images: {max_bytes: 17592186044416}}",
    ),
    (
        "ledger.max_spool_bytes",
        "ledger: {max_segment_bytes: 65536}",
    ),
    (
        "ledger.max_segment_bytes",
        "ledger: {max_spool_bytes: 17592186044416}",
    ),
    (
        "server.http2_keepalive_timeout_seconds",
        "server: {http2_keepalive_interval_seconds: 3600}",
    ),
    (
        "server.http2_keepalive_interval_seconds",
        "server: {http2_keepalive_timeout_seconds: 1}",
    ),
    (
        "server.max_connections_per_peer",
        "server: {max_connections: 1000000}",
    ),
    (
        "ledger.webhook.",
        "ledger: {webhook: {url: 'http://127.0.0.1:1'}, otlp: {endpoint: 'http://127.0.0.1:2'}}",
    ),
];

/// A file setting `key` (dotted) to `value`, over the key's companion settings.
fn with_value(key: &str, value: Value) -> Value {
    let companion = COMPANIONS
        .iter()
        .find(|(k, _)| *k == key || (k.ends_with('.') && key.starts_with("ledger.")))
        .map(|(_, yaml)| serde_yaml::from_str(yaml).unwrap())
        .unwrap_or(Value::Mapping(Default::default()));
    let mut file = companion;
    let mut at = &mut file;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        let map = at.as_mapping_mut().expect("a mapping");
        at = map
            .entry(Value::from(*part))
            .or_insert(Value::Mapping(Default::default()));
    }
    at.as_mapping_mut()
        .unwrap()
        .insert(Value::from(parts[parts.len() - 1]), value);
    file
}

fn load(file: &Value) -> Result<Config, ConfigError> {
    Config::from_yaml(&serde_yaml::to_string(file).unwrap(), Path::new("doc.yaml"))
}

#[test]
fn every_documented_range_is_the_one_validation_enforces() {
    let mut checked = 0;
    for row in rows() {
        let Some((min, max)) = range(&row.kind) else {
            continue;
        };
        for ok in [min, max] {
            load(&with_value(&row.key, ok.into()))
                .unwrap_or_else(|e| panic!("{} = {ok} is documented as valid: {e}", row.key));
        }
        let mut outside = vec![max + 1];
        if min > 0 {
            outside.push(min - 1);
        }
        for bad in outside {
            let error = load(&with_value(&row.key, bad.into()))
                .err()
                .unwrap_or_else(|| panic!("{} = {bad} is outside the documented range", row.key));
            assert_eq!(error.key(), Some(row.key.as_str()), "{error}");
        }
        checked += 1;
    }
    // The policy, server, connection and ledger ranges (a table change that stops this
    // test from finding them fails here).
    assert!(
        checked >= 28,
        "only {checked} ranges found in docs/config.md"
    );
}

/// What the code uses for `key` when the file leaves it out.
fn code_default(key: &str, effective: &Value) -> Option<String> {
    let server = [
        ("server.listen", defaults::LISTEN.to_string()),
        ("server.admin_listen", defaults::ADMIN_LISTEN.to_string()),
        ("server.auth", "passthrough".to_string()),
        ("server.tls_cert", defaults::TLS_CERT.to_string()),
        ("server.tls_key", defaults::TLS_KEY.to_string()),
        (
            "server.max_body_bytes",
            defaults::MAX_BODY_BYTES.to_string(),
        ),
        ("server.workers", defaults::WORKERS.to_string()),
        ("server.in_cluster", "false".to_string()),
        (
            "server.drain_timeout_seconds",
            defaults::DRAIN_TIMEOUT_SECONDS.to_string(),
        ),
    ];
    if let Some((_, value)) = server.iter().find(|(k, _)| *k == key) {
        return Some(value.clone());
    }
    if let Some(bound) = CONNECTION_BOUNDS
        .iter()
        .find(|b| key.strip_prefix("server.") == Some(b.key))
    {
        return Some(bound.default.to_string());
    }
    let mut at = effective;
    for part in key.split('.') {
        at = at.get(part)?;
    }
    Some(match at {
        Value::Null => "null".to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(_) => serde_yaml::to_string(at).ok()?,
        other => serde_yaml::to_string(other).ok()?.trim().to_string(),
    })
}

#[test]
fn every_documented_default_is_the_codes() {
    let sinks =
        "ledger: {webhook: {url: 'http://127.0.0.1:1'}, otlp: {endpoint: 'http://127.0.0.1:2'}}";
    let config = Config::from_yaml(sinks, Path::new("doc.yaml")).unwrap();
    let effective = serde_yaml::to_value(config.to_file()).unwrap();
    let mut checked = 0;
    for row in rows() {
        let Some(documented) = row.default else {
            continue;
        };
        if documented.starts_with('[') || documented == "{}" {
            continue; // lists: compared by the policy's own default tests
        }
        let code = code_default(&row.key, &effective)
            .unwrap_or_else(|| panic!("{}: documented default {documented} has no code", row.key));
        assert_eq!(code, documented, "{}", row.key);
        checked += 1;
    }
    assert!(
        checked >= 40,
        "only {checked} defaults found in docs/config.md"
    );
}

/// docs/rules.md's table: rule id -> (name, default action in `enforce`).
fn documented_rules() -> Vec<(String, String, String)> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rules.md"))
        .expect("docs/rules.md");
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix("| PG")?.split(" | ").collect();
            let action = cells.get(2)?.split_whitespace().next()?;
            Some((
                format!("PG{}", cells[0]),
                cells[1].to_string(),
                action.to_string(),
            ))
        })
        .collect()
}

/// The default configuration acts as docs/rules.md says, for every rule: the catalog's
/// default, the action the default gates imply, and what `check-config` prints all agree
/// with the table written for users (not with each other only).
#[test]
fn every_rules_documented_default_action_is_the_default_configurations() {
    let documented = documented_rules();
    assert_eq!(
        documented.len(),
        crate::policy::RuleId::ALL.len(),
        "{documented:?}"
    );
    let config = Config::default();
    let printed = config
        .to_file()
        .rules
        .expect("check-config prints every rule");
    for (id, name, action) in documented {
        let rule: crate::policy::RuleId = id.parse().unwrap();
        assert_eq!(rule.name(), name, "{id}");
        assert_eq!(
            rule.info().default_action.to_string(),
            action,
            "{id}: the catalog"
        );
        assert_eq!(
            config.policy.rule_action(rule).to_string(),
            action,
            "{id}: the gates"
        );
        assert_eq!(printed[&id].to_string(), action, "{id}: check-config");
    }
}
