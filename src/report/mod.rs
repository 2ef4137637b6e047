//! Renderings of autopsy verdicts: `text` (a verdict line per run and the violations with
//! the request that caused each), `json` (the `pathgate.autopsy/v1` document,
//! docs/autopsy.schema.json) and `html` (one self-contained file with the verdict banner
//! and the timeline of the path).
//!
//! Pure: verdicts in, a string out. What a verdict says is [`crate::autopsy`]'s.

mod html;
mod text;

use serde::Serialize;

use crate::autopsy::summary::ArmSummary;
use crate::autopsy::{Run, SCHEMA};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A verdict line per run, then its violations, blocked requests and evidence.
    #[default]
    Text,
    /// One `pathgate.autopsy/v1` JSON document.
    Json,
    /// One self-contained HTML file: verdict banners and the timeline of each path.
    Html,
}

/// The JSON document.
#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    runs: &'a [Run],
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a [ArmSummary]>,
}

/// Renders `runs` (and, with `--group-by`, the summary per arm) in `format`.
pub fn render(format: Format, runs: &[Run], summary: Option<&[ArmSummary]>) -> String {
    match format {
        Format::Text => text::render(runs, summary),
        Format::Json => json(runs, summary),
        Format::Html => html::render(runs, summary),
    }
}

/// The `pathgate.autopsy/v1` document, pretty-printed, with a final newline.
pub fn json(runs: &[Run], summary: Option<&[ArmSummary]>) -> String {
    let mut text = serde_json::to_string_pretty(&Document {
        schema: SCHEMA,
        runs,
        summary,
    })
    .expect("verdicts serialise");
    text.push('\n');
    text
}
