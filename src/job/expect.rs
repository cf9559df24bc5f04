//! Expectations, typed by what they check: a command's exit code and
//! output, or an HTTP response's status, headers and body. The one checker
//! of both, for steps and gates alike.

use crate::job::form::{Form, Rendered};
use crate::job::http::Response;

/// What a command (run, local, upload, a local gate) must do to succeed.
#[derive(Debug, Clone)]
pub struct CommandExpect<F: Form = Rendered> {
    /// Exit codes that pass (never empty: `[0]` by default).
    pub exit: Vec<i32>,
    pub stdout_contains: Vec<F::Text>,
    /// Compiled with `^`/`$` matching at line ends.
    pub stdout_regex: Option<F::Regex>,
    pub stderr_not_contains: Vec<F::Text>,
}

/// What an HTTP response (of an http step or gate) must be to pass.
#[derive(Debug, Clone)]
pub struct HttpExpect<F: Form = Rendered> {
    /// Status codes that pass (never empty: the defaults are set on load).
    pub status: Vec<u16>,
    /// Header name (lower-case) and its exact value.
    pub headers: Vec<(String, F::Text)>,
    pub body_contains: Vec<F::Text>,
    pub body_not_contains: Vec<F::Text>,
}

impl<F: Form> Default for CommandExpect<F> {
    fn default() -> Self {
        CommandExpect {
            exit: vec![0],
            stdout_contains: Vec::new(),
            stdout_regex: None,
            stderr_not_contains: Vec::new(),
        }
    }
}

impl<F: Form> Default for HttpExpect<F> {
    fn default() -> Self {
        HttpExpect {
            status: Vec::new(),
            headers: Vec::new(),
            body_contains: Vec::new(),
            body_not_contains: Vec::new(),
        }
    }
}

impl<F: Form> CommandExpect<F> {
    /// Whether the exit status alone decides success (no output checks).
    pub fn exit_decides(&self) -> bool {
        self.stdout_contains.is_empty()
            && self.stdout_regex.is_none()
            && self.stderr_not_contains.is_empty()
    }
}

impl CommandExpect {
    /// Why a command that exited with `code` and wrote `stdout` and
    /// `stderr` fails these expectations, if it does.
    pub fn check(&self, code: i32, stdout: &str, stderr: &str) -> Option<String> {
        if !self.exit.contains(&code) {
            return Some(format!("exit code {code}, expected {}", list(&self.exit)));
        }
        if let Some(want) = self
            .stdout_contains
            .iter()
            .find(|w| !stdout.contains(w.as_str()))
        {
            return Some(format!("stdout does not contain `{want}`"));
        }
        if let Some(re) = &self.stdout_regex
            && !re.is_match(stdout)
        {
            return Some(format!("stdout does not match /{}/", re.as_str()));
        }
        if let Some(bad) = self
            .stderr_not_contains
            .iter()
            .find(|b| stderr.contains(b.as_str()))
        {
            return Some(format!("stderr contains `{bad}`"));
        }
        None
    }
}

impl HttpExpect {
    /// Why `r` fails these expectations, if it does.
    pub fn check(&self, r: &Response) -> Option<String> {
        if !self.status.is_empty() && !self.status.contains(&r.status) {
            return Some(format!(
                "status {}, expected {}",
                r.status,
                list(&self.status)
            ));
        }
        for (name, want) in &self.headers {
            match r.header(name) {
                Some(got) if got == want => {}
                Some(got) => return Some(format!("header {name}: expected `{want}`, got `{got}`")),
                None => {
                    return Some(format!(
                        "header {name}: expected `{want}`, but the response has no {name}"
                    ));
                }
            }
        }
        if let Some(want) = self
            .body_contains
            .iter()
            .find(|w| !r.body.contains(w.as_str()))
        {
            return Some(format!("body does not contain `{want}`"));
        }
        if let Some(bad) = self
            .body_not_contains
            .iter()
            .find(|b| r.body.contains(b.as_str()))
        {
            return Some(format!("body contains `{bad}`"));
        }
        None
    }
}

/// `0 or 3`.
fn list<T: ToString>(codes: &[T]) -> String {
    codes
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(exit: Vec<i32>) -> CommandExpect {
        CommandExpect {
            exit,
            ..Default::default()
        }
    }

    #[test]
    fn a_command_passes_when_every_check_does() {
        let mut e = command(vec![0, 3]);
        e.stdout_contains = vec!["ready".into()];
        e.stdout_regex = Some(
            regex::RegexBuilder::new("^v[0-9]+$")
                .multi_line(true)
                .build()
                .expect("valid"),
        );
        e.stderr_not_contains = vec!["error".into()];
        assert_eq!(e.check(3, "ready\nv12\n", "warning"), None);
        assert!(!e.exit_decides());
        assert!(command(vec![0]).exit_decides());
    }

    #[test]
    fn a_command_fails_on_its_exit_code() {
        let e = command(vec![0, 3]);
        assert_eq!(
            e.check(1, "", "").as_deref(),
            Some("exit code 1, expected 0 or 3")
        );
    }

    #[test]
    fn a_command_fails_on_stdout_contains() {
        let mut e = command(vec![0]);
        e.stdout_contains = vec!["ready".into(), "set".into()];
        assert_eq!(
            e.check(0, "ready", "").as_deref(),
            Some("stdout does not contain `set`")
        );
    }

    #[test]
    fn a_command_fails_on_stdout_regex() {
        let mut e = command(vec![0]);
        e.stdout_regex = Some(regex::Regex::new("^ok$").expect("valid"));
        assert_eq!(
            e.check(0, "not ok", "").as_deref(),
            Some("stdout does not match /^ok$/")
        );
    }

    #[test]
    fn a_command_fails_on_stderr_not_contains() {
        let mut e = command(vec![0]);
        e.stderr_not_contains = vec!["error".into()];
        assert_eq!(
            e.check(0, "", "an error").as_deref(),
            Some("stderr contains `error`")
        );
    }

    fn response() -> Response {
        Response {
            status: 200,
            headers: vec![("x-relay-version".into(), "0.1.0".into())],
            body: "ok".into(),
        }
    }

    #[test]
    fn a_response_passes_when_every_check_does() {
        let e = HttpExpect {
            status: vec![200, 204],
            headers: vec![("x-relay-version".into(), "0.1.0".into())],
            body_contains: vec!["ok".into()],
            body_not_contains: vec!["error".into()],
        };
        assert_eq!(e.check(&response()), None);
        // No status listed: any passes.
        assert_eq!(HttpExpect::default().check(&response()), None);
    }

    #[test]
    fn a_response_fails_on_its_status() {
        let e = HttpExpect {
            status: vec![204, 404],
            ..Default::default()
        };
        assert_eq!(
            e.check(&response()).as_deref(),
            Some("status 200, expected 204 or 404")
        );
    }

    #[test]
    fn a_response_fails_on_a_header() {
        let mut e = HttpExpect {
            headers: vec![("X-Relay-Version".into(), "0.2.0".into())],
            ..Default::default()
        };
        assert_eq!(
            e.check(&response()).as_deref(),
            Some("header X-Relay-Version: expected `0.2.0`, got `0.1.0`")
        );
        e.headers = vec![("etag".into(), "x".into())];
        assert_eq!(
            e.check(&response()).as_deref(),
            Some("header etag: expected `x`, but the response has no etag")
        );
    }

    #[test]
    fn a_response_fails_on_its_body() {
        let mut e = HttpExpect {
            body_contains: vec!["ready".into()],
            ..Default::default()
        };
        assert_eq!(
            e.check(&response()).as_deref(),
            Some("body does not contain `ready`")
        );
        e.body_contains.clear();
        e.body_not_contains = vec!["error".into(), "ok".into()];
        assert_eq!(e.check(&response()).as_deref(), Some("body contains `ok`"));
    }
}
