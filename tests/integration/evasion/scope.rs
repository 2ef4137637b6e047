//! See `evasion/mod.rs`.
