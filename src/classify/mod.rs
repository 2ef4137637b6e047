//! Pure classification of one Kubernetes API request: what it is and what it would change.
//!
//! Owns: request info (verb, group/version/resource, subresource, namespace, name) derived
//! exactly as the kube-apiserver derives it, refusal of paths the apiserver could read
//! differently, and mutation analysis (patch type, touched paths, whole-object payloads,
//! dryRun, DeleteOptions, opaque bodies).
//!
//! Does not own: sessions (the `/s/<id>` prefix is stripped by [`crate::session`] before a
//! path reaches this module), I/O of any kind, or judgement (that is [`crate::policy`]).

mod analysis;
mod field_selector;
mod query;
mod request_info;

pub use analysis::{
    analyse, Analysis, BodyFormat, DeleteOptions, ObjectIdentity, OwnerReference, PatchType,
    WholeObject,
};
pub use request_info::{request_info, ClassifyError, RequestInfo, Verb};
