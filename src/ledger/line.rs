//! The spool's line format: an [`Entry`] written as one line of compact JSON.
//!
//! Owns the one function that turns an entry into bytes on the request path,
//! [`write_line`]. It writes exactly what `serde_json::to_writer` writes for the
//! entry's `Serialize` derive (the tests compare the two byte for byte), without serde's
//! per-key escaping and dispatch: keys are constants, and a string is copied whole when it
//! needs no escape, which is nearly always. The derive stays the schema's reference and
//! the reader's (`Deserialize`); this is the fast writer of the same bytes.
//!
//! Every field of every record is destructured by name, so a field added to the schema
//! breaks the build here until it is written.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::entry::{
    AnalysisRecord, CapturedBody, Client, DecisionRecord, Entry, ErrorRecord, FindingRecord,
    ObjectRecord, OwnerRecord, Request, ResponseRecord, RewriteRecord, SentForwarded, TargetRecord,
};

/// Why an entry could not be written (its partial bytes are removed from the buffer).
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// A timestamp outside what RFC 3339 can express (a year past 9999).
    #[error("timestamp {0} cannot be written as RFC 3339")]
    Timestamp(OffsetDateTime),
    /// The captured body could not be written as JSON.
    #[error("captured body: {0}")]
    Body(String),
}

/// Appends `entry` to `out` as one line of JSON followed by `\n`. On error `out` is left
/// as it was.
pub fn write_line(out: &mut Vec<u8>, entry: &Entry) -> Result<(), LineError> {
    let start = out.len();
    let result = write_entry(out, entry);
    match result {
        Ok(()) => out.push(b'\n'),
        Err(_) => out.truncate(start),
    }
    result
}

fn write_entry(out: &mut Vec<u8>, entry: &Entry) -> Result<(), LineError> {
    let Entry {
        schema,
        phase,
        trace_id,
        session,
        client,
        started_at,
        ended_at,
        duration_ms,
        request,
        fingerprint,
        analysis,
        target,
        decision,
        dry_run,
        grace_period,
        limit,
        response,
        object,
        bytes_in,
        bytes_out,
        watch_events,
        ledger_dropped,
        error,
        body,
    } = entry;
    out.extend_from_slice(b"{\"schema\":");
    string(out, schema);
    out.extend_from_slice(b",\"phase\":");
    string(out, phase.as_str());
    out.extend_from_slice(b",\"trace_id\":");
    string(out, trace_id);
    out.extend_from_slice(b",\"session\":");
    string(out, session);
    out.extend_from_slice(b",\"client\":");
    write_client(out, client);
    out.extend_from_slice(b",\"started_at\":");
    timestamp(out, started_at)?;
    if let Some(ended_at) = ended_at {
        out.extend_from_slice(b",\"ended_at\":");
        timestamp(out, ended_at)?;
    }
    if let Some(duration_ms) = duration_ms {
        out.extend_from_slice(b",\"duration_ms\":");
        float(out, *duration_ms);
    }
    out.extend_from_slice(b",\"request\":");
    write_request(out, request);
    if let Some(fingerprint) = fingerprint {
        out.extend_from_slice(b",\"fingerprint\":");
        string(out, fingerprint);
    }
    if let Some(analysis) = analysis {
        out.extend_from_slice(b",\"analysis\":");
        write_analysis(out, analysis);
    }
    if let Some(target) = target {
        out.extend_from_slice(b",\"target\":");
        write_target(out, target);
    }
    if let Some(decision) = decision {
        out.extend_from_slice(b",\"decision\":");
        write_decision(out, decision);
    }
    if let Some(dry_run) = dry_run {
        out.extend_from_slice(b",\"dry_run\":");
        sent_forwarded(out, dry_run, |out, value| boolean(out, *value));
    }
    if let Some(grace_period) = grace_period {
        out.extend_from_slice(b",\"grace_period\":");
        sent_forwarded(out, grace_period, |out, value| {
            optional_integer(out, *value)
        });
    }
    if let Some(limit) = limit {
        out.extend_from_slice(b",\"limit\":");
        sent_forwarded(out, limit, |out, value| optional_integer(out, *value));
    }
    if let Some(response) = response {
        out.extend_from_slice(b",\"response\":");
        write_response(out, response);
    }
    if let Some(object) = object {
        out.extend_from_slice(b",\"object\":");
        write_object(out, object);
    }
    out.extend_from_slice(b",\"bytes_in\":");
    integer(out, *bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    integer(out, *bytes_out);
    if let Some(watch_events) = watch_events {
        out.extend_from_slice(b",\"watch_events\":");
        integer(out, *watch_events);
    }
    if let Some(ledger_dropped) = ledger_dropped {
        out.extend_from_slice(b",\"ledger_dropped\":");
        integer(out, *ledger_dropped);
    }
    if let Some(error) = error {
        out.extend_from_slice(b",\"error\":");
        write_error(out, error);
    }
    if let Some(body) = body {
        out.extend_from_slice(b",\"body\":");
        write_body(out, body)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_client(out: &mut Vec<u8>, client: &Client) {
    let Client {
        user,
        groups,
        token_fingerprint,
        auth_mode,
        remote_addr,
    } = client;
    let mut object = Object::new(out);
    if let Some(user) = user {
        object.key(b"user");
        string(object.out, user);
    }
    if !groups.is_empty() {
        object.key(b"groups");
        strings(object.out, groups);
    }
    if let Some(token_fingerprint) = token_fingerprint {
        object.key(b"token_fingerprint");
        string(object.out, token_fingerprint);
    }
    object.key(b"auth_mode");
    string(object.out, auth_mode.as_str());
    if let Some(remote_addr) = remote_addr {
        object.key(b"remote_addr");
        string(object.out, remote_addr);
    }
    object.end();
}

fn write_request(out: &mut Vec<u8>, request: &Request) {
    let Request {
        method,
        path,
        query,
        verb,
        mutation,
        api_group,
        api_version,
        resource,
        subresource,
        namespace,
        name,
        content_type,
        scope,
        effect_verb,
    } = request;
    out.extend_from_slice(b"{\"method\":");
    string(out, method);
    out.extend_from_slice(b",\"path\":");
    string(out, path);
    if let Some(query) = query {
        out.extend_from_slice(b",\"query\":");
        string(out, query);
    }
    out.extend_from_slice(b",\"verb\":");
    string(out, verb);
    out.extend_from_slice(b",\"mutation\":");
    boolean(out, *mutation);
    out.extend_from_slice(b",\"api_group\":");
    string(out, api_group);
    out.extend_from_slice(b",\"api_version\":");
    string(out, api_version);
    out.extend_from_slice(b",\"resource\":");
    string(out, resource);
    out.extend_from_slice(b",\"subresource\":");
    string(out, subresource);
    out.extend_from_slice(b",\"namespace\":");
    string(out, namespace);
    out.extend_from_slice(b",\"name\":");
    string(out, name);
    if let Some(content_type) = content_type {
        out.extend_from_slice(b",\"content_type\":");
        string(out, content_type);
    }
    if let Some(scope) = scope {
        out.extend_from_slice(b",\"scope\":");
        string(out, scope);
    }
    if let Some(effect_verb) = effect_verb {
        out.extend_from_slice(b",\"effect_verb\":");
        string(out, effect_verb);
    }
    out.push(b'}');
}

fn write_analysis(out: &mut Vec<u8>, analysis: &AnalysisRecord) {
    let AnalysisRecord {
        patch_type,
        touched_paths,
        effect_paths,
        whole_object,
        body_format,
        opaque_reason,
        object_name,
    } = analysis;
    let mut object = Object::new(out);
    if let Some(patch_type) = patch_type {
        object.key(b"patch_type");
        string(object.out, patch_type);
    }
    object.key(b"touched_paths");
    strings(object.out, touched_paths);
    if let Some(effect_paths) = effect_paths {
        object.key(b"effect_paths");
        strings(object.out, effect_paths);
    }
    if let Some(whole_object) = whole_object {
        object.key(b"whole_object");
        string(object.out, whole_object);
    }
    object.key(b"body_format");
    string(object.out, body_format);
    if let Some(opaque_reason) = opaque_reason {
        object.key(b"opaque_reason");
        string(object.out, opaque_reason);
    }
    if let Some(object_name) = object_name {
        object.key(b"object_name");
        string(object.out, object_name);
    }
    object.end();
}

fn write_target(out: &mut Vec<u8>, target: &TargetRecord) {
    let TargetRecord { found, controller } = target;
    out.extend_from_slice(b"{\"found\":");
    boolean(out, *found);
    if let Some(OwnerRecord {
        api_version,
        kind,
        name,
    }) = controller
    {
        out.extend_from_slice(b",\"controller\":{\"api_version\":");
        string(out, api_version);
        out.extend_from_slice(b",\"kind\":");
        string(out, kind);
        out.extend_from_slice(b",\"name\":");
        string(out, name);
        out.push(b'}');
    }
    out.push(b'}');
}

fn write_decision(out: &mut Vec<u8>, decision: &DecisionRecord) {
    let DecisionRecord {
        mode,
        action,
        enforce_action,
        findings,
        rewrites,
        confirmed,
        budget,
    } = decision;
    out.extend_from_slice(b"{\"mode\":");
    string(out, mode.as_str());
    out.extend_from_slice(b",\"action\":");
    string(out, action.as_str());
    out.extend_from_slice(b",\"enforce_action\":");
    string(out, enforce_action.as_str());
    out.extend_from_slice(b",\"findings\":[");
    for (index, finding) in findings.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let FindingRecord {
            rule,
            action,
            message,
        } = finding;
        out.extend_from_slice(b"{\"rule\":");
        string(out, rule);
        out.extend_from_slice(b",\"action\":");
        string(out, action.as_str());
        out.extend_from_slice(b",\"message\":");
        string(out, message);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"rewrites\":[");
    for (index, rewrite) in rewrites.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        match rewrite {
            RewriteRecord::AddDryRun => out.extend_from_slice(b"{\"kind\":\"add_dry_run\"}"),
            RewriteRecord::SetGracePeriod { from, to } => {
                out.extend_from_slice(b"{\"kind\":\"set_grace_period\",\"from\":");
                optional_integer(out, *from);
                out.extend_from_slice(b",\"to\":");
                integer(out, *to);
                out.push(b'}');
            }
            RewriteRecord::AddLimit { limit } => {
                out.extend_from_slice(b"{\"kind\":\"add_limit\",\"limit\":");
                integer(out, *limit);
                out.push(b'}');
            }
        }
    }
    out.extend_from_slice(b"],\"confirmed\":");
    boolean(out, *confirmed);
    if let Some(budget) = budget {
        out.extend_from_slice(b",\"budget\":{\"name\":");
        string(out, &budget.name);
        out.extend_from_slice(b",\"limit\":");
        integer(out, budget.limit);
        out.extend_from_slice(b",\"used\":");
        integer(out, budget.used);
        out.push(b'}');
    }
    out.push(b'}');
}

fn write_response(out: &mut Vec<u8>, response: &ResponseRecord) {
    let ResponseRecord {
        status_code,
        reason,
        audit_id,
        origin,
        end,
        body_inspected,
    } = response;
    out.extend_from_slice(b"{\"status_code\":");
    integer(out, *status_code);
    if let Some(reason) = reason {
        out.extend_from_slice(b",\"reason\":");
        string(out, reason);
    }
    if let Some(audit_id) = audit_id {
        out.extend_from_slice(b",\"audit_id\":");
        string(out, audit_id);
    }
    out.extend_from_slice(b",\"origin\":");
    string(out, origin.as_str());
    if let Some(end) = end {
        out.extend_from_slice(b",\"end\":");
        string(out, end.as_str());
    }
    if let Some(body_inspected) = body_inspected {
        out.extend_from_slice(b",\"body_inspected\":");
        boolean(out, *body_inspected);
    }
    out.push(b'}');
}

fn write_object(out: &mut Vec<u8>, object_record: &ObjectRecord) {
    let ObjectRecord {
        uid,
        resource_version,
        generation,
    } = object_record;
    let mut object = Object::new(out);
    if let Some(uid) = uid {
        object.key(b"uid");
        string(object.out, uid);
    }
    if let Some(resource_version) = resource_version {
        object.key(b"resource_version");
        string(object.out, resource_version);
    }
    if let Some(generation) = generation {
        object.key(b"generation");
        integer(object.out, *generation);
    }
    object.end();
}

fn write_error(out: &mut Vec<u8>, error: &ErrorRecord) {
    let ErrorRecord {
        side,
        kind,
        message,
    } = error;
    out.extend_from_slice(b"{\"side\":");
    string(out, side.as_str());
    out.extend_from_slice(b",\"kind\":");
    string(out, kind.as_str());
    out.extend_from_slice(b",\"message\":");
    string(out, message);
    out.push(b'}');
}

fn write_body(out: &mut Vec<u8>, body: &CapturedBody) -> Result<(), LineError> {
    let CapturedBody {
        json,
        original_bytes,
        truncated,
    } = body;
    let mut object = Object::new(out);
    if let Some(json) = json {
        object.key(b"json");
        // Captured bodies are rare (capture is off by default) and arbitrary JSON:
        // serde_json writes them.
        serde_json::to_writer(&mut *object.out, json)
            .map_err(|error| LineError::Body(error.to_string()))?;
    }
    object.key(b"original_bytes");
    integer(object.out, *original_bytes);
    object.key(b"truncated");
    boolean(object.out, *truncated);
    object.end();
    Ok(())
}

/// A JSON object whose first member is not known in advance (all members optional).
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    /// Writes `"key":` (keys are plain ASCII and never need escaping).
    fn key(&mut self, key: &[u8]) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key);
        self.out.extend_from_slice(b"\":");
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

fn sent_forwarded<T>(out: &mut Vec<u8>, pair: &SentForwarded<T>, value: impl Fn(&mut Vec<u8>, &T)) {
    out.extend_from_slice(b"{\"sent\":");
    value(out, &pair.sent);
    out.extend_from_slice(b",\"forwarded\":");
    value(out, &pair.forwarded);
    out.push(b'}');
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn optional_integer(out: &mut Vec<u8>, value: Option<impl itoa::Integer>) {
    match value {
        Some(value) => integer(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// As serde_json writes an `f64` (shortest round-trip form; `null` when not finite).
fn float(out: &mut Vec<u8>, value: f64) {
    serde_json::to_writer(&mut *out, &value).expect("writing a float into a Vec cannot fail");
}

fn timestamp(out: &mut Vec<u8>, value: &OffsetDateTime) -> Result<(), LineError> {
    out.push(b'"');
    value
        .format_into(&mut *out, &Rfc3339)
        .map_err(|_| LineError::Timestamp(*value))?;
    out.push(b'"');
    Ok(())
}

fn strings(out: &mut Vec<u8>, values: &[String]) {
    out.push(b'[');
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(out, value);
    }
    out.push(b']');
}

/// A JSON string, escaped as serde_json escapes it: `"` and `\`, the short forms `\b`
/// `\f` `\n` `\r` `\t`, other control characters as `\u00XX`; everything else as is.
fn string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let mut rest = value.as_bytes();
    while let Some(index) = first_to_escape(rest) {
        out.extend_from_slice(&rest[..index]);
        match rest[index] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            control => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(control >> 4)]);
                out.push(HEX[usize::from(control & 0xf)]);
            }
        }
        rest = &rest[index + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Whether JSON needs `byte` escaped.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The index of the first byte JSON needs escaped, looking at eight bytes per step.
///
/// In each 64-bit word a byte's high bit is set in `(x - 0x01..) & !x & 0x80..` when `x`'s
/// byte is zero (and `(x - 0x20..) & !x & 0x80..` when it is below 0x20); a borrow can set
/// it in bytes above a true one as well, never below, so the lowest bit set marks the first
/// byte found. `"` and `\` are found as zero bytes of the word XORed with them.
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let mut chunks = bytes.chunks_exact(8);
    let mut start = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        let quote = word ^ QUOTES;
        let backslash = word ^ BACKSLASHES;
        let found = ((word.wrapping_sub(ONES * 0x20) & !word)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGHS;
        if found != 0 {
            return Some(start + found.trailing_zeros() as usize / 8);
        }
        start += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&byte| needs_escape(byte))
        .map(|index| start + index)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::ledger::entry::{Action, AuthMode, Mode, Origin, ResponseEnd, Side};
    use crate::ledger::{testing, BudgetRecord, ErrorKind, Phase};

    /// The fast writer's bytes equal serde_json's for the same entry.
    fn assert_same_as_serde(entry: &Entry) {
        let mut fast = b"prefix\n".to_vec();
        write_line(&mut fast, entry).expect("writable entry");
        let mut reference = b"prefix\n".to_vec();
        serde_json::to_writer(&mut reference, entry).unwrap();
        reference.push(b'\n');
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&reference)
        );
        let back: Entry = serde_json::from_slice(&fast[b"prefix\n".len()..]).unwrap();
        assert_eq!(&back, entry);
    }

    /// Every optional field set, every string with something to escape.
    fn everything() -> Entry {
        let awkward = "quote \" backslash \\ newline \n tab \t cr \r bs \u{8} ff \u{c} nul \0 \
                       unit \u{1f} del \u{7f} é 漢 🚀 </script>";
        let mut entry = testing::mutation(awkward);
        entry.session = awkward.into();
        entry.client.user = Some(awkward.into());
        entry.client.groups = vec![awkward.into(), "system:authenticated".into()];
        entry.client.auth_mode = AuthMode::Impersonate;
        entry.request.query = Some(awkward.into());
        entry.request.api_group = "apps".into();
        entry.request.subresource = "status".into();
        entry.analysis = Some(AnalysisRecord {
            patch_type: Some("strategic-merge-patch".into()),
            touched_paths: vec!["/spec/replicas".into(), awkward.into()],
            effect_paths: Some(vec![]),
            whole_object: Some("replace".into()),
            body_format: "json".into(),
            opaque_reason: Some(awkward.into()),
            object_name: Some(awkward.into()),
        });
        entry.fingerprint = Some("ab".repeat(32));
        entry.target = Some(TargetRecord {
            found: true,
            controller: Some(OwnerRecord {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: awkward.into(),
            }),
        });
        entry.decision = Some(DecisionRecord {
            mode: Mode::Rehearse,
            action: Action::Rewrite,
            enforce_action: Action::Confirm,
            findings: vec![
                FindingRecord {
                    rule: "PG001".into(),
                    action: Action::Flag,
                    message: awkward.into(),
                },
                FindingRecord {
                    rule: "PG002".into(),
                    action: Action::Rewrite,
                    message: "second".into(),
                },
            ],
            rewrites: vec![
                RewriteRecord::AddDryRun,
                RewriteRecord::SetGracePeriod { from: None, to: 30 },
                RewriteRecord::SetGracePeriod {
                    from: Some(-1),
                    to: 0,
                },
                RewriteRecord::AddLimit { limit: u64::MAX },
            ],
            confirmed: true,
            budget: Some(BudgetRecord {
                name: "read_bytes".into(),
                limit: u64::MAX,
                used: 0,
            }),
        });
        entry.dry_run = Some(SentForwarded {
            sent: false,
            forwarded: true,
        });
        entry.grace_period = Some(SentForwarded {
            sent: Some(i64::MIN),
            forwarded: Some(30),
        });
        entry.limit = Some(SentForwarded {
            sent: None,
            forwarded: Some(500),
        });
        entry.response = Some(ResponseRecord {
            status_code: 409,
            reason: Some("AlreadyExists".into()),
            audit_id: Some(awkward.into()),
            origin: Origin::Upstream,
            end: Some(ResponseEnd::ClientAborted),
            body_inspected: Some(false),
        });
        entry.object = Some(ObjectRecord {
            uid: Some("u-1".into()),
            resource_version: Some("42".into()),
            generation: Some(-3),
        });
        entry.watch_events = Some(17);
        entry.ledger_dropped = Some(u64::MAX);
        entry.error = Some(ErrorRecord {
            side: Side::Upstream,
            kind: ErrorKind::TooLarge,
            message: awkward.into(),
        });
        entry.body = Some(CapturedBody {
            json: Some(serde_json::json!({"spec": {"replicas": 3, "note": awkward}})),
            original_bytes: 1234,
            truncated: false,
        });
        entry
    }

    /// Every byte that needs an escape (and a sample of those that do not, ASCII and
    /// multi-byte UTF-8) at every position of strings shorter than, equal to and longer
    /// than the eight-byte step, alone and after another escape.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them_at_every_position() {
        let mut specials: Vec<String> = (0u8..0x20)
            .map(|byte| char::from(byte).to_string())
            .collect();
        specials.extend(["\"", "\\", " ", "~", "\u{7f}", "é", "€", "😀"].map(String::from));
        for special in &specials {
            for length in 0..20 {
                for position in 0..=length {
                    for prefix in ["", "\n", "\"x"] {
                        let mut value: String = "a".repeat(position);
                        value.push_str(prefix);
                        value.push_str(special);
                        value.push_str(&"b".repeat(length - position));
                        let mut fast = Vec::new();
                        string(&mut fast, &value);
                        assert_eq!(
                            String::from_utf8(fast).unwrap(),
                            serde_json::to_string(&value).unwrap(),
                            "{value:?}"
                        );
                    }
                }
            }
        }
        for value in ["", "plain ascii that is long enough for several steps"] {
            let mut fast = Vec::new();
            string(&mut fast, value);
            assert_eq!(fast, serde_json::to_vec(value).unwrap());
        }
    }

    #[test]
    fn every_field_is_written_as_serde_json_writes_it() {
        assert_same_as_serde(&everything());
    }

    #[test]
    fn optional_fields_are_left_out_as_serde_json_leaves_them_out() {
        let mut entry = testing::read("trace");
        entry.phase = Phase::Intent;
        entry.ended_at = None;
        entry.duration_ms = None;
        entry.decision = None;
        entry.response = None;
        entry.dry_run = None;
        entry.grace_period = None;
        entry.limit = None;
        entry.client = Client {
            user: None,
            groups: vec![],
            token_fingerprint: None,
            auth_mode: AuthMode::Sidecar,
            remote_addr: None,
        };
        assert_same_as_serde(&entry);
        entry.analysis = Some(AnalysisRecord {
            patch_type: None,
            touched_paths: vec![],
            effect_paths: None,
            whole_object: None,
            body_format: "none".into(),
            opaque_reason: None,
            object_name: None,
        });
        entry.target = Some(TargetRecord {
            found: false,
            controller: None,
        });
        entry.object = Some(ObjectRecord::default());
        entry.body = Some(CapturedBody {
            json: None,
            original_bytes: 0,
            truncated: true,
        });
        assert_same_as_serde(&entry);
    }

    #[test]
    fn fixtures_and_every_enum_value_match_serde_json() {
        assert_same_as_serde(&testing::mutation("m"));
        assert_same_as_serde(&testing::read("r"));
        let mut entry = everything();
        for (index, kind) in ErrorKind::ALL.into_iter().enumerate() {
            let side = [Side::Client, Side::Upstream, Side::Pathgate][index % 3];
            entry.error = Some(ErrorRecord {
                side,
                kind,
                message: String::new(),
            });
            assert_same_as_serde(&entry);
        }
        for (index, action) in Action::ALL.into_iter().enumerate() {
            let decision = entry.decision.as_mut().unwrap();
            decision.action = action;
            decision.mode = [Mode::Observe, Mode::Enforce, Mode::Rehearse][index % 3];
            entry.response.as_mut().unwrap().origin =
                [Origin::Upstream, Origin::Pathgate][index % 2];
            assert_same_as_serde(&entry);
        }
        for (index, end) in ResponseEnd::ALL.into_iter().enumerate() {
            let response = entry.response.as_mut().unwrap();
            response.end = Some(end);
            response.body_inspected = [None, Some(true), Some(false)][index % 3];
            assert_same_as_serde(&entry);
        }
        entry.response.as_mut().unwrap().end = None;
        assert_same_as_serde(&entry);
    }

    #[test]
    fn durations_and_timestamps_match_serde_json() {
        let mut entry = testing::read("t");
        let started = datetime!(2026-11-25 13:00:00 UTC);
        entry.started_at = started;
        for micros in [0, 1, 999, 1_000, 1_234_567, 86_400_000_000] {
            entry.finish(started + time::Duration::microseconds(micros));
            assert_same_as_serde(&entry);
        }
        // Not finite: `null` (which reads back as no duration), as serde_json writes it.
        entry.duration_ms = Some(f64::NAN);
        let mut fast = Vec::new();
        write_line(&mut fast, &entry).unwrap();
        let mut reference = serde_json::to_vec(&entry).unwrap();
        reference.push(b'\n');
        assert_eq!(fast, reference);
        assert!(String::from_utf8(fast)
            .unwrap()
            .contains(r#""duration_ms":null,"#));
        entry.duration_ms = Some(0.5);
        entry.started_at = datetime!(2026-11-25 13:00:00.123456789 +02:30);
        assert_same_as_serde(&entry);
    }

    #[test]
    fn an_unwritable_timestamp_leaves_the_buffer_as_it_was() {
        let mut entry = testing::read("t");
        // RFC 3339 has no seconds in offsets.
        entry.ended_at = Some(datetime!(2026-01-01 00:00 +01:00:30));
        let mut out = b"kept\n".to_vec();
        let error = write_line(&mut out, &entry).unwrap_err();
        assert!(matches!(error, LineError::Timestamp(_)), "{error}");
        assert_eq!(out, b"kept\n");
        assert!(
            serde_json::to_vec(&entry).is_err(),
            "serde_json refuses it too"
        );
    }
}
