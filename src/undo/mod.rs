//! `pathgate undo`: a verified revert plan for a run (a session's window of mutations),
//! from the pre- and post-images the ledger references, then its dry run or application
//! through pathgate as a session of its own (`undo.<ID>`), so the undo is gated, recorded
//! and judged like any run. docs/undo.md is the user's manual.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`command`] | the run of `pathgate undo`: entries, window, plan, the gateway, the report |
//! | [`entries`] | pure: a session's ledger entries -> the window's mutations |
//! | [`history`] | the model: a run's mutations, the objects they wrote, where their images are |
//! | [`inverse`] | pure: the inverse JSON Patch of one object's net change, conflict diffs |
//! | [`plan`] | pure: mutations + images -> steps (newest first) and what cannot be undone |
//! | [`execute`] | a plan's steps through the gateway: precondition GET, dry run, application |
//! | [`precondition`] | pure: a step's precondition against the object as it is now |
//! | [`report`] | `pathgate.undo/v1` JSON, the text plan, outcome and exit codes |
//!
//! The store of images is the ledger's ([`crate::ledger`]); undo only reads it.

pub mod command;
pub mod entries;
pub mod execute;
pub mod history;
pub mod inverse;
pub mod plan;
pub mod precondition;
pub mod report;

pub use history::{After, Before, ImageRef, Kind, Mutation, ObjectRef, Outcome};
pub use plan::{plan, Action, ImageProblem, Images, NotUndoable, Plan, Reason, Step};
pub use precondition::{check, Check, ConflictKind, Observed};
