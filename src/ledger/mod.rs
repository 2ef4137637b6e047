//! The execution ledger: one versioned entry per request, queued without blocking the
//! request path, spooled durably, and streamed to sinks (JSONL, OTLP, webhook).
//!
//! Owns: the `pathgate.ledger/v1` entry schema, the bounded queue, the spool, the sinks and
//! their counters. Does not own: deciding what goes into an entry (the proxy fills it).
