//! `pathgate tail`: its flags and their translation into [`crate::tail::TailOptions`].

use std::path::PathBuf;

use clap::Args;

use crate::tail::{ColorChoice, Input, Selection, TailError, TailOptions};

/// `pathgate tail` flags.
#[derive(Args, Debug)]
pub struct TailArgs {
    /// The ledger: a spool directory (ledger.dir), a JSONL file, or - for standard input.
    source: PathBuf,
    /// Only this session; repeatable. Without it, every session (with a session column).
    #[arg(long)]
    session: Vec<String>,
    /// Keep reading as the ledger grows (across segment rotation) until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print the matching entries as JSON lines, unchanged, instead of the view.
    #[arg(long)]
    json: bool,
    /// Show a mutation's intent as its own line instead of waiting for its outcome.
    #[arg(long)]
    intents: bool,
    /// auto: colour on a terminal unless NO_COLOR is set; always; never.
    #[arg(long, default_value = "auto")]
    color: ColorChoice,
}

/// `pathgate tail`.
pub fn run(args: TailArgs) -> Result<(), TailError> {
    crate::tail::run(TailOptions {
        input: Input::from_arg(&args.source),
        selection: Selection {
            sessions: args.session,
            intents: args.intents,
        },
        follow: args.follow,
        json: args.json,
        color: args.color,
    })
}
