//! Playbooks: `playbooks/*.toml` loaded into validated steps (SPEC section 4).

use std::ops::Range;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::rollout::{Rollout, Size, SizeValue};
use crate::config::toml_source::{self, Zero};
use crate::support::error::{Error, SourceFile};

const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// More retries than this is a typo, not a plan.
const MAX_RETRIES: u32 = 10_000;

/// More nodes in flight than this is a typo (each is a socket and a task).
pub(crate) const MAX_CONCURRENCY: usize = 100_000;

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
    secrets: IndexMap<String, Spanned<RawSecret>>,
    #[serde(default)]
    rollout: RawRollout,
    #[serde(default)]
    gate: Vec<Spanned<RawGate>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    on_failure: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    env: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    batches: Option<Spanned<Vec<SizeValue>>>,
    concurrency: Option<Spanned<usize>>,
    max_failed: Option<Spanned<SizeValue>>,
    max_unreachable: Option<Spanned<SizeValue>>,
    pause: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    url: Spanned<String>,
    method: Option<Spanned<String>>,
    #[serde(default)]
    headers: IndexMap<String, Spanned<String>>,
    body: Option<Spanned<String>>,
    #[serde(default)]
    insecure_tls: bool,
    timeout: Option<Spanned<String>>,
    via: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpload {
    src: Spanned<String>,
    dest: Spanned<String>,
    mode: Option<Spanned<ModeValue>>,
    owner: Option<Spanned<String>>,
    #[serde(default)]
    template: bool,
}

/// A file mode: `"0644"` or the TOML integer `0o644`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a file mode like \"0644\" or 0o644")]
enum ModeValue {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    name: String,
    http: Option<RawHttp>,
    local: Option<Spanned<String>>,
    shell: Option<String>,
    #[serde(default = "no_expect")]
    expect: Spanned<RawExpect>,
    #[serde(default = "no_retries")]
    retries: Spanned<u32>,
    retry_delay: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a code or a list of codes")]
enum OneOrMany {
    One(i32),
    Many(Vec<i32>),
}

/// One text or a list of them (`body_not_contains = ["error", "failed"]`).
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a text or a list of texts")]
enum Strings {
    One(String),
    Many(Vec<String>),
}

/// The texts of a one-or-list field; all carry the field's span (serde's
/// untagged enums cannot keep spans of their own).
fn texts(v: &Option<Spanned<Strings>>) -> Vec<Text> {
    let Some(v) = v else { return Vec::new() };
    let text = |t: &String| Text {
        text: t.clone(),
        span: v.span(),
    };
    match v.get_ref() {
        Strings::One(t) => vec![text(t)],
        Strings::Many(ts) => ts.iter().map(text).collect(),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    exit: Option<OneOrMany>,
    stdout_contains: Option<Spanned<Strings>>,
    stdout_regex: Option<Spanned<String>>,
    stderr_not_contains: Option<Spanned<Strings>>,
    status: Option<OneOrMany>,
    #[serde(default)]
    headers: IndexMap<String, Spanned<String>>,
    body_contains: Option<Spanned<Strings>>,
    body_not_contains: Option<Spanned<Strings>>,
}

fn no_retries() -> Spanned<u32> {
    Spanned::new(0..0, 0)
}

fn no_expect() -> Spanned<RawExpect> {
    Spanned::new(0..0, RawExpect::default())
}

impl RawExpect {
    fn has_command_checks(&self) -> bool {
        self.exit.is_some()
            || self.stdout_contains.is_some()
            || self.stdout_regex.is_some()
            || self.stderr_not_contains.is_some()
    }

    fn has_http_checks(&self) -> bool {
        self.status.is_some()
            || !self.headers.is_empty()
            || self.body_contains.is_some()
            || self.body_not_contains.is_some()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    run: Option<Spanned<String>>,
    local: Option<Spanned<String>>,
    http: Option<Spanned<RawHttp>>,
    upload: Option<Spanned<RawUpload>>,
    shell: Option<String>,
    when: Option<Spanned<String>>,
    unless: Option<Spanned<String>>,
    capture: Option<Spanned<String>>,
    /// For http steps: capture this response header instead of the body.
    capture_header: Option<Spanned<String>>,
    #[serde(default = "no_expect")]
    expect: Spanned<RawExpect>,
    #[serde(default = "no_retries")]
    retries: Spanned<u32>,
    retry_delay: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    sudo: bool,
    #[serde(default)]
    env: IndexMap<Spanned<String>, Spanned<String>>,
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
    /// A local file copied to `dest` on the node, atomically.
    Upload(UploadSpec),
    /// An HTTP request, from the runner or tunnelled through the node's
    /// SSH connection (`via = "ssh"`: 127.0.0.1 is the node itself).
    Http {
        spec: HttpSpec,
        via_ssh: bool,
        /// Capture this header's value instead of the body.
        capture_header: Option<String>,
    },
}

impl Action {
    /// The shell script of a run/local step.
    pub fn script(&self) -> Option<&Text> {
        match self {
            Action::Run { script, .. } | Action::Local { script, .. } => Some(script),
            Action::Http { .. } | Action::Upload(_) => None,
        }
    }
}

/// Checks of a step's outcome: exit code and output for commands, status,
/// headers and body for HTTP.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub exit: Vec<i32>,
    pub stdout_contains: Vec<Text>,
    pub stdout_regex: Option<Text>,
    pub stderr_not_contains: Vec<Text>,
    pub status: Vec<u16>,
    /// Header name (lower-case) → exact value.
    pub headers: IndexMap<String, Text>,
    pub body_contains: Vec<Text>,
    pub body_not_contains: Vec<Text>,
}

/// An HTTP request, of an `http` step or a gate.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub url: Text,
    pub method: String,
    pub headers: IndexMap<String, Text>,
    pub body: Option<Text>,
    pub insecure_tls: bool,
    pub timeout: Option<Duration>,
}

/// An `upload` step: the file's bytes are read when the playbook loads.
#[derive(Debug, Clone)]
pub struct UploadSpec {
    pub src: std::path::PathBuf,
    /// The file content; a template (`template = true`) when `template` is set.
    pub content: Vec<u8>,
    pub template: Option<Text>,
    pub dest: Text,
    pub mode: Option<u32>,
    pub owner: Option<Text>,
}

/// What a gate checks, on the runner.
#[derive(Debug, Clone)]
pub enum GateCheck {
    Local { script: Text, shell: String },
    Http(HttpSpec),
}

/// A `[[gate]]`: run once on the runner after each batch.
#[derive(Debug, Clone)]
pub struct Gate {
    pub name: String,
    pub check: GateCheck,
    pub expect: Expect,
    pub retries: u32,
    pub retry_delay: Duration,
    pub timeout: Option<Duration>,
    pub span: Range<usize>,
}

/// A `[secrets]` entry: read from the runner's environment, masked everywhere.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    pub name: String,
    pub env: String,
    pub span: Range<usize>,
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
    pub secrets: Vec<SecretSpec>,
    pub rollout: Rollout,
    pub gates: Vec<Gate>,
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
        let rollout = convert_rollout(&source, &raw.rollout)?;
        let gates = raw
            .gate
            .iter()
            .map(|g| convert_gate(&source, g))
            .collect::<Result<Vec<_>, _>>()?;
        let secrets = raw
            .secrets
            .iter()
            .map(|(name, s)| SecretSpec {
                name: name.clone(),
                env: s.get_ref().env.clone(),
                span: s.span(),
            })
            .collect();
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
            secrets,
            rollout,
            gates,
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
            secrets: Vec::new(),
            rollout: Rollout::default(),
            gates: Vec::new(),
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
    let kinds = [
        raw.run.is_some(),
        raw.local.is_some(),
        raw.http.is_some(),
        raw.upload.is_some(),
    ];
    let action = match (&raw.run, &raw.local, &raw.http, &raw.upload) {
        (Some(run), None, None, None) => Action::Run {
            script: run.into(),
            shell,
        },
        (None, Some(local), None, None) => Action::Local {
            script: local.into(),
            shell,
        },
        (None, None, Some(http), None) => convert_http_step(source, raw, http)?,
        (None, None, None, Some(upload)) => {
            Action::Upload(convert_upload(source, upload.get_ref())?)
        }
        _ => {
            let what = if kinds.iter().any(|k| *k) {
                "more than one action"
            } else {
                "no action"
            };
            return Err(Error::at(
                here(),
                format!("step has {what}"),
                "give the step exactly one of `run`, `local`, `http` or `upload`; split it in two steps",
            ));
        }
    };
    let name = raw.name.clone().unwrap_or_else(|| match &action {
        Action::Http { spec, .. } => format!("{} {}", spec.method, spec.url.text),
        Action::Upload(u) => format!("upload {}", u.dest.text),
        a => default_name(index, a.script().map(|t| t.text.as_str()).unwrap_or("")),
    });
    let duration = |v: &Option<Spanned<String>>, zero| -> Result<Option<Duration>, Error> {
        v.as_ref()
            .map(|d| toml_source::duration(source, d, zero))
            .transpose()
    };
    let is_http = matches!(action, Action::Http { .. });
    check_expect_kind(source, &raw.expect, is_http, "steps")?;
    if let (true, Some(u)) = (is_http, &raw.unless) {
        return Err(Error::at(
            source.locate(u.span()),
            "`unless` runs a command; an http step has none",
            "guard the step with `when`, or check in a run step first",
        ));
    }
    let mut expect = convert_expect(source, &raw.expect)?;
    if is_http && expect.status.is_empty() {
        expect.status = (200..400).collect();
    }
    if let Some(capture) = &raw.capture {
        check_identifier(source, capture, "capture name")?;
    }
    for name in raw.env.keys() {
        // Pasted into the script as `export NAME=…`: a name is all it may be.
        check_identifier(source, name, "env name")?;
    }
    Ok(Step {
        name,
        action,
        when: raw.when.as_ref().map(Text::from),
        unless: raw.unless.as_ref().map(Text::from),
        capture: raw.capture.clone(),
        expect,
        retries: retries(source, &raw.retries)?,
        retry_delay: duration(&raw.retry_delay, Zero::Allowed)?.unwrap_or(DEFAULT_RETRY_DELAY),
        timeout: duration(&raw.timeout, Zero::Refused)?,
        sudo: raw.sudo,
        env: raw
            .env
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), Text::from(v)))
            .collect(),
        changes: raw.changes.unwrap_or(!is_http),
        ignore_failure: raw.ignore_failure,
        span: spanned.span(),
    })
}

fn convert_http_step(
    source: &SourceFile,
    raw: &RawStep,
    http: &Spanned<RawHttp>,
) -> Result<Action, Error> {
    let h = http.get_ref();
    let via_ssh = match h.via.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
        None | Some(("runner", _)) => false,
        Some(("ssh", _)) => true,
        Some((other, span)) => {
            return Err(Error::at(
                source.locate(span),
                format!("via = \"{other}\" is neither \"runner\" nor \"ssh\""),
                "\"runner\" sends from this machine; \"ssh\" tunnels through the node's connection",
            ));
        }
    };
    if let (Some(c), None) = (&raw.capture_header, &raw.capture) {
        return Err(Error::at(
            source.locate(c.span()),
            "capture_header needs `capture` to name the variable",
            "add capture = \"NAME\"",
        ));
    }
    Ok(Action::Http {
        spec: convert_http(source, h)?,
        via_ssh,
        capture_header: raw
            .capture_header
            .as_ref()
            .map(|c| c.get_ref().to_ascii_lowercase()),
    })
}

fn convert_upload(source: &SourceFile, raw: &RawUpload) -> Result<UploadSpec, Error> {
    // `src` is relative to the playbook's own directory.
    let base = source.path.parent().unwrap_or(std::path::Path::new("."));
    let src = base.join(toml_source::expand_tilde(raw.src.get_ref()));
    let content = std::fs::read(&src).map_err(|e| {
        Error::at(
            source.locate(raw.src.span()),
            format!("cannot read upload source {}: {e}", src.display()),
            "src is relative to the playbook's directory",
        )
    })?;
    let template = if raw.template {
        let text = String::from_utf8(content.clone()).map_err(|_| {
            Error::at(
                source.locate(raw.src.span()),
                format!(
                    "{} is not UTF-8 text, so it cannot be a template",
                    src.display()
                ),
                "remove `template = true` to copy it byte for byte",
            )
        })?;
        Some(Text {
            text,
            span: raw.src.span(),
        })
    } else {
        None
    };
    let mode = match &raw.mode {
        None => None,
        Some(m) => {
            let parsed = match m.get_ref() {
                ModeValue::Number(n) => u32::try_from(*n).ok(),
                ModeValue::Text(t) => u32::from_str_radix(t.trim_start_matches("0o"), 8).ok(),
            };
            match parsed.filter(|m| *m <= 0o7777) {
                Some(m) => Some(m),
                None => {
                    return Err(Error::at(
                        source.locate(m.span()),
                        "mode is not a file mode",
                        "write mode = \"0644\" (octal), or the TOML integer 0o644",
                    ));
                }
            }
        }
    };
    Ok(UploadSpec {
        src,
        content,
        template,
        dest: Text::from(&raw.dest),
        mode,
        owner: raw.owner.as_ref().map(Text::from),
    })
}

/// An `expect` may only hold the checks of its kind: HTTP ones for http
/// steps and gates, command ones for the rest.
fn check_expect_kind(
    source: &SourceFile,
    expect: &Spanned<RawExpect>,
    http: bool,
    what: &str,
) -> Result<(), Error> {
    let e = expect.get_ref();
    let (message, hint) = if http && e.has_command_checks() {
        (
            "exit and stdout checks belong to commands, not HTTP".to_string(),
            "expect `status`, `headers`, `body_contains` or `body_not_contains`",
        )
    } else if !http && e.has_http_checks() {
        (
            format!("status, headers and body checks belong to http {what}"),
            "for a command, expect `exit`, `stdout_contains`, `stdout_regex` or `stderr_not_contains`",
        )
    } else {
        return Ok(());
    };
    Err(Error::at(source.locate(expect.span()), message, hint))
}

fn retries(source: &SourceFile, r: &Spanned<u32>) -> Result<u32, Error> {
    if *r.get_ref() <= MAX_RETRIES {
        return Ok(*r.get_ref());
    }
    Err(Error::at(
        source.locate(r.span()),
        format!("retries = {} is more than {MAX_RETRIES}", r.get_ref()),
        "retries counts repeats after the first attempt; use a longer retry_delay instead",
    ))
}

fn convert_expect(source: &SourceFile, spanned: &Spanned<RawExpect>) -> Result<Expect, Error> {
    let raw = spanned.get_ref();
    let statuses = match &raw.status {
        None => Vec::new(),
        Some(OneOrMany::One(c)) => vec![*c],
        Some(OneOrMany::Many(c)) => c.clone(),
    };
    if let Some(bad) = statuses.iter().find(|c| !(100..=599).contains(*c)) {
        return Err(Error::at(
            source.locate(spanned.span()),
            format!("status {bad} is not an HTTP status code"),
            "HTTP status codes run from 100 to 599",
        ));
    }
    let exits = match &raw.exit {
        None => Vec::new(),
        Some(OneOrMany::One(c)) => vec![*c],
        Some(OneOrMany::Many(c)) => c.clone(),
    };
    if let Some(bad) = exits.iter().find(|c| !(0..=255).contains(*c)) {
        return Err(Error::at(
            source.locate(spanned.span()),
            format!("exit {bad} is not an exit code"),
            "exit codes run from 0 to 255",
        ));
    }
    if matches!(&raw.exit, Some(OneOrMany::Many(c)) if c.is_empty())
        || matches!(&raw.status, Some(OneOrMany::Many(c)) if c.is_empty())
    {
        return Err(Error::at(
            source.locate(spanned.span()),
            "an empty list of codes can never be met",
            "list the codes that mean success, or remove the key for the default",
        ));
    }
    Ok(convert_expect_unchecked(raw))
}

fn convert_expect_unchecked(raw: &RawExpect) -> Expect {
    let codes = |v: &Option<OneOrMany>| match v {
        None => Vec::new(),
        Some(OneOrMany::One(c)) => vec![*c],
        Some(OneOrMany::Many(c)) => c.clone(),
    };
    let exit = codes(&raw.exit);
    Expect {
        exit: if exit.is_empty() { vec![0] } else { exit },
        stdout_contains: texts(&raw.stdout_contains),
        stdout_regex: raw.stdout_regex.as_ref().map(Text::from),
        stderr_not_contains: texts(&raw.stderr_not_contains),
        status: codes(&raw.status).into_iter().map(|c| c as u16).collect(),
        headers: raw
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Text::from(v)))
            .collect(),
        body_contains: texts(&raw.body_contains),
        body_not_contains: texts(&raw.body_not_contains),
    }
}

fn convert_rollout(source: &SourceFile, raw: &RawRollout) -> Result<Rollout, Error> {
    let size = |v: &Spanned<SizeValue>, what: &str| {
        Size::parse(v.get_ref()).map_err(|e| {
            Error::at(
                source.locate(v.span()),
                format!("{what}: {e}"),
                "write a node count like 2, or a percentage of the selected nodes like \"25%\"",
            )
        })
    };
    let mut batches = Vec::new();
    if let Some(list) = &raw.batches {
        if list.get_ref().is_empty() {
            return Err(Error::at(
                source.locate(list.span()),
                "batches is empty",
                "list batch sizes, e.g. batches = [1, \"50%\"], or remove the key for one batch",
            ));
        }
        for v in list.get_ref() {
            let spanned = Spanned::new(list.span(), v.clone());
            let batch = size(&spanned, "batches")?;
            if matches!(batch, Size::Count(0)) || batch == Size::Percent(0.0) {
                return Err(Error::at(
                    source.locate(list.span()),
                    "batches holds a batch of no nodes",
                    "every batch size is 1 or more, or a percentage above 0%",
                ));
            }
            batches.push(batch);
        }
    }
    let concurrency = match &raw.concurrency {
        Some(c) if !(1..=MAX_CONCURRENCY).contains(c.get_ref()) => {
            return Err(Error::at(
                source.locate(c.span()),
                format!(
                    "concurrency = {} is not from 1 to {MAX_CONCURRENCY}",
                    c.get_ref()
                ),
                "set [rollout] concurrency to the most nodes to work on at once",
            ));
        }
        c => c.as_ref().map(|c| *c.get_ref()),
    };
    Ok(Rollout {
        batches,
        concurrency,
        max_failed: raw
            .max_failed
            .as_ref()
            .map(|v| size(v, "max_failed"))
            .transpose()?,
        max_unreachable: raw
            .max_unreachable
            .as_ref()
            .map(|v| size(v, "max_unreachable"))
            .transpose()?,
        pause: raw
            .pause
            .as_ref()
            .map(|p| toml_source::duration(source, p, Zero::Allowed))
            .transpose()?
            .unwrap_or_default(),
    })
}

fn convert_http(source: &SourceFile, raw: &RawHttp) -> Result<HttpSpec, Error> {
    let method = raw
        .method
        .as_ref()
        .map(|m| m.get_ref().trim().to_ascii_uppercase())
        .unwrap_or_else(|| "GET".to_string());
    if let Some(m) = &raw.method
        && (method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()))
    {
        return Err(Error::at(
            source.locate(m.span()),
            format!("`{}` is not an HTTP method", m.get_ref()),
            "use GET, HEAD, OPTIONS, POST, PUT, PATCH or DELETE",
        ));
    }
    Ok(HttpSpec {
        url: Text::from(&raw.url),
        method,
        headers: raw
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Text::from(v)))
            .collect(),
        body: raw.body.as_ref().map(Text::from),
        insecure_tls: raw.insecure_tls,
        timeout: raw
            .timeout
            .as_ref()
            .map(|t| toml_source::duration(source, t, Zero::Refused))
            .transpose()?,
    })
}

fn convert_gate(source: &SourceFile, spanned: &Spanned<RawGate>) -> Result<Gate, Error> {
    let raw = spanned.get_ref();
    let here = || source.locate(spanned.span());
    let check = match (&raw.http, &raw.local) {
        (Some(http), None) => {
            if let Some(via) = &http.via {
                return Err(Error::at(
                    source.locate(via.span()),
                    "a gate runs on the runner; `via` does not apply",
                    "remove `via`, or check the node itself in a step with via = \"ssh\"",
                ));
            }
            check_expect_kind(source, &raw.expect, true, "gates")?;
            GateCheck::Http(convert_http(source, http)?)
        }
        (None, Some(local)) => {
            check_expect_kind(source, &raw.expect, false, "gates")?;
            GateCheck::Local {
                script: Text::from(local),
                shell: raw.shell.clone().unwrap_or_else(|| "sh".to_string()),
            }
        }
        _ => {
            return Err(Error::at(
                here(),
                format!("gate `{}` needs exactly one of `http` or `local`", raw.name),
                "a gate is an HTTP check or a command, run on the runner after each batch",
            ));
        }
    };
    let mut expect = convert_expect(source, &raw.expect)?;
    if matches!(check, GateCheck::Http(_)) && expect.status.is_empty() {
        expect.status = (200..300).collect();
    }
    let duration = |v: &Option<Spanned<String>>, zero| {
        v.as_ref()
            .map(|d| toml_source::duration(source, d, zero))
            .transpose()
    };
    Ok(Gate {
        name: raw.name.clone(),
        check,
        expect,
        retries: retries(source, &raw.retries)?,
        retry_delay: duration(&raw.retry_delay, Zero::Allowed)?.unwrap_or(DEFAULT_RETRY_DELAY),
        timeout: duration(&raw.timeout, Zero::Refused)?,
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

fn check_identifier(source: &SourceFile, name: &Spanned<String>, what: &str) -> Result<(), Error> {
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
        format!(
            "{what} `{}` is not a variable name",
            toml_source::shorten(n, 60)
        ),
        "use letters, digits and `_`, starting with a letter or `_`",
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
    fn contains_checks_take_one_text_or_a_list() {
        let pb = load(
            "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\" }\n\
             expect = { body_contains = \"ok\", body_not_contains = [\"error\", \"failed\"] }\n",
        )
        .expect("valid");
        let e = &pb.steps[0].expect;
        let words = |ts: &[Text]| ts.iter().map(|t| t.text.clone()).collect::<Vec<_>>();
        assert_eq!(words(&e.body_contains), ["ok"]);
        assert_eq!(words(&e.body_not_contains), ["error", "failed"]);
    }

    #[test]
    fn bad_duration_points_at_value() {
        let err = load("name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"soon\"\n").unwrap_err();
        assert!(err.render().contains("pb.toml:4:11:"), "{}", err.render());
    }

    #[test]
    fn ad_hoc_playbook_carries_the_command() {
        let pb = Playbook::ad_hoc("echo \"hi\" '$x'");
        assert_eq!(
            pb.steps[0].action.script().map(|t| t.text.as_str()),
            Some("echo \"hi\" '$x'")
        );
    }
}
