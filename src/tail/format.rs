//! One ledger entry as one terminal line: pure, no I/O.
//!
//! ```text
//! 13:00:00.250 create  403 deny    PG010       configmaps agent-sandbox/demo
//! 13:00:00.310 create  201 flag    PG010       [dry-run] configmaps agent-sandbox/demo
//! 13:00:00.402 get     200 allow               pods/log shop/web-5d9c7-abcde
//! ```
//!
//! Columns: the request's start time (UTC, as the ledger writes it), the session (only when
//! more than one session is shown), the verb, the status code, the decision's action, the
//! rule ids that fired, marks (dry run, intent, observe's "would deny", errors other than
//! pathgate's own refusal, which the decision already shows), and the
//! target: `resource[.group][/subresource] namespace/name`. The target comes last because
//! it is the only column of unbounded length: on a terminal it is shortened in the middle
//! (the resource and the name's distinguishing end stay) so a line never wraps.
//!
//! With colour on, a read is dim and a mutation bold (SGR 2 / SGR 1 over the whole line);
//! actions and rule ids are coloured by what they did (deny red, confirm magenta, flag
//! yellow, rewrite cyan), dry-run marks cyan, 4xx statuses yellow and 5xx red. Colour
//! changes only the foreground (SGR 39 ends it), so the line's weight holds to its end,
//! where SGR 0 resets everything.
//!
//! Every text that came from a client (names, paths, sessions) has its control and
//! bidirectional-override characters escaped: a request path cannot move the cursor,
//! clear the screen or reorder what the operator reads.

use std::fmt::Write as _;

use crate::ledger::{Action, Entry, Origin, Phase};

/// How lines are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    /// Emit ANSI SGR codes.
    pub color: bool,
    /// Terminal columns: the target is shortened so the line fits; `None` keeps it whole.
    pub width: Option<usize>,
    /// Show the session column (more than one session is on screen).
    pub show_session: bool,
}

/// ANSI SGR sequences used by the view.
pub mod sgr {
    pub const RESET: &str = "\x1b[0m";
    pub const BOLD: &str = "\x1b[1m";
    pub const DIM: &str = "\x1b[2m";
    pub const RED: &str = "\x1b[31m";
    pub const YELLOW: &str = "\x1b[33m";
    pub const MAGENTA: &str = "\x1b[35m";
    pub const CYAN: &str = "\x1b[36m";
    /// Ends a colour and keeps bold or dim.
    pub const DEFAULT_FOREGROUND: &str = "\x1b[39m";
}

const VERB_WIDTH: usize = 7;
const ACTION_WIDTH: usize = 7;
const RULES_WIDTH: usize = 11;
const SESSION_WIDTH: usize = 12;
/// Below this many columns left for the target, shortening it would leave nothing
/// readable: the line is kept whole and the terminal wraps it.
const MIN_TARGET_WIDTH: usize = 12;

/// The line for `entry`, without a trailing newline.
pub fn format_line(entry: &Entry, style: &Style) -> String {
    let mut line = Line::new(style.color);
    if style.color {
        line.out.push_str(if entry.request.mutation {
            sgr::BOLD
        } else {
            sgr::DIM
        });
    }
    line.plain(&clock(entry));
    line.plain(" ");
    if style.show_session {
        line.plain(&pad(&sanitize(&entry.session), SESSION_WIDTH));
        line.plain(" ");
    }
    line.plain(&pad(&verb(entry), VERB_WIDTH));
    line.plain(" ");
    status(&mut line, entry);
    line.plain(" ");
    decision(&mut line, entry);
    line.plain(" ");
    rules(&mut line, entry);
    line.plain(" ");
    marks(&mut line, entry);
    let target = target(entry);
    let target = match style.width {
        Some(width) => shorten(&target, width.saturating_sub(line.visible)),
        None => target,
    };
    line.plain(&target);
    if style.color {
        line.out.push_str(sgr::RESET);
    }
    line.out
}

/// A line being built, with its visible length (escape codes excluded).
struct Line {
    out: String,
    visible: usize,
    color: bool,
}

impl Line {
    fn new(color: bool) -> Self {
        Line {
            out: String::with_capacity(160),
            visible: 0,
            color,
        }
    }

    fn plain(&mut self, text: &str) {
        self.out.push_str(text);
        self.visible += text.chars().count();
    }

    /// `text` in `colour` (when colour is on and there is one).
    fn painted(&mut self, colour: Option<&str>, text: &str) {
        match colour.filter(|_| self.color) {
            Some(colour) => {
                self.out.push_str(colour);
                self.plain(text);
                self.out.push_str(sgr::DEFAULT_FOREGROUND);
            }
            None => self.plain(text),
        }
    }
}

/// `HH:MM:SS.mmm` of `started_at` (UTC).
fn clock(entry: &Entry) -> String {
    let time = entry.started_at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    )
}

/// The Kubernetes verb; for a non-resource request the lowercase method (as the
/// apiserver's own audit log names it); `?` when the request could not be classified.
fn verb(entry: &Entry) -> String {
    match entry.request.verb.as_str() {
        "" => "?".to_owned(),
        "nonresource" => sanitize(&entry.request.method.to_ascii_lowercase()),
        verb => sanitize(verb),
    }
}

fn status(line: &mut Line, entry: &Entry) {
    let Some(response) = &entry.response else {
        line.plain(if entry.phase == Phase::Intent {
            "..."
        } else {
            "  -"
        });
        return;
    };
    let code = response.status_code;
    let colour = match code {
        500.. => Some(sgr::RED),
        400..=499 => Some(sgr::YELLOW),
        _ => None,
    };
    line.painted(colour, &format!("{code:>3}"));
}

fn action_colour(action: Action) -> Option<&'static str> {
    match action {
        Action::Allow => None,
        Action::Flag => Some(sgr::YELLOW),
        Action::Rewrite => Some(sgr::CYAN),
        Action::Confirm => Some(sgr::MAGENTA),
        Action::Deny => Some(sgr::RED),
    }
}

fn decision(line: &mut Line, entry: &Entry) {
    match &entry.decision {
        Some(decision) => line.painted(
            action_colour(decision.action),
            &pad(decision.action.as_str(), ACTION_WIDTH),
        ),
        None => line.plain(&pad("-", ACTION_WIDTH)),
    }
}

/// Rule ids, comma-separated, each in its own action's colour.
fn rules(line: &mut Line, entry: &Entry) {
    let findings = entry
        .decision
        .as_ref()
        .map(|decision| decision.findings.as_slice())
        .unwrap_or_default();
    let mut written = 0;
    for (index, finding) in findings.iter().enumerate() {
        if index > 0 {
            line.plain(",");
            written += 1;
        }
        let rule = sanitize(&finding.rule);
        written += rule.chars().count();
        line.painted(action_colour(finding.action), &rule);
    }
    line.plain(&" ".repeat(RULES_WIDTH.saturating_sub(written)));
}

/// Bracketed marks before the target, each followed by a space.
fn marks(line: &mut Line, entry: &Entry) {
    if entry.phase == Phase::Intent {
        line.plain("[intent] ");
    }
    if let Some(dry_run) = entry.dry_run {
        match (dry_run.sent, dry_run.forwarded) {
            (true, true) => line.painted(Some(sgr::CYAN), "[dry-run]"),
            (false, true) => line.painted(Some(sgr::CYAN), "[dry-run added]"),
            // pathgate never removes a client's dry run; if a ledger ever says it did, the
            // operator must see it.
            (true, false) => line.painted(Some(sgr::RED), "[dry-run removed]"),
            (false, false) => {}
        }
        if dry_run.forwarded || dry_run.sent {
            line.plain(" ");
        }
    }
    if let Some(decision) = &entry.decision {
        if decision.enforce_action != decision.action {
            let text = format!("[would {}]", decision.enforce_action.as_str());
            line.painted(action_colour(decision.enforce_action), &text);
            line.plain(" ");
        }
        if decision.confirmed {
            line.plain("[confirmed] ");
        }
    }
    if let Some(error) = entry.error.as_ref().filter(|_| !is_refusal(entry)) {
        let text = format!("[error {} {}]", error.side.as_str(), error.kind.as_str());
        line.painted(Some(sgr::RED), &text);
        line.plain(" ");
    }
}

/// pathgate refused the request by its decision: the ledger records that refusal as a
/// client-side error too, which the decision column already says.
fn is_refusal(entry: &Entry) -> bool {
    let refused = entry
        .decision
        .as_ref()
        .is_some_and(|decision| matches!(decision.action, Action::Deny | Action::Confirm));
    refused
        && entry
            .response
            .as_ref()
            .is_some_and(|response| response.origin == Origin::Pathgate)
}

/// `resource[.group][/subresource] namespace/name`, `namespace/*` for a collection in a
/// namespace (`namespace/` for a create whose name was not captured); the path for
/// non-resource requests, method and path when unclassified.
fn target(entry: &Entry) -> String {
    let request = &entry.request;
    if request.verb.is_empty() {
        return sanitize(&format!("{} {}", request.method, request.path));
    }
    if request.resource.is_empty() {
        return sanitize(&request.path);
    }
    let mut target = request.resource.clone();
    if !request.api_group.is_empty() {
        let _ = write!(target, ".{}", request.api_group);
    }
    if !request.subresource.is_empty() {
        let _ = write!(target, "/{}", request.subresource);
    }
    let name = match request.name.as_str() {
        "" if request.verb == "create" => created_name(entry).unwrap_or_default(),
        name => name,
    };
    // A create goes to the collection: when its name is not known, `ns/*` would read as
    // "all of them".
    let collection = if request.verb == "create" { "" } else { "*" };
    match (request.namespace.is_empty(), name.is_empty()) {
        (false, false) => {
            let _ = write!(target, " {}/{name}", request.namespace);
        }
        (false, true) => {
            let _ = write!(target, " {}/{collection}", request.namespace);
        }
        (true, false) => {
            let _ = write!(target, " {name}");
        }
        (true, true) => {}
    }
    sanitize(&target)
}

/// A create's object name: the ledger's `analysis.object_name` (read from the body, JSON,
/// YAML or protobuf), else the `metadata.name` of a captured body
/// (`ledger.capture_bodies_max_bytes`).
fn created_name(entry: &Entry) -> Option<&str> {
    if let Some(name) = entry
        .analysis
        .as_ref()
        .and_then(|a| a.object_name.as_deref())
    {
        return Some(name);
    }
    entry
        .body
        .as_ref()?
        .json
        .as_ref()?
        .get("metadata")?
        .get("name")?
        .as_str()
}

/// `text` cut to `width` characters by replacing its middle with `…`: the start (the
/// resource) and the end (a name's distinguishing suffix) stay. Kept whole when it fits
/// or when `width` is too small for a useful cut.
pub fn shorten(text: &str, width: usize) -> String {
    let length = text.chars().count();
    if length <= width || width < MIN_TARGET_WIDTH {
        return text.to_owned();
    }
    let head = (width - 1) / 3;
    let tail = width - 1 - head;
    let mut short: String = text.chars().take(head).collect();
    short.push('…');
    short.extend(text.chars().skip(length - tail));
    short
}

/// `text` padded with spaces to `width` characters, or cut to it with a final `…`.
fn pad(text: &str, width: usize) -> String {
    let length = text.chars().count();
    if length <= width {
        return format!("{text}{}", " ".repeat(width - length));
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` with every control character (C0, DEL, C1: ESC among them) and every
/// bidirectional control escaped as `\u{..}`, so no text from a client reaches the
/// terminal as a command.
pub fn sanitize(text: &str) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_owned();
    }
    let mut safe = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            let _ = write!(safe, "\\u{{{:x}}}", c as u32);
        } else {
            safe.push(c);
        }
    }
    safe
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests;
