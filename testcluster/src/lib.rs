//! Control plane launcher (in progress)
