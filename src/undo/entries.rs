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
        Some(response) if (200..300).contains(&response.status_code) => Some(Outcome::Succeeded),
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
    let name = or_answer(&request.name, answered.and(None::<&String>));
    let name = if name.is_empty() {
        entry
            .analysis
            .as_ref()
            .and_then(|a| a.object_name.clone())
            .unwrap_or_default()
    } else {
        name
    };
    ObjectRef {
        api_group: request.api_group.clone(),
        api_version: request.api_version.clone(),
        resource: request.resource.clone(),
        namespace: or_answer(&request.namespace, answered.and(None::<&String>)),
        name,
    }
}

fn before_of(entry: &Entry) -> Before {
    match &entry.target {
        None => Before::Unknown,
        Some(target) if !target.found => Before::Absent,
        Some(target) => Before::Present {
            image: image_ref(None),
            controller: target
                .controller
                .as_ref()
                .map(|owner| format!("{} {}", owner.kind, owner.name)),
        },
    }
}

fn after_of(entry: &Entry) -> After {
    let object = entry.object.as_ref();
    After {
        image: None,
        uid: object.and_then(|o| o.uid.clone()),
        resource_version: object.and_then(|o| o.resource_version.clone()),
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
