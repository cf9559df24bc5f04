//! Playbooks: `playbooks/*.toml` loaded into validated steps (SPEC section 4).

use std::ops::Range;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_spanned::Spanned;

use crate::error::{Error, SourceFile};
use crate::toml_source;

const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    name: String,
    description: Option<String>,
    #[serde(default)]
    report_vars: Vec<Spanned<String>>,
    #[serde(default)]
    vars: IndexMap<String, toml::Value>,
    #[serde(default)]
    rollout: RawRollout,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    on_failure: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    concurrency: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(i32),
    Many(Vec<i32>),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    exit: Option<OneOrMany>,
    stdout_contains: Option<Spanned<String>>,
    stdout_regex: Option<Spanned<String>>,
    stderr_not_contains: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    run: Option<Spanned<String>>,
    local: Option<Spanned<String>>,
    shell: Option<String>,
    when: Option<Spanned<String>>,
    unless: Option<Spanned<String>>,
    capture: Option<Spanned<String>>,
    #[serde(default)]
    expect: RawExpect,
    #[serde(default)]
    retries: u32,
    retry_delay: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    sudo: bool,
    #[serde(default)]
    env: IndexMap<String, Spanned<String>>,
    changes: Option<bool>,
    #[serde(default)]
    ignore_failure: bool,
}

/// A template's source text and where it sits in the playbook.
#[derive(Debug, Clone)]
pub struct Text {
    pub text: String,
    pub span: Range<usize>,
}

impl From<&Spanned<String>> for Text {
    fn from(s: &Spanned<String>) -> Self {
        Text {
            text: s.get_ref().clone(),
            span: s.span(),
        }
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// A script run by `shell` on the node.
    Run { script: Text, shell: String },
    /// A script run by `shell` on the runner, once per node.
    Local { script: Text, shell: String },
}

impl Action {
    pub fn script(&self) -> &Text {
        match self {
            Action::Run { script, .. } | Action::Local { script, .. } => script,
        }
    }
}

/// Output checks of a run/local step.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub exit: Vec<i32>,
    pub stdout_contains: Option<Text>,
    pub stdout_regex: Option<Text>,
    pub stderr_not_contains: Option<Text>,
}

/// One validated step.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub action: Action,
    pub when: Option<Text>,
    pub unless: Option<Text>,
    pub capture: Option<Spanned<String>>,
    pub expect: Expect,
    pub retries: u32,
    pub retry_delay: Duration,
    pub timeout: Option<Duration>,
    pub sudo: bool,
    pub env: IndexMap<String, Text>,
    /// Whether success counts as a change (`changes`, default true for run/local).
    pub changes: bool,
    pub ignore_failure: bool,
    pub span: Range<usize>,
}

/// A loaded playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub source: SourceFile,
    pub name: String,
    pub description: Option<String>,
    pub report_vars: Vec<Spanned<String>>,
    pub vars: IndexMap<String, toml::Value>,
    pub concurrency: Option<usize>,
    pub steps: Vec<Step>,
    pub on_failure: Vec<Step>,
}

impl Playbook {
    /// Loads and validates a playbook file.
    pub fn load(path: &std::path::Path) -> Result<Self, Error> {
        Self::from_source(SourceFile::read(path, "playbook")?)
    }

    /// Validates a playbook already in memory.
    pub fn from_source(source: SourceFile) -> Result<Self, Error> {
        let raw: RawPlaybook = toml_source::parse(&source, "playbook")?;
        let concurrency = match raw.rollout.concurrency {
            Some(c) if *c.get_ref() == 0 => {
                return Err(Error::at(
                    source.locate(c.span()),
                    "concurrency must be at least 1",
                    "set [rollout] concurrency to the most nodes to work on at once",
                ));
            }
            c => c.map(|c| c.into_inner()),
        };
        let steps = convert_steps(&source, &raw.steps)?;
        let on_failure = convert_steps(&source, &raw.on_failure)?;
        if steps.is_empty() {
            return Err(Error::at(
                source.locate(0..0),
                "the playbook has no [[steps]]",
                "add at least one [[steps]] table with `run` or `local`",
            ));
        }
        Ok(Playbook {
            source,
            name: raw.name,
            description: raw.description,
            report_vars: raw.report_vars,
            vars: raw.vars,
            concurrency,
            steps,
            on_failure,
        })
    }

    /// A one-step playbook for `fleetfix exec`.
    pub fn ad_hoc(command: &str) -> Self {
        let text = format!(
            "name = \"exec\"\n[[steps]]\nrun = {}\n",
            toml_string(command)
        );
        let source = SourceFile {
            path: "<exec>".into(),
            text: text.into(),
        };
        let raw: RawPlaybook = match toml_source::parse(&source, "playbook") {
            Ok(raw) => raw,
            Err(e) => unreachable!("ad-hoc playbook is well-formed: {e}"),
        };
        let mut steps = match convert_steps(&source, &raw.steps) {
            Ok(steps) => steps,
            Err(e) => unreachable!("ad-hoc step is well-formed: {e}"),
        };
        steps[0].name = command.to_string();
        Playbook {
            source,
            name: "exec".into(),
            description: None,
            report_vars: Vec::new(),
            vars: IndexMap::new(),
            concurrency: None,
            steps,
            on_failure: Vec::new(),
        }
    }

    /// Every step, main steps first, with whether it is an on_failure step.
    pub fn all_steps(&self) -> impl Iterator<Item = (&Step, bool)> {
        self.steps
            .iter()
            .map(|s| (s, false))
            .chain(self.on_failure.iter().map(|s| (s, true)))
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn convert_steps(source: &SourceFile, raw: &[Spanned<RawStep>]) -> Result<Vec<Step>, Error> {
    raw.iter()
        .enumerate()
        .map(|(i, s)| convert_step(source, i, s))
        .collect()
}

fn convert_step(
    source: &SourceFile,
    index: usize,
    spanned: &Spanned<RawStep>,
) -> Result<Step, Error> {
    let raw = spanned.get_ref();
    let here = || source.locate(spanned.span());
    let shell = raw.shell.clone().unwrap_or_else(|| "sh".to_string());
    let action = match (&raw.run, &raw.local) {
        (Some(run), None) => Action::Run {
            script: run.into(),
            shell,
        },
        (None, Some(local)) => Action::Local {
            script: local.into(),
            shell,
        },
        (None, None) => {
            return Err(Error::at(
                here(),
                "step has no action",
                "give the step exactly one of `run` or `local`",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(Error::at(
                here(),
                "step has more than one action",
                "give the step exactly one of `run` or `local`; split it in two steps",
            ));
        }
    };
    let name = raw
        .name
        .clone()
        .unwrap_or_else(|| default_name(index, &action.script().text));
    let duration = |v: &Option<Spanned<String>>| -> Result<Option<Duration>, Error> {
        v.as_ref()
            .map(|d| toml_source::duration(source, d))
            .transpose()
    };
    let expect = Expect {
        exit: match &raw.expect.exit {
            None => vec![0],
            Some(OneOrMany::One(c)) => vec![*c],
            Some(OneOrMany::Many(c)) => c.clone(),
        },
        stdout_contains: raw.expect.stdout_contains.as_ref().map(Text::from),
        stdout_regex: raw.expect.stdout_regex.as_ref().map(Text::from),
        stderr_not_contains: raw.expect.stderr_not_contains.as_ref().map(Text::from),
    };
    if let Some(capture) = &raw.capture {
        check_identifier(source, capture)?;
    }
    Ok(Step {
        name,
        action,
        when: raw.when.as_ref().map(Text::from),
        unless: raw.unless.as_ref().map(Text::from),
        capture: raw.capture.clone(),
        expect,
        retries: raw.retries,
        retry_delay: duration(&raw.retry_delay)?.unwrap_or(DEFAULT_RETRY_DELAY),
        timeout: duration(&raw.timeout)?,
        sudo: raw.sudo,
        env: raw
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Text::from(v)))
            .collect(),
        changes: raw.changes.unwrap_or(true),
        ignore_failure: raw.ignore_failure,
        span: spanned.span(),
    })
}

fn default_name(index: usize, script: &str) -> String {
    let first = script.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(line) if line.chars().count() <= 60 => line.to_string(),
        Some(line) => format!("{}…", line.chars().take(59).collect::<String>()),
        None => format!("step {}", index + 1),
    }
}

fn check_identifier(source: &SourceFile, name: &Spanned<String>) -> Result<(), Error> {
    let n = name.get_ref();
    let mut chars = n.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        return Ok(());
    }
    Err(Error::at(
        source.locate(name.span()),
        format!("capture name `{n}` is not a variable name"),
        "use letters, digits and `_`, starting with a letter",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Playbook, Error> {
        Playbook::from_source(SourceFile {
            path: "pb.toml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn steps_get_defaults() {
        let pb = load("name = \"x\"\n[[steps]]\nrun = \"uname -r\"\n").expect("valid");
        let s = &pb.steps[0];
        assert_eq!(s.name, "uname -r");
        assert_eq!(s.expect.exit, vec![0]);
        assert!(s.changes);
        assert_eq!(s.retries, 0);
    }

    #[test]
    fn a_step_needs_exactly_one_action() {
        let err = load("name = \"x\"\n[[steps]]\nname = \"nothing\"\n").unwrap_err();
        assert!(
            err.render().contains("pb.toml:2:1: step has no action"),
            "{}",
            err.render()
        );
        let err = load("name = \"x\"\n[[steps]]\nrun = \"a\"\nlocal = \"b\"\n").unwrap_err();
        assert!(
            err.render().contains("more than one action"),
            "{}",
            err.render()
        );
    }

    #[test]
    fn bad_duration_points_at_value() {
        let err = load("name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"soon\"\n").unwrap_err();
        assert!(err.render().contains("pb.toml:4:11:"), "{}", err.render());
    }

    #[test]
    fn ad_hoc_playbook_carries_the_command() {
        let pb = Playbook::ad_hoc("echo \"hi\" '$x'");
        assert_eq!(pb.steps[0].action.script().text, "echo \"hi\" '$x'");
    }
}
