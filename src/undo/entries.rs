//! A session's ledger entries as undo's [`Mutation`]s (pure): the window, the pairing of
//! intents with outcomes, and what each entry says about the object before and after.
//!
//! Only forwarded, non-dry-run mutations count. One the apiserver refused, or pathgate
//! denied, did not happen; an intent without an outcome (the process died, the answer was
//! lost) may have: it is kept with [`Outcome::Unknown`] so the plan says so.

use std::collections::HashMap;

use super::history::{After, Before, ImageRef, Kind, Mutation, ObjectRef, Outcome};
use super::inverse::View;
use crate::ledger::{Entry, Phase};

/// Why the window cannot be cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("--{flag} {trace}: no entry of session {session} has that trace id")]
    UnknownTrace {
        flag: &'static str,
        trace: String,
        session: String,
    },
    #[error("--since {since} comes after --until {until} in the ledger")]
    Reversed { since: String, until: String },
}

/// The entries from the first of trace `since` to the last of trace `until` (inclusive),
/// in ledger order.
pub fn window<'a>(
    entries: &'a [Entry],
    session: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<&'a [Entry], WindowError> {
    let unknown = |flag, trace: &str| WindowError::UnknownTrace {
        flag,
        trace: trace.to_string(),
        session: session.to_string(),
    };
    let start = match since {
        Some(trace) => entries
            .iter()
            .position(|e| e.trace_id == trace)
            .ok_or_else(|| unknown("since", trace))?,
        None => 0,
    };
    let end = match until {
        Some(trace) => entries
            .iter()
            .rposition(|e| e.trace_id == trace)
            .ok_or_else(|| unknown("until", trace))?,
        None => entries.len().saturating_sub(1),
    };
    if entries.is_empty() {
        return Ok(entries);
    }
    if start > end {
        return Err(WindowError::Reversed {
            since: since.unwrap_or_default().to_string(),
            until: until.unwrap_or_default().to_string(),
        });
    }
    Ok(&entries[start..=end])
}

/// The mutations of `entries` (one session's window, in ledger order), in the order
/// their requests arrived.
pub fn mutations(entries: &[Entry]) -> Vec<Mutation> {
    let mut outcomes: HashMap<&str, &Entry> = HashMap::new();
    for entry in entries.iter().filter(|e| e.phase == Phase::Outcome) {
        outcomes.insert(&entry.trace_id, entry);
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for entry in entries {
        if !entry.request.mutation || !seen.insert(entry.trace_id.as_str()) {
            continue;
        }
        let (entry, outcome) = match outcomes.get(entry.trace_id.as_str()) {
            Some(outcome) => match happened(outcome) {
                Some(known) => (*outcome, known),
                None => continue,
            },
            None => (entry, Outcome::Unknown),
        };
        if entry.dry_run.is_some_and(|d| d.forwarded) {
            continue;
        }
        out.push(mutation_of(entry, outcome));
    }
    out
}

/// Whether an outcome entry's mutation happened: `None` when it certainly did not (a
/// refusal, by pathgate or the apiserver).
fn happened(outcome: &Entry) -> Option<Outcome> {
    match &outcome.response {
        Some(response) if response.origin == crate::ledger::Origin::Pathgate => None,
        // 101: an exec, attach or port-forward stream was opened.
        Some(response)
            if response.status_code == 101 || (200..300).contains(&response.status_code) =>
        {
            Some(Outcome::Succeeded)
        }
        Some(_) => None,
        None if outcome.decision.is_none() => None,
        // Forwarded, but no answer reached the client: it may have happened.
        None => Some(Outcome::Unknown),
    }
}

fn mutation_of(entry: &Entry, outcome: Outcome) -> Mutation {
    let request = &entry.request;
    let eviction =
        request.subresource == "eviction" && request.effect_verb.as_deref() == Some("delete");
    let kind = match (request.verb.as_str(), request.subresource.as_str()) {
        _ if eviction => Kind::Delete,
        ("connect", _) => Kind::Connect,
        ("deletecollection", _) => Kind::DeleteCollection,
        (verb, sub) => match View::of_subresource(sub) {
            None => Kind::OtherSubresource(sub.to_string()),
            Some(_) if verb == "create" => Kind::Create,
            Some(_) if verb == "delete" => Kind::Delete,
            Some(view) => Kind::Change(view),
        },
    };
    let object = object_of(entry);
    let before = if kind == Kind::Create {
        Before::Absent
    } else {
        before_of(entry)
    };
    Mutation {
        trace_id: entry.trace_id.clone(),
        verb: request
            .effect_verb
            .clone()
            .unwrap_or_else(|| request.verb.clone()),
        kind,
        object,
        outcome,
        before,
        after: after_of(entry),
    }
}

/// The object: the request's, named by the answer when the request did not name it (a
/// create, a `generateName` create).
fn object_of(entry: &Entry) -> ObjectRef {
    let request = &entry.request;
    let answered = entry.object.as_ref();
    let or_answer = |given: &str, answer: Option<&String>| {
        if given.is_empty() {
            answer.cloned().unwrap_or_default()
        } else {
            given.to_string()
        }
    };
    let name = or_answer(&request.name, answered.and_then(|o| o.name.as_ref()));
    let name = match name.is_empty() {
        true => entry.body_object_name().unwrap_or_default().to_string(),
        false => name,
    };
    ObjectRef {
        api_group: request.api_group.clone(),
        api_version: request.api_version.clone(),
        resource: request.resource.clone(),
        namespace: or_answer(
            &request.namespace,
            answered.and_then(|o| o.namespace.as_ref()),
        ),
        name,
    }
}

fn before_of(entry: &Entry) -> Before {
    match &entry.target {
        None => Before::Unknown,
        Some(target) if !target.found => Before::Absent,
        Some(target) => Before::Present {
            image: image_ref(target.pre_image.as_ref()),
            controller: target
                .controller
                .as_ref()
                .map(|owner| format!("{} {}", owner.kind, owner.name)),
        },
    }
}

fn after_of(entry: &Entry) -> After {
    let object = entry.object.as_ref();
    let rfc3339 = |at: time::OffsetDateTime| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    let between = match (rfc3339(entry.started_at), entry.ended_at.and_then(rfc3339)) {
        (Some(from), Some(to)) => Some((from, to)),
        _ => None,
    };
    After {
        image: entry.post_image.as_ref().map(|r| image_ref(Some(r))),
        uid: object.and_then(|o| o.uid.clone()),
        resource_version: object.and_then(|o| o.resource_version.clone()),
        between,
    }
}

fn image_ref(record: Option<&crate::ledger::images::ImageRecord>) -> ImageRef {
    use crate::ledger::images::ImageRecord;
    match record {
        None => ImageRef::NotRecorded,
        Some(ImageRecord::Stored { digest, .. }) => ImageRef::Stored {
            digest: digest.clone(),
        },
        Some(ImageRecord::Withheld { reason }) => ImageRef::Withheld {
            reason: reason.as_str().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::images::{ImageRecord, Withheld};
    use crate::ledger::{
        testing, Action, ObjectRecord, Origin, ResponseRecord, SentForwarded, TargetRecord,
    };

    fn stored(digest: &str) -> ImageRecord {
        ImageRecord::Stored {
            digest: digest.into(),
            bytes: 10,
            encrypted: false,
        }
    }

    /// A forwarded mutation the apiserver answered with `status`.
    fn forwarded(trace: &str, method: &str, verb: &str, status: u16) -> Entry {
        let mut entry = testing::mutation(trace);
        entry.request.method = method.into();
        entry.request.verb = verb.into();
        let decision = entry.decision.as_mut().unwrap();
        decision.action = Action::Allow;
        decision.findings.clear();
        entry.response = Some(ResponseRecord {
            status_code: status,
            reason: None,
            audit_id: None,
            origin: Origin::Upstream,
            end: None,
            body_inspected: Some(true),
        });
        entry
    }

    #[test]
    fn only_what_happened_counts_and_an_intent_without_outcome_is_unknown() {
        let mut patch = forwarded("t-1", "PATCH", "patch", 200);
        patch.target = Some(TargetRecord {
            found: true,
            pre_image: Some(stored("sha256:pre")),
            ..TargetRecord::default()
        });
        patch.post_image = Some(stored("sha256:post"));
        patch.object = Some(ObjectRecord {
            uid: Some("u-1".into()),
            resource_version: Some("9".into()),
            ..ObjectRecord::default()
        });
        let mut intent = patch.clone();
        intent.phase = Phase::Intent;
        intent.response = None;
        let denied = testing::mutation("t-2");
        let refused = forwarded("t-3", "PATCH", "patch", 409);
        let mut dry = forwarded("t-4", "PATCH", "patch", 200);
        dry.dry_run = Some(SentForwarded::unchanged(true));
        let read = testing::read("t-5");
        let mut lost = forwarded("t-6", "DELETE", "delete", 200);
        lost.phase = Phase::Intent;
        lost.response = None;
        let entries = [intent, patch, denied, refused, dry, read, lost];
        let mutations = mutations(&entries);
        let traces: Vec<_> = mutations
            .iter()
            .map(|m| (m.trace_id.as_str(), m.outcome))
            .collect();
        assert_eq!(
            traces,
            [("t-1", Outcome::Succeeded), ("t-6", Outcome::Unknown)]
        );
        let patch = &mutations[0];
        assert_eq!(patch.kind, Kind::Change(View::Object));
        assert_eq!(
            patch.before,
            Before::Present {
                image: ImageRef::Stored {
                    digest: "sha256:pre".into()
                },
                controller: None
            }
        );
        assert_eq!(
            patch.after,
            After {
                image: Some(ImageRef::Stored {
                    digest: "sha256:post".into()
                }),
                uid: Some("u-1".into()),
                resource_version: Some("9".into()),
                between: Some((
                    "2026-11-25T13:00:00.25Z".into(),
                    "2026-11-25T13:00:00.2512Z".into()
                )),
            }
        );
        assert_eq!(mutations[1].before, Before::Unknown, "no target recorded");
    }

    #[test]
    fn creates_evictions_exec_and_subresources_are_told_apart() {
        let mut create = forwarded("t-1", "POST", "create", 201);
        create.request.name = String::new();
        create.request.path = "/api/v1/namespaces/shop/pods".into();
        create.object = Some(ObjectRecord {
            uid: Some("u-1".into()),
            resource_version: Some("3".into()),
            name: Some("web-x7k2p".into()),
            namespace: Some("shop".into()),
            ..ObjectRecord::default()
        });
        let mut evict = forwarded("t-2", "POST", "create", 201);
        evict.request.subresource = "eviction".into();
        evict.request.effect_verb = Some("delete".into());
        evict.target = Some(TargetRecord {
            found: true,
            pre_image: Some(ImageRecord::Withheld {
                reason: Withheld::StoreFull,
            }),
            ..TargetRecord::default()
        });
        let mut exec = forwarded("t-3", "POST", "connect", 101);
        exec.request.subresource = "exec".into();
        let mut token = forwarded("t-4", "POST", "create", 201);
        token.request.subresource = "token".into();
        let mut apply = forwarded("t-5", "PATCH", "patch", 201);
        apply.target = Some(TargetRecord::default());
        let mut scale = forwarded("t-6", "PATCH", "patch", 200);
        scale.request.subresource = "scale".into();
        let mutations = mutations(&[create, evict, exec, token, apply, scale]);
        let kinds: Vec<_> = mutations.iter().map(|m| m.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                Kind::Create,
                Kind::Delete,
                Kind::Connect,
                Kind::OtherSubresource("token".into()),
                Kind::Change(View::Object),
                Kind::Change(View::Scale),
            ]
        );
        assert_eq!(mutations[0].object.name, "web-x7k2p", "named by the answer");
        assert_eq!(mutations[0].before, Before::Absent);
        assert_eq!(
            mutations[1].object.name, "web-5d9c7-abcde",
            "the pod, not its eviction"
        );
        assert_eq!(mutations[1].verb, "delete");
        assert!(matches!(
            &mutations[1].before,
            Before::Present { image: ImageRef::Withheld { reason }, .. } if reason == "store-full"
        ));
        assert_eq!(
            mutations[4].before,
            Before::Absent,
            "an apply that created its object"
        );
    }

    #[test]
    fn the_window_runs_from_the_first_entry_of_since_to_the_last_of_until() {
        let entries: Vec<_> = ["t-1", "t-2", "t-2", "t-3", "t-4"]
            .iter()
            .map(|t| testing::read(t))
            .collect();
        let ids = |w: &[Entry]| w.iter().map(|e| e.trace_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(window(&entries, "s", None, None).unwrap()).len(), 5);
        assert_eq!(
            ids(window(&entries, "s", Some("t-2"), Some("t-3")).unwrap()),
            ["t-2", "t-2", "t-3"]
        );
        assert_eq!(
            window(&entries, "s", Some("t-9"), None)
                .unwrap_err()
                .to_string(),
            "--since t-9: no entry of session s has that trace id"
        );
        assert!(matches!(
            window(&entries, "s", Some("t-4"), Some("t-1")),
            Err(WindowError::Reversed { .. })
        ));
    }
}
