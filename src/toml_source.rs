//! Deserializing user TOML with every error pointing at file:line:col.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;

use crate::error::{Error, SourceFile};

/// Parses `src` into `T`; a syntax or schema error names its position.
pub fn parse<T: DeserializeOwned>(src: &SourceFile, what: &str) -> Result<T, Error> {
    toml::from_str(&src.text).map_err(|e| {
        let message = e.message().trim().to_string();
        let hint = hint_for(&message, what);
        match e.span() {
            Some(span) => Error::at(src.locate(span), message, hint),
            None => Error::input(format!("{}: {message}", src.path.display()), hint),
        }
    })
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

/// A duration such as `10s`, `5m`, `1h30m`, pointing at the value when bad.
pub fn duration(src: &SourceFile, value: &Spanned<String>) -> Result<Duration, Error> {
    humantime::parse_duration(value.get_ref().trim()).map_err(|e| {
        Error::at(
            src.locate(value.span()),
            format!("`{}` is not a duration: {e}", value.get_ref()),
            "write durations like \"500ms\", \"10s\", \"5m\" or \"1h\"",
        )
    })
}

/// `~` and `~/…` expand to the home directory, as ssh does.
pub fn expand_tilde(path: &str) -> std::path::PathBuf {
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
