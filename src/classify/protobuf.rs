//! A small, bounded reader for the Kubernetes protobuf wire format: enough to read the
//! envelope, an object's `ObjectMeta` and a `DeleteOptions`, nothing more.
//!
//! kubectl's typed commands (`create configmap|secret|deployment`, `run`, `auth can-i`,
//! evictions) send `application/vnd.kubernetes.protobuf` bodies. Their layout:
//!
//! - the 4-byte magic `k8s\0`, then a `runtime.Unknown` message: field 1 `TypeMeta`
//!   (`apiVersion` = 1, `kind` = 2), field 2 the raw bytes of the typed message, field 3
//!   `contentEncoding`, field 4 `contentType`;
//! - in every object type, field 1 of the typed message is `ObjectMeta`: `name` = 1,
//!   `generateName` = 2, `namespace` = 3, `uid` = 5, `resourceVersion` = 6, `generation` = 7
//!   (varint int64), `labels` = 11 and `annotations` = 12 (map entries
//!   with key = 1, value = 2), `ownerReferences` = 13 (`kind` = 1, `name` = 3, `uid` = 4,
//!   `apiVersion` = 5, `controller` = 6);
//! - `DeleteOptions`: `gracePeriodSeconds` = 1 (varint int64), `preconditions` = 2 (`uid` = 1,
//!   `resourceVersion` = 2), `orphanDependents` = 3 (bool), `propagationPolicy` = 4 (string),
//!   `dryRun` = 5 (repeated string), `ignoreStoreReadErrorWithClusterBreakingPotential` = 6;
//! - `Eviction` (policy/v1): `metadata` = 1, `deleteOptions` = 2;
//! - `Status` (an answer): `reason` = 4.
//!
//! Everything is bounds-checked: varints are at most ten bytes, lengths never reach past the
//! buffer, groups (wire types 3 and 4) and unknown wire types are refused, strings must be
//! UTF-8. Unknown fields are skipped, as protobuf requires. A body that breaks any rule is
//! reported as opaque by the caller, never guessed at.

use super::object::{AnswerMeta, DeleteOptions, ObjectIdentity, OwnerReference};

/// The magic prefix of every Kubernetes protobuf body.
pub(crate) const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtoError(pub(crate) &'static str);

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One decoded field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

/// Walks the fields of one message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or(ProtoError("truncated varint"))?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(ProtoError("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtoError("varint longer than ten bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(ProtoError("field runs past the end of its message"))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, ProtoError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(ProtoError("invalid field number"));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| ProtoError("length does not fit in memory"))?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            3 | 4 => return Err(ProtoError("protobuf groups are not used by Kubernetes")),
            _ => return Err(ProtoError("unknown wire type")),
        };
        // `field` was checked to fit in 29 bits above.
        Ok(Some((field as u32, value)))
    }
}

fn bytes_of(value: Value<'_>) -> Result<&[u8], ProtoError> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(ProtoError("expected a length-delimited field")),
    }
}

fn string_of(value: Value<'_>) -> Result<String, ProtoError> {
    std::str::from_utf8(bytes_of(value)?)
        .map(str::to_owned)
        .map_err(|_| ProtoError("string field is not UTF-8"))
}

fn varint_of(value: Value<'_>) -> Result<u64, ProtoError> {
    match value {
        Value::Varint(v) => Ok(v),
        _ => Err(ProtoError("expected a varint field")),
    }
}

/// The decoded `runtime.Unknown` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    /// The typed message.
    pub(crate) raw: &'a [u8],
}

/// Reads the `k8s\0` envelope.
pub(crate) fn envelope(body: &[u8]) -> Result<Envelope<'_>, ProtoError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or(ProtoError("missing the k8s\\0 protobuf envelope"))?;
    let mut envelope = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
    };
    let mut reader = Reader::new(rest);
    while let Some((field, value)) = reader.next_field()? {
        match field {
            1 => {
                let mut type_meta = Reader::new(bytes_of(value)?);
                while let Some((field, value)) = type_meta.next_field()? {
                    match field {
                        1 => envelope.api_version = string_of(value)?,
                        2 => envelope.kind = string_of(value)?,
                        _ => {}
                    }
                }
            }
            2 => envelope.raw = bytes_of(value)?,
            3 => {
                let content_encoding = bytes_of(value)?;
                if !content_encoding.is_empty() {
                    return Err(ProtoError("the envelope's content is encoded (compressed)"));
                }
            }
            4 => {
                let content_type = string_of(value)?;
                if !content_type.is_empty() && content_type != "application/vnd.kubernetes.protobuf"
                {
                    return Err(ProtoError(
                        "the envelope carries a non-protobuf content type",
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(envelope)
}

/// Reads the identity of an object whose field 1 is `ObjectMeta`.
pub(crate) fn object_identity(envelope: &Envelope<'_>) -> Result<ObjectIdentity, ProtoError> {
    let mut identity = ObjectIdentity {
        api_version: non_empty(&envelope.api_version),
        kind: non_empty(&envelope.kind),
        ..ObjectIdentity::default()
    };
    let mut reader = Reader::new(envelope.raw);
    while let Some((field, value)) = reader.next_field()? {
        if field == 1 {
            read_object_meta(bytes_of(value)?, &mut identity)?;
        }
    }
    Ok(identity)
}

fn read_object_meta(buf: &[u8], identity: &mut ObjectIdentity) -> Result<(), ProtoError> {
    let mut reader = Reader::new(buf);
    while let Some((field, value)) = reader.next_field()? {
        match field {
            1 => identity.name = non_empty(&string_of(value)?),
            2 => identity.generate_name = non_empty(&string_of(value)?),
            3 => identity.namespace = non_empty(&string_of(value)?),
            11 => insert_last_wins(&mut identity.labels, map_entry(bytes_of(value)?)?),
            12 => insert_last_wins(&mut identity.annotations, map_entry(bytes_of(value)?)?),
            13 => identity
                .owner_references
                .push(owner_reference(bytes_of(value)?)?),
            _ => {}
        }
    }
    Ok(())
}

/// What an answer's body says of the object the apiserver answered with (its
/// `ObjectMeta`'s identity and version), or of a `Status` (its reason).
pub(crate) fn answer_meta(body: &[u8]) -> Result<AnswerMeta, ProtoError> {
    let envelope = envelope(body)?;
    let mut meta = AnswerMeta {
        kind: non_empty(&envelope.kind),
        ..AnswerMeta::default()
    };
    let mut reader = Reader::new(envelope.raw);
    while let Some((field, value)) = reader.next_field()? {
        match (meta.kind.as_deref(), field) {
            (Some("Status"), 4) => meta.status_reason = non_empty(&string_of(value)?),
            (Some("Status"), _) => {}
            (_, 1) => read_answer_meta(bytes_of(value)?, &mut meta)?,
            _ => {}
        }
    }
    Ok(meta)
}

fn read_answer_meta(buf: &[u8], meta: &mut AnswerMeta) -> Result<(), ProtoError> {
    let mut reader = Reader::new(buf);
    while let Some((field, value)) = reader.next_field()? {
        match field {
            1 => meta.name = non_empty(&string_of(value)?),
            3 => meta.namespace = non_empty(&string_of(value)?),
            5 => meta.uid = non_empty(&string_of(value)?),
            6 => meta.resource_version = non_empty(&string_of(value)?),
            // An int64 is its two's complement as a varint.
            7 => meta.generation = Some(varint_of(value)? as i64),
            _ => {}
        }
    }
    Ok(())
}

/// Go maps keep the last value of a repeated key.
fn insert_last_wins(entries: &mut Vec<(String, String)>, (key, value): (String, String)) {
    if let Some(existing) = entries.iter_mut().find(|(k, _)| *k == key) {
        existing.1 = value;
    } else {
        entries.push((key, value));
    }
}

fn map_entry(buf: &[u8]) -> Result<(String, String), ProtoError> {
    let mut reader = Reader::new(buf);
    let (mut key, mut value) = (String::new(), String::new());
    while let Some((field, v)) = reader.next_field()? {
        match field {
            1 => key = string_of(v)?,
            2 => value = string_of(v)?,
            _ => {}
        }
    }
    Ok((key, value))
}

fn owner_reference(buf: &[u8]) -> Result<OwnerReference, ProtoError> {
    let mut owner = OwnerReference {
        api_version: String::new(),
        kind: String::new(),
        name: String::new(),
        uid: String::new(),
        controller: false,
    };
    let mut reader = Reader::new(buf);
    while let Some((field, value)) = reader.next_field()? {
        match field {
            1 => owner.kind = string_of(value)?,
            3 => owner.name = string_of(value)?,
            4 => owner.uid = string_of(value)?,
            5 => owner.api_version = string_of(value)?,
            6 => owner.controller = varint_of(value)? != 0,
            _ => {}
        }
    }
    Ok(owner)
}

/// Reads a `DeleteOptions` message (the envelope's raw bytes, or an eviction's field 2).
pub(crate) fn delete_options(buf: &[u8]) -> Result<DeleteOptions, ProtoError> {
    let mut options = DeleteOptions {
        source: "body",
        ..DeleteOptions::default()
    };
    let mut dry_run = Vec::new();
    let mut reader = Reader::new(buf);
    while let Some((field, value)) = reader.next_field()? {
        match field {
            // int64 travels as the two's-complement varint of the value.
            1 => options.grace_period_seconds = Some(varint_of(value)? as i64),
            2 => {
                let mut preconditions = Reader::new(bytes_of(value)?);
                while let Some((field, value)) = preconditions.next_field()? {
                    match field {
                        1 => options.precondition_uid = Some(string_of(value)?),
                        2 => options.precondition_resource_version = Some(string_of(value)?),
                        _ => {}
                    }
                }
            }
            3 => options.orphan_dependents = Some(varint_of(value)? != 0),
            4 => options.propagation_policy = Some(string_of(value)?),
            5 => dry_run.push(string_of(value)?),
            6 => {
                options.ignore_store_read_error_with_cluster_breaking_potential =
                    Some(varint_of(value)? != 0)
            }
            _ => {}
        }
    }
    options.dry_run = super::query::dry_run_values(dry_run.iter().map(String::as_str));
    Ok(options)
}

/// Reads an `Eviction`: its identity and its `deleteOptions` (field 2), when present.
pub(crate) fn eviction(
    envelope: &Envelope<'_>,
) -> Result<(ObjectIdentity, Option<DeleteOptions>), ProtoError> {
    let identity = object_identity(envelope)?;
    let mut options = None;
    let mut reader = Reader::new(envelope.raw);
    while let Some((field, value)) = reader.next_field()? {
        if field == 2 {
            options = Some(delete_options(bytes_of(value)?)?);
        }
    }
    Ok((identity, options))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A protobuf writer for tests: builds bodies field by field, as the Go marshaller lays them
/// out, so the reader is tested against bytes it did not produce itself.
#[cfg(test)]
pub(crate) mod encode {
    pub(crate) fn put_varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub(crate) fn put_key(field: u32, wire: u8, out: &mut Vec<u8>) {
        put_varint(u64::from(field) << 3 | u64::from(wire), out);
    }

    pub(crate) fn put_bytes(field: u32, data: &[u8], out: &mut Vec<u8>) {
        put_key(field, 2, out);
        put_varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    pub(crate) fn put_string(field: u32, s: &str, out: &mut Vec<u8>) {
        put_bytes(field, s.as_bytes(), out);
    }

    pub(crate) fn put_uint(field: u32, v: u64, out: &mut Vec<u8>) {
        put_key(field, 0, out);
        put_varint(v, out);
    }

    pub(crate) fn put_entry(field: u32, k: &str, v: &str, out: &mut Vec<u8>) {
        let mut entry = Vec::new();
        put_string(1, k, &mut entry);
        put_string(2, v, &mut entry);
        put_bytes(field, &entry, out);
    }

    /// `k8s\0` + Unknown{TypeMeta{apiVersion, kind}, raw}.
    pub(crate) fn wrap(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = Vec::new();
        put_string(1, api_version, &mut type_meta);
        put_string(2, kind, &mut type_meta);
        let mut out = super::MAGIC.to_vec();
        put_bytes(1, &type_meta, &mut out);
        put_bytes(2, raw, &mut out);
        put_string(3, "", &mut out);
        put_string(4, "", &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;

    fn config_map() -> Vec<u8> {
        let mut meta = Vec::new();
        put_string(1, "settings", &mut meta);
        put_string(3, "default", &mut meta);
        put_uint(7, 3, &mut meta); // generation: skipped
        put_entry(11, "app", "web", &mut meta);
        put_entry(12, "note", "first", &mut meta);
        put_entry(12, "note", "second", &mut meta);
        let mut owner = Vec::new();
        put_string(1, "ReplicaSet", &mut owner);
        put_string(3, "web-5d8f", &mut owner);
        put_string(4, "0a1b", &mut owner);
        put_string(5, "apps/v1", &mut owner);
        put_uint(6, 1, &mut owner);
        put_bytes(13, &owner, &mut meta);
        let mut object = Vec::new();
        put_bytes(1, &meta, &mut object);
        put_entry(2, "key", "value", &mut object); // ConfigMap data: skipped
        wrap("v1", "ConfigMap", &object)
    }

    #[test]
    fn reads_object_meta_through_the_envelope() {
        let body = config_map();
        let env = envelope(&body).unwrap();
        assert_eq!(
            (env.api_version.as_str(), env.kind.as_str()),
            ("v1", "ConfigMap")
        );
        let id = object_identity(&env).unwrap();
        assert_eq!(id.name.as_deref(), Some("settings"));
        assert_eq!(id.namespace.as_deref(), Some("default"));
        assert_eq!(id.generate_name, None);
        assert_eq!(id.labels, [("app".to_owned(), "web".to_owned())]);
        assert_eq!(id.annotations, [("note".to_owned(), "second".to_owned())]);
        assert_eq!(
            id.owner_references,
            [OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-5d8f".into(),
                uid: "0a1b".into(),
                controller: true,
            }]
        );
    }

    #[test]
    fn reads_delete_options() {
        let mut raw = Vec::new();
        put_uint(1, 0, &mut raw);
        let mut pre = Vec::new();
        put_string(1, "uid-1", &mut pre);
        put_string(2, "42", &mut pre);
        put_bytes(2, &pre, &mut raw);
        put_string(4, "Background", &mut raw);
        put_string(5, "All", &mut raw);
        let opts = delete_options(&raw).unwrap();
        assert_eq!(opts.grace_period_seconds, Some(0));
        assert_eq!(opts.precondition_uid.as_deref(), Some("uid-1"));
        assert_eq!(opts.precondition_resource_version.as_deref(), Some("42"));
        assert_eq!(opts.propagation_policy.as_deref(), Some("Background"));
        assert_eq!(opts.orphan_dependents, None);
        assert!(opts.dry_run);

        let mut negative = Vec::new();
        put_uint(1, (-5i64) as u64, &mut negative);
        assert_eq!(
            delete_options(&negative).unwrap().grace_period_seconds,
            Some(-5)
        );
    }

    #[test]
    fn refuses_malformed_bytes() {
        let good = config_map();
        assert!(envelope(b"k8s").is_err());
        assert!(envelope(b"{\"kind\":\"Pod\"}").is_err());
        // Every truncation of a valid body either fails or reads a prefix; none panics, and
        // truncation inside the object metadata is an error.
        for cut in 4..good.len() {
            let _ = envelope(&good[..cut]).and_then(|e| object_identity(&e));
        }
        // A length that points past the end.
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[0x12, 0xff, 0x01, 0x00]);
        assert!(envelope(&bad).is_err());
        // An eleven-byte varint.
        let mut bad = MAGIC.to_vec();
        bad.push(0x08);
        bad.extend_from_slice(&[0xff; 10]);
        bad.push(0x01);
        assert!(envelope(&bad).is_err());
        // A group wire type.
        let mut bad = MAGIC.to_vec();
        bad.push(0x0b);
        assert!(envelope(&bad).is_err());
        // Field number zero.
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[0x00, 0x00]);
        assert!(envelope(&bad).is_err());
        // A name that is not UTF-8.
        let mut meta = Vec::new();
        put_bytes(1, &[0xff, 0xfe], &mut meta);
        let mut object = Vec::new();
        put_bytes(1, &meta, &mut object);
        let body = super::encode::wrap("v1", "ConfigMap", &object);
        assert!(object_identity(&envelope(&body).unwrap()).is_err());
        // ObjectMeta sent as a varint.
        let mut object = Vec::new();
        put_uint(1, 7, &mut object);
        let body = super::encode::wrap("v1", "ConfigMap", &object);
        assert!(object_identity(&envelope(&body).unwrap()).is_err());
    }

    #[test]
    fn refuses_compressed_content() {
        let mut out = MAGIC.to_vec();
        put_string(3, "gzip", &mut out);
        assert!(envelope(&out).is_err());
    }

    fn answer(kind: &str, raw: &[u8]) -> Vec<u8> {
        wrap("apps/v1", kind, raw)
    }

    #[test]
    fn an_answers_object_meta_gives_its_identity_and_version() {
        let mut meta = Vec::new();
        put_string(1, "web", &mut meta);
        put_string(3, "shop", &mut meta);
        put_string(5, "3aa9faaf-9a52", &mut meta);
        put_string(6, "266", &mut meta);
        put_uint(7, 4, &mut meta);
        put_entry(11, "app", "web", &mut meta);
        let mut deployment = Vec::new();
        put_bytes(1, &meta, &mut deployment);
        put_bytes(2, b"\x08\x01", &mut deployment); // spec: skipped
        let read = answer_meta(&answer("Deployment", &deployment)).unwrap();
        assert_eq!(
            read,
            AnswerMeta {
                kind: Some("Deployment".into()),
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("3aa9faaf-9a52".into()),
                resource_version: Some("266".into()),
                generation: Some(4),
                status_reason: None,
            }
        );
    }

    #[test]
    fn a_status_answer_gives_its_reason_and_no_object() {
        let mut status = Vec::new();
        put_bytes(1, b"", &mut status);
        put_string(2, "Failure", &mut status);
        put_string(3, "configmaps \"web\" already exists", &mut status);
        put_string(4, "AlreadyExists", &mut status);
        let read = answer_meta(&wrap("v1", "Status", &status)).unwrap();
        assert_eq!(read.status_reason.as_deref(), Some("AlreadyExists"));
        assert_eq!((read.uid, read.name), (None, None));
        assert!(answer_meta(b"{}").is_err(), "not protobuf");
        assert!(
            AnswerMeta::of_protobuf(Some("application/json"), &wrap("v1", "Status", &status))
                .is_none(),
            "only a protobuf answer is read as one"
        );
        assert!(AnswerMeta::of_protobuf(
            Some("application/vnd.kubernetes.protobuf;charset=utf-8"),
            &wrap("v1", "Status", &status)
        )
        .is_some());
    }
}
