//! pathgate's integration tests: one binary, one module per area, against the real control
//! plane that `cargo xtask test` starts (see `support`). Tests that need it find it through
//! `PATHGATE_CLUSTER_DIR` and fail, naming that command, when it is absent.
//!
//! `fast` is the exception: fake upstream, pure HTTP behaviour (header hygiene, the body
//! bound, trace stamping, auth modes, error mapping) against `support::fake_apiserver`,
//! in seconds and without a control plane (`cargo test --test integration fast::`).

mod autopsy;
mod budgets;
mod cli;
mod completeness;
mod deploy;
mod evasion;
mod fast;
mod faults;
mod fleet;
mod gateway;
mod images;
mod ledger;
mod proxy;
mod recording;
mod rules;
mod run;
mod scenarios;
mod sidecar;
mod sinks;
mod support;
mod tail;
mod undo;
mod upgrade;
