//! What an HTTP check asks and expects, and what came back: plain data
//! the job holds and the transport sends and fills.

use std::time::Duration;

/// A rendered request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub insecure_tls: bool,
    pub timeout: Duration,
}

/// What came back: header names lower-case, the body capped.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `HTTP 200; x-relay-version: 0.2.0; …` — what a failed check shows.
    pub fn describe(&self) -> String {
        let mut s = format!("HTTP {}", self.status);
        for (k, v) in self.headers.iter().take(12) {
            s.push_str(&format!("\n{k}: {v}"));
        }
        let mut body: String = self.body.chars().take(300).collect();
        if body.len() < self.body.len() {
            body.push('…');
        }
        if !body.trim().is_empty() {
            s.push_str(&format!("\n\n{}", body.trim_end()));
        }
        s
    }
}

/// Rendered expectations of an HTTP check.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub status: Vec<u16>,
    pub headers: Vec<(String, String)>,
    pub body_contains: Vec<String>,
    pub body_not_contains: Vec<String>,
}

impl Expect {
    /// Why `r` fails these expectations, if it does.
    pub fn check(&self, r: &Response) -> Option<String> {
        if !self.status.is_empty() && !self.status.contains(&r.status) {
            let want: Vec<String> = self.status.iter().map(u16::to_string).collect();
            return Some(format!(
                "status {}, expected {}",
                r.status,
                want.join(" or ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_name_what_differs() {
        let r = Response {
            status: 200,
            headers: vec![("x-relay-version".into(), "0.1.0".into())],
            body: "ok".into(),
        };
        let mut e = Expect {
            status: vec![200, 404],
            headers: vec![("X-Relay-Version".into(), "0.2.0".into())],
            ..Default::default()
        };
        let why = e.check(&r).expect("mismatch");
        assert!(why.contains("expected `0.2.0`, got `0.1.0`"), "{why}");
        e.headers.clear();
        e.body_not_contains = vec!["error".into(), "ok".into()];
        assert!(
            e.check(&r)
                .is_some_and(|w| w.contains("body contains `ok`"))
        );
        e.body_not_contains.clear();
        e.status = vec![204];
        assert!(
            e.check(&r)
                .is_some_and(|w| w.contains("status 200, expected 204"))
        );
    }
}
