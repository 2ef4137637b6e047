//! pathgate's integration tests: one binary, one module per area. Tests that need the
//! control plane find it through `PATHGATE_CLUSTER_DIR` (set by `cargo xtask test`) and
//! fail, naming that command, when it is absent.

mod cli;
mod gateway;
mod proxy;
mod upgrade;
