//! A run's mutations as undo reads them (pure): which object each one wrote, what the
//! ledger says the object was before and after, and where its images are.
//!
//! Owns the model ([`Mutation`]) the plan is computed from. Turning ledger entries into
//! it is [`super::entries`]'s; loading the images it names is the store's.

use serde::Serialize;

use super::inverse::View;

/// The object a mutation wrote: group/version/resource/namespace/name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    /// Empty for the core group.
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    /// Empty for a cluster-scoped object.
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    /// `/api/v1` or `/apis/<group>/<version>`.
    fn api_root(&self) -> String {
        if self.api_group.is_empty() {
            format!("/api/{}", self.api_version)
        } else {
            format!("/apis/{}/{}", self.api_group, self.api_version)
        }
    }

    /// The path of the object's collection (where a re-create is POSTed).
    pub fn collection_path(&self) -> String {
        let root = self.api_root();
        if self.namespace.is_empty() {
            format!("{root}/{}", self.resource)
        } else {
            format!("{root}/namespaces/{}/{}", self.namespace, self.resource)
        }
    }

    /// The path of the object, or of one of its subresources (`""`: the object).
    pub fn path(&self, subresource: &str) -> String {
        let object = format!("{}/{}", self.collection_path(), self.name);
        if subresource.is_empty() {
            object
        } else {
            format!("{object}/{subresource}")
        }
    }

    /// `deployments.apps shop/web`, as the text plan names it.
    pub fn display(&self) -> String {
        let resource = if self.api_group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.api_group)
        };
        if self.namespace.is_empty() {
            format!("{resource} {}", self.name)
        } else {
            format!("{resource} {}/{}", self.namespace, self.name)
        }
    }
}

/// Where the ledger says an image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// In the image store under this digest.
    Stored { digest: String },
    /// Not kept, for this reason (`secret`, `too-large`, `store-full`, `unavailable`).
    Withheld { reason: String },
    /// The entry has no image record (the store was off, or pathgate predates it).
    NotRecorded,
}

/// The object before a mutation, as pathgate's GET found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// It did not exist (a create).
    Absent,
    /// It existed.
    Present {
        image: ImageRef,
        /// Its controller owner (`ReplicaSet web-5d9c7`), when it had one.
        controller: Option<String>,
    },
    /// pathgate did not fetch it (or the fetch failed): nothing is known.
    Unknown,
}

/// The object the apiserver answered with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct After {
    pub image: Option<ImageRef>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// When the request arrived and when its answer ended (RFC 3339): the object a create
    /// made has its `creationTimestamp` in between, which is what guards the delete of an
    /// object whose answer the ledger could not read (a protobuf answer carries no uid
    /// the ledger decodes).
    pub between: Option<(String, String)>,
}

/// What a mutation did, as far as undo distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A create (POST of the collection), or an apply that created its object.
    Create,
    /// An update, patch or apply of the object or of its `status` or `scale`.
    Change(View),
    /// A delete of the named object, or a pod eviction.
    Delete,
    /// A delete of a collection; its pre-image is the list it deleted.
    DeleteCollection,
    /// exec, attach, port-forward.
    Connect,
    /// Any other subresource (token, binding, approval, proxy...).
    OtherSubresource(String),
}

/// Whether the mutation happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The apiserver answered 2xx.
    Succeeded,
    /// Only the intent is in the ledger, or the answer was lost: it may or may not have
    /// happened.
    Unknown,
}

/// One forwarded, non-dry-run mutation of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub trace_id: String,
    /// The request's verb (`patch`, `delete`...), for the plan's text.
    pub verb: String,
    pub kind: Kind,
    /// The object; for a collection delete, its `name` is empty.
    pub object: ObjectRef,
    pub outcome: Outcome,
    pub before: Before,
    pub after: After,
}
