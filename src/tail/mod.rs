//! `pathgate tail`: the live path of a session in the terminal, read from the ledger.
//!
//! Owns: reading entries from the spool directory, a JSONL file or standard input
//! ([`source`]), following them as they are written (across segment rotation), choosing
//! which become lines ([`view`]: sessions, intent/outcome pairing), drawing one line per
//! request ([`format`]: pure, coloured with ANSI SGR codes on a terminal), and printing
//! the matching entries unchanged as JSONL (`--json`).
//!
//! Does not own: the entry schema (`crate::ledger`), nor judging a run (the autopsy).
//! It only reads: no cursor file, no lock, nothing written to the ledger directory, so it
//! can watch a live pathgate's spool with read-only access.
//!
//! Output ends quietly when the reader goes away (`pathgate tail | head`): a broken pipe is
//! the end of the view, not an error, and while following, an idle tail notices a closed
//! pipe within one poll. Ctrl-C ends it by the default signal action: each line is written
//! whole and ends with SGR 0, so the terminal is left as it was.

pub mod format;
pub mod source;
pub mod view;

use std::ffi::OsStr;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::ledger::{Entry, SCHEMA};

pub use format::{format_line, Style};
pub use source::{Event, GrowingFile, SpoolFollower, StdinLines};
pub use view::{Selection, View};

/// How often a followed input is looked at again. The ledger writer hands reads to the OS
/// every 10 ms and durable entries at once, so a line shows within about this long.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// When to colour lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set (and not empty) or `TERM=dumb`.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour, for output that `is_terminal` or not, with the environment's
    /// `NO_COLOR` and `TERM`. An explicit `always` wins over `NO_COLOR` (no-color.org: a
    /// flag given on the command line overrides it).
    pub fn enabled(
        self,
        is_terminal: bool,
        no_color: Option<&OsStr>,
        term: Option<&OsStr>,
    ) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal
                    && no_color.is_none_or(OsStr::is_empty)
                    && term != Some(OsStr::new("dumb"))
            }
        }
    }
}

impl FromStr for ColorChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ColorChoice::Auto),
            "always" => Ok(ColorChoice::Always),
            "never" => Ok(ColorChoice::Never),
            other => Err(format!("{other:?}: expected auto, always or never")),
        }
    }
}

/// Where the entries come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A spool directory (`ledger.dir`): every segment, oldest first.
    Spool(PathBuf),
    /// One JSONL file.
    File(PathBuf),
    /// Standard input (`-`).
    Stdin,
}

impl Input {
    /// `-` is standard input; a directory is a spool; anything else a JSONL file.
    pub fn from_arg(arg: &Path) -> Self {
        if arg == Path::new("-") {
            Input::Stdin
        } else if arg.is_dir() {
            Input::Spool(arg.to_owned())
        } else {
            Input::File(arg.to_owned())
        }
    }
}

/// What `pathgate tail` was asked for.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub input: Input,
    pub selection: Selection,
    /// Keep reading as the input grows.
    pub follow: bool,
    /// Print the matching entries as JSONL, unchanged, instead of lines.
    pub json: bool,
    pub color: ColorChoice,
}

/// Why `pathgate tail` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The input could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// Standard output failed (other than the reader going away).
    #[error("cannot write to standard output: {0}")]
    Write(io::Error),
    /// Some lines were not entries; each was reported on stderr as it was read.
    #[error("{0} line(s) were not {SCHEMA} entries (reported above)")]
    Unreadable(u64),
}

/// Runs the view until the input ends (or for ever with `follow` on a spool or file).
pub fn run(options: TailOptions) -> Result<(), TailError> {
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let style = Style {
        color: options.color.enabled(
            terminal,
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        ),
        width: terminal.then(terminal_width).flatten(),
        show_session: options.selection.sessions.len() != 1,
    };
    let mut printer = Printer::new(io::BufWriter::new(stdout.lock()), &options, style);
    printer.terminal = terminal;
    match drive(&options, &mut printer) {
        Err(TailError::Write(error)) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(error),
        Ok(()) => printer.unreadable_result(),
    }
}

/// Reads `options.input` into `printer` until it ends.
fn drive<W: Write>(options: &TailOptions, printer: &mut Printer<W>) -> Result<(), TailError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TailError::Read { path, source }
    };
    match &options.input {
        Input::Spool(dir) => {
            let mut spool = SpoolFollower::new(dir).map_err(read_error(dir))?;
            follow_loop(options.follow, printer, |emit| {
                spool.read_available(emit).map_err(read_error(dir))
            })?;
        }
        Input::File(path) => {
            let mut file = GrowingFile::open(path).map_err(read_error(path))?;
            follow_loop(options.follow, printer, |emit| {
                file.read_new(emit).map(drop).map_err(read_error(path))
            })?;
            // A finite file's last line needs no newline to be whole.
            if let Some((bytes, number)) = file.take_partial() {
                printer.event(Event::Line {
                    bytes: &bytes,
                    file: path,
                    number,
                })?;
            }
        }
        Input::Stdin => {
            let mut lines = StdinLines::default();
            let mut stdin = io::stdin().lock();
            loop {
                let mut failure = None;
                let more = lines
                    .read_some(&mut stdin, &mut |event| {
                        if failure.is_none() {
                            failure = printer.event(event).err();
                        }
                    })
                    .map_err(read_error(Path::new("standard input")))?;
                if let Some(error) = failure {
                    return Err(error);
                }
                printer.tick(Instant::now())?;
                if !more {
                    break;
                }
            }
        }
    }
    printer.finish()
}

/// Reads what `read` has, prints it, and with `follow` sleeps and reads again, for ever
/// (until the output goes away).
fn follow_loop<W: Write>(
    follow: bool,
    printer: &mut Printer<W>,
    mut read: impl FnMut(&mut dyn FnMut(Event<'_>)) -> Result<(), TailError>,
) -> Result<(), TailError> {
    loop {
        let mut failure = None;
        read(&mut |event| {
            if failure.is_none() {
                failure = printer.event(event).err();
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        printer.tick(Instant::now())?;
        if !follow {
            return Ok(());
        }
        if printer.output_closed() {
            return Err(TailError::Write(io::ErrorKind::BrokenPipe.into()));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Turns input lines into output: parses, selects, pairs, draws or copies.
struct Printer<W: Write> {
    out: W,
    json: bool,
    selection: Selection,
    view: View,
    style: Style,
    /// Output is a terminal: its width is looked up at every tick (it may be resized).
    terminal: bool,
    /// Lines that were not entries.
    unreadable: u64,
}

impl<W: Write> Printer<W> {
    fn new(out: W, options: &TailOptions, style: Style) -> Self {
        Printer {
            out,
            json: options.json,
            selection: options.selection.clone(),
            view: View::new(options.selection.clone()),
            style,
            terminal: false,
            unreadable: 0,
        }
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), TailError> {
        match event {
            Event::Notice(text) => {
                notice(&text);
                Ok(())
            }
            Event::Line {
                bytes,
                file,
                number,
            } => self.line(bytes, file, number),
        }
    }

    fn line(&mut self, bytes: &[u8], file: &Path, number: u64) -> Result<(), TailError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let entry = match parse(bytes) {
            Ok(entry) => entry,
            Err(reason) => {
                self.unreadable += 1;
                notice(&format!("{}:{number}: {reason}", file.display()));
                return Ok(());
            }
        };
        if self.json {
            if self.selection.matches(&entry) {
                self.out.write_all(bytes).map_err(TailError::Write)?;
                self.out.write_all(b"\n").map_err(TailError::Write)?;
            }
            return Ok(());
        }
        for entry in self.view.push(entry, Instant::now()) {
            self.draw(&entry)?;
        }
        Ok(())
    }

    fn draw(&mut self, entry: &Entry) -> Result<(), TailError> {
        let mut line = format_line(entry, &self.style);
        line.push('\n');
        self.out
            .write_all(line.as_bytes())
            .map_err(TailError::Write)
    }

    /// Shows intents that waited long enough, refreshes the width, flushes.
    fn tick(&mut self, now: Instant) -> Result<(), TailError> {
        for entry in self.view.expire(now) {
            self.draw(&entry)?;
        }
        if self.terminal {
            self.style.width = terminal_width();
        }
        self.out.flush().map_err(TailError::Write)
    }

    fn finish(&mut self) -> Result<(), TailError> {
        for entry in self.view.finish() {
            self.draw(&entry)?;
        }
        self.out.flush().map_err(TailError::Write)
    }

    /// Whether the reader of a pipe went away (seen without writing).
    fn output_closed(&self) -> bool {
        !self.terminal && stdout_closed()
    }

    fn unreadable_result(&self) -> Result<(), TailError> {
        match self.unreadable {
            0 => Ok(()),
            count => Err(TailError::Unreadable(count)),
        }
    }
}

/// One line as a `pathgate.ledger/v1` entry, or why not.
fn parse(bytes: &[u8]) -> Result<Entry, String> {
    let entry: Entry =
        serde_json::from_slice(bytes).map_err(|error| format!("not a {SCHEMA} entry: {error}"))?;
    if entry.schema != SCHEMA {
        return Err(format!(
            "schema {:?}, not {SCHEMA}: skipped",
            format::sanitize(&entry.schema)
        ));
    }
    Ok(entry)
}

/// A message about the input on stderr (which may itself be gone: then it is dropped).
fn notice(text: &str) {
    let _ = writeln!(io::stderr(), "pathgate tail: {}", format::sanitize(text));
}

/// Columns of the terminal on stdout (the window size, else `COLUMNS`).
fn terminal_width() -> Option<usize> {
    let from_window = rustix::termios::tcgetwinsize(io::stdout())
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|columns| *columns > 0);
    from_window.or_else(|| {
        std::env::var("COLUMNS")
            .ok()?
            .parse()
            .ok()
            .filter(|columns| *columns > 0)
    })
}

/// Whether stdout is a pipe whose reader closed (`POLLERR`), asked without blocking.
fn stdout_closed() -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let stdout = io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
