//! Table tests for `decide` and tests of the session memory.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::classify::{DeleteOptions, Verb, WholeObject};
use builders::*;

/// Small builders for classified requests, so each table row reads like the request.
pub(crate) mod builders {
    use crate::classify::{
        Analysis, BodyFormat, DeleteOptions, ObjectIdentity, RequestInfo, Verb, WholeObject,
    };
    use crate::policy::{Facts, Fingerprint, RequestContext, SessionFacts, TargetFact};

    /// A request under construction.
    #[derive(Clone)]
    pub struct Req {
        pub info: RequestInfo,
        pub analysis: Analysis,
    }

    fn method(verb: Verb) -> &'static str {
        match verb {
            Verb::Get | Verb::List | Verb::Watch | Verb::NonResource => "GET",
            Verb::Create | Verb::Connect => "POST",
            Verb::Update => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete | Verb::DeleteCollection => "DELETE",
        }
    }

    fn verb_name(verb: Verb) -> &'static str {
        match verb {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Connect => "create",
            Verb::NonResource => "get",
        }
    }

    /// A core-group (`/api/v1`) request.
    pub fn req(verb: Verb, resource: &str) -> Req {
        let mut r = Req {
            info: RequestInfo {
                is_resource_request: true,
                verb,
                method: method(verb).to_string(),
                path: String::new(),
                api_prefix: "api".to_string(),
                api_group: String::new(),
                api_version: "v1".to_string(),
                namespace: String::new(),
                resource: resource.to_string(),
                subresource: String::new(),
                name: String::new(),
                is_discovery: false,
                apiserver_verb: verb_name(verb).to_string(),
                upgrade: None,
            },
            analysis: Analysis {
                patch_type: None,
                body_format: BodyFormat::None,
                touched_paths: Vec::new(),
                whole_object: None,
                dry_run: false,
                dry_run_ignored: false,
                delete_options: None,
                field_manager: None,
                force: false,
                object: None,
                opaque_reason: None,
                refusal: None,
                list_limit: None,
                has_selector: false,
                paths_known: true,
                payload_leaves: 0,
            },
        };
        if matches!(verb, Verb::Create | Verb::Update | Verb::Patch) {
            r.analysis.body_format = BodyFormat::Json;
        }
        if matches!(verb, Verb::Delete | Verb::DeleteCollection) {
            r.analysis.body_format = BodyFormat::Json;
            r.analysis.delete_options = Some(DeleteOptions {
                propagation_policy: Some("Background".to_string()),
                source: "body",
                ..DeleteOptions::default()
            });
        }
        r.repath()
    }

    /// `/version`, `/apis`: discovery.
    pub fn discovery(path: &str) -> Req {
        let mut r = req(Verb::NonResource, "");
        r.info.is_resource_request = false;
        r.info.is_discovery = true;
        r.info.api_prefix.clear();
        r.info.api_version.clear();
        r.info.path = path.to_string();
        r
    }

    impl Req {
        fn repath(mut self) -> Self {
            let i = &self.info;
            if !i.is_resource_request {
                return self;
            }
            let mut path = format!("/{}", i.api_prefix);
            if !i.api_group.is_empty() {
                path += &format!("/{}", i.api_group);
            }
            path += &format!("/{}", i.api_version);
            if !i.namespace.is_empty() {
                path += &format!("/namespaces/{}", i.namespace);
            }
            path += &format!("/{}", i.resource);
            if !i.name.is_empty() {
                path += &format!("/{}", i.name);
            }
            if !i.subresource.is_empty() {
                path += &format!("/{}", i.subresource);
            }
            self.info.path = path;
            self
        }
        pub fn group(mut self, group: &str) -> Self {
            self.info.api_prefix = "apis".to_string();
            self.info.api_group = group.to_string();
            self.repath()
        }
        pub fn ns(mut self, namespace: &str) -> Self {
            self.info.namespace = namespace.to_string();
            self.repath()
        }
        pub fn name(mut self, name: &str) -> Self {
            self.info.name = name.to_string();
            self.repath()
        }
        pub fn sub(mut self, subresource: &str) -> Self {
            self.info.subresource = subresource.to_string();
            self.repath()
        }
        pub fn paths(mut self, paths: &[&str]) -> Self {
            self.analysis.touched_paths = paths.iter().map(|p| p.to_string()).collect();
            self
        }
        pub fn whole(mut self, whole: WholeObject) -> Self {
            self.analysis.whole_object = Some(whole);
            self
        }
        pub fn dry_run(mut self) -> Self {
            self.analysis.dry_run = true;
            if let Some(options) = &mut self.analysis.delete_options {
                options.dry_run = true;
            }
            self
        }
        pub fn grace(mut self, seconds: i64) -> Self {
            self.analysis
                .delete_options
                .get_or_insert_with(DeleteOptions::default)
                .grace_period_seconds = Some(seconds);
            self
        }
        pub fn opaque(mut self, reason: &str) -> Self {
            self.analysis.body_format = BodyFormat::Protobuf;
            self.analysis.delete_options = None;
            self.analysis.opaque_reason = Some(reason.to_string());
            self
        }
        /// The `metadata.namespace` the body declares (a field the client writes).
        pub fn body_namespace(mut self, namespace: &str) -> Self {
            self.analysis
                .object
                .get_or_insert_with(ObjectIdentity::default)
                .namespace = Some(namespace.to_string());
            self
        }
        pub fn limit(mut self, limit: u64) -> Self {
            self.analysis.list_limit = Some(limit);
            self
        }
        pub fn selector(mut self) -> Self {
            self.analysis.has_selector = true;
            self
        }
        /// The identity the body declares (for creates: the name of the new object).
        pub fn body(mut self, kind: &str, name: &str) -> Self {
            self.analysis.object = Some(ObjectIdentity {
                kind: Some(kind.to_string()),
                name: Some(name.to_string()),
                namespace: (!self.info.namespace.is_empty()).then(|| self.info.namespace.clone()),
                ..ObjectIdentity::default()
            });
            self
        }
    }

    /// A pod as the apiserver returns it, owned by `owner` (kind, name) as controller.
    pub fn pod(owner: Option<(&str, &str)>, template_hash: Option<&str>) -> TargetFact {
        let mut pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-5d9c7b-x2x9z", "namespace": "shop", "labels": {}},
        });
        if let Some((kind, name)) = owner {
            pod["metadata"]["ownerReferences"] = serde_json::json!([{
                "apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u-1",
                "controller": true, "blockOwnerDeletion": true
            }]);
        }
        if let Some(hash) = template_hash {
            pod["metadata"]["labels"]["pod-template-hash"] = serde_json::json!(hash);
        }
        TargetFact::Present(pod)
    }

    pub fn facts(target: TargetFact) -> Facts {
        Facts {
            target,
            effect_paths: None,
        }
    }

    pub fn ctx() -> RequestContext {
        RequestContext {
            session: "s1".to_string(),
            fingerprint: Fingerprint::from_bytes([7; 32]),
            impersonation_headers: false,
            pathgate_credentials: true,
            confirm_token: None,
        }
    }

    /// A session that already ran the request as a server dry run.
    pub fn dry_run_done() -> SessionFacts {
        SessionFacts {
            dry_run_succeeded: true,
            ..SessionFacts::default()
        }
    }
}

/// One row of the decision table.
struct Case {
    name: &'static str,
    req: Req,
    facts: Facts,
    ctx: RequestContext,
    session: SessionFacts,
    policy: Policy,
    action: Action,
    rules: &'static [&'static str],
    rewrites: Option<Vec<Rewrite>>,
}

fn case(name: &'static str, req: Req) -> Case {
    Case {
        name,
        req,
        facts: Facts::default(),
        ctx: ctx(),
        // Most rows isolate one rule: the dry run PG010 asks for has happened.
        session: dry_run_done(),
        policy: Policy::default(),
        action: Action::Allow,
        rules: &[],
        rewrites: None,
    }
}

impl Case {
    fn expect(mut self, action: Action, rules: &'static [&'static str]) -> Self {
        self.action = action;
        self.rules = rules;
        self
    }
    fn rewrites(mut self, rewrites: Vec<Rewrite>) -> Self {
        self.rewrites = Some(rewrites);
        self
    }
    fn target(mut self, target: TargetFact) -> Self {
        self.facts.target = target;
        self
    }
    fn effect(mut self, paths: &[&str]) -> Self {
        self.facts.effect_paths = Some(paths.iter().map(|p| p.to_string()).collect());
        self
    }
    fn session(mut self, session: SessionFacts) -> Self {
        self.session = session;
        self
    }
    fn fresh_session(self) -> Self {
        self.session(SessionFacts::default())
    }
    fn policy(mut self, edit: impl FnOnce(&mut Policy)) -> Self {
        edit(&mut self.policy);
        self
    }
    fn mode(self, mode: Mode) -> Self {
        self.policy(|p| p.mode = mode)
    }
    fn rule(self, rule: RuleId, action: RuleAction) -> Self {
        self.policy(|p| {
            p.rules.insert(rule, action);
        })
    }
    fn impersonating(mut self, pathgate_credentials: bool) -> Self {
        self.ctx.impersonation_headers = true;
        self.ctx.pathgate_credentials = pathgate_credentials;
        self
    }

    fn run(&self) -> Decision {
        decide(
            &self.req.info,
            &self.req.analysis,
            &self.facts,
            &self.policy,
            &self.ctx,
            &self.session,
        )
    }
}

fn deploy_patch() -> Req {
    req(Verb::Patch, "deployments")
        .group("apps")
        .ns("shop")
        .name("web")
}

fn pod_delete() -> Req {
    req(Verb::Delete, "pods")
        .ns("shop")
        .name("web-5d9c7b-x2x9z")
}

fn ns_delete(name: &str) -> Req {
    req(Verb::Delete, "namespaces").name(name)
}

/// `POST pods/<pod>/eviction` without deleteOptions.
fn eviction() -> Req {
    let mut r = req(Verb::Create, "pods")
        .ns("shop")
        .name("web-5d9c7b-x2x9z")
        .sub("eviction");
    r.analysis.delete_options = Some(DeleteOptions::default());
    r
}

/// `POST serviceaccounts/<sa>/token`: a TokenRequest.
fn token_request(namespace: &str) -> Req {
    req(Verb::Create, "serviceaccounts")
        .ns(namespace)
        .name("admin")
        .sub("token")
}

fn rbac(verb: Verb, resource: &str) -> Req {
    req(verb, resource).group("rbac.authorization.k8s.io")
}

fn scoped(p: &mut Policy) {
    p.mutation_namespaces = vec![NamespacePattern::new("agent-*").unwrap()];
}

fn table() -> Vec<Case> {
    let mut rows = base_table();
    rows.extend(protected_object_table());
    rows.extend(session_budget_table());
    rows
}

/// A breach the session memory found (PG019); the store's own tests are in budget.rs.
fn over_budget(budget: Budget, retry_after_seconds: Option<u64>) -> SessionFacts {
    SessionFacts {
        dry_run_succeeded: true,
        budget: Some(BudgetBreach {
            budget,
            limit: 2,
            used: 2,
            retry_after_seconds,
        }),
        ..SessionFacts::default()
    }
}

fn session_budget_table() -> Vec<Case> {
    use Action::*;
    vec![
        // PG019 session-budget
        case(
            "third patch past budgets.mutations",
            deploy_patch().paths(&["/spec/replicas"]),
        )
        .session(over_budget(Budget::Mutations, None))
        .expect(Deny, &["PG019"]),
        case(
            "a read past budgets.read_bytes",
            req(Verb::Get, "configmaps").ns("shop").name("c"),
        )
        .session(over_budget(Budget::ReadBytes, None))
        .expect(Deny, &["PG019"]),
        case(
            "a dry run past the window is refused, not let through",
            deploy_patch().paths(&["/spec/replicas"]).dry_run(),
        )
        .session(over_budget(Budget::RequestsPerWindow, Some(3)))
        .expect(Deny, &["PG019"]),
        case(
            "observe flags a breach",
            deploy_patch().paths(&["/spec/replicas"]),
        )
        .session(over_budget(Budget::Mutations, None))
        .mode(Mode::Observe)
        .expect(Flag, &["PG019"]),
        case(
            "rehearse refuses past the window",
            deploy_patch().paths(&["/spec/replicas"]),
        )
        .session(over_budget(Budget::RequestsPerWindow, Some(3)))
        .mode(Mode::Rehearse)
        .expect(Deny, &["PG019"])
        .rewrites(vec![]),
        case("PG019 off", deploy_patch().paths(&["/spec/replicas"]))
            .session(over_budget(Budget::Mutations, None))
            .rule(RuleId::PG019, RuleAction::Off),
        case("discovery is never over budget", discovery("/apis"))
            .session(over_budget(Budget::RequestsPerWindow, Some(3))),
    ]
}

fn base_table() -> Vec<Case> {
    use Action::{Confirm, Deny, Flag};
    let rs_owner = || pod(Some(("ReplicaSet", "web-5d9c7b")), Some("5d9c7b"));
    vec![
        // PG001 broad-patch
        case(
            "two-path patch",
            deploy_patch().paths(&["/spec/replicas", "/metadata/labels/a"]),
        ),
        case(
            "four-path patch",
            deploy_patch().paths(&["/a", "/b", "/c", "/d"]),
        )
        .expect(Flag, &["PG001"]),
        case(
            "narrow payload, broad effect",
            deploy_patch().paths(&["/spec/template"]),
        )
        .effect(&["/a", "/b", "/c", "/d", "/e"])
        .expect(Flag, &["PG001"]),
        case(
            "rollout undo: broad payload, one-image effect",
            deploy_patch().paths(&["/1", "/2", "/3", "/4", "/5"]),
        )
        .effect(&["/spec/template/spec/containers/0/image"]),
        case(
            "max_patch_keys raised",
            deploy_patch().paths(&["/a", "/b", "/c", "/d"]),
        )
        .policy(|p| p.safety_gates.max_patch_keys = 10),
        case("PG001 off", deploy_patch().paths(&["/a", "/b", "/c", "/d"]))
            .rule(RuleId::PG001, RuleAction::Off),
        case(
            "PG001 deny override",
            deploy_patch().paths(&["/a", "/b", "/c", "/d"]),
        )
        .rule(RuleId::PG001, RuleAction::Deny)
        .expect(Deny, &["PG001"]),
        // PG002 full-replace
        case(
            "replace a deployment",
            req(Verb::Update, "deployments")
                .group("apps")
                .ns("shop")
                .name("web")
                .whole(WholeObject::Replace)
                .paths(&["/a", "/b", "/c", "/d", "/e"]),
        )
        .expect(Deny, &["PG002"]),
        case(
            "replace allowed by gate",
            req(Verb::Update, "deployments")
                .group("apps")
                .ns("shop")
                .name("web")
                .whole(WholeObject::Replace),
        )
        .policy(|p| p.safety_gates.force_full_replace_allowed = true)
        .expect(Flag, &["PG002"]),
        case(
            "replace with measured broad effect",
            req(Verb::Update, "deployments")
                .group("apps")
                .ns("shop")
                .name("web")
                .whole(WholeObject::Replace),
        )
        .effect(&["/a", "/b", "/c", "/d"])
        .expect(Deny, &["PG001", "PG002"]),
        case(
            "PUT of /scale",
            req(Verb::Update, "deployments")
                .group("apps")
                .ns("shop")
                .name("web")
                .sub("scale")
                .paths(&["/spec/replicas"]),
        ),
        // PG003 full-manifest-apply
        case(
            "server-side apply of an existing deployment",
            deploy_patch().whole(WholeObject::ServerSideApply),
        )
        .target(TargetFact::Present(json!({"kind": "Deployment"})))
        .expect(Flag, &["PG003"]),
        case(
            "server-side apply creating a deployment",
            deploy_patch().whole(WholeObject::ServerSideApply),
        )
        .target(TargetFact::Missing),
        case(
            "client-side apply patch",
            deploy_patch().whole(WholeObject::ClientSideApply),
        )
        .expect(Flag, &["PG003"]),
        case(
            "client-side apply create",
            req(Verb::Create, "deployments")
                .group("apps")
                .ns("shop")
                .body("Deployment", "web")
                .whole(WholeObject::ClientSideApply),
        )
        .target(TargetFact::Missing),
        // PG004 direct-pod-delete
        case("delete a ReplicaSet-owned pod", pod_delete())
            .target(rs_owner())
            .expect(Deny, &["PG004"]),
        case("delete a bare pod", pod_delete()).target(pod(None, None)),
        case("delete a pod whose owner is unknown", pod_delete()),
        case("direct deletion allowed", pod_delete())
            .target(rs_owner())
            .policy(|p| p.safety_gates.allow_direct_deletion = true)
            .expect(Flag, &["PG004"]),
        case("PG004 confirm override", pod_delete())
            .target(rs_owner())
            .rule(RuleId::PG004, RuleAction::Confirm)
            .expect(Confirm, &["PG004"]),
        // PG005 zero-grace-delete
        case("force delete a bare pod", pod_delete().grace(0))
            .target(pod(None, None))
            .expect(Action::Rewrite, &["PG005"])
            .rewrites(vec![Rewrite::SetGracePeriod {
                from: Some(0),
                to: 30,
            }]),
        case("grace-period=0 without force", pod_delete().grace(1))
            .expect(Action::Rewrite, &["PG005"])
            .rewrites(vec![Rewrite::SetGracePeriod {
                from: Some(1),
                to: 30,
            }]),
        case("grace at the minimum", pod_delete().grace(30)),
        case("no grace given", pod_delete()),
        case("grace not required", pod_delete().grace(0))
            .policy(|p| p.safety_gates.require_grace_period = false)
            .expect(Flag, &["PG005"])
            .rewrites(vec![]),
        case("minimum of zero", pod_delete().grace(0)).policy(|p| p.min_grace_period_seconds = 0),
        case("minimum of 60", pod_delete().grace(45))
            .policy(|p| p.min_grace_period_seconds = 60)
            .expect(Action::Rewrite, &["PG005"])
            .rewrites(vec![Rewrite::SetGracePeriod {
                from: Some(45),
                to: 60,
            }]),
        case(
            "undecodable DeleteOptions",
            pod_delete().opaque("protobuf DeleteOptions"),
        )
        .expect(Deny, &["PG005", "PG016"]),
        case(
            "force delete of an owned pod: deny beats rewrite",
            pod_delete().grace(0),
        )
        .target(rs_owner())
        .expect(Deny, &["PG004", "PG005"])
        .rewrites(vec![]),
        // PG006 deletecollection
        case(
            "deletecollection",
            req(Verb::DeleteCollection, "pods").ns("shop"),
        )
        .expect(Deny, &["PG006"]),
        case(
            "deletecollection without strict identity",
            req(Verb::DeleteCollection, "pods").ns("shop"),
        )
        .policy(|p| p.schema_enforcement.strict_identity = false)
        .expect(Flag, &["PG006"]),
        // PG007 namespace-delete
        case("delete kube-system", ns_delete("kube-system")).expect(Confirm, &["PG007"]),
        case("delete an unprotected namespace", ns_delete("agent-1")),
        case("protected glob", ns_delete("prod-eu"))
            .policy(|p| p.protected_namespaces = vec![NamespacePattern::new("prod-*").unwrap()])
            .expect(Confirm, &["PG007"]),
        case("confirmed namespace delete", ns_delete("kube-public"))
            .session(SessionFacts {
                dry_run_succeeded: true,
                confirmed: true,
                ..SessionFacts::default()
            })
            .expect(Flag, &["PG007"]),
        case(
            "protected delete without dry run: deny beats confirm",
            ns_delete("default"),
        )
        .fresh_session()
        .expect(Deny, &["PG007", "PG010"]),
        case(
            "dry run of a protected delete",
            ns_delete("default").dry_run(),
        )
        .fresh_session()
        .expect(Flag, &["PG007"]),
        case("PG007 deny override", ns_delete("default"))
            .rule(RuleId::PG007, RuleAction::Deny)
            .expect(Deny, &["PG007"]),
        // PG008 cluster-scoped-mutation
        case(
            "cordon a node",
            req(Verb::Patch, "nodes")
                .name("n1")
                .paths(&["/spec/unschedulable"]),
        )
        .expect(Flag, &["PG008"]),
        case(
            "create a ClusterRoleBinding",
            req(Verb::Create, "clusterrolebindings")
                .group("rbac.authorization.k8s.io")
                .body("ClusterRoleBinding", "admin-for-agent"),
        )
        .expect(Flag, &["PG008"]),
        case(
            "create a RoleBinding",
            req(Verb::Create, "rolebindings")
                .group("rbac.authorization.k8s.io")
                .ns("shop")
                .body("RoleBinding", "read"),
        ),
        case("get a node", req(Verb::Get, "nodes").name("n1")),
        // PG009 redundant-create
        case(
            "create an existing configmap",
            req(Verb::Create, "configmaps")
                .ns("shop")
                .body("ConfigMap", "cfg"),
        )
        .target(TargetFact::Present(json!({"kind": "ConfigMap"})))
        .expect(Flag, &["PG009"]),
        case(
            "create a new configmap",
            req(Verb::Create, "configmaps")
                .ns("shop")
                .body("ConfigMap", "cfg"),
        )
        .target(TargetFact::Missing),
        // PG010 missing-dry-run
        case(
            "patch without a dry run",
            deploy_patch().paths(&["/spec/replicas"]),
        )
        .fresh_session()
        .expect(Deny, &["PG010"]),
        case(
            "the dry run itself",
            deploy_patch().paths(&["/spec/replicas"]).dry_run(),
        )
        .fresh_session(),
        case(
            "dry run not required",
            deploy_patch().paths(&["/spec/replicas"]),
        )
        .fresh_session()
        .policy(|p| p.safety_gates.dry_run_default = false)
        .expect(Flag, &["PG010"]),
        case("PG010 off", deploy_patch().paths(&["/spec/replicas"]))
            .fresh_session()
            .rule(RuleId::PG010, RuleAction::Off),
        case("confirm annotation needs no dry run", ns_patch_confirm()).fresh_session(),
        case(
            "reads need no dry run",
            req(Verb::Get, "pods").ns("shop").name("web"),
        )
        .fresh_session(),
        case(
            "access reviews are questions",
            req(Verb::Create, "selfsubjectaccessreviews").group("authorization.k8s.io"),
        )
        .fresh_session(),
        // PG011 unbounded-list
        case("list without limit", req(Verb::List, "pods").ns("shop")).expect(Flag, &["PG011"]),
        case(
            "list with limit",
            req(Verb::List, "pods").ns("shop").limit(500),
        ),
        case(
            "list with selector",
            req(Verb::List, "pods").ns("shop").selector(),
        ),
        case("list rewritten to a limit", req(Verb::List, "pods"))
            .policy(|p| p.schema_enforcement.discovery_payload_limit = Some(50))
            .expect(Action::Rewrite, &["PG011"])
            .rewrites(vec![Rewrite::AddLimit { limit: 50 }]),
        case("cluster-wide watch", req(Verb::Watch, "pods")).expect(Flag, &["PG011"]),
        case(
            "cluster-wide watch with a limit configured",
            req(Verb::Watch, "pods"),
        )
        .policy(|p| p.schema_enforcement.discovery_payload_limit = Some(50))
        .expect(Flag, &["PG011"])
        .rewrites(vec![]),
        case("namespaced watch", req(Verb::Watch, "pods").ns("shop")),
        case("label filter off", req(Verb::List, "pods"))
            .policy(|p| p.schema_enforcement.label_selector_filter = false),
        case("label filter off, limit on", req(Verb::List, "pods"))
            .policy(|p| {
                p.schema_enforcement.label_selector_filter = false;
                p.schema_enforcement.discovery_payload_limit = Some(50);
            })
            .expect(Action::Rewrite, &["PG011"]),
        case("label filter off, watch", req(Verb::Watch, "pods"))
            .policy(|p| p.schema_enforcement.label_selector_filter = false),
        // PG012 secret-read
        case(
            "get a secret",
            req(Verb::Get, "secrets").ns("shop").name("db"),
        )
        .expect(Flag, &["PG012"]),
        case(
            "list secrets",
            req(Verb::List, "secrets").ns("shop").limit(500),
        )
        .expect(Flag, &["PG012"]),
        case("list all secrets unbounded", req(Verb::List, "secrets"))
            .expect(Flag, &["PG011", "PG012"]),
        case(
            "create a secret",
            req(Verb::Create, "secrets").ns("shop").body("Secret", "db"),
        )
        .target(TargetFact::Missing),
        case("PG012 off", req(Verb::Get, "secrets").ns("shop").name("db"))
            .rule(RuleId::PG012, RuleAction::Off),
        // PG013 exec-attach-portforward
        case(
            "exec",
            req(Verb::Connect, "pods")
                .ns("shop")
                .name("web")
                .sub("exec"),
        )
        .expect(Flag, &["PG013"]),
        case(
            "port-forward",
            req(Verb::Connect, "pods")
                .ns("shop")
                .name("web")
                .sub("portforward"),
        )
        .expect(Flag, &["PG013"]),
        case(
            "logs",
            req(Verb::Get, "pods").ns("shop").name("web").sub("log"),
        ),
        // PG014 out-of-scope-mutation
        case(
            "patch in scope",
            deploy_patch().ns("agent-1").paths(&["/spec/replicas"]),
        )
        .policy(scoped),
        case(
            "patch out of scope",
            deploy_patch().paths(&["/spec/replicas"]),
        )
        .policy(scoped)
        .expect(Deny, &["PG014"]),
        case(
            "create an in-scope namespace",
            req(Verb::Create, "namespaces").body("Namespace", "agent-2"),
        )
        .target(TargetFact::Missing)
        .policy(scoped),
        case(
            "create an out-of-scope namespace",
            req(Verb::Create, "namespaces").body("Namespace", "prod"),
        )
        .target(TargetFact::Missing)
        .policy(scoped)
        .expect(Deny, &["PG014"]),
        case(
            "cluster-scoped write under a scope",
            req(Verb::Create, "clusterroles")
                .group("rbac.authorization.k8s.io")
                .body("ClusterRole", "x"),
        )
        .policy(scoped)
        .expect(Deny, &["PG008", "PG014"]),
        case(
            "exec out of scope",
            req(Verb::Connect, "pods")
                .ns("prod")
                .name("web")
                .sub("exec"),
        )
        .policy(scoped)
        .expect(Deny, &["PG013", "PG014"]),
        case(
            "reads are never out of scope",
            req(Verb::Get, "pods").ns("prod").name("web"),
        )
        .policy(scoped),
        // PG015 retry-loop
        case(
            "third failure repeated",
            req(Verb::Get, "pods").ns("shop").name("web"),
        )
        .session(SessionFacts {
            recent_failures: 3,
            ..SessionFacts::default()
        })
        .expect(Flag, &["PG015"]),
        case(
            "two failures",
            req(Verb::Get, "pods").ns("shop").name("web"),
        )
        .session(SessionFacts {
            recent_failures: 2,
            ..SessionFacts::default()
        }),
        case(
            "threshold raised",
            req(Verb::Get, "pods").ns("shop").name("web"),
        )
        .session(SessionFacts {
            recent_failures: 3,
            ..SessionFacts::default()
        })
        .policy(|p| p.retry_loop.threshold = 5),
        case(
            "PG015 deny override",
            deploy_patch().paths(&["/spec/replicas"]),
        )
        .session(SessionFacts {
            recent_failures: 4,
            dry_run_succeeded: true,
            confirmed: false,
            budget: None,
        })
        .rule(RuleId::PG015, RuleAction::Deny)
        .expect(Deny, &["PG015"]),
        // PG016 opaque-body
        case(
            "undecodable create",
            req(Verb::Create, "configmaps")
                .ns("shop")
                .opaque("CBOR body"),
        )
        .expect(Flag, &["PG016"]),
        // PG017 impersonation
        case(
            "impersonation through pathgate",
            req(Verb::Get, "pods").ns("shop").name("web"),
        )
        .impersonating(true)
        .expect(Deny, &["PG017"]),
        case(
            "impersonation in passthrough",
            req(Verb::Get, "pods").ns("shop").name("web"),
        )
        .impersonating(false),
        case(
            "impersonated dry run stays denied",
            deploy_patch().paths(&["/spec/replicas"]).dry_run(),
        )
        .impersonating(true)
        .expect(Deny, &["PG017"]),
        // Discovery never produces findings.
        case("discovery", discovery("/apis"))
            .impersonating(true)
            .fresh_session()
            .session(SessionFacts {
                recent_failures: 9,
                ..SessionFacts::default()
            }),
        case("version", discovery("/version")),
        // Client dry runs are never blocked (except PG017).
        case(
            "dry run of a whole replace",
            req(Verb::Update, "deployments")
                .group("apps")
                .ns("shop")
                .name("web")
                .whole(WholeObject::Replace)
                .dry_run(),
        )
        .expect(Flag, &["PG002"]),
        case(
            "dry run of a force delete keeps the rewrite",
            pod_delete().grace(0).dry_run(),
        )
        .expect(Action::Rewrite, &["PG005"]),
        // observe
        case(
            "observe a replace",
            req(Verb::Update, "deployments")
                .group("apps")
                .ns("shop")
                .name("web")
                .whole(WholeObject::Replace),
        )
        .mode(Mode::Observe)
        .expect(Flag, &["PG002"]),
        case("observe a force delete", pod_delete().grace(0))
            .mode(Mode::Observe)
            .expect(Flag, &["PG005"])
            .rewrites(vec![]),
        case(
            "observe a protected namespace delete",
            ns_delete("kube-system"),
        )
        .mode(Mode::Observe)
        .expect(Flag, &["PG007"]),
        case("observe nothing", deploy_patch().paths(&["/spec/replicas"])).mode(Mode::Observe),
        // rehearse
        case(
            "rehearse a patch",
            deploy_patch().paths(&["/spec/replicas"]),
        )
        .fresh_session()
        .mode(Mode::Rehearse)
        .expect(Action::Rewrite, &[])
        .rewrites(vec![Rewrite::AddDryRun]),
        case(
            "rehearse a replace",
            req(Verb::Update, "deployments")
                .group("apps")
                .ns("shop")
                .name("web")
                .whole(WholeObject::Replace),
        )
        .mode(Mode::Rehearse)
        .expect(Deny, &["PG002"])
        .rewrites(vec![]),
        case("rehearse a force delete", pod_delete().grace(0))
            .mode(Mode::Rehearse)
            .expect(Action::Rewrite, &["PG005"])
            .rewrites(vec![
                Rewrite::SetGracePeriod {
                    from: Some(0),
                    to: 30,
                },
                Rewrite::AddDryRun,
            ]),
        case(
            "rehearse a protected namespace delete",
            ns_delete("kube-system"),
        )
        .mode(Mode::Rehearse)
        .expect(Action::Rewrite, &["PG007"])
        .rewrites(vec![Rewrite::AddDryRun]),
        case(
            "rehearse a secret read",
            req(Verb::Get, "secrets").ns("shop").name("db"),
        )
        .mode(Mode::Rehearse)
        .expect(Flag, &["PG012"])
        .rewrites(vec![]),
        case(
            "rehearse a client dry run",
            deploy_patch().paths(&["/spec/replicas"]).dry_run(),
        )
        .mode(Mode::Rehearse)
        .rewrites(vec![]),
    ]
}

fn object(group: &str, resource: &str, namespace: &str, name: &str) -> ObjectPattern {
    ObjectPattern {
        group: Glob::new(group),
        resource: Glob::new(resource),
        namespace: Glob::new(namespace),
        name: Glob::new(name),
    }
}

/// PG018's protected objects: ConfigMaps `app-*` and Deployment `db` in shop, the pods of
/// one ReplicaSet, the ClusterRole `admin` (a cluster-scoped pattern).
fn protect(p: &mut Policy) {
    p.protected_objects = vec![
        object("", "configmaps", "shop", "app-*"),
        object("apps", "deployments", "shop", "db"),
        object("", "pods", "shop", "web-5d9c7b-*"),
        object("rbac.authorization.k8s.io", "*roles", "", "admin"),
    ];
}

fn cm(verb: Verb, namespace: &str, name: &str) -> Req {
    req(verb, "configmaps").ns(namespace).name(name)
}

fn protected_object_table() -> Vec<Case> {
    use Action::{Deny, Flag};
    let patch = |ns, name| cm(Verb::Patch, ns, name).paths(&["/data/k"]);
    let db = || {
        req(Verb::Patch, "deployments")
            .group("apps")
            .ns("shop")
            .name("db")
    };
    vec![
        // PG018 protected-object
        case(
            "patch of a protected ConfigMap (glob)",
            patch("shop", "app-settings"),
        )
        .policy(protect)
        .expect(Deny, &["PG018"]),
        case(
            "delete of a protected ConfigMap",
            cm(Verb::Delete, "shop", "app-x"),
        )
        .policy(protect)
        .expect(Deny, &["PG018"]),
        case(
            "create named by the body",
            req(Verb::Create, "configmaps")
                .ns("shop")
                .body("ConfigMap", "app-new"),
        )
        .policy(protect)
        .expect(Deny, &["PG018"]),
        case("eviction of a protected pod", eviction())
            .policy(protect)
            .expect(Deny, &["PG018"]),
        case(
            "scale subresource of a protected Deployment",
            db().sub("scale").paths(&["/spec/replicas"]),
        )
        .policy(protect)
        .expect(Deny, &["PG018"]),
        case(
            "status subresource of a protected Deployment",
            db().sub("status").paths(&["/status/replicas"]),
        )
        .policy(protect)
        .expect(Deny, &["PG018"]),
        case(
            "deletecollection where a protected object may be",
            req(Verb::DeleteCollection, "configmaps").ns("shop"),
        )
        .policy(protect)
        .expect(Deny, &["PG006", "PG018"]),
        case(
            "a cluster-scoped pattern and a ClusterRole",
            rbac(Verb::Delete, "clusterroles").name("admin"),
        )
        .policy(protect)
        .expect(Deny, &["PG008", "PG018"]),
        case(
            "the body's namespace does not move a create out of protection",
            req(Verb::Create, "configmaps")
                .ns("shop")
                .body("ConfigMap", "app-new")
                .body_namespace("prod"),
        )
        .policy(protect)
        .expect(Deny, &["PG018"]),
        case("observe records it", patch("shop", "app-settings"))
            .policy(protect)
            .mode(Mode::Observe)
            .expect(Flag, &["PG018"]),
        case("rehearse still denies it", patch("shop", "app-settings"))
            .policy(protect)
            .mode(Mode::Rehearse)
            .expect(Deny, &["PG018"])
            .rewrites(vec![]),
        case(
            "an honoured dry run is let through",
            patch("shop", "app-settings").dry_run(),
        )
        .policy(protect)
        .expect(Flag, &["PG018"]),
        case(
            "a dry run on a TokenRequest is no dry run",
            token_request("shop").dry_run(),
        )
        .policy(|p| p.protected_objects = vec![object("", "serviceaccounts", "shop", "*")])
        .expect(Deny, &["PG010", "PG018"]),
        case(
            "near miss: another namespace",
            patch("prod", "app-settings"),
        )
        .policy(protect),
        case("near miss: another name", patch("shop", "settings")).policy(protect),
        case("near miss: a read", cm(Verb::Get, "shop", "app-settings")).policy(protect),
        case(
            "near miss: a list",
            req(Verb::List, "configmaps").ns("shop").limit(10),
        )
        .policy(protect),
        case(
            "near miss: a create in another namespace, whatever the body says",
            req(Verb::Create, "configmaps")
                .ns("prod")
                .body("ConfigMap", "app-new")
                .body_namespace("shop"),
        )
        .policy(protect),
        case(
            "near miss: the cluster-scoped pattern and a namespaced Role",
            rbac(Verb::Delete, "roles").ns("shop").name("admin"),
        )
        .policy(protect),
        case(
            "near miss: deletecollection in another namespace",
            req(Verb::DeleteCollection, "configmaps").ns("prod"),
        )
        .policy(protect)
        .expect(Deny, &["PG006"]),
        case(
            "deleting the namespace of protected objects",
            ns_delete("shop"),
        )
        .policy(protect)
        .expect(Deny, &["PG018"]),
        case(
            "a protected Namespace object",
            req(Verb::Patch, "namespaces")
                .name("prod")
                .paths(&["/metadata/labels/a"]),
        )
        .policy(|p| p.protected_objects = vec![object("", "namespaces", "*", "prod")])
        .expect(Deny, &["PG018"]),
        case("near miss: deleting another namespace", ns_delete("prod")).policy(protect),
        case(
            "near miss: a pattern open on the namespace names no namespace to keep",
            ns_delete("prod"),
        )
        .policy(|p| p.protected_objects = vec![object("", "configmaps", "*", "app-config")]),
        case("deleting a namespace a glob names", ns_delete("team-a"))
            .policy(|p| p.protected_objects = vec![object("", "*", "team-*", "*")])
            .expect(Deny, &["PG018"]),
        case(
            "near miss: a cluster-scoped pattern does not protect a namespace's contents",
            ns_delete("admin"),
        )
        .policy(protect),
        case("near miss: rule off", patch("shop", "app-settings"))
            .policy(protect)
            .rule(RuleId::PG018, RuleAction::Off),
        case(
            "near miss: nothing protected",
            patch("shop", "app-settings"),
        ),
    ]
}

#[test]
fn protected_object_message_names_the_rule_the_pattern_and_the_way_on() {
    let decision = case(
        "patch",
        cm(Verb::Patch, "shop", "app-settings").paths(&["/data/k"]),
    )
    .policy(protect)
    .run();
    let message = decision.status_message().expect("denied");
    for part in [
        "PG018 protected-object:",
        "patch of configmaps/app-settings in namespace shop",
        "protected_objects[0] {group: \"\", resource: configmaps, namespace: shop, name: app-*}",
        "ask an operator",
        "--dry-run=server",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    let collection = case("dc", req(Verb::DeleteCollection, "configmaps").ns("shop"))
        .policy(protect)
        .run();
    let text = &collection.findings[1].message;
    assert!(text.contains("could delete objects matching"), "{text}");
    assert!(text.contains("by name"), "{text}");
}

/// A mutation of a protected object needs no target fetch when PG018 denies (nothing to
/// confirm); configured `confirm`, the target is fetched for the annotation channel, and
/// setting that annotation is not itself a PG018 finding.
#[test]
fn protected_object_confirm_uses_the_annotation_channel() {
    let patch = cm(Verb::Patch, "shop", "app-settings").paths(&["/data/k"]);
    let mut policy = Policy::default();
    protect(&mut policy);
    assert!(!needs_target(&patch.info, &patch.analysis, &policy));
    policy.rules.insert(RuleId::PG018, RuleAction::Confirm);
    assert!(needs_target(&patch.info, &patch.analysis, &policy));
    let annotate = cm(Verb::Patch, "shop", "app-settings")
        .paths(&["/metadata/annotations/pathgate.dev~1confirm"]);
    let decision = case("annotate", annotate)
        .policy(|p| {
            protect(p);
            p.rules.insert(RuleId::PG018, RuleAction::Confirm);
        })
        .run();
    assert_eq!(decision.action, Action::Allow, "{:?}", decision.findings);
}

/// The bypasses of issue 17 and their variants: false dry runs, client-chosen scope,
/// evictions.
fn evasion_table() -> Vec<Case> {
    use Action::{Deny, Flag, Rewrite as Rw};
    let rs_owner = || pod(Some(("ReplicaSet", "web-5d9c7b")), Some("5d9c7b"));
    let grace = |from| {
        vec![Rewrite::SetGracePeriod {
            from: Some(from),
            to: 30,
        }]
    };
    vec![
        // False dry runs: only endpoints that honour dryRun make a request harmless.
        case(
            "TokenRequest dry run out of scope",
            token_request("kube-system").dry_run(),
        )
        .policy(scoped)
        .fresh_session()
        .expect(Deny, &["PG010", "PG014"]),
        case(
            "TokenRequest dry run in scope",
            token_request("agent-1").dry_run(),
        )
        .policy(scoped)
        .fresh_session()
        .expect(Deny, &["PG010"]),
        case(
            "a remembered dry run of TokenRequest does not count",
            token_request("agent-1"),
        )
        .policy(scoped)
        .expect(Deny, &["PG010"]),
        case(
            "TokenRequest with PG010 flagging",
            token_request("agent-1").dry_run(),
        )
        .rule(RuleId::PG010, RuleAction::Flag)
        .expect(Flag, &["PG010"]),
        case("TokenRequest in rehearse mode", token_request("agent-1"))
            .mode(Mode::Rehearse)
            .expect(Deny, &[])
            .rewrites(vec![]),
        case(
            "dry run of an unknown built-in subresource",
            deploy_patch().ns("prod").sub("rollback").dry_run(),
        )
        .policy(scoped)
        .expect(Deny, &["PG010", "PG014"]),
        case(
            "dry run of an unknown custom-resource subresource",
            req(Verb::Create, "widgets")
                .group("example.com")
                .ns("prod")
                .name("w")
                .sub("approve")
                .dry_run(),
        )
        .policy(scoped)
        .expect(Deny, &["PG010", "PG014"]),
        case(
            "dry run of a custom resource's status is honoured",
            req(Verb::Patch, "widgets")
                .group("example.com")
                .ns("prod")
                .name("w")
                .sub("status")
                .paths(&["/status/ready"])
                .dry_run(),
        )
        .policy(scoped)
        .fresh_session()
        .expect(Flag, &["PG014"]),
        case(
            "dry run of a scale subresource is honoured",
            deploy_patch()
                .ns("prod")
                .sub("scale")
                .paths(&["/spec/replicas"])
                .dry_run(),
        )
        .policy(scoped)
        .fresh_session()
        .expect(Flag, &["PG014"]),
        // Scope from the resource, never from the body's namespace.
        case(
            "ClusterRoleBinding create with an in-scope body namespace",
            rbac(Verb::Create, "clusterrolebindings")
                .body("ClusterRoleBinding", "agent-admin")
                .body_namespace("agent-1"),
        )
        .policy(scoped)
        .expect(Deny, &["PG008", "PG014"]),
        case(
            "ClusterRoleBinding merge patch with an in-scope body namespace",
            rbac(Verb::Patch, "clusterrolebindings")
                .name("agent-admin")
                .paths(&["/roleRef/name"])
                .body_namespace("agent-1"),
        )
        .policy(scoped)
        .expect(Deny, &["PG008", "PG014"]),
        case(
            "ClusterRole under a namespaced path",
            rbac(Verb::Create, "clusterroles")
                .ns("agent-1")
                .body("ClusterRole", "x"),
        )
        .policy(scoped)
        .expect(Deny, &["PG008", "PG014"]),
        case(
            "StorageClass apply with an in-scope body namespace",
            req(Verb::Patch, "storageclasses")
                .group("storage.k8s.io")
                .name("fast")
                .paths(&["/provisioner"])
                .body_namespace("agent-1"),
        )
        .policy(scoped)
        .expect(Deny, &["PG008", "PG014"]),
        case(
            "PersistentVolume create with an in-scope body namespace",
            req(Verb::Create, "persistentvolumes")
                .body("PersistentVolume", "pv-1")
                .body_namespace("agent-1"),
        )
        .policy(scoped)
        .expect(Deny, &["PG008", "PG014"]),
        case(
            "PriorityClass create with an in-scope body namespace",
            req(Verb::Create, "priorityclasses")
                .group("scheduling.k8s.io")
                .body("PriorityClass", "top")
                .body_namespace("agent-1"),
        )
        .policy(scoped)
        .expect(Deny, &["PG008", "PG014"]),
        case(
            "PriorityClass create without a scope is only flagged",
            req(Verb::Create, "priorityclasses")
                .group("scheduling.k8s.io")
                .body("PriorityClass", "top"),
        )
        .expect(Flag, &["PG008"]),
        case(
            "custom resource without a path namespace, body namespace in scope",
            req(Verb::Create, "widgets")
                .group("example.com")
                .body("Widget", "w")
                .body_namespace("agent-1"),
        )
        .policy(scoped)
        .expect(Deny, &["PG008", "PG014"]),
        case(
            "custom resource in an in-scope namespace",
            req(Verb::Create, "widgets")
                .group("example.com")
                .ns("agent-1")
                .body("Widget", "w"),
        )
        .policy(scoped),
        case(
            "ConfigMap create without a path namespace, body namespace in scope",
            req(Verb::Create, "configmaps")
                .body("ConfigMap", "c")
                .body_namespace("agent-1"),
        )
        .policy(scoped)
        .expect(Deny, &["PG014"]),
        // Evictions are pod deletes.
        case("evict a ReplicaSet-owned pod", eviction())
            .target(rs_owner())
            .expect(Deny, &["PG004"]),
        case("evict an unowned pod", eviction()).target(pod(None, None)),
        case("evict with zero grace", eviction().grace(0))
            .target(pod(None, None))
            .expect(Rw, &["PG005"])
            .rewrites(grace(0)),
        case("evict an owned pod with zero grace", eviction().grace(0))
            .target(rs_owner())
            .expect(Deny, &["PG004", "PG005"]),
        case("evict out of scope", eviction())
            .policy(scoped)
            .expect(Deny, &["PG014"]),
        case("evict without a dry run", eviction())
            .fresh_session()
            .expect(Deny, &["PG010"]),
        case("dry-run eviction of an owned pod", eviction().dry_run())
            .target(rs_owner())
            .fresh_session()
            .expect(Flag, &["PG004"]),
        case(
            "eviction whose body cannot be read",
            eviction().opaque("eviction body does not decode: x"),
        )
        .expect(Deny, &["PG005", "PG016"]),
    ]
}

#[test]
fn evasion_table_decides_as_the_apiserver_acts() {
    let rows: Vec<Case> = evasion_table();
    let mut failures = Vec::new();
    for case in &rows {
        let decision = case.run();
        let rules = decision.rule_ids();
        if decision.action != case.action || rules != case.rules {
            failures.push(format!(
                "{}: {:?} {rules:?}, want {:?} {:?}",
                case.name, decision.action, case.action, case.rules
            ));
        }
        if let Some(want) = &case.rewrites {
            if &decision.rewrites != want {
                failures.push(format!("{}: rewrites {:?}", case.name, decision.rewrites));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn evasion_messages_say_what_the_apiserver_does() {
    let token = case("token", token_request("agent-1").dry_run())
        .fresh_session()
        .run();
    let message = token.status_message().unwrap();
    assert!(
        message.contains("POST serviceaccounts/<name>/token ignores dryRun")
            && message.contains("asked for a dry run it would not get"),
        "{message}"
    );
    let rehearsed = case("token", token_request("agent-1"))
        .mode(Mode::Rehearse)
        .run();
    assert!(
        rehearsed
            .status_message()
            .unwrap()
            .contains("cannot be rehearsed"),
        "{rehearsed:?}"
    );
    let binding = case(
        "crb",
        rbac(Verb::Create, "clusterrolebindings")
            .body("ClusterRoleBinding", "agent-admin")
            .body_namespace("agent-1"),
    )
    .policy(scoped)
    .run();
    let message = binding.status_message().unwrap();
    assert!(
        message.contains("is cluster-scoped")
            && message.contains("metadata.namespace agent-1 in the body does not place it"),
        "{message}"
    );
    let evict = case("evict", eviction())
        .target(pod(Some(("ReplicaSet", "web-5d9c7b")), Some("5d9c7b")))
        .run();
    assert!(
        evict
            .status_message()
            .unwrap()
            .contains("evicting (deleting) it"),
        "{evict:?}"
    );
}

#[test]
fn an_eviction_fetches_its_pod() {
    let policy = Policy::default();
    let r = eviction();
    assert!(needs_target(&r.info, &r.analysis, &policy));
    assert_eq!(
        target_path(&r.info, &r.analysis).as_deref(),
        Some("/api/v1/namespaces/shop/pods/web-5d9c7b-x2x9z")
    );
}

fn ns_patch_confirm() -> Req {
    req(Verb::Patch, "namespaces")
        .name("default")
        .paths(&["/metadata/annotations/pathgate.dev~1confirm"])
}

#[test]
fn decision_table() {
    let mut failures = Vec::new();
    for case in table() {
        let decision = case.run();
        let rules = decision.rule_ids();
        let mut problems = Vec::new();
        if decision.action != case.action {
            problems.push(format!(
                "action {:?}, want {:?}",
                decision.action, case.action
            ));
        }
        if rules != case.rules {
            problems.push(format!("rules {rules:?}, want {:?}", case.rules));
        }
        if let Some(want) = &case.rewrites {
            if &decision.rewrites != want {
                problems.push(format!("rewrites {:?}, want {want:?}", decision.rewrites));
            }
        }
        for finding in &decision.findings {
            let prefix = format!("{} {}:", finding.rule, finding.rule.name());
            if !finding.message.starts_with(&prefix) || !finding.message.is_ascii() {
                problems.push(format!(
                    "message does not start with {prefix:?}: {}",
                    finding.message
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_rule_fires_in_the_table() {
    let fired: std::collections::BTreeSet<&str> = table()
        .iter()
        .flat_map(|c| c.rules.iter().copied())
        .collect();
    for rule in RuleId::ALL {
        assert!(
            fired.contains(rule.as_str()),
            "{rule} has no table row that fires it"
        );
    }
}

#[test]
fn observe_records_what_enforce_would_do() {
    let replace = case(
        "observe",
        req(Verb::Update, "deployments")
            .group("apps")
            .ns("shop")
            .name("web")
            .whole(WholeObject::Replace),
    )
    .mode(Mode::Observe)
    .run();
    assert_eq!(replace.action, Action::Flag);
    assert_eq!(replace.enforce_action, Action::Deny);
    assert!(replace.findings[0]
        .message
        .contains("observe mode: enforce would deny"));
    assert!(replace.notices[0].contains("enforce would deny"));
    assert_eq!(replace.status_message(), None);

    let namespace = case("observe ns", ns_delete("kube-system"))
        .mode(Mode::Observe)
        .run();
    assert_eq!(namespace.enforce_action, Action::Confirm);
    assert_eq!(namespace.confirm, None);
}

#[test]
fn rehearse_says_nothing_changed() {
    let decision = case("rehearse", deploy_patch().paths(&["/spec/replicas"]))
        .mode(Mode::Rehearse)
        .run();
    let warnings = decision.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("dryRun=All"), "{warnings:?}");
    assert!(
        warnings[0].contains("nothing in the cluster changed"),
        "{warnings:?}"
    );
    assert!(!warnings[0].contains("--wait=false"), "{warnings:?}");

    // kubectl delete would wait for a deletion that a rehearsal never makes.
    let delete = case("rehearse a delete", pod_delete())
        .mode(Mode::Rehearse)
        .run();
    let warnings = delete.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("pass --wait=false"), "{warnings:?}");
}

#[test]
fn pod_delete_message_names_the_owner_and_the_restart() {
    let decision = case("pg004", pod_delete())
        .target(pod(Some(("ReplicaSet", "web-5d9c7b")), Some("5d9c7b")))
        .run();
    let message = decision.status_message().unwrap();
    assert!(
        message.starts_with("pathgate denied this request: PG004 direct-pod-delete:"),
        "{message}"
    );
    assert!(
        message.contains("delete or scale its owner ReplicaSet/web-5d9c7b"),
        "{message}"
    );
    assert!(
        message.contains("kubectl rollout restart deployment/web -n shop"),
        "{message}"
    );

    let statefulset = case("pg004 sts", pod_delete())
        .target(pod(Some(("StatefulSet", "db")), None))
        .run();
    assert!(statefulset.findings[0]
        .message
        .contains("kubectl rollout restart statefulset/db -n shop"));
}

#[test]
fn missing_dry_run_message_says_how() {
    let decision = case("pg010", deploy_patch().paths(&["/spec/replicas"]))
        .fresh_session()
        .run();
    let message = decision.status_message().unwrap();
    assert!(message.contains("PG010 missing-dry-run"), "{message}");
    assert!(message.contains("--dry-run=server"), "{message}");
}

#[test]
fn confirm_message_carries_the_token_and_both_channels() {
    let mut decision = case("pg007", ns_delete("kube-system")).run();
    assert_eq!(
        decision
            .confirm
            .as_ref()
            .and_then(|c| c.annotate_target.as_deref()),
        Some("namespace kube-system")
    );
    decision.attach_confirm_token("0123abcd".to_string());
    let message = decision.status_message().unwrap();
    assert!(
        message.starts_with("pathgate needs confirmation for this request: PG007 namespace-delete"),
        "{message}"
    );
    assert!(
        message.contains(
            "kubectl annotate namespace kube-system pathgate.dev/confirm=0123abcd --overwrite"
        ),
        "{message}"
    );
    assert!(
        message.contains("X-Pathgate-Confirm: 0123abcd"),
        "{message}"
    );
    assert!(message.contains("300 seconds"), "{message}");

    let pod = case("pg004 confirm", pod_delete())
        .target(pod(Some(("ReplicaSet", "web-5d9c7b")), None))
        .rule(RuleId::PG004, RuleAction::Confirm)
        .run();
    assert_eq!(
        pod.confirm.and_then(|c| c.annotate_target),
        Some("pods web-5d9c7b-x2x9z -n shop".to_string())
    );
}

#[test]
fn warnings_are_escaped_ascii_and_bounded() {
    let decision = Decision {
        findings: vec![
            Finding {
                rule: RuleId::PG001,
                action: Action::Flag,
                message: "PG001 broad-patch: say \"hi\" \\ caf\u{e9}\nnext".to_string(),
            },
            Finding {
                rule: RuleId::PG002,
                action: Action::Flag,
                message: "x".repeat(5000),
            },
        ],
        ..Decision::allow(Mode::Enforce)
    };
    let warnings = decision.warnings();
    assert_eq!(
        warnings[0],
        r#"299 pathgate "pathgate PG001 broad-patch: say \"hi\" \\ caf??next""#
    );
    assert!(
        warnings[1].len() <= MAX_WARNING_BYTES + 32,
        "{}",
        warnings[1].len()
    );
    assert!(warnings[1].ends_with("...\""));
    assert!(warnings.iter().all(|w| w.is_ascii()));
    assert!(warnings
        .iter()
        .all(|w| http::HeaderValue::from_str(w).is_ok()));
}

#[test]
fn allowed_requests_have_no_warnings_or_status() {
    let decision = case("allow", deploy_patch().paths(&["/spec/replicas"])).run();
    assert_eq!(decision.action, Action::Allow);
    assert!(decision.warnings().is_empty());
    assert_eq!(decision.status_message(), None);
}

#[test]
fn gate_defaults_and_overrides() {
    let mut policy = Policy::default();
    assert_eq!(policy.rule_action(RuleId::PG010), RuleAction::Deny);
    assert_eq!(policy.rule_action(RuleId::PG011), RuleAction::Flag);
    policy.safety_gates.dry_run_default = false;
    assert_eq!(policy.rule_action(RuleId::PG010), RuleAction::Flag);
    policy.rules.insert(RuleId::PG010, RuleAction::Deny);
    assert_eq!(policy.rule_action(RuleId::PG010), RuleAction::Deny);
    // A rewrite that cannot be carried out acts as a flag.
    policy.rules.insert(RuleId::PG011, RuleAction::Rewrite);
    policy.rules.insert(RuleId::PG004, RuleAction::Rewrite);
    assert_eq!(policy.rule_action(RuleId::PG011), RuleAction::Flag);
    assert_eq!(policy.rule_action(RuleId::PG004), RuleAction::Flag);
    policy.schema_enforcement.discovery_payload_limit = Some(10);
    assert_eq!(policy.rule_action(RuleId::PG011), RuleAction::Rewrite);
}

#[test]
fn namespace_globs() {
    let agent = NamespacePattern::new("agent-*").unwrap();
    assert!(agent.matches("agent-1"));
    assert!(agent.matches("agent-"));
    assert!(!agent.matches("agent"));
    assert!(!agent.matches("my-agent-1"));
    let middle = NamespacePattern::new("team-*-dev").unwrap();
    assert!(middle.matches("team-a-dev"));
    assert!(middle.matches("team-a-b-dev"));
    assert!(!middle.matches("team-a-dev-x"));
    assert!(NamespacePattern::new("*").unwrap().matches("anything"));
    assert!(NamespacePattern::new("kube-system")
        .unwrap()
        .matches("kube-system"));
    assert!(!NamespacePattern::new("kube-system")
        .unwrap()
        .matches("kube-systems"));
    for bad in ["", "Agent", "a/b", "a_b", &"a".repeat(64)] {
        assert!(NamespacePattern::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn needs_target_only_when_a_rule_looks_at_it() {
    let policy = Policy::default();
    let check = |r: &Req, p: &Policy| needs_target(&r.info, &r.analysis, p);
    assert!(check(&pod_delete(), &policy));
    assert!(
        check(&ns_delete("kube-system"), &policy),
        "confirm may come by annotation"
    );
    assert!(!check(&ns_delete("agent-1"), &policy));
    assert!(!check(
        &req(Verb::Delete, "deployments")
            .group("apps")
            .ns("shop")
            .name("web"),
        &policy
    ));
    assert!(check(
        &req(Verb::Create, "configmaps")
            .ns("shop")
            .body("ConfigMap", "cfg"),
        &policy
    ));
    assert!(
        !check(&req(Verb::Create, "configmaps").ns("shop"), &policy),
        "no name to fetch"
    );
    assert!(check(
        &deploy_patch().whole(WholeObject::ServerSideApply),
        &policy
    ));
    assert!(!check(&deploy_patch().paths(&["/spec/replicas"]), &policy));
    assert!(!check(
        &req(Verb::Get, "pods").ns("shop").name("web"),
        &policy
    ));
    let mut off = Policy::default();
    off.rules.insert(RuleId::PG004, RuleAction::Off);
    assert!(!check(&pod_delete(), &off));
}

#[test]
fn target_paths() {
    let path = |r: Req| target_path(&r.info, &r.analysis);
    assert_eq!(
        path(pod_delete()),
        Some("/api/v1/namespaces/shop/pods/web-5d9c7b-x2x9z".into())
    );
    assert_eq!(
        path(ns_delete("prod")),
        Some("/api/v1/namespaces/prod".into())
    );
    assert_eq!(
        path(
            req(Verb::Create, "deployments")
                .group("apps")
                .ns("shop")
                .body("Deployment", "web")
        ),
        Some("/apis/apps/v1/namespaces/shop/deployments/web".into())
    );
    assert_eq!(
        path(deploy_patch().sub("scale")),
        Some("/apis/apps/v1/namespaces/shop/deployments/web".into())
    );
    assert_eq!(
        path(req(Verb::Patch, "nodes").name("n1")),
        Some("/api/v1/nodes/n1".into())
    );
    assert_eq!(path(req(Verb::DeleteCollection, "pods").ns("shop")), None);
}

#[test]
fn response_findings() {
    let policy = Policy::default();
    let create = req(Verb::Create, "configmaps")
        .ns("shop")
        .body("ConfigMap", "cfg");
    let allow = Decision::allow(Mode::Enforce);
    let found = findings_from_response(&create.info, &create.analysis, &policy, &allow, 409, 1);
    assert_eq!(
        found.iter().map(|f| f.rule).collect::<Vec<_>>(),
        vec!["PG009"]
    );
    assert!(found[0].message.contains("409 AlreadyExists"));

    // Already reported before forwarding: not twice.
    let pre = case("pre", create.clone())
        .target(TargetFact::Present(json!({})))
        .run();
    assert!(
        findings_from_response(&create.info, &create.analysis, &policy, &pre, 409, 1).is_empty()
    );

    let get = req(Verb::Get, "pods").ns("shop").name("web");
    let loop_at = |failures| {
        findings_from_response(&get.info, &get.analysis, &policy, &allow, 404, failures)
            .iter()
            .map(|f| f.rule)
            .collect::<Vec<_>>()
    };
    assert_eq!(loop_at(2), Vec::<&str>::new());
    assert_eq!(loop_at(3), vec!["PG015"]);
    assert!(findings_from_response(&get.info, &get.analysis, &policy, &allow, 200, 3).is_empty());

    let mut off = Policy::default();
    off.rules.insert(RuleId::PG009, RuleAction::Off);
    assert!(
        findings_from_response(&create.info, &create.analysis, &off, &allow, 409, 1).is_empty()
    );

    let discovery = discovery("/apis/metrics.k8s.io/v1beta1");
    assert!(findings_from_response(
        &discovery.info,
        &discovery.analysis,
        &policy,
        &allow,
        404,
        9
    )
    .is_empty());
}

// ---- session memory ----

const WINDOW: Duration = Duration::from_secs(300);

fn fp(byte: u8) -> Fingerprint {
    Fingerprint::from_bytes([byte; 32])
}

#[test]
fn dry_run_then_the_same_request_passes_pg010() {
    let store = SessionStore::default();
    let policy = Policy::default();
    let now = Instant::now();
    let body = br#"{"spec":{"replicas":3}}"#;
    let real = deploy_patch().paths(&["/spec/replicas"]);
    let dry = real.clone().dry_run();
    let context = |r: &Req, query: Option<&str>| RequestContext {
        fingerprint: Fingerprint::of(&r.info, &r.analysis, query, &http::HeaderMap::new(), body),
        ..ctx()
    };
    let real_ctx = context(&real, None);
    let dry_ctx = context(&dry, Some("dryRun=All"));

    let first = store.decide(
        &policy,
        &real.info,
        &real.analysis,
        &Facts::default(),
        &real_ctx,
        now,
    );
    assert_eq!(
        (first.action, first.rule_ids()),
        (Action::Deny, vec!["PG010"])
    );
    store.record_outcome("s1", &real_ctx.fingerprint, 403, false, WINDOW, now);

    let rehearsal = store.decide(
        &policy,
        &dry.info,
        &dry.analysis,
        &Facts::default(),
        &dry_ctx,
        now,
    );
    assert_eq!(rehearsal.action, Action::Allow);
    store.record_outcome("s1", &dry_ctx.fingerprint, 200, true, WINDOW, now);

    let second = store.decide(
        &policy,
        &real.info,
        &real.analysis,
        &Facts::default(),
        &real_ctx,
        now,
    );
    assert_eq!(second.action, Action::Allow, "{second:?}");

    // Another session has not rehearsed it.
    let other = RequestContext {
        session: "s2".into(),
        ..real_ctx.clone()
    };
    let third = store.decide(
        &policy,
        &real.info,
        &real.analysis,
        &Facts::default(),
        &other,
        now,
    );
    assert_eq!(third.action, Action::Deny);

    // A different request (another value) is not covered by that dry run.
    let other_body = RequestContext {
        fingerprint: Fingerprint::of(
            &real.info,
            &real.analysis,
            None,
            &http::HeaderMap::new(),
            br#"{"spec":{"replicas":4}}"#,
        ),
        ..real_ctx
    };
    let fourth = store.decide(
        &policy,
        &real.info,
        &real.analysis,
        &Facts::default(),
        &other_body,
        now,
    );
    assert_eq!(fourth.action, Action::Deny);
}

#[test]
fn failed_dry_runs_do_not_count() {
    let store = SessionStore::default();
    let now = Instant::now();
    store.record_outcome("s1", &fp(1), 422, true, WINDOW, now);
    assert!(
        !store
            .session_facts("s1", &fp(1), WINDOW, now)
            .dry_run_succeeded
    );
    store.record_outcome("s1", &fp(1), 201, true, WINDOW, now);
    assert!(
        store
            .session_facts("s1", &fp(1), WINDOW, now)
            .dry_run_succeeded
    );
    // A real (non dry-run) success is not a dry run.
    store.record_outcome("s1", &fp(2), 200, false, WINDOW, now);
    assert!(
        !store
            .session_facts("s1", &fp(2), WINDOW, now)
            .dry_run_succeeded
    );
}

#[test]
fn failures_count_within_the_window_and_reset_on_success() {
    let store = SessionStore::default();
    let t0 = Instant::now();
    assert_eq!(
        store.record_outcome("s1", &fp(1), 500, false, WINDOW, t0),
        1
    );
    assert_eq!(
        store.record_outcome("s1", &fp(1), 429, false, WINDOW, t0),
        0,
        "429 is not a failure"
    );
    assert_eq!(
        store.record_outcome(
            "s1",
            &fp(1),
            404,
            false,
            WINDOW,
            t0 + Duration::from_secs(10)
        ),
        2
    );
    assert_eq!(
        store.record_outcome(
            "s1",
            &fp(1),
            409,
            false,
            WINDOW,
            t0 + Duration::from_secs(20)
        ),
        3
    );
    assert_eq!(
        store
            .session_facts("s1", &fp(1), WINDOW, t0 + Duration::from_secs(20))
            .recent_failures,
        3
    );
    // The first failure leaves the window.
    assert_eq!(
        store
            .session_facts("s1", &fp(1), WINDOW, t0 + Duration::from_secs(305))
            .recent_failures,
        2
    );
    assert_eq!(
        store.record_outcome(
            "s1",
            &fp(1),
            200,
            false,
            WINDOW,
            t0 + Duration::from_secs(306)
        ),
        0
    );
    assert_eq!(
        store
            .session_facts("s1", &fp(1), WINDOW, t0 + Duration::from_secs(306))
            .recent_failures,
        0
    );
}

#[test]
fn retry_loop_through_the_store() {
    let store = SessionStore::default();
    let policy = Policy::default();
    let get = req(Verb::Get, "pods").ns("shop").name("gone");
    let c = ctx();
    let now = Instant::now();
    let mut post_hoc = Vec::new();
    for _ in 0..3 {
        let decision = store.decide(
            &policy,
            &get.info,
            &get.analysis,
            &Facts::default(),
            &c,
            now,
        );
        assert_eq!(decision.action, Action::Allow);
        let failures = store.record_outcome("s1", &c.fingerprint, 404, false, WINDOW, now);
        post_hoc =
            findings_from_response(&get.info, &get.analysis, &policy, &decision, 404, failures);
    }
    assert_eq!(
        post_hoc.iter().map(|f| f.rule).collect::<Vec<_>>(),
        vec!["PG015"]
    );
    let fourth = store.decide(
        &policy,
        &get.info,
        &get.analysis,
        &Facts::default(),
        &c,
        now,
    );
    assert_eq!(
        (fourth.action, fourth.rule_ids()),
        (Action::Flag, vec!["PG015"])
    );
}

#[test]
fn confirm_by_header_passes_once() {
    let store = SessionStore::default();
    let policy = Policy::default();
    let delete = ns_delete("kube-system");
    let now = Instant::now();
    store.record_outcome("s1", &ctx().fingerprint, 200, true, WINDOW, now);

    let first = store.decide(
        &policy,
        &delete.info,
        &delete.analysis,
        &Facts::default(),
        &ctx(),
        now,
    );
    assert_eq!(first.action, Action::Confirm);
    let token = first
        .confirm
        .as_ref()
        .and_then(|c| c.token.clone())
        .expect("token issued");
    assert_eq!(token.len(), 32);
    assert!(first.status_message().unwrap().contains(&token));

    let with_token = RequestContext {
        confirm_token: Some(token.clone()),
        ..ctx()
    };
    let confirmed = store.decide(
        &policy,
        &delete.info,
        &delete.analysis,
        &Facts::default(),
        &with_token,
        now,
    );
    assert_eq!(confirmed.action, Action::Flag, "{confirmed:?}");
    assert!(confirmed.confirmed);
    assert_eq!(confirmed.rule_ids(), vec!["PG007"]);

    let replay = store.decide(
        &policy,
        &delete.info,
        &delete.analysis,
        &Facts::default(),
        &with_token,
        now,
    );
    assert_eq!(replay.action, Action::Confirm, "a token works once");
    assert!(replay.notices.iter().any(|n| n.contains("not valid")));
    // The refusal is all the agent sees: the note travels in the Status message.
    let message = replay.status_message().unwrap();
    assert!(
        message.contains("token presented is not valid"),
        "{message}"
    );
    let fresh = replay.confirm.and_then(|c| c.token).unwrap();
    assert!(message.contains(&fresh), "{message}");
    assert_ne!(fresh, token);
}

#[test]
fn confirm_by_annotation_on_the_target() {
    let store = SessionStore::default();
    let policy = Policy::default();
    let delete = ns_delete("kube-public");
    let now = Instant::now();
    store.record_outcome("s1", &ctx().fingerprint, 200, true, WINDOW, now);
    let first = store.decide(
        &policy,
        &delete.info,
        &delete.analysis,
        &Facts::default(),
        &ctx(),
        now,
    );
    let token = first.confirm.and_then(|c| c.token).unwrap();

    let annotated = facts(TargetFact::Present(json!({
        "kind": "Namespace",
        "metadata": {"name": "kube-public", "annotations": {"pathgate.dev/confirm": token}}
    })));
    assert_eq!(annotated.confirm_annotation(), Some(token.as_str()));
    let second = store.decide(
        &policy,
        &delete.info,
        &delete.analysis,
        &annotated,
        &ctx(),
        now,
    );
    assert!(second.confirmed, "{second:?}");
    assert_eq!(second.action, Action::Flag);
}

#[test]
fn tokens_are_bound_to_session_request_and_window() {
    let store = SessionStore::default();
    let t0 = Instant::now();
    let token = store.issue_confirm_token("s1", &fp(1), WINDOW, t0).unwrap();
    assert!(!store.redeem("s2", &fp(1), &token, t0), "other session");
    assert!(!store.redeem("s1", &fp(2), &token, t0), "other request");
    assert!(!store.redeem("s1", &fp(1), "0000", t0), "wrong token");
    assert!(!store.redeem("s1", &fp(1), &token, t0 + WINDOW), "expired");

    let token = store.issue_confirm_token("s1", &fp(1), WINDOW, t0).unwrap();
    let newer = store.issue_confirm_token("s1", &fp(1), WINDOW, t0).unwrap();
    assert!(
        !store.redeem("s1", &fp(1), &token, t0),
        "replaced by a newer token"
    );
    assert!(store.redeem("s1", &fp(1), &newer, t0 + WINDOW - Duration::from_secs(1)));
    assert!(!store.redeem("s1", &fp(1), &newer, t0), "single use");
}

#[test]
fn the_store_is_bounded() {
    let limits = SessionLimits {
        max_sessions: 3,
        max_entries_per_session: 4,
        max_tokens_per_session: 2,
        idle_ttl: Duration::from_secs(600),
    };
    let store = SessionStore::new(limits);
    let t0 = Instant::now();
    for (i, session) in ["a", "b", "c", "d"].iter().enumerate() {
        store.record_outcome(
            session,
            &fp(1),
            200,
            true,
            WINDOW,
            t0 + Duration::from_secs(i as u64),
        );
    }
    let stats = store.stats();
    assert_eq!((stats.sessions, stats.evicted_sessions), (3, 1));
    assert!(
        !store
            .session_facts("a", &fp(1), WINDOW, t0)
            .dry_run_succeeded,
        "LRU session evicted"
    );
    assert!(
        store
            .session_facts("d", &fp(1), WINDOW, t0)
            .dry_run_succeeded
    );

    for byte in 0..10u8 {
        store.record_outcome(
            "d",
            &fp(byte),
            200,
            true,
            WINDOW,
            t0 + Duration::from_secs(10 + byte as u64),
        );
    }
    let remembered = (0..10u8)
        .filter(|b| {
            store
                .session_facts("d", &fp(*b), WINDOW, t0)
                .dry_run_succeeded
        })
        .count();
    assert_eq!(remembered, 4);
    assert!(
        store
            .session_facts("d", &fp(9), WINDOW, t0)
            .dry_run_succeeded,
        "newest kept"
    );

    let first = store.issue_confirm_token("d", &fp(1), WINDOW, t0).unwrap();
    store.issue_confirm_token("d", &fp(2), WINDOW, t0).unwrap();
    store.issue_confirm_token("d", &fp(3), WINDOW, t0).unwrap();
    assert!(
        !store.redeem("d", &fp(1), &first, t0),
        "oldest token evicted"
    );

    // Idle sessions expire.
    let later = t0 + Duration::from_secs(10_000);
    assert!(
        !store
            .session_facts("d", &fp(9), WINDOW, later)
            .dry_run_succeeded
    );
    assert!(store.stats().expired_sessions >= 1);
}

#[test]
fn the_token_is_not_serialised() {
    let mut decision = case("pg007", ns_delete("kube-system")).run();
    decision.attach_confirm_token("secret-token".to_string());
    let json = serde_json::to_string(&decision).unwrap();
    assert!(!json.contains("secret-token"), "{json}");
    assert!(json.contains("\"window_seconds\":300"), "{json}");
    assert!(decision.status_message().unwrap().contains("secret-token"));
}

#[test]
fn a_dry_runs_rehearsal_lasts_until_the_request_is_sent_for_real() {
    let store = SessionStore::new(SessionLimits {
        max_entries_per_session: 2,
        ..SessionLimits::default()
    });
    let now = Instant::now();
    let rehearsal = |path: &str| Rehearsal {
        effect_paths: vec![path.to_string()],
        post_image: [1; 32],
    };
    assert_eq!(store.rehearsal("r", &fp(1)), None, "nothing rehearsed yet");
    store.record_rehearsal("r", &fp(1), rehearsal("/data/a"), now);
    assert_eq!(
        store.rehearsal("r", &fp(1)).unwrap().effect_paths,
        vec!["/data/a"]
    );
    assert_eq!(store.rehearsal("other", &fp(1)), None, "per session");
    assert_eq!(store.rehearsal("r", &fp(2)), None, "per request");

    // Another dry run of the same request keeps it; the request sent for real ends it.
    store.record_outcome("r", &fp(1), 200, true, WINDOW, now);
    assert!(store.rehearsal("r", &fp(1)).is_some());
    store.record_outcome("r", &fp(1), 200, false, WINDOW, now);
    assert_eq!(
        store.rehearsal("r", &fp(1)),
        None,
        "consumed by the real request"
    );

    // Any mutation sent for real ends every rehearsal of the session.
    store.record_rehearsal("r", &fp(6), rehearsal("/data/f"), now);
    store.forget_rehearsals("r");
    assert_eq!(store.rehearsal("r", &fp(6)), None);

    // Bounded per session: the oldest goes first.
    store.record_rehearsal("r", &fp(3), rehearsal("/data/c"), now);
    store.record_rehearsal(
        "r",
        &fp(4),
        rehearsal("/data/d"),
        now + Duration::from_secs(1),
    );
    store.record_rehearsal(
        "r",
        &fp(5),
        rehearsal("/data/e"),
        now + Duration::from_secs(2),
    );
    assert_eq!(store.rehearsal("r", &fp(3)), None);
    assert!(store.rehearsal("r", &fp(4)).is_some() && store.rehearsal("r", &fp(5)).is_some());
    assert!(store.stats().evicted_entries >= 1);
}

#[test]
fn a_dry_run_warning_names_what_it_would_change() {
    assert_eq!(
        crate::policy::rehearsal_warning(&["/spec/template/spec/containers/0/image".into()]),
        "299 pathgate \"pathgate: this dry run would change 1 field: /spec/template/spec/containers/0/image\""
    );
    let many: Vec<String> = (0..10).map(|i| format!("/data/k{i}")).collect();
    let warning = crate::policy::rehearsal_warning(&many);
    assert!(
        warning.contains("would change 10 fields: /data/k0, ")
            && warning.ends_with(", and 2 more\""),
        "{warning}"
    );
    assert!(crate::policy::rehearsal_warning(&[]).contains("would change no field"));
}

/// A read's fingerprint computed only when its session needs it ([`LazyFingerprint`]):
/// the same PG015 loop as with the fingerprint computed up front, and no hash at all while
/// the session remembers no failure.
#[test]
fn a_read_retry_loop_is_detected_when_its_fingerprint_is_computed_late() {
    let store = SessionStore::default();
    let policy = Policy::default();
    let get = req(Verb::Get, "pods").ns("shop").name("gone");
    let computed = std::cell::Cell::new(0);
    let compute = || {
        computed.set(computed.get() + 1);
        fp(9)
    };
    let now = Instant::now();
    let decide = |print: &LazyFingerprint<'_>| {
        let ctx = LazyContext {
            session: "s1",
            fingerprint: print,
            impersonation_headers: false,
            pathgate_credentials: true,
            confirm_token: None,
        };
        store.decide_lazily(
            &policy,
            &get.info,
            &get.analysis,
            &Facts::default(),
            &ctx,
            now,
        )
    };

    // A success in a session that remembers nothing needs no fingerprint.
    let print = LazyFingerprint::deferred(&compute);
    assert_eq!(decide(&print).action, Action::Allow);
    assert_eq!(
        store.record_outcome_lazily("s1", &print, 200, false, WINDOW, now),
        0
    );
    assert_eq!(computed.get(), 0);

    // Each failure is counted under the fingerprint, computed once per request.
    let mut post_hoc = Vec::new();
    for attempt in 1..=3 {
        let print = LazyFingerprint::deferred(&compute);
        let decision = decide(&print);
        assert_eq!(decision.action, Action::Allow);
        let failures = store.record_outcome_lazily("s1", &print, 404, false, WINDOW, now);
        assert_eq!((failures, computed.get()), (attempt, attempt));
        post_hoc =
            findings_from_response(&get.info, &get.analysis, &policy, &decision, 404, failures);
    }
    assert_eq!(
        post_hoc.iter().map(|f| f.rule).collect::<Vec<_>>(),
        vec!["PG015"]
    );

    // The fourth is flagged before it is forwarded, as with the fingerprint up front.
    let lazy = decide(&LazyFingerprint::deferred(&compute));
    let eager_ctx = RequestContext {
        fingerprint: fp(9),
        ..ctx()
    };
    let eager = store.decide(
        &policy,
        &get.info,
        &get.analysis,
        &Facts::default(),
        &eager_ctx,
        now,
    );
    assert_eq!(
        (lazy.action, lazy.rule_ids()),
        (Action::Flag, vec!["PG015"])
    );
    assert_eq!(
        (eager.action, eager.rule_ids()),
        (lazy.action, lazy.rule_ids())
    );

    // A success clears the failures, which takes its fingerprint.
    let before = computed.get();
    let print = LazyFingerprint::deferred(&compute);
    store.record_outcome_lazily("s1", &print, 200, false, WINDOW, now);
    assert_eq!(computed.get(), before + 1);
    assert_eq!(
        store
            .session_facts("s1", &fp(9), WINDOW, now)
            .recent_failures,
        0
    );
}
