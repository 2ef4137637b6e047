//! The precondition of a step (pure): what the object must still be for the step to be
//! the undo of the run and not an overwrite of someone else's later change, checked
//! against a GET just before the step.
//!
//! A patch needs the object still at the resourceVersion the run left (the patch's own
//! `test` op makes the apiserver check it again atomically); a delete of what the run
//! created needs that uid and resourceVersion (sent again as DeleteOptions
//! preconditions); a re-create needs the object still absent. Anything else is a
//! conflict, with the fields involved: what the run left there against what is there now.

use serde::Serialize;
use serde_json::Value;

use super::inverse::{self, FieldDiff, View};
use super::plan::{Action, Step};

/// What a GET of the step's object answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Absent,
    Present(Value),
}

/// The precondition's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Check {
    /// The object is as the run left it: the step may go.
    Holds,
    /// The step's effect is already there (what the run created is gone): nothing to send.
    AlreadyReverted { message: String },
    /// Someone changed the object since the run.
    Conflict {
        kind: ConflictKind,
        message: String,
        /// The fields the step would write that differ from what the run left (for a
        /// delete, every changed field).
        fields: Vec<FieldDiff>,
    },
}

/// What someone did to the object since the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Changed it (another resourceVersion): `--force-conflicts` may send the step anyway.
    Changed,
    /// Deleted it: there is nothing to patch.
    Deleted,
    /// Created it again (a re-create would fail), or replaced it with another object of
    /// the same name (a delete would remove someone else's object).
    Recreated,
}

/// `metadata.<key>` of an object, as text.
fn meta<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get("metadata")?.get(key)?.as_str()
}

/// Checks `step`'s precondition against `observed`.
pub fn check(step: &Step, observed: &Observed) -> Check {
    match (&step.action, observed) {
        (Action::Create { .. }, Observed::Absent) => Check::Holds,
        (Action::Create { .. }, Observed::Present(current)) => Check::Conflict {
            kind: ConflictKind::Recreated,
            message: format!(
                "exists again (uid {}, created {}): someone re-created it since the run",
                meta(current, "uid").unwrap_or("?"),
                meta(current, "creationTimestamp").unwrap_or("?")
            ),
            fields: Vec::new(),
        },
        (Action::Delete { .. }, Observed::Absent) => Check::AlreadyReverted {
            message: "already absent: deleted since the run (by an earlier undo, or someone else)"
                .into(),
        },
        (
            Action::Delete {
                uid,
                resource_version,
            },
            Observed::Present(current),
        ) => delete_check(step, uid, resource_version, current),
        (Action::Patch { .. }, Observed::Absent) => Check::Conflict {
            kind: ConflictKind::Deleted,
            message: "deleted since the run: nothing to restore into".into(),
            fields: Vec::new(),
        },
        (
            Action::Patch {
                view,
                resource_version,
                ops,
            },
            Observed::Present(current),
        ) => {
            if meta(current, "resourceVersion") == Some(resource_version) {
                return Check::Holds;
            }
            if already_restored(*view, ops, current) {
                return Check::AlreadyReverted {
                    message: "the fields this step restores are already as before the run".into(),
                };
            }
            let fields = step
                .left
                .as_ref()
                .map(|left| inverse::conflicting_fields(*view, ops, left, current))
                .unwrap_or_default();
            let message = if fields.is_empty() {
                "changed since the run (resourceVersion {now}, the run left {left}), though not in the fields this step restores"
            } else {
                "changed since the run (resourceVersion {now}, the run left {left}), in fields this step restores"
            };
            Check::Conflict {
                kind: ConflictKind::Changed,
                message: message
                    .replace("{now}", meta(current, "resourceVersion").unwrap_or("?"))
                    .replace("{left}", resource_version),
                fields,
            }
        }
        (Action::DeleteCreatedBetween { .. }, Observed::Absent) => Check::AlreadyReverted {
            message: "already absent: deleted since the run (by an earlier undo, or someone else)"
                .into(),
        },
        (Action::DeleteCreatedBetween { from, to }, Observed::Present(current)) => {
            created_between(current, from, to)
        }
        (Action::LeftToController { .. } | Action::NoNetChange, _) => Check::Holds,
    }
}

/// Whether applying `ops` to `current` would change nothing (an earlier undo, or someone
/// else, already put the run's fields back).
fn already_restored(view: View, ops: &[inverse::Op], current: &Value) -> bool {
    let current = view.comparable(current);
    ops.iter().all(|op| match op {
        inverse::Op::Add { path, value } | inverse::Op::Replace { path, value } => {
            current.pointer(path) == Some(value)
        }
        inverse::Op::Remove { path } => current.pointer(path).is_none(),
        inverse::Op::Test { .. } => true,
    })
}

/// Whether `current` is the object the run's create made: created within the request
/// (`creationTimestamp` has whole seconds, so from the second the request arrived).
fn created_between(current: &Value, from: &str, to: &str) -> Check {
    use time::format_description::well_known::Rfc3339;
    let parse = |text: &str| time::OffsetDateTime::parse(text, &Rfc3339).ok();
    let created = meta(current, "creationTimestamp").and_then(parse);
    let window = parse(from)
        .and_then(|from| from.replace_nanosecond(0).ok())
        .zip(parse(to));
    match (created, window) {
        (Some(created), Some((from, to))) if from <= created && created <= to => Check::Holds,
        _ => Check::Conflict {
            kind: ConflictKind::Recreated,
            message: format!(
                "created {}, not by the run's create ({from} to {to}): someone deleted and re-created it since",
                meta(current, "creationTimestamp").unwrap_or("?")
            ),
            fields: Vec::new(),
        },
    }
}

fn delete_check(step: &Step, uid: &str, resource_version: &str, current: &Value) -> Check {
    if meta(current, "uid") != Some(uid) {
        return Check::Conflict {
            kind: ConflictKind::Recreated,
            message: format!(
                "a different object of that name (uid {}; the run created uid {uid}): someone deleted and re-created it since",
                meta(current, "uid").unwrap_or("?")
            ),
            fields: Vec::new(),
        };
    }
    if meta(current, "resourceVersion") == Some(resource_version) {
        return Check::Holds;
    }
    Check::Conflict {
        kind: ConflictKind::Changed,
        message: format!(
            "changed since the run created it (resourceVersion {}, the run left {resource_version})",
            meta(current, "resourceVersion").unwrap_or("?")
        ),
        fields: step
            .left
            .as_ref()
            .map(|left| inverse::changed_fields(View::Object, left, current))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::undo::history::ObjectRef;
    use crate::undo::inverse::Op;

    fn object() -> ObjectRef {
        ObjectRef {
            api_group: String::new(),
            api_version: "v1".into(),
            resource: "configmaps".into(),
            namespace: "shop".into(),
            name: "settings".into(),
        }
    }

    fn configmap(uid: &str, rv: &str, mode: &str) -> Value {
        json!({"metadata": {"name": "settings", "uid": uid, "resourceVersion": rv,
                            "creationTimestamp": "2026-12-02T01:00:00Z"},
               "data": {"mode": mode}})
    }

    fn step(action: Action, left: Option<Value>) -> Step {
        Step {
            object: object(),
            traces: vec!["t-1".into()],
            action,
            left,
        }
    }

    fn patch() -> Step {
        step(
            Action::Patch {
                view: View::Object,
                resource_version: "20".into(),
                ops: vec![Op::Replace {
                    path: "/data/mode".into(),
                    value: json!("safe"),
                }],
            },
            Some(configmap("u-1", "20", "fast")),
        )
    }

    #[test]
    fn a_patch_holds_only_at_the_resource_version_the_run_left() {
        let patch = patch();
        assert_eq!(
            check(&patch, &Observed::Present(configmap("u-1", "20", "fast"))),
            Check::Holds
        );
        let Check::Conflict {
            message, fields, ..
        } = check(&patch, &Observed::Present(configmap("u-1", "31", "turbo")))
        else {
            panic!("a later change is a conflict");
        };
        assert!(
            message.contains("resourceVersion 31, the run left 20"),
            "{message}"
        );
        assert_eq!(
            fields,
            [FieldDiff {
                path: "/data/mode".into(),
                run_left: Some(json!("fast")),
                current: Some(json!("turbo")),
            }]
        );
        let mut relabelled = configmap("u-1", "32", "fast");
        relabelled["metadata"]["labels"] = json!({"x": "y"});
        let Check::Conflict {
            message, fields, ..
        } = check(&patch, &Observed::Present(relabelled))
        else {
            panic!("any later change is a conflict");
        };
        assert!(
            fields.is_empty() && message.contains("not in the fields"),
            "{message}"
        );
        assert!(matches!(
            check(&patch, &Observed::Absent),
            Check::Conflict { .. }
        ));
        assert!(
            matches!(
                check(&patch, &Observed::Present(configmap("u-1", "33", "safe"))),
                Check::AlreadyReverted { .. }
            ),
            "an undo run twice finds its work done"
        );
    }

    #[test]
    fn a_delete_of_what_the_run_created_needs_its_uid_and_resource_version() {
        let delete = step(
            Action::Delete {
                uid: "u-9".into(),
                resource_version: "40".into(),
            },
            Some(configmap("u-9", "40", "new")),
        );
        assert_eq!(
            check(&delete, &Observed::Present(configmap("u-9", "40", "new"))),
            Check::Holds
        );
        let Check::Conflict { message, .. } =
            check(&delete, &Observed::Present(configmap("u-10", "40", "new")))
        else {
            panic!("another uid is another object");
        };
        assert!(message.contains("uid u-10"), "{message}");
        let Check::Conflict { fields, .. } = check(
            &delete,
            &Observed::Present(configmap("u-9", "41", "edited")),
        ) else {
            panic!("an edit since is a conflict");
        };
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].path, "/data/mode");
        assert!(matches!(
            check(&delete, &Observed::Absent),
            Check::AlreadyReverted { .. }
        ));
    }

    #[test]
    fn a_create_the_ledger_could_not_read_is_recognised_by_its_creation_time() {
        let delete = step(
            Action::DeleteCreatedBetween {
                from: "2026-12-02T01:00:00.800Z".into(),
                to: "2026-12-02T01:00:00.950Z".into(),
            },
            None,
        );
        assert_eq!(
            check(&delete, &Observed::Present(configmap("u-1", "5", "x"))),
            Check::Holds,
            "created in the request's second"
        );
        let mut later = configmap("u-2", "9", "x");
        later["metadata"]["creationTimestamp"] = json!("2026-12-02T01:00:07Z");
        assert!(matches!(
            check(&delete, &Observed::Present(later)),
            Check::Conflict {
                kind: ConflictKind::Recreated,
                ..
            }
        ));
        assert!(matches!(
            check(&delete, &Observed::Absent),
            Check::AlreadyReverted { .. }
        ));
    }

    #[test]
    fn a_re_create_needs_the_object_still_absent() {
        let create = step(
            Action::Create {
                body: configmap("u-1", "1", "x"),
            },
            None,
        );
        assert_eq!(check(&create, &Observed::Absent), Check::Holds);
        let Check::Conflict { message, .. } =
            check(&create, &Observed::Present(configmap("u-2", "9", "y")))
        else {
            panic!("a re-created object is a conflict");
        };
        assert!(message.contains("uid u-2"), "{message}");
    }
}
