//! What an HTTP check asks and expects, and what came back: plain data
//! the job holds and the transport sends and fills.

use std::time::Duration;

use crate::job::form::{Form, Rendered};

/// Timeout of an HTTP check that sets none.
pub(crate) const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A request of an http step or a gate; rendered unless said otherwise.
/// Headers are sent in the playbook's order.
#[derive(Debug, Clone)]
pub struct Request<F: Form = Rendered> {
    pub method: String,
    pub url: F::Text,
    pub headers: Vec<(String, F::Text)>,
    pub body: Option<F::Text>,
    pub insecure_tls: bool,
    /// The request's own, else its step's or gate's, else the default.
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
