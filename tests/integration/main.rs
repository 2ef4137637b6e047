//! pathgate's integration tests: one binary, one module per area, all against the real
//! control plane that `cargo xtask test` starts (see `support`). Tests that need it find
//! it through `PATHGATE_CLUSTER_DIR` and fail, naming that command, when it is absent.

mod autopsy;
mod cli;
mod deploy;
mod evasion;
mod faults;
mod gateway;
mod harness;
mod ledger;
mod proxy;
mod recording;
mod rules;
mod scenarios;
mod sidecar;
mod sinks;
mod support;
mod tail;
mod upgrade;
