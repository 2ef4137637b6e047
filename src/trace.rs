//! Trace ids (in progress)
