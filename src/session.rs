//! Sessions (in progress)
