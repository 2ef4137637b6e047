//! The gate between classification and forwarding.

use std::pin::Pin;

use super::handler::{Gate, GateOutcome, GateRequest};

/// Classifies nothing further and allows everything: the gate of `--mode observe` before
/// a policy is wired, and of tests that exercise forwarding alone.
#[derive(Debug, Default)]
pub struct AllowAll;

impl Gate for AllowAll {
    fn evaluate<'a>(
        &'a self,
        _request: GateRequest<'a>,
    ) -> Pin<Box<dyn std::future::Future<Output = GateOutcome> + Send + 'a>> {
        Box::pin(async { GateOutcome::default() })
    }
}
