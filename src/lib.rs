//! pathgate: a path-aware gate between Kubernetes clients and the kube-apiserver.
//!
//! Every request an agent makes through its kubeconfig is classified, checked against
//! deterministic safety rules, enforced (deny / rewrite / confirm), stamped with a trace id,
//! forwarded, and recorded in an execution ledger.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`agent_kubeconfig`] | `pathgate kubeconfig`: the kubeconfig an agent points at pathgate |
//! | [`cli`] | the command line: each subcommand's flags and how they become options (`main.rs` only dispatches) |
//! | [`autopsy`] | `pathgate autopsy`: a session's ledger + run policy + final state -> safe pass / unsafe pass / fail |
//! | [`classify`] | pure: request info (verb, resource, namespace, name) and mutation analysis |
//! | [`policy`] | pure: the rule catalog (PG001–PG019) and `decide` |
//! | [`config`] | the configuration file model, validation and the frozen `Config` |
//! | [`tls`] | rustls server/client configurations and `pathgate certs init` |
//! | [`upstream`] | kubeconfig / in-cluster loading, credentials, the pooled upstream client |
//! | [`proxy`] | the server loop, forwarding, streaming, upgrades, header hygiene, drain |
//! | [`failure`] | the vocabulary of failures: which side failed and what kind of failure, shared by status, ledger and metrics |
//! | [`ledger`] | the entry schema, the bounded queue, the spool and the sinks |
//! | [`report`] | text, JSON (`pathgate.autopsy/v1`) and HTML renderings of autopsy verdicts |
//! | [`run`] | `pathgate run`: a gateway, a session, an agent command, its final state and verdict |
//! | [`metrics`] | the one Prometheus registry and its metrics handle |
//! | [`status`] | Kubernetes `Status` bodies for every error pathgate itself returns |
//! | [`serve`] | wiring of `pathgate serve`: start the proxy and admin listeners |
//! | [`session`] | session ids: the `/s/<id>` prefix, the header and the default |
//! | [`tail`] | `pathgate tail`: a session's path, live, one line per request |
//! | [`trace`] | execution trace ids (also sent as `Audit-ID`) and W3C `traceparent` |
//!
//! The pure stages (`classify`, `policy`) take values and return values: no I/O, no tokio.

#![forbid(unsafe_code)]

pub mod agent_kubeconfig;
pub mod autopsy;
pub mod classify;
pub mod cli;
pub mod config;
pub mod failure;
pub mod ledger;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod report;
pub mod run;
pub mod serve;
pub mod session;
pub mod status;
pub mod tail;
pub mod tls;
pub mod trace;
pub mod upstream;
