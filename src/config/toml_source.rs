//! Deserializing user TOML with every error pointing at file:line:col.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;

use crate::support::error::{Error, SourceFile};

/// Parses `src` into `T`; a syntax or schema error names its position and,
/// for a value of the wrong type, what the key takes in the file's words.
pub(crate) fn parse<T: DeserializeOwned>(src: &SourceFile, what: &str) -> Result<T, Error> {
    toml::from_str(&src.text).map_err(|e| {
        let raw = e.message().trim().to_string();
        let key = e.span().and_then(|span| key_before(&src.text, span.start));
        let (message, hint) = match (key.as_deref(), key.as_deref().and_then(accepted)) {
            (Some(key), Some(takes)) if is_type_error(&raw) => (
                format!("`{key}` takes {takes}{}", found(&raw)),
                format!("write `{key}` as {takes}"),
            ),
            _ => (plain_words(&raw), hint_for(&raw, what)),
        };
        let message = shorten(&message, 300);
        match e.span() {
            Some(span) => Error::at(src.locate(span), message, hint),
            None => Error::input(format!("{}: {message}", src.path.display()), hint),
        }
    })
}

/// What the one-or-another values say when none fits (their serde
/// `expecting`): a value of the wrong shape.
const EXPECTING: &[&str] = &[
    "a node count like 2 or a percentage like \"25%\"",
    "a code or a list of codes",
    "a text or a list of texts",
    "a file mode like \"0644\" or 0o644",
    "a [jump_hosts] name, \"user@host:port\", or a list of them",
];

/// A value of the wrong type or shape (as opposed to a syntax error or an
/// unknown key).
fn is_type_error(message: &str) -> bool {
    message.starts_with("invalid type")
        || message.starts_with("invalid value")
        || message.starts_with("data did not match")
        || message.starts_with("invalid length")
        || EXPECTING.contains(&message)
}

/// `, not a string` from serde's `invalid type: string "x", expected …`.
fn found(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return String::new();
    };
    let what = rest.split(", expected").next().unwrap_or(rest);
    format!(", not {}", shorten(what, 60))
}

/// What a key takes, in the words of the file.
fn accepted(key: &str) -> Option<&'static str> {
    Some(match key {
        "batches" => "a list of node counts like 2 or percentages like \"25%\"",
        "max_failed" | "max_unreachable" => "a node count like 2 or a percentage like \"10%\"",
        "concurrency" => "a whole number of nodes, 1 or more",
        "retries" => "a whole number from 0 to 10000",
        "port" => "a port number from 1 to 65535",
        "exit" => "an exit code from 0 to 255, or a list of them",
        "status" => "an HTTP status code from 100 to 599, or a list of them",
        "jump" => "a [jump_hosts] name, \"user@host:port\", or a list of them",
        "timeout" | "retry_delay" | "pause" | "connect_timeout" => {
            "a duration in quotes like \"30s\", \"5m\" or \"1h\""
        }
        "mode" => "a file mode like \"0644\" or 0o644",
        "sudo" | "changes" | "ignore_failure" | "insecure_tls" | "template" => "true or false",
        "stdout_contains" | "stderr_not_contains" | "body_contains" | "body_not_contains" => {
            "a text or a list of texts"
        }
        "groups" | "report_vars" => "a list of names in quotes",
        "vars" | "env" | "headers" => "a table like { name = \"value\" }",
        "expect" | "http" | "upload" | "rollout" | "defaults" | "secrets" => "a table",
        "name" | "description" | "host" | "user" | "identity_file" | "host_key" | "run"
        | "local" | "shell" | "when" | "unless" | "capture" | "capture_header" | "url"
        | "method" | "body" | "via" | "src" | "dest" | "owner" | "stdout_regex" => {
            "a text in quotes"
        }
        _ => return None,
    })
}

/// The key whose value starts at `at`: the word before the `=` that
/// precedes it on its line (or in its inline table).
fn key_before(text: &str, at: usize) -> Option<String> {
    let at = crate::support::text::floor_char_boundary(text, at);
    let head = &text[..at];
    let line_start = head.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = &head[line_start..];
    let eq = line.rfind('=')?;
    let key = line[..eq]
        .trim_end()
        .rsplit(|c: char| c.is_whitespace() || c == '{' || c == ',' || c == '.')
        .next()?
        .trim_matches('"');
    (!key.is_empty()).then(|| key.to_string())
}

/// serde's words for Rust types, in the words of the file.
fn plain_words(message: &str) -> String {
    let mut m = message.to_string();
    for (rust, plain) in [
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        m = m.replace(rust, plain);
    }
    m
}

/// At most `max` chars of `text`, with `…` where it was cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn hint_for(message: &str, what: &str) -> String {
    if message.starts_with("unknown field") {
        format!("remove the key or fix its spelling; the {what} accepts the keys listed above")
    } else if message.starts_with("missing field") {
        "add the required key".to_string()
    } else if message.starts_with("invalid type") {
        "give the value the type the message names".to_string()
    } else if message.contains("duplicate key") {
        "each key may appear once; node and step names must be unique".to_string()
    } else {
        "fix the TOML syntax at this position".to_string()
    }
}

/// The longest duration any setting takes: longer is a typo (and past
/// what the clock arithmetic of a run may add).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);

/// Whether a duration of zero makes sense for a setting (a pause may be
/// none; a timeout of none can never be met).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zero {
    Allowed,
    Refused,
}

/// A duration such as `10s`, `5m`, `1h30m`, up to [`MAX_DURATION`],
/// pointing at the value when bad.
pub(crate) fn duration(
    src: &SourceFile,
    value: &Spanned<String>,
    zero: Zero,
) -> Result<Duration, Error> {
    duration_text(value.get_ref(), zero).map_err(|why| {
        Error::at(
            src.locate(value.span()),
            format!("`{}` {why}", shorten(value.get_ref(), 60)),
            "write durations like \"500ms\", \"10s\", \"5m\" or \"1h\", up to 30 days",
        )
    })
}

/// A duration from a file or a flag, range-checked; the error completes
/// "`VALUE` …".
pub(crate) fn duration_text(text: &str, zero: Zero) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(text.trim()).map_err(|e| format!("is not a duration: {e}"))?;
    if d > MAX_DURATION {
        return Err("is longer than 30 days".into());
    }
    if zero == Zero::Refused && d.is_zero() {
        return Err("is zero, which can never be met".into());
    }
    Ok(d)
}

/// `~` and `~/…` expand to the home directory, as ssh does.
pub(crate) fn expand_tilde(path: &str) -> std::path::PathBuf {
    if (path == "~" || path.starts_with("~/"))
        && let Some(home) = std::env::var_os("HOME")
    {
        let mut p = std::path::PathBuf::from(home);
        if path.len() > 2 {
            p.push(&path[2..]);
        }
        return p;
    }
    std::path::PathBuf::from(path)
}
