//! The plan (pure): from a run's mutations and a way to load their images, one step per
//! object (and per `status`/`scale` view of it) that undoes the window's net change,
//! newest first, and every mutation that cannot be undone with the reason.
//!
//! Net change: the object as the window's FIRST mutation found it against the object as
//! its LAST mutation left it. Created → delete it (preconditions: the uid and
//! resourceVersion the run left); changed → the inverse patch of [`super::inverse`];
//! deleted → re-create it from its first pre-image, server-managed fields stripped,
//! unless a controller owns it (its controller re-creates it; a second copy would be an
//! orphan the controller then deletes). Created and deleted within the window, or changed
//! and changed back: no net change, and the plan says so.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::history::{Before, ImageRef, Kind, Mutation, ObjectRef, Outcome};
use super::inverse::{self, Op, View};

/// Why an image could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageProblem {
    /// Not in the store: evicted by its bounds, or never written.
    Missing,
    /// A Secret's image, sealed, and no key was given.
    Encrypted,
    /// The bytes do not match their digest, are not JSON, or do not open with the key.
    Corrupt(String),
}

/// Loads images by digest (the store; a map in tests).
pub trait Images {
    fn load(&self, digest: &str) -> Result<Value, ImageProblem>;
}

/// Why something the run did cannot be undone. Serialized as its snake_case name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum Reason {
    /// exec, attach, port-forward: what ran inside a container is invisible to the API.
    InsideContainer,
    /// A subresource without an inverse (token, binding, approval, proxy...).
    Subresource(String),
    /// Only the intent is recorded: the mutation may or may not have happened.
    OutcomeUnknown,
    /// pathgate did not fetch the object before the mutation.
    NoPreImage,
    /// The answer carried no object (no uid or resourceVersion to guard a step with).
    NoPostImage,
    /// The ledger records that the image was not kept (`secret`, `too-large`...).
    ImageWithheld(String),
    /// The image is no longer in the store (evicted by its bounds).
    ImageMissing,
    /// A sealed Secret image and no `--secret-key-file`.
    ImageEncrypted,
    /// The image is damaged.
    ImageCorrupt(String),
}

impl Reason {
    /// The reason in words, for the text plan and JSON's `message`.
    pub fn message(&self) -> String {
        match self {
            Reason::InsideContainer => "what ran inside the container (exec, attach, port-forward) is invisible to the API and cannot be reverted".into(),
            Reason::Subresource(sub) => format!("the {sub} subresource has no inverse"),
            Reason::OutcomeUnknown => "only the intent is recorded: the mutation may or may not have happened".into(),
            Reason::NoPreImage => "pathgate did not record the object as it was before".into(),
            Reason::NoPostImage => "the apiserver's answer carried no object to guard a step with".into(),
            Reason::ImageWithheld(why) if why == "secret" => "the image of a Secret was not kept (no ledger.pre_images.secret_key_file was configured)".into(),
            Reason::ImageWithheld(why) if why == "unconfirmed" => "the object changed between the session's dry run and the real request, and pathgate did not read it again: its state just before the request is unknown".into(),
            Reason::ImageWithheld(why) => format!("the image was not kept ({why})"),
            Reason::ImageMissing => "the image is no longer in the store (evicted by its retention or size bounds)".into(),
            Reason::ImageEncrypted => "the image of a Secret is sealed: give --secret-key-file".into(),
            Reason::ImageCorrupt(why) => format!("the image is damaged: {why}"),
        }
    }
}

/// What one step sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Delete an object the run created, with DeleteOptions preconditions.
    Delete {
        uid: String,
        resource_version: String,
    },
    /// A JSON Patch of the view, sent after a `test` of `resource_version`.
    Patch {
        view: View,
        resource_version: String,
        ops: Vec<Op>,
    },
    /// Delete an object the run created whose answer the ledger could not read: the
    /// object of that name whose `creationTimestamp` falls within the create's request
    /// is the run's (guarded, once found, by its uid and resourceVersion).
    DeleteCreatedBetween { from: String, to: String },
    /// Re-create a deleted object (POST to its collection).
    Create { body: Value },
    /// Nothing is sent: the object's controller re-creates it.
    LeftToController { controller: String },
    /// Nothing is sent: the window left the object as it found it.
    NoNetChange,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub object: ObjectRef,
    /// The run's mutations of the object (its view), oldest first.
    pub traces: Vec<String>,
    #[serde(flatten)]
    pub action: Action,
    /// The object as the run left it, when the ledger kept it: what a conflict compares.
    #[serde(skip)]
    pub left: Option<Value>,
}

impl Step {
    /// The request path the step is sent to.
    pub fn path(&self) -> String {
        match &self.action {
            Action::Create { .. } => self.object.collection_path(),
            Action::Patch { view, .. } => self.object.path(view.subresource()),
            _ => self.object.path(""),
        }
    }

    /// Whether the step sends a request.
    pub fn sends(&self) -> bool {
        matches!(
            self.action,
            Action::Delete { .. }
                | Action::DeleteCreatedBetween { .. }
                | Action::Patch { .. }
                | Action::Create { .. }
        )
    }
}

/// Something the run did that the plan cannot undo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotUndoable {
    pub traces: Vec<String>,
    pub verb: String,
    pub object: ObjectRef,
    #[serde(flatten)]
    pub reason: Reason,
    pub message: String,
}

/// The plan of a window.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Plan {
    /// Newest first.
    pub steps: Vec<Step>,
    /// In ledger order.
    pub not_undoable: Vec<NotUndoable>,
}

/// An image as the plan holds it before it is needed.
#[derive(Debug, Clone)]
enum Image {
    Ref(ImageRef),
    /// An item of a collection delete's list image.
    Inline(Value),
}

impl Image {
    fn load(&self, images: &dyn Images) -> Result<Value, Reason> {
        match self {
            Image::Inline(value) => Ok(value.clone()),
            Image::Ref(ImageRef::NotRecorded) => Err(Reason::NoPreImage),
            Image::Ref(ImageRef::Withheld { reason }) => Err(Reason::ImageWithheld(reason.clone())),
            Image::Ref(ImageRef::Stored { digest }) => images.load(digest).map_err(|p| match p {
                ImageProblem::Missing => Reason::ImageMissing,
                ImageProblem::Encrypted => Reason::ImageEncrypted,
                ImageProblem::Corrupt(why) => Reason::ImageCorrupt(why),
            }),
        }
    }
}

/// What a mutation found, or left.
#[derive(Debug, Clone)]
enum State {
    Absent,
    Present(Image),
    Unknown,
}

/// One mutation of one object view (a collection delete is one event per item).
#[derive(Debug, Clone)]
struct Event {
    trace_id: String,
    verb: String,
    object: ObjectRef,
    view: View,
    before: State,
    controller: Option<String>,
    deletes: bool,
    after: super::history::After,
}

/// Computes the plan of `mutations` (one session's window, in ledger order).
pub fn plan(mutations: &[Mutation], images: &dyn Images) -> Plan {
    let mut plan = Plan::default();
    let mut events = Vec::new();
    for mutation in mutations {
        // What it may have done is seen in the images of the mutations around it (the
        // next one's pre-image, or the precondition's GET), not in its own.
        if mutation.outcome == Outcome::Unknown {
            plan.refuse(mutation, Reason::OutcomeUnknown);
            continue;
        }
        match events_of(mutation, images) {
            Ok(mut more) => events.append(&mut more),
            Err(reason) => plan.refuse(mutation, reason),
        }
    }
    // Each object view's events, and the position of its newest one.
    let mut groups: BTreeMap<(ObjectRef, View), (usize, Vec<Event>)> = BTreeMap::new();
    for (index, event) in events.into_iter().enumerate() {
        let group = groups
            .entry((event.object.clone(), event.view))
            .or_default();
        group.0 = index;
        group.1.push(event);
    }
    let mut ordered: Vec<_> = groups.into_values().collect();
    ordered.sort_by_key(|(newest, _)| std::cmp::Reverse(*newest));
    for (_, events) in ordered {
        match step_of(&events, images) {
            Ok(step) => plan.steps.push(step),
            Err(reason) => {
                let first = &events[0];
                plan.not_undoable.push(NotUndoable {
                    traces: events.iter().map(|e| e.trace_id.clone()).collect(),
                    verb: first.verb.clone(),
                    object: first.object.clone(),
                    message: reason.message(),
                    reason,
                });
            }
        }
    }
    plan
}

impl Plan {
    fn refuse(&mut self, mutation: &Mutation, reason: Reason) {
        self.not_undoable.push(NotUndoable {
            traces: vec![mutation.trace_id.clone()],
            verb: mutation.verb.clone(),
            object: mutation.object.clone(),
            message: reason.message(),
            reason,
        });
    }
}

/// The events of one mutation (`Err`: it cannot be undone at all).
fn events_of(mutation: &Mutation, images: &dyn Images) -> Result<Vec<Event>, Reason> {
    let (view, deletes) = match &mutation.kind {
        Kind::Connect => return Err(Reason::InsideContainer),
        Kind::OtherSubresource(sub) => return Err(Reason::Subresource(sub.clone())),
        Kind::DeleteCollection => return collection_events(mutation, images),
        Kind::Create => (View::Object, false),
        Kind::Change(view) => (*view, false),
        Kind::Delete => (View::Object, true),
    };
    let (before, controller) = match &mutation.before {
        Before::Absent => (State::Absent, None),
        Before::Unknown => (State::Unknown, None),
        Before::Present { image, controller } => (
            State::Present(Image::Ref(image.clone())),
            controller.clone(),
        ),
    };
    Ok(vec![Event {
        trace_id: mutation.trace_id.clone(),
        verb: mutation.verb.clone(),
        object: mutation.object.clone(),
        view,
        before,
        controller,
        deletes,
        after: mutation.after.clone(),
    }])
}

/// A collection delete: one delete event per item of the list it deleted.
fn collection_events(mutation: &Mutation, images: &dyn Images) -> Result<Vec<Event>, Reason> {
    let image = match &mutation.before {
        Before::Present { image, .. } => Image::Ref(image.clone()).load(images)?,
        Before::Absent | Before::Unknown => return Err(Reason::NoPreImage),
    };
    let items = image
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| Reason::ImageCorrupt("a collection delete's image is not a list".into()))?;
    Ok(items
        .iter()
        .map(|item| {
            let meta = |key: &str| {
                item.pointer(&format!("/metadata/{key}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let mut object = mutation.object.clone();
            object.name = meta("name");
            object.namespace = meta("namespace");
            Event {
                trace_id: mutation.trace_id.clone(),
                verb: mutation.verb.clone(),
                object,
                view: View::Object,
                before: State::Present(Image::Inline(item.clone())),
                controller: None,
                deletes: true,
                after: Default::default(),
            }
        })
        .collect())
}

/// The step undoing one object view's events (oldest first).
fn step_of(events: &[Event], images: &dyn Images) -> Result<Step, Reason> {
    let (first, last) = (&events[0], &events[events.len() - 1]);
    let action = match (&first.before, last.deletes) {
        (State::Unknown, _) => return Err(Reason::NoPreImage),
        (State::Absent, true) => Action::NoNetChange,
        (State::Absent, false) => match (guard_of(last), &last.after.between) {
            (Ok((uid, resource_version)), _) => Action::Delete {
                uid,
                resource_version,
            },
            (Err(_), Some((from, to))) if events.len() == 1 => Action::DeleteCreatedBetween {
                from: from.clone(),
                to: to.clone(),
            },
            (Err(reason), _) => return Err(reason),
        },
        (State::Present(image), true) => {
            let pre = image.load(images)?;
            match controller_of(&pre).or_else(|| first.controller.clone()) {
                Some(controller) => Action::LeftToController { controller },
                None => Action::Create {
                    body: recreate_body(&pre, is_pod(&first.object)),
                },
            }
        }
        (State::Present(image), false) => {
            let pre = image.load(images)?;
            let post = left_by(last, images)?;
            let ops = inverse::inverse(first.view, &pre, &post);
            if ops.is_empty() {
                Action::NoNetChange
            } else {
                let (_, resource_version) =
                    guard_of(last).or_else(|_| post_guard(&post).ok_or(Reason::NoPostImage))?;
                Action::Patch {
                    view: first.view,
                    resource_version,
                    ops,
                }
            }
        }
    };
    let left = match &action {
        Action::Delete { .. } | Action::Patch { .. } => left_by(last, images).ok(),
        _ => None,
    };
    Ok(Step {
        object: last.object.clone(),
        traces: events.iter().map(|e| e.trace_id.clone()).collect(),
        action,
        left,
    })
}

/// The object the event's answer carried.
fn left_by(event: &Event, images: &dyn Images) -> Result<Value, Reason> {
    match &event.after.image {
        Some(image) => Image::Ref(image.clone()).load(images),
        None => Err(Reason::NoPostImage),
    }
}

/// The uid and resourceVersion the event's answer carried.
fn guard_of(event: &Event) -> Result<(String, String), Reason> {
    match (&event.after.uid, &event.after.resource_version) {
        (Some(uid), Some(rv)) => Ok((uid.clone(), rv.clone())),
        _ => Err(Reason::NoPostImage),
    }
}

fn post_guard(post: &Value) -> Option<(String, String)> {
    let text = |key: &str| {
        post.pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Some((text("uid").unwrap_or_default(), text("resourceVersion")?))
}

/// Whether the object is a core Pod (a list image's items carry no `kind`).
fn is_pod(object: &ObjectRef) -> bool {
    object.api_group.is_empty() && object.resource == "pods"
}

/// `Kind name` of the image's controller owner reference.
fn controller_of(image: &Value) -> Option<String> {
    image
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|owner| owner.get("controller") == Some(&Value::Bool(true)))
        .map(|owner| {
            let text = |key: &str| owner.get(key).and_then(Value::as_str).unwrap_or_default();
            format!("{} {}", text("kind"), text("name"))
        })
}

/// A deleted object as it is re-created: the pre-image without server-managed metadata
/// and `status`. A Pod's `spec.nodeName` is dropped too: the scheduler bound it once and
/// places it again, where a named node may be gone or full (a pod pinned to a node in its
/// manifest keeps its placement only through nodeSelector or affinity).
pub fn recreate_body(pre: &Value, pod: bool) -> Value {
    let mut body = pre.clone();
    if let Some(map) = body.as_object_mut() {
        map.remove("status");
    }
    inverse::strip_server_metadata(&mut body);
    if pod {
        if let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("nodeName");
        }
    }
    body
}

#[cfg(test)]
mod tests;
