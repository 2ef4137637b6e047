//! Shared support for the integration tests.
//!
//! Against the real control plane: the running cluster, the built kubectl, unique names,
//! polling and the apiserver client ([`api`]) come from `testcluster::testing`, which the
//! control plane's own tests use too. Tests run in parallel on that one cluster, so each
//! works in its own namespace or with unique names; without a cluster, [`cluster`] panics
//! naming `cargo xtask test` (a test that needs the control plane fails, never skips).
//!
//! Without it: [`fake_apiserver`], the fake upstream for pure HTTP behaviour. And the
//! rustls client every raw-TLS test uses ([`tls`]).
//!
//! This module does not own starting clusters (the `testcluster` crate does) nor any
//! assertion about pathgate.

// Each test module uses its own subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod fake_apiserver;
pub mod tls;

pub use testcluster::testing::*;
