//! Pure classification of one Kubernetes API request: what it is and what it would change.
//!
//! Owns: request info (verb, group/version/resource, subresource, namespace, name) derived
//! exactly as the kube-apiserver derives it, refusal of paths the apiserver could read
//! differently, and mutation analysis (patch type, touched paths, whole-object payloads,
//! dryRun, DeleteOptions, opaque bodies).
//!
//! Does not own: sessions (the `/s/<id>` prefix is stripped by [`crate::session`] before a
//! path reaches this module), I/O of any kind, or judgement (that is [`crate::policy`]).
//!
//! # Layout
//!
//! | file | owns |
//! |---|---|
//! | `request_info.rs` | [`request_info`]: method + path + query -> [`RequestInfo`], refusals |
//! | `request_info_builtins.rs` | the built-in resources' [`Scope`], which endpoints honour `dryRun`, evictions |
//! | `query.rs` | the query string as Go's `net/url` and the apiserver read it |
//! | `field_selector.rs` | `fieldSelector=metadata.name=<n>` naming a list's object |
//! | `analysis.rs` | [`analyse`]: body -> [`Analysis`] (patch type, whole object, options) |
//! | `paths.rs` | touched paths of JSON patch, merge patch, strategic merge patch, objects |
//! | `media_type.rs` | [`PatchType`] and [`BodyFormat`] from a `Content-Type`, as the apiserver reads it |
//! | `object.rs` | [`ObjectIdentity`] and [`DeleteOptions`]: what a body says, shared by the readers below |
//! | `delete_options.rs` | DeleteOptions from the body *or* the query, as the apiserver reads them |
//! | `tree.rs`, `tree/yaml.rs` | a borrowed JSON tree: JSON and YAML bodies read once, as the apiserver reads them, nested at most 127 levels; ambiguous YAML refused |
//! | `fuzz.rs` | [`fuzz::Target`]: one entry point per parser a client reaches, for the fuzzer and its corpus replay |
//! | `protobuf.rs` | a bounded reader for the `k8s\0` protobuf envelope, ObjectMeta, DeleteOptions |

mod analysis;
mod delete_options;
mod field_selector;
pub mod fuzz;
mod media_type;
mod object;
mod paths;
mod protobuf;
mod query;
mod request_info;
mod tree;

pub use analysis::{analyse, Analysis, WholeObject, SSA_WHOLE_OBJECT_MIN_LEAVES};
pub use media_type::{BodyFormat, PatchType};
pub use object::{AnswerMeta, DeleteOptions, ObjectIdentity, OwnerReference};
pub use paths::MAX_TOUCHED_PATHS;
pub use request_info::{request_info, ClassifyError, RequestInfo, Scope, Verb};
