//! The evasion suite: every way an attack probe walked around pathgate's gates (issue
//! "close the bypasses"), kept as a test against the real control plane and named after the
//! attack, with the variants of each class that were tried since.
//!
//! Each module owns one class of attack:
//!
//! | module | class |
//! |---|---|
//! | `false_dry_run` | requests that carry `dryRun=All` on endpoints that ignore it (TokenRequest, ...); the dry-run fingerprint's media type |
//! | `scope` | cluster-scoped objects judged by a namespace the client wrote |
//! | `eviction` | pod evictions that walk around the pod-delete rules |
//! | `aborts` | clients that abort a mutation after it was forwarded |
//! | `parsers` | bodies that stall the parsers or decode differently than the apiserver does |
//! | `exhaustion` | idle, slow and numerous connections; watches that starve short requests |
//! | `spoofing` | forwarded-for headers, predictable trace ids, answers cut short or too large |
//!
//! A test here states the attack in its name, sends it the way the probe did (kubectl where
//! kubectl can say it, raw HTTP otherwise), and checks what the apiserver did (read directly
//! with the admin kubeconfig or its audit log), not only what pathgate answered.

mod aborts;
mod eviction;
mod exhaustion;
mod false_dry_run;
mod parsers;
mod scope;
mod spoofing;
