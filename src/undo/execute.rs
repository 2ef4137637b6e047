//! Sending a plan through pathgate, step by step, newest first: a GET for the
//! precondition, then the step with `dryRun=All`, then (with `--apply`) the step itself —
//! the dry run first so pathgate's PG010 sees the same request rehearsed.
//!
//! Owns the requests a step becomes and what each answer means for the step. Does not
//! own the plan ([`super::plan`]) nor the preconditions' logic ([`super::precondition`]).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use super::history::ObjectRef;
use super::inverse::{FieldDiff, Op};
use super::plan::{Action, Plan, Step};
use super::precondition::{check, Check, ConflictKind, Observed};
use crate::upstream::Upstream;

/// How long one request of a step may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// `--dry-run` or `--apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    DryRun,
    Apply,
}

/// Which request of a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Precondition,
    DryRun,
    Apply,
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum StepResult {
    /// The step sends nothing (its controller re-creates the object, or no net change).
    NothingToSend,
    /// The apiserver accepted the step's dry run.
    Verified { status_code: u16 },
    /// The step was applied.
    Applied { status_code: u16 },
    /// The step's effect is already there.
    AlreadyReverted { message: String },
    /// The object changed since the run; the step was not sent.
    Conflict {
        kind: ConflictKind,
        message: String,
        fields: Vec<FieldDiff>,
    },
    /// A request of the step failed.
    Failed {
        phase: Phase,
        #[serde(skip_serializing_if = "Option::is_none")]
        status_code: Option<u16>,
        message: String,
    },
    /// Not sent: an earlier step failed under `--apply`.
    NotSent,
}

/// A step and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    #[serde(flatten)]
    pub step: Step,
    /// The path the step is (or would be) sent to.
    pub path: String,
    /// The step went without its resourceVersion guard (`--force-conflicts` on a conflict).
    pub forced: bool,
    #[serde(flatten)]
    pub result: StepResult,
    /// The conflict a forced step went through anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overridden: Option<Check>,
}

/// The requests of a step.
struct Request {
    method: Method,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
}

/// The request `step` becomes, as a dry run or for real; `forced` drops the
/// resourceVersion guard. A delete's dry run says so in its DeleteOptions: the apiserver
/// (and pathgate's gate) read a delete's options from its body, ignoring the query's.
fn request_of(step: &Step, forced: bool, dry_run: bool) -> Option<Request> {
    let mut path = step.path();
    if dry_run && !matches!(step.action, Action::Delete { .. }) {
        path.push_str("?dryRun=All");
    }
    let (method, content_type, body) = match &step.action {
        Action::Patch {
            resource_version,
            ops,
            ..
        } => {
            let mut patch = Vec::with_capacity(ops.len() + 1);
            if !forced {
                patch.push(Op::Test {
                    path: "/metadata/resourceVersion".into(),
                    value: Value::String(resource_version.clone()),
                });
            }
            patch.extend(ops.iter().cloned());
            (
                Method::PATCH,
                "application/json-patch+json",
                serde_json::to_vec(&patch),
            )
        }
        Action::Delete {
            uid,
            resource_version,
        } => {
            let mut preconditions = json!({"uid": uid});
            if !forced {
                preconditions["resourceVersion"] = resource_version.clone().into();
            }
            let mut options = json!({"apiVersion": "v1", "kind": "DeleteOptions",
                                 "preconditions": preconditions,
                                 "propagationPolicy": "Background"});
            if dry_run {
                options["dryRun"] = json!(["All"]);
            }
            (
                Method::DELETE,
                "application/json",
                serde_json::to_vec(&options),
            )
        }
        Action::Create { body } => (Method::POST, "application/json", serde_json::to_vec(body)),
        // Pinned to a uid by the precondition first (`pin_created`).
        Action::DeleteCreatedBetween { .. }
        | Action::LeftToController { .. }
        | Action::NoNetChange => return None,
    };
    Some(Request {
        method,
        path,
        content_type,
        body: body.expect("JSON values serialize"),
    })
}

/// An answer: its status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    /// The `message` of a `Status` body, else the body's start.
    fn message(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned()
            })
    }
}

/// Sends one request through the gateway `upstream` reaches (its session prefix included).
async fn send(
    upstream: &Upstream,
    method: Method,
    path_and_query: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, String> {
    let mut request = http::Request::builder()
        .method(method)
        .uri(upstream.uri_for(path_and_query));
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let (status, body) = upstream
        .send_collected(request, Bytes::from(body), STEP_TIMEOUT)
        .await?;
    Ok(Answer { status, body })
}

/// GETs the step's object.
async fn observe(upstream: &Upstream, object: &ObjectRef) -> Result<Observed, String> {
    let answer = send(upstream, Method::GET, &object.path(""), None, Vec::new()).await?;
    match answer.status {
        StatusCode::NOT_FOUND => Ok(Observed::Absent),
        status if status.is_success() => serde_json::from_slice(&answer.body)
            .map(Observed::Present)
            .map_err(|e| format!("the answer is not JSON: {e}")),
        status => Err(format!("GET answered {status}: {}", answer.message())),
    }
}

/// Sends the plan's steps in order; under `--apply` the first failure stops it.
pub async fn execute(plan: &Plan, upstream: &Upstream, mode: Mode, force: bool) -> Vec<StepReport> {
    let mut reports = Vec::with_capacity(plan.steps.len());
    let mut stopped = false;
    // What our own applied steps left each object at: a later step of the same object
    // (its status or scale view) is guarded by that, not by what the run left.
    let mut ours: HashMap<ObjectRef, String> = HashMap::new();
    for step in &plan.steps {
        let mut step = step.clone();
        if let Some(rv) = ours.get(&step.object) {
            retarget(&mut step, rv);
        }
        let report = if stopped {
            StepReport {
                path: step.path(),
                step,
                forced: false,
                result: StepResult::NotSent,
                overridden: None,
            }
        } else {
            run_step(step, upstream, mode, force).await
        };
        if let StepResult::Applied { .. } = report.result {
            if let Ok(Observed::Present(now)) = observe(upstream, &report.step.object).await {
                if let Some(rv) = now
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                {
                    ours.insert(report.step.object.clone(), rv.to_string());
                }
            }
        }
        stopped |= mode == Mode::Apply && matches!(report.result, StepResult::Failed { .. });
        reports.push(report);
    }
    reports
}

/// A step guarded by `rv` (what an earlier step of ours left the object at).
fn retarget(step: &mut Step, rv: &str) {
    match &mut step.action {
        Action::Patch {
            resource_version, ..
        }
        | Action::Delete {
            resource_version, ..
        } => *resource_version = rv.to_string(),
        _ => {}
    }
    if let Some(left) = step.left.as_mut().and_then(|l| l.get_mut("metadata")) {
        left["resourceVersion"] = rv.into();
    }
}

/// The precondition, the dry run, and (applying) the step.
async fn run_step(step: Step, upstream: &Upstream, mode: Mode, force: bool) -> StepReport {
    let mut report = StepReport {
        path: step.path(),
        step,
        forced: false,
        result: StepResult::NothingToSend,
        overridden: None,
    };
    if !report.step.sends() {
        return report;
    }
    let observed = match observe(upstream, &report.step.object).await {
        Ok(observed) => observed,
        Err(message) => {
            report.result = failed(Phase::Precondition, None, message);
            return report;
        }
    };
    match check(&report.step, &observed) {
        Check::Holds => pin_created(&mut report.step, &observed),
        Check::AlreadyReverted { message } => {
            report.result = StepResult::AlreadyReverted { message };
            return report;
        }
        conflict @ Check::Conflict { .. } if force && forceable(&conflict) => {
            report.forced = true;
            report.overridden = Some(conflict);
        }
        Check::Conflict {
            kind,
            message,
            fields,
        } => {
            report.result = StepResult::Conflict {
                kind,
                message,
                fields,
            };
            return report;
        }
    }
    report.result = send_step(upstream, &report.step, report.forced, mode).await;
    report
}

/// A delete of an object the run created, recognised by its creation time, is sent
/// guarded by the uid and resourceVersion it has now.
fn pin_created(step: &mut Step, observed: &Observed) {
    if let (Action::DeleteCreatedBetween { .. }, Observed::Present(current)) =
        (&step.action, observed)
    {
        let text = |key: &str| {
            current
                .pointer(&format!("/metadata/{key}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        step.action = Action::Delete {
            uid: text("uid"),
            resource_version: text("resourceVersion"),
        };
    }
}

/// Whether `--force-conflicts` may send a step through its conflict: only through a
/// change — a patch then goes without its `test`, a delete of the object the run created
/// with its uid as the only precondition. Never a re-create over an object that exists
/// again, a delete of another object of the same name, nor a patch of a deleted object.
fn forceable(conflict: &Check) -> bool {
    matches!(
        conflict,
        Check::Conflict {
            kind: ConflictKind::Changed,
            ..
        }
    )
}

/// The dry run, then under `--apply` the step itself.
async fn send_step(upstream: &Upstream, step: &Step, forced: bool, mode: Mode) -> StepResult {
    let dry = request_of(step, forced, true).expect("the step sends");
    let dry = match send_request(upstream, &dry).await {
        Ok(answer) => answer,
        Err(message) => return failed(Phase::DryRun, None, message),
    };
    if !dry.status.is_success() {
        return failed(Phase::DryRun, Some(dry.status), dry.message());
    }
    if mode == Mode::DryRun {
        return StepResult::Verified {
            status_code: dry.status.as_u16(),
        };
    }
    let request = request_of(step, forced, false).expect("the step sends");
    match send_request(upstream, &request).await {
        Ok(answer) if answer.status.is_success() => StepResult::Applied {
            status_code: answer.status.as_u16(),
        },
        Ok(answer) => failed(Phase::Apply, Some(answer.status), answer.message()),
        Err(message) => failed(Phase::Apply, None, message),
    }
}

async fn send_request(upstream: &Upstream, request: &Request) -> Result<Answer, String> {
    send(
        upstream,
        request.method.clone(),
        &request.path,
        Some(request.content_type),
        request.body.clone(),
    )
    .await
}

fn failed(phase: Phase, status: Option<StatusCode>, message: String) -> StepResult {
    StepResult::Failed {
        phase,
        status_code: status.map(|s| s.as_u16()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::undo::inverse::View;

    fn step(action: Action) -> Step {
        Step {
            object: ObjectRef {
                api_group: String::new(),
                api_version: "v1".into(),
                resource: "services".into(),
                namespace: "shop".into(),
                name: "api".into(),
            },
            traces: vec!["t-1".into()],
            action,
            left: None,
        }
    }

    #[test]
    fn a_patch_is_guarded_by_a_test_of_the_resource_version_unless_forced() {
        let patch = step(Action::Patch {
            view: View::Object,
            resource_version: "41".into(),
            ops: vec![Op::Remove {
                path: "/metadata/labels/agent".into(),
            }],
        });
        let guarded = request_of(&patch, false, false).unwrap();
        assert_eq!(guarded.method, Method::PATCH);
        assert_eq!(guarded.content_type, "application/json-patch+json");
        assert_eq!(
            serde_json::from_slice::<Value>(&guarded.body).unwrap(),
            json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
                   {"op": "remove", "path": "/metadata/labels/agent"}])
        );
        let forced = request_of(&patch, true, false).unwrap();
        assert_eq!(
            request_of(&patch, false, true).unwrap().path,
            "/api/v1/namespaces/shop/services/api?dryRun=All"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&forced.body).unwrap(),
            json!([{"op": "remove", "path": "/metadata/labels/agent"}])
        );
    }

    #[test]
    fn a_delete_carries_its_preconditions_and_a_re_create_goes_to_the_collection() {
        let delete = step(Action::Delete {
            uid: "u-1".into(),
            resource_version: "9".into(),
        });
        let request = request_of(&delete, false, false).unwrap();
        let options: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            options["preconditions"],
            json!({"uid": "u-1", "resourceVersion": "9"})
        );
        assert_eq!(request.path, "/api/v1/namespaces/shop/services/api");
        assert!(options.get("dryRun").is_none());
        let dry = request_of(&delete, false, true).unwrap();
        let dry_options: Value = serde_json::from_slice(&dry.body).unwrap();
        assert_eq!(
            (dry.path.as_str(), &dry_options["dryRun"]),
            ("/api/v1/namespaces/shop/services/api", &json!(["All"])),
            "a delete's dry run is in its body, where the apiserver reads it"
        );
        let forced: Value =
            serde_json::from_slice(&request_of(&delete, true, false).unwrap().body).unwrap();
        assert_eq!(forced["preconditions"], json!({"uid": "u-1"}));
        let create = request_of(
            &step(Action::Create {
                body: json!({"metadata": {"name": "api"}}),
            }),
            false,
            false,
        )
        .unwrap();
        assert_eq!(
            (create.method, create.path.as_str()),
            (Method::POST, "/api/v1/namespaces/shop/services")
        );
        assert!(request_of(&step(Action::NoNetChange), false, true).is_none());
    }

    #[test]
    fn only_a_change_is_forced_through() {
        let conflict = |kind| Check::Conflict {
            kind,
            message: String::new(),
            fields: vec![],
        };
        assert!(forceable(&conflict(ConflictKind::Changed)));
        assert!(!forceable(&conflict(ConflictKind::Deleted)));
        assert!(!forceable(&conflict(ConflictKind::Recreated)));
        assert!(!forceable(&Check::Holds));
    }
}
