//! What the apiserver does with a resource request beyond what its path says: the scope of
//! a resource (namespaced or cluster-scoped), whether an endpoint honours `dryRun`, and
//! which requests delete a pod although their verb is `create` (evictions).
//!
//! The tables are the built-in resources of the pinned Kubernetes, v1.37.2 (see
//! `controlplane/`), established from its source as docs/rules.md ("What pathgate knows about
//! the apiserver's resources") describes: the scope from each registry strategy's
//! `NamespaceScoped()` (`pkg/registry/<group>/<resource>/strategy.go`), the dry-run
//! behaviour from the REST storage behind each path (`pkg/registry/*/rest/storage_*.go`
//! wire a path to a storage; a storage honours `dryRun` when it hands the request's options
//! to the generic registry store, `k8s.io/apiserver/pkg/registry/generic/registry/store.go`,
//! which skips the write, or passes `dryrun.IsDryRun(options.DryRun)` to the storage
//! itself). Keep them in step when the pinned version moves.
//!
//! Resources pathgate does not know (custom resources, aggregated APIs) have
//! [`Scope::Unknown`]: their namespace is the path's, never the body's (the apiserver routes a
//! custom resource by the CRD's scope and answers 404 to a namespaced path of a
//! cluster-scoped one, `apiextensions-apiserver/pkg/apiserver/customresource_handler.go`).

use serde::Serialize;

use super::{RequestInfo, Verb};

/// Where a resource's objects live, as the apiserver serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Objects live in a namespace, which the request path names.
    Namespaced,
    /// Objects belong to the whole cluster; a namespace in the body is cleared by the
    /// apiserver and means nothing.
    Cluster,
    /// A resource pathgate has no table entry for (custom resources, aggregated APIs, a
    /// non-resource request): only the path's namespace counts.
    Unknown,
}

impl Scope {
    /// The lowercase name used in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Namespaced => "namespaced",
            Scope::Cluster => "cluster",
            Scope::Unknown => "unknown",
        }
    }
}

/// The API groups Kubernetes v1.37.2 serves itself (kube-apiserver, its apiextensions and
/// aggregator parts). A resource of one of these groups that is not in [`CLUSTER_SCOPED`] is
/// namespaced.
const BUILTIN_GROUPS: [&str; 24] = [
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "lifecycle.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// Every cluster-scoped built-in resource of v1.37.2: the strategies whose
/// `NamespaceScoped()` returns false, plus the REST storages without a strategy that say so
/// themselves (the reviews, componentstatuses).
const CLUSTER_SCOPED: [(&str, &str); 39] = [
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
    ("", "componentstatuses"),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
    ),
    ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
    (
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "apiservices"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("certificates.k8s.io", "clustertrustbundles"),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"),
    (
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
    ),
    ("internal.apiserver.k8s.io", "storageversions"),
    ("networking.k8s.io", "ingressclasses"),
    ("networking.k8s.io", "ipaddresses"),
    ("networking.k8s.io", "servicecidrs"),
    ("node.k8s.io", "runtimeclasses"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("resource.k8s.io", "deviceclasses"),
    ("resource.k8s.io", "devicetaintrules"),
    ("resource.k8s.io", "resourceslices"),
    ("resource.k8s.io", "resourcepoolstatusrequests"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "volumeattachments"),
    ("storage.k8s.io", "volumeattributesclasses"),
    ("storagemigration.k8s.io", "storageversionmigrations"),
];

/// Built-in subresources whose storage honours `dryRun` on create, update and patch: each
/// passes the request's options to the generic store (`status`, `scale`, `approval`,
/// `finalize`, `ephemeralcontainers`, `resize`) or checks `dryrun.IsDryRun` itself
/// (`binding`: `BindingREST.Create`; `eviction`: `EvictionREST.Create`, which also merges
/// the query's dryRun into the eviction's deleteOptions).
///
/// Not here, so judged as the mutations they are: `serviceaccounts/token`
/// (`TokenREST.Create` never reads `options.DryRun`: a "dry run" issues a real token), and
/// every subresource pathgate does not know. The connect subresources (`exec`, `attach`,
/// `portforward`, `proxy`) answer a `dryRun` with 400 (`handlers.ConnectResource`); `log`
/// is a read.
const DRY_RUN_SUBRESOURCES: [&str; 8] = [
    "status",
    "scale",
    "approval",
    "finalize",
    "binding",
    "eviction",
    "ephemeralcontainers",
    "resize",
];

/// The subresources a custom resource can have (`status`, `scale`), both served by
/// apiextensions' `StatusREST` / `ScaleREST` over the generic store, which honour `dryRun`.
const CUSTOM_RESOURCE_DRY_RUN_SUBRESOURCES: [&str; 2] = ["status", "scale"];

impl RequestInfo {
    /// The resource's scope: from the built-in table, never from a field the client writes.
    pub fn scope(&self) -> Scope {
        if !self.is_resource_request {
            return Scope::Unknown;
        }
        let (group, resource) = (self.api_group.as_str(), self.resource.as_str());
        // Lengths first: on every request, only a table entry of the same shape is compared.
        let cluster = CLUSTER_SCOPED.iter().any(|(g, r)| {
            g.len() == group.len() && r.len() == resource.len() && *g == group && *r == resource
        });
        if cluster {
            Scope::Cluster
        } else if BUILTIN_GROUPS.contains(&self.api_group.as_str()) {
            Scope::Namespaced
        } else {
            Scope::Unknown
        }
    }

    /// Whether a `dryRun=All` on this request really keeps the apiserver from acting: only on
    /// endpoints known to honour it (see [`DRY_RUN_SUBRESOURCES`]). A resource itself (no
    /// subresource) is served by the generic store or a wrapper that hands it the options,
    /// for built-in and custom resources alike; an aggregated API server is trusted to do
    /// the same (docs/rules.md says so). Reads and connects take no dry run.
    pub fn honours_dry_run(&self) -> bool {
        if !self.is_resource_request || !self.verb.takes_dry_run() {
            return false;
        }
        let subresource = self.subresource.as_str();
        if subresource.is_empty() {
            return true;
        }
        if BUILTIN_GROUPS.contains(&self.api_group.as_str()) {
            DRY_RUN_SUBRESOURCES.contains(&subresource)
        } else {
            CUSTOM_RESOURCE_DRY_RUN_SUBRESOURCES.contains(&subresource)
        }
    }

    /// `POST pods/<name>/eviction`: the apiserver deletes the pod (after checking its
    /// PodDisruptionBudgets) with the eviction's `deleteOptions`.
    pub fn is_pod_eviction(&self) -> bool {
        self.verb == Verb::Create
            && self.api_group.is_empty()
            && self.resource == "pods"
            && self.subresource == "eviction"
            && !self.name.is_empty()
    }

    /// What the request does to the object it names, when that is not its verb: `delete`
    /// for a pod eviction. Rules that judge deletes, and the ledger, use this.
    pub fn effect_verb(&self) -> Verb {
        if self.is_pod_eviction() {
            Verb::Delete
        } else {
            self.verb
        }
    }

    /// A request that deletes one named pod: a DELETE of the pod, or its eviction.
    pub fn deletes_pod(&self) -> bool {
        let delete = self.verb == Verb::Delete
            && self.api_group.is_empty()
            && self.resource == "pods"
            && self.subresource.is_empty()
            && !self.name.is_empty();
        delete || self.is_pod_eviction()
    }
}
