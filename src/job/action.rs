//! What a step or a gate does, typed: each kind of action holds exactly
//! what it needs, its templates compiled ([`Compiled`]) or rendered
//! ([`Rendered`]), so an http step always has its request and a command
//! never has HTTP expectations.
//!
//! [`Compiled`]: crate::job::form::Compiled

use crate::job::expect::{CommandExpect, HttpExpect};
use crate::job::form::{Form, Rendered};
use crate::job::http::Request;
use crate::job::upload::Upload;

/// A step's templated parts: its action, its guard and its environment.
#[derive(Debug, Clone)]
pub struct Task<F: Form = Rendered> {
    pub action: Action<F>,
    /// `unless`: a command whose exit 0 skips the step (never on http steps).
    pub unless: Option<F::Text>,
    /// `env`: exported before the script, in the playbook's order.
    pub env: Vec<(String, F::Text)>,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action<F: Form = Rendered> {
    /// A script run on the node.
    Run(Command<F>),
    /// A script run on the runner, once per node.
    Local(Command<F>),
    /// An HTTP request, from the runner or through the node's connection.
    Http(Http<F>),
    /// A file written to the node, atomically.
    Upload(UploadStep<F>),
}

/// A script, its shell, and what its run must show.
#[derive(Debug, Clone)]
pub struct Command<F: Form = Rendered> {
    pub script: F::Text,
    pub shell: String,
    pub expect: CommandExpect<F>,
}

/// A request and what its response must be.
#[derive(Debug, Clone)]
pub struct HttpCheck<F: Form = Rendered> {
    pub request: Request<F>,
    pub expect: HttpExpect<F>,
}

/// An http step.
#[derive(Debug, Clone)]
pub struct Http<F: Form = Rendered> {
    pub check: HttpCheck<F>,
    /// Tunnelled through the node's SSH connection (`via = "ssh"`).
    pub via_ssh: bool,
    /// Capture this header's value (lower-case name) instead of the body.
    pub capture_header: Option<String>,
}

/// An upload step: its file, and what the script that writes it must show.
#[derive(Debug, Clone)]
pub struct UploadStep<F: Form = Rendered> {
    pub file: Upload<F>,
    pub expect: CommandExpect<F>,
}

/// What a `[[gate]]` checks, on the runner.
#[derive(Debug, Clone)]
pub enum GateCheck<F: Form = Rendered> {
    Local(Command<F>),
    Http(HttpCheck<F>),
}

impl<F: Form> Action<F> {
    /// The shell that runs the step's commands (its script, `unless`, an
    /// upload's script), and whether it runs on the runner.
    pub fn shell(&self) -> (&str, bool) {
        match self {
            Action::Run(c) => (&c.shell, false),
            Action::Local(c) => (&c.shell, true),
            Action::Upload(_) => ("sh", false),
            // Guards of http steps are refused at load time.
            Action::Http(_) => ("sh", true),
        }
    }

    /// The script of a run or local step.
    pub fn script(&self) -> Option<&F::Text> {
        match self {
            Action::Run(c) | Action::Local(c) => Some(&c.script),
            Action::Http(_) | Action::Upload(_) => None,
        }
    }

    /// The expectations of a step that runs a command.
    pub fn command_expect(&self) -> Option<&CommandExpect<F>> {
        match self {
            Action::Run(c) | Action::Local(c) => Some(&c.expect),
            Action::Upload(u) => Some(&u.expect),
            Action::Http(_) => None,
        }
    }
}
