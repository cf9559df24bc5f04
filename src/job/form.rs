//! The two forms of a job's typed parts: compiled once per playbook
//! (templates as handles) and rendered per node (plain values). A part
//! generic over [`Form`] is written once and holds either.

use std::fmt::Debug;
use std::sync::Arc;

use crate::config::playbook::Text;
use crate::config::template::TemplateId;

/// What a part holds where the playbook has a template.
pub trait Form {
    /// A text template.
    type Text: Clone + Debug;
    /// A regular expression (a template until rendered).
    type Regex: Clone + Debug;
    /// The bytes an upload writes.
    type Content: Clone + Debug;
}

/// Parts as compiled from the playbook, once.
#[derive(Debug, Clone, Copy)]
pub enum Compiled {}

/// Parts rendered for one node (or, for gates, for the run).
#[derive(Debug, Clone, Copy)]
pub enum Rendered {}

impl Form for Compiled {
    type Text = Tpl;
    type Regex = Tpl;
    type Content = Content;
}

impl Form for Rendered {
    type Text = String;
    type Regex = regex::Regex;
    type Content = Vec<u8>;
}

/// A compiled template of the playbook: its handle in the job's templates,
/// its text and place in the playbook, and what an error calls it.
#[derive(Debug, Clone)]
pub struct Tpl {
    pub id: TemplateId,
    pub text: Text,
    /// How a rendering error names it: "the script", "`env`", "a gate"…
    pub what: &'static str,
}

/// What an upload writes, compiled: the file's bytes, or its template
/// (`template = true`).
#[derive(Debug, Clone)]
pub enum Content {
    Bytes(Arc<[u8]>),
    Template(Tpl),
}
