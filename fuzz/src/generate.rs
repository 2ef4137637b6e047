//! Structured generators: inputs shaped like what a client sends, so that random choices
//! reach past the first syntax check into nesting, patch directives, YAML's hazards and
//! protobuf's wire types.

use crate::rng::Rng;
use pathgate::classify::fuzz::Target;

/// A fresh input for `target`.
pub fn input(target: Target, rng: &mut Rng) -> Vec<u8> {
    match target {
        Target::RequestInfo => request_line(rng).into_bytes(),
        Target::Query => query(rng).into_bytes(),
        Target::DeleteOptionsJson => json(&delete_options(rng, 3)).into_bytes(),
        Target::DeleteOptionsYaml => {
            let options = delete_options(rng, 3);
            yaml_document(rng, &options).into_bytes()
        }
        Target::DeleteOptionsProtobuf => protobuf_delete(rng),
        Target::Patch => patch(rng),
        Target::ProtobufEnvelope => protobuf_object(rng),
        Target::ApplyYaml => {
            let object = object(rng, 6);
            yaml_document(rng, &object).into_bytes()
        }
    }
}

/// A JSON-shaped value, rendered as JSON or YAML.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number's text as sent (`-0`, `1e400`, `00` are all worth sending).
    Number(String),
    Str(String),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
}

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "spec",
    "containers",
    "image",
    "env",
    "value",
    "status",
    "data",
    "finalizers",
    "ownerReferences",
    "controller",
    "uid",
    "gracePeriodSeconds",
    "propagationPolicy",
    "orphanDependents",
    "preconditions",
    "resourceVersion",
    "dryRun",
    "deleteOptions",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$deleteFromPrimitiveList/finalizers",
    "op",
    "path",
    "from",
    "kubectl.kubernetes.io/last-applied-configuration",
    "managedFields",
    "replicas",
    "",
    "<<",
];

const STRINGS: &[&str] = &[
    "",
    "a",
    "default",
    "Background",
    "Foreground",
    "Orphan",
    "All",
    "delete",
    "replace",
    "merge",
    "v1",
    "Pod",
    "DeleteOptions",
    "/metadata/name",
    "/spec/containers/0",
    "~0~1",
    "/",
    "-",
    "\u{0}",
    "\u{2028}",
    "é",
    "0",
    "true",
    "yes",
    "on",
    "null",
    "~",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.0",
    "1e400",
    "-1e400",
    "30",
    "9223372036854775808",
    "1.5",
    "0.1e1",
    "2147483648",
    "-9223372036854775809",
    "1E2",
];

/// A random value nested at most `depth` levels.
pub fn value(rng: &mut Rng, depth: u32) -> Value {
    let leaf_only = depth == 0;
    match rng.below(if leaf_only { 4 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => Value::Number(rng.pick(NUMBERS).to_string()),
        3 => Value::Str(rng.pick(STRINGS).to_string()),
        4 => Value::List((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
        _ => Value::Map(
            (0..rng.below(5))
                .map(|_| (rng.pick(KEYS).to_string(), value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// An object with Kubernetes' outer fields and a random inside.
pub fn object(rng: &mut Rng, depth: u32) -> Value {
    let mut fields = vec![
        ("apiVersion".to_owned(), Value::Str("v1".into())),
        (
            "kind".to_owned(),
            Value::Str(rng.pick(&["ConfigMap", "Pod", "Eviction"]).to_string()),
        ),
        (
            "metadata".to_owned(),
            Value::Map(vec![("name".into(), Value::Str("fuzz".into()))]),
        ),
    ];
    for _ in 0..rng.below(4) {
        fields.push((rng.pick(KEYS).to_string(), value(rng, depth)));
    }
    Value::Map(fields)
}

/// DeleteOptions with random field values (and, sometimes, a random extra field).
fn delete_options(rng: &mut Rng, depth: u32) -> Value {
    let mut fields = vec![("kind".to_owned(), Value::Str("DeleteOptions".into()))];
    let options = [
        "gracePeriodSeconds",
        "propagationPolicy",
        "orphanDependents",
        "dryRun",
        "preconditions",
    ];
    for key in options {
        if rng.chance(2) {
            fields.push((key.to_owned(), value(rng, depth)));
        }
    }
    if rng.chance(4) {
        fields.push((rng.pick(KEYS).to_string(), value(rng, depth)));
    }
    Value::Map(fields)
}

/// The value as JSON (strings escaped; numbers as sent).
pub fn json(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.clone(),
        Value::Str(s) => quoted(s),
        Value::List(items) => format!("[{}]", items.iter().map(json).collect::<Vec<_>>().join(",")),
        Value::Map(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("{}:{}", json(&Value::Str(k.clone())), json(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// A JSON string literal (also a YAML double-quoted scalar).
fn quoted(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\u{2028}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value as a YAML document in block style, with YAML's hazards mixed in: anchors,
/// aliases, merge keys, tags, YAML 1.1 scalars, flow collections, more documents.
fn yaml_document(rng: &mut Rng, value: &Value) -> String {
    let mut out = String::new();
    if rng.chance(8) {
        out.push_str("%YAML 1.1\n---\n");
    }
    yaml(rng, value, 0, &mut out);
    if rng.chance(8) {
        out.push_str("---\n");
        yaml(rng, value, 0, &mut out);
    }
    out
}

const YAML_SCALARS: &[&str] = &[
    "0",
    "00",
    "0o0",
    "0x0",
    "+0",
    "-0",
    "0.",
    ".0",
    "0_0",
    "0b0",
    ".inf",
    "-.Inf",
    ".nan",
    "~",
    "null",
    "Null",
    "yes",
    "No",
    "on",
    "OFF",
    "y",
    "n",
    "'0'",
    "\"0\"",
    "!!int 0",
    "!!str 0",
    "!custom 0",
    "*anchor",
    "&anchor 0",
    "|\n  0",
    ">-\n  0",
    "'a''b'",
    "\"\\x00\"",
    "0 # comment",
    "{}",
    "[]",
    "{gracePeriodSeconds: 0}",
    "[0, [0, [0]]]",
    "\"\\u2028\"",
];

fn yaml(rng: &mut Rng, value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Map(fields) if !fields.is_empty() => {
            for (key, field) in fields {
                out.push_str(&pad);
                out.push_str(&yaml_key(rng, key));
                out.push(':');
                yaml_child(rng, field, indent, out);
            }
            if rng.chance(10) {
                out.push_str(&format!("{pad}<<: {{gracePeriodSeconds: 0}}\n"));
            }
        }
        Value::List(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                yaml_child(rng, item, indent, out);
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&yaml_scalar(rng, scalar));
            out.push('\n');
        }
    }
}

fn yaml_child(rng: &mut Rng, value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Map(f) if !f.is_empty() => {
            out.push_str(if rng.chance(10) { " &anchor\n" } else { "\n" });
            yaml(rng, value, indent + 2, out);
        }
        Value::List(l) if !l.is_empty() => {
            out.push('\n');
            yaml(rng, value, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(rng, scalar));
            out.push('\n');
        }
    }
}

fn yaml_key(rng: &mut Rng, key: &str) -> String {
    match rng.below(12) {
        0 => format!("\"{key}\""),
        1 => format!("? {key}\n"),
        2 => format!("!!str {key}"),
        _ if key.is_empty() => "\"\"".into(),
        _ => key.to_owned(),
    }
}

fn yaml_scalar(rng: &mut Rng, value: &Value) -> String {
    if rng.chance(4) {
        return rng.pick(YAML_SCALARS).to_string();
    }
    match value {
        Value::Str(s) => quoted(s),
        other => json(other),
    }
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "BREW",
];
const SEGMENTS: &[&str] = &[
    "api",
    "apis",
    "v1",
    "apps",
    "policy",
    "namespaces",
    "default",
    "kube-system",
    "pods",
    "deployments",
    "configmaps",
    "secrets",
    "nodes",
    "eviction",
    "exec",
    "attach",
    "proxy",
    "portforward",
    "status",
    "scale",
    "log",
    "watch",
    "binding",
    "finalize",
    "approval",
    ".",
    "..",
    "",
    "%2F",
    "%2e%2e",
    "%00",
    "%zz",
    "%",
    "a%20b",
    "é",
    "healthz",
    "version",
    "openapi",
    "selfsubjectaccessreviews",
    "authorization.k8s.io",
    "s",
    "abc123",
];
const QUERY_KEYS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "propagationPolicy",
    "orphanDependents",
    "force",
    "fieldManager",
    "limit",
    "labelSelector",
    "fieldSelector",
    "watch",
    "resourceVersion",
    "continue",
    "timeoutSeconds",
    "preconditions.uid",
    "DryRun",
    "dry%52un",
    "dryRun%00",
];
const QUERY_VALUES: &[&str] = &[
    "All",
    "all",
    "0",
    "-1",
    "1",
    "30",
    "true",
    "True",
    "t",
    "T",
    "TRUE",
    "1.0",
    "",
    "%30",
    "Background",
    "Orphan",
    "+",
    "%2B",
    "%zz",
    "%",
    "metadata.name%3Dfuzz",
    "metadata.name=a",
    "9223372036854775808",
    "%E9",
    "All%00",
];

/// `METHOD PATH?QUERY` and, sometimes, an `Upgrade` value on the next line.
fn request_line(rng: &mut Rng) -> String {
    let mut line = format!("{} ", rng.pick(METHODS));
    for _ in 0..rng.below(9) {
        line.push('/');
        line.push_str(rng.pick(SEGMENTS));
    }
    if line.ends_with(' ') || rng.chance(8) {
        line.push('/');
    }
    if rng.chance(2) {
        line.push('?');
        line.push_str(&query(rng));
    }
    if rng.chance(4) {
        line.push('\n');
        line.push_str(rng.pick(&["websocket", "SPDY/3.1", "h2c", " WebSocket ", "\u{7f}"]));
    }
    line
}

fn query(rng: &mut Rng) -> String {
    let pairs: Vec<String> = (0..rng.below(6))
        .map(|_| match rng.below(8) {
            0 => rng.pick(QUERY_KEYS).to_string(),
            1 => format!("{};{}", rng.pick(QUERY_KEYS), rng.pick(QUERY_VALUES)),
            _ => format!("{}={}", rng.pick(QUERY_KEYS), rng.pick(QUERY_VALUES)),
        })
        .collect();
    pairs.join(rng.pick(&["&", "&", "&&", "&;"]))
}

const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/apply-patch+cbor",
    "application/json-patch+json; charset=utf-8",
    "Application/Merge-Patch+JSON",
    "application/json",
    "",
];

/// `Content-Type` line, then a body of the shape that type expects (or not, sometimes).
fn patch(rng: &mut Rng) -> Vec<u8> {
    let content_type = rng.pick(PATCH_TYPES);
    let body = match (content_type, rng.chance(8)) {
        (_, true) => json(&value(rng, 5)),
        (c, _) if c.starts_with("application/json-patch") => json(&json_patch(rng)),
        (c, _) if c.contains("yaml") => {
            let object = object(rng, 5);
            yaml_document(rng, &object)
        }
        _ => json(&object(rng, 5)),
    };
    format!("{content_type}\n{body}").into_bytes()
}

const OPS: &[&str] = &[
    "add", "remove", "replace", "move", "copy", "test", "Add", "",
];
const POINTERS: &[&str] = &[
    "",
    "/",
    "/metadata",
    "/metadata/labels/a~1b",
    "/metadata/finalizers/-",
    "/spec/containers/0/image",
    "/spec/containers/00",
    "/spec/containers/-1",
    "/a~0b~2",
    "~",
    "metadata",
    "/status/phase",
];

fn json_patch(rng: &mut Rng) -> Value {
    let ops = (0..rng.below(6))
        .map(|_| {
            let mut fields = vec![
                ("op".to_owned(), Value::Str(rng.pick(OPS).to_string())),
                (
                    "path".to_owned(),
                    Value::Str(rng.pick(POINTERS).to_string()),
                ),
            ];
            if rng.chance(2) {
                fields.push(("value".into(), value(rng, 4)));
            }
            if rng.chance(4) {
                fields.push(("from".into(), Value::Str(rng.pick(POINTERS).to_string())));
            }
            Value::Map(fields)
        })
        .collect();
    Value::List(ops)
}

/// Protobuf wire encoding, with wrong wire types, lengths past the end and truncated varints
/// mixed in where a field goes.
struct Proto(Vec<u8>);

impl Proto {
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }
    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }
    fn bytes(&mut self, field: u64, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }
    fn field(&mut self, rng: &mut Rng, field: u64, good: impl FnOnce(&mut Proto, &mut Rng)) {
        match rng.below(12) {
            0 => self.key(field, rng.below(8)),
            1 => {
                self.key(field, 2);
                self.varint(rng.next_u64() >> rng.below(64));
            }
            2 => {
                self.key(field, 0);
                self.0.extend_from_slice(&[0xff; 11]);
            }
            3 => {
                self.key(field, 1);
                self.0.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            _ => good(self, rng),
        }
    }
}

const MAGIC: &[u8] = b"k8s\0";

fn envelope(rng: &mut Rng, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Proto(Vec::new());
    type_meta.field(rng, 1, |p, _| p.bytes(1, b"v1"));
    type_meta.field(rng, 2, |p, _| p.bytes(2, kind.as_bytes()));
    let mut out = Proto(MAGIC.to_vec());
    out.field(rng, 1, |p, _| p.bytes(1, &type_meta.0));
    out.field(rng, 2, |p, _| p.bytes(2, raw));
    if rng.chance(6) {
        out.field(rng, 3, |p, r| {
            p.bytes(3, if r.chance(2) { b"gzip" } else { b"" })
        });
    }
    if rng.chance(6) {
        let content_type: &[u8] = rng.pick(&[
            &b"application/vnd.kubernetes.protobuf"[..],
            b"application/json",
            b"",
        ]);
        out.field(rng, 4, |p, _| p.bytes(4, content_type));
    }
    out.0
}

fn delete_options_message(rng: &mut Rng) -> Vec<u8> {
    let mut options = Proto(Vec::new());
    for _ in 0..rng.below(7) {
        match rng.below(6) {
            0 => options.field(rng, 1, |p, r| {
                p.key(1, 0);
                p.varint(r.pick(&[0, 1, 30, u64::MAX, 1 << 63]));
            }),
            1 => {
                let mut preconditions = Proto(Vec::new());
                preconditions.bytes(1, b"uid");
                options.field(rng, 2, |p, _| p.bytes(2, &preconditions.0));
            }
            2 => options.field(rng, 3, |p, r| {
                p.key(3, 0);
                p.varint(r.below(3));
            }),
            3 => options.field(rng, 4, |p, r| p.bytes(4, r.pick(STRINGS).as_bytes())),
            4 => options.field(rng, 5, |p, r| {
                p.bytes(5, r.pick(&[&b"All"[..], b"all", b""]))
            }),
            _ => {
                let field = rng.below(40);
                options.field(rng, field, |p, r| {
                    p.bytes(field, r.pick(STRINGS).as_bytes())
                })
            }
        }
    }
    options.0
}

fn protobuf_delete(rng: &mut Rng) -> Vec<u8> {
    let raw = delete_options_message(rng);
    envelope(rng, "DeleteOptions", &raw)
}

/// An object (`ObjectMeta` in field 1) or an `Eviction` (its `DeleteOptions` in field 2).
fn protobuf_object(rng: &mut Rng) -> Vec<u8> {
    let mut meta = Proto(Vec::new());
    for field in [1u64, 3, 5, 13] {
        if rng.chance(2) {
            meta.field(rng, field, |p, r| {
                p.bytes(field, r.pick(STRINGS).as_bytes())
            });
        }
    }
    if rng.chance(3) {
        let mut owner = Proto(Vec::new());
        owner.bytes(1, b"v1");
        owner.bytes(2, b"ReplicaSet");
        owner.key(6, 0);
        owner.varint(rng.below(2));
        meta.field(rng, 13, |p, _| p.bytes(13, &owner.0));
    }
    let mut object = Proto(Vec::new());
    object.field(rng, 1, |p, _| p.bytes(1, &meta.0));
    if rng.chance(2) {
        let options = delete_options_message(rng);
        object.field(rng, 2, |p, _| p.bytes(2, &options));
    }
    let kind = rng.pick(&["Eviction", "Pod", "ConfigMap", ""]);
    envelope(rng, kind, &object.0)
}
