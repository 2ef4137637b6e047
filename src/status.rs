//! Status (in progress)
