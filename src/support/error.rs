//! Typed errors of the library, and the one place they are rendered for a
//! person: `file:line:col`, the offending line with a caret, and a hint.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::support::exit::ExitCode;

/// A user file kept in memory so that any later error can point into it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: Arc<str>,
}

impl SourceFile {
    /// Reads a file, turning I/O failures into an input error naming it,
    /// and bytes that are not UTF-8 into one at the first bad byte.
    pub fn read(path: &Path, what: &str) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::input(
                format!("cannot read {what} {}: {e}", path.display()),
                hint_for_io(&e, what),
            )
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceFile {
                path: path.to_path_buf(),
                text: text.into(),
            }),
            Err(e) => {
                let bad = e.utf8_error().valid_up_to();
                let good = String::from_utf8_lossy(&e.as_bytes()[..bad]).into_owned();
                let file = SourceFile {
                    path: path.to_path_buf(),
                    text: good.into(),
                };
                let mut at = file.locate(bad..bad);
                at.width = 1;
                Err(Error::at(
                    at,
                    format!(
                        "the {what} is not UTF-8 text: byte 0x{:02x} here is not part of a character",
                        e.as_bytes()[bad]
                    ),
                    format!("save the {what} as UTF-8"),
                ))
            }
        }
    }

    /// A location from a byte span of this file.
    pub fn locate(&self, span: Range<usize>) -> Location {
        let start = crate::support::text::floor_char_boundary(&self.text, span.start);
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = self.text[line_start..start].chars().count() + 1;
        let line_end = self.text[start..]
            .find('\n')
            .map(|i| start + i)
            .unwrap_or(self.text.len());
        let end =
            crate::support::text::floor_char_boundary(&self.text, span.end.clamp(start, line_end));
        let width = self.text[start..end].chars().count().max(1);
        let (source_line, caret) = window(&self.text[line_start..line_end], col);
        Location {
            file: self.path.clone(),
            line,
            col,
            source_line: Some(source_line),
            caret,
            width,
        }
    }

    /// A location `line_offset` lines below and at `col` relative to a span
    /// start: used to point inside a multi-line string (a template).
    pub fn locate_within(&self, span: Range<usize>, line_offset: usize, col: usize) -> Location {
        let mut offset = span.start.min(self.text.len());
        for _ in 0..line_offset {
            match self.text[offset..].find('\n') {
                Some(i) => offset += i + 1,
                None => break,
            }
        }
        if line_offset > 0 {
            offset += col.saturating_sub(1);
        } else {
            offset += col;
        }
        let offset = crate::support::text::floor_char_boundary(&self.text, offset);
        self.locate(offset..offset + 1)
    }
}

/// Chars of a source line shown around the caret at most.
const WINDOW: usize = 100;

/// The part of `line` shown under an error: all of it when short, else
/// [`WINDOW`] chars around `col` with `…` where it was cut; and the caret's
/// column in what is shown.
fn window(line: &str, col: usize) -> (String, usize) {
    let count = line.chars().count();
    if count <= WINDOW {
        return (line.to_string(), col);
    }
    let from = col.saturating_sub(WINDOW / 2 + 1).min(count - WINDOW);
    let mut shown = String::new();
    if from > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(from).take(WINDOW));
    if from + WINDOW < count {
        shown.push('…');
    }
    (shown, col - from + usize::from(from > 0))
}

fn hint_for_io(e: &std::io::Error, what: &str) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("check the path of the {what}"),
        std::io::ErrorKind::PermissionDenied => {
            format!("the {what} is not readable by this user; fix its permissions")
        }
        _ => format!("make sure the {what} is a readable text file"),
    }
}

/// A point in a user's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    /// The line (or a window of it around the caret, for a long one).
    pub source_line: Option<String>,
    /// The caret's column in `source_line`.
    pub caret: usize,
    pub width: usize,
}

/// Bad input: the run never started. Exit code 2.
#[derive(Debug, Clone)]
pub struct InputError {
    pub location: Option<Location>,
    /// The node the problem concerns, when it is node-specific.
    pub node: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    /// Depends on values only known at run time (a capture stood in by a
    /// placeholder): `check` must not reject the playbook for it.
    pub provisional: bool,
}

/// Every error the library reports to its caller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.message)]
    Input(Box<InputError>),
    #[error("{message}")]
    Runtime { message: String },
    /// Another run holds the playbook's lock. Exit code 4.
    #[error("{message}")]
    Locked { message: String },
}

impl Error {
    /// Bad input with no file position (CLI values, environment).
    pub fn input(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Input(Box::new(InputError {
            location: None,
            node: None,
            message: message.into(),
            hint: Some(hint.into()).filter(|h: &String| !h.is_empty()),
            provisional: false,
        }))
    }

    /// Bad input at a place in a file.
    pub fn at(location: Location, message: impl Into<String>, hint: impl Into<String>) -> Self {
        let Error::Input(mut e) = Error::input(message, hint) else {
            unreachable!("input() builds Error::Input")
        };
        e.location = Some(location);
        Error::Input(e)
    }

    /// Marks an input error as depending on run-time values.
    pub fn provisional(self) -> Self {
        match self {
            Error::Input(mut e) => {
                e.provisional = true;
                Error::Input(e)
            }
            other => other,
        }
    }

    /// Whether `check` may ignore this error (see `InputError::provisional`).
    pub fn is_provisional(&self) -> bool {
        matches!(self, Error::Input(e) if e.provisional)
    }

    /// Attaches the node name to an input error.
    pub fn for_node(self, node: &str) -> Self {
        match self {
            Error::Input(mut e) => {
                e.node = Some(node.to_string());
                Error::Input(e)
            }
            other => other,
        }
    }

    /// One line, `file:line:col: message`, for event fields (JSON, journal,
    /// JUnit); the full block with the caret is for the terminal.
    pub fn one_line(&self) -> String {
        match self {
            Error::Input(e) => {
                let mut s = String::new();
                if let Some(loc) = &e.location {
                    s.push_str(&format!(
                        "{}:{}:{}: ",
                        loc.file.display(),
                        loc.line,
                        loc.col
                    ));
                }
                s.push_str(&e.message);
                s
            }
            other => other.to_string(),
        }
    }

    /// The process exit code this error stands for (SPEC section 2).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Input(_) => ExitCode::BadInput,
            Error::Runtime { .. } => ExitCode::Failed,
            Error::Locked { .. } => ExitCode::Locked,
        }
    }

    /// Renders the error for a person, once, at the edge.
    pub fn render(&self) -> String {
        Rendered(self).to_string()
    }
}

struct Rendered<'a>(&'a Error);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = match self.0 {
            Error::Input(e) => e,
            Error::Runtime { message } | Error::Locked { message } => {
                return write!(f, "error: {message}");
            }
        };
        write!(f, "error: ")?;
        if let Some(loc) = &e.location {
            write!(f, "{}:{}:{}: ", loc.file.display(), loc.line, loc.col)?;
        }
        if let Some(node) = &e.node {
            write!(f, "node {node}: ")?;
        }
        write!(f, "{}", e.message)?;
        if let Some(loc) = &e.location
            && let Some(src) = &loc.source_line
        {
            let num = loc.line.to_string();
            let pad = " ".repeat(num.len());
            write!(f, "\n{pad} |\n{num} | {src}\n{pad} | ")?;
            let lead: String = src
                .chars()
                .take(loc.caret.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "{lead}{}", "^".repeat(loc.width.clamp(1, 80)))?;
        }
        if let Some(hint) = &e.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_points_at_line_and_column() {
        let src = SourceFile {
            path: "p.toml".into(),
            text: "a = 1\nbad = 2\n".into(),
        };
        let loc = src.locate(6..9);
        assert_eq!((loc.line, loc.col, loc.width), (2, 1, 3));
        let text = Error::at(loc, "unknown key `bad`", "remove it").render();
        assert!(
            text.starts_with("error: p.toml:2:1: unknown key `bad`"),
            "{text}"
        );
        assert!(text.contains("2 | bad = 2\n  | ^^^"), "{text}");
        assert!(text.ends_with("hint: remove it"), "{text}");
    }
}
