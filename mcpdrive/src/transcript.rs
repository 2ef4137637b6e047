//! The JSON transcript of one driven path: what the server said it was, the tools it
//! offered, and every call with its result as the agent would have read it. Written
//! whatever happened, with the error that stopped the path if one did.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The server's `serverInfo` from `initialize`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
}

/// One `tools/call` and its result.
#[derive(Debug, Serialize)]
pub struct CallRecord {
    pub tool: String,
    pub arguments: serde_json::Value,
    /// The result's `isError` (absent means false), or true for a JSON-RPC error answer.
    pub is_error: bool,
    /// The JSON-RPC error code when the server answered the call with an error instead of
    /// a result.
    pub rpc_error: Option<i32>,
    /// The text content blocks of the result, joined by newlines (or the error's message).
    pub text: String,
    pub duration_ms: f64,
}

/// The whole transcript.
#[derive(Debug, Default, Serialize)]
pub struct Transcript {
    pub server: Option<ServerInfo>,
    /// Tool names from `tools/list`.
    pub tools: Vec<String>,
    pub calls: Vec<CallRecord>,
    /// Why the path stopped early, if it did.
    pub error: Option<String>,
}

/// The transcript could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write the transcript: {source}", file.display())]
pub struct WriteError {
    file: PathBuf,
    source: std::io::Error,
}

impl Transcript {
    /// Writes the transcript as pretty JSON.
    pub fn write(&self, file: &Path) -> Result<(), WriteError> {
        let mut text = serde_json::to_string_pretty(self).expect("a transcript serialises");
        text.push('\n');
        std::fs::write(file, text).map_err(|source| WriteError {
            file: file.to_path_buf(),
            source,
        })
    }
}
