//! pathgate's integration tests: one binary, one module per area, all against the real
//! control plane that `cargo xtask test` starts (see `support`).

mod harness;
mod support;
