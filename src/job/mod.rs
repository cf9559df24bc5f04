//! A job: a playbook bound to the selected nodes, validated before any node
//! is touched, and rendered per node on demand.

pub mod http;
pub mod upload;

use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::value::Value;
use regex::{Regex, RegexBuilder};
use rustc_hash::FxHashSet;

use crate::config::inventory::{Inventory, Node};
use crate::config::playbook::{Action, Expect, GateCheck, HttpSpec, Playbook, Step, Text};
use crate::config::secrets::{self, Masker};
use crate::config::select;
use crate::config::template::{self, Context, Mode, Templates};
use crate::config::vars::{self, Layers, RunInfo, Vars};
use crate::support::error::Error;

/// The default of `--concurrency` when neither CLI nor playbook set it.
pub const DEFAULT_CONCURRENCY: usize = 100;

/// Validation takes another thread only for this many nodes or more: a
/// thread costs about what validating a few dozen nodes does.
const NODES_PER_THREAD: usize = 250;

/// Which step of the playbook: a main step or an `[[on_failure]]` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepRef {
    pub on_failure: bool,
    pub index: usize,
}

/// What the CLI adds to a job.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    pub limit: Option<String>,
    pub overrides: IndexMap<String, String>,
    pub concurrency: Option<usize>,
    pub run_id: String,
    /// Run only these nodes (`--resume`: those that did not finish ok).
    pub only: Option<std::collections::HashSet<String>>,
    /// Whether every secret must be set (a run), or may be missing (`check`,
    /// `plan`: a warning).
    pub secrets_required: bool,
}

/// A step's templates rendered for one node.
#[derive(Debug, Clone)]
pub struct RenderedStep {
    /// The script of a run/local step (empty for http).
    pub script: String,
    /// The request of an http step.
    pub http: Option<http::Request>,
    /// The HTTP expectations of an http step.
    pub http_expect: http::Expect,
    /// The file of an upload step.
    pub upload: Option<crate::job::upload::Rendered>,
    pub unless: Option<String>,
    pub env: Vec<(String, String)>,
    pub expect: RenderedExpect,
}

/// A step's expectations rendered for one node.
#[derive(Debug, Clone, Default)]
pub struct RenderedExpect {
    pub exit: Vec<i32>,
    pub stdout_contains: Vec<String>,
    pub stdout_regex: Option<Regex>,
    pub stderr_not_contains: Vec<String>,
}

/// Timeout of an HTTP check that sets none.
pub const DEFAULT_HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a gate runs, rendered.
#[derive(Debug, Clone)]
pub enum GateRun {
    Local { script: String, shell: String },
    Http(http::Request),
}

/// A gate ready to run.
#[derive(Debug, Clone)]
pub struct RenderedGate {
    pub check: GateRun,
    pub expect: (RenderedExpect, http::Expect),
}

/// A validated job, shared read-only by every node task.
pub struct Job {
    pub playbook: Playbook,
    pub nodes: Vec<Arc<Node>>,
    /// Each selected node's variables before captures (same order as `nodes`).
    pub node_vars: Vec<Vars>,
    /// Variables of run-wide checks (gates): no `node.*`.
    pub global_vars: Vars,
    pub run: RunInfo,
    pub concurrency: usize,
    /// Hides secret values in everything written.
    pub masker: Arc<Masker>,
    /// Non-fatal findings of `check`, rendered for a person.
    pub warnings: Vec<String>,
    templates: Templates,
}

impl Job {
    /// Selects nodes, compiles every template and renders each for every
    /// node, so that any undefined variable stops the run before it starts.
    pub fn prepare(
        inventory: &Inventory,
        playbook: Playbook,
        opts: &JobOptions,
    ) -> Result<Self, Error> {
        let mut selected = select::select(&inventory.nodes, opts.limit.as_deref())?;
        if let Some(only) = &opts.only {
            selected.retain(|&i| only.contains(&*inventory.nodes[i].name));
            if selected.is_empty() {
                return Err(Error::input(
                    "nothing to resume: every selected node finished ok in that run",
                    "`fleetfix runs ID` shows the run",
                ));
            }
        }
        let nodes: Vec<Arc<Node>> = selected
            .iter()
            .map(|&i| inventory.nodes[i].clone())
            .collect();
        let run = RunInfo {
            id: opts.run_id.clone(),
            playbook: playbook.name.clone(),
        };
        let (secret_values, secret_warnings) =
            secrets::resolve(&playbook.secrets, &playbook.source, opts.secrets_required)?;
        let masker = Arc::new(Masker::new(secret_values.iter().map(|(_, v)| v.as_str())));
        let layers = Layers {
            playbook: &playbook.vars,
            inventory: &inventory.vars,
            overrides: &opts.overrides,
            run: &run,
            secrets: &secret_values,
        };
        check_captures(&playbook, &layers, &inventory.nodes)?;
        let node_vars: Vec<Vars> = layers.for_nodes(nodes.iter().map(|n| &**n));
        let global_vars = layers.global();
        let templates = compile(&playbook)?;
        let concurrency = opts
            .concurrency
            .or(playbook.rollout.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY)
            .max(1);
        let job = Job {
            warnings: [secret_warnings, quote_warnings(&playbook)].concat(),
            playbook,
            nodes,
            node_vars,
            global_vars,
            run,
            concurrency,
            masker,
            templates,
        };
        job.check_report_vars()?;
        // Rendered text may hold secrets; so may an error quoting it.
        job.dry_render_all()?;
        for i in 0..job.playbook.gates.len() {
            job.render_gate(i).map_err(|e| job.masker.mask_error(e))?;
        }
        Ok(job)
    }

    pub fn step(&self, r: StepRef) -> &Step {
        &self.steps(r.on_failure)[r.index]
    }

    /// The main steps, or the on_failure steps.
    pub fn steps(&self, on_failure: bool) -> &[Step] {
        if on_failure {
            &self.playbook.on_failure
        } else {
            &self.playbook.steps
        }
    }

    /// Main steps, then on_failure steps, as references.
    pub fn step_refs(&self, on_failure: bool) -> impl Iterator<Item = StepRef> + use<> {
        let n = self.steps(on_failure).len();
        (0..n).map(move |index| StepRef { on_failure, index })
    }

    /// Evaluates the step's `when` (true when it has none).
    pub fn when(&self, r: StepRef, vars: &Vars) -> Result<bool, Error> {
        let Some(when) = &self.step(r).when else {
            return Ok(true);
        };
        self.templates
            .eval(&when.text, &vars::context(vars))
            .map_err(|e| template::error_at(&self.playbook.source, when, &e, "`when`"))
    }

    /// Renders every template of a step for one node's variables.
    pub fn render(&self, r: StepRef, vars: &Vars) -> Result<RenderedStep, Error> {
        let step = self.step(r);
        let ctx = Context::lazy(|| vars::context(vars));
        let key = |field: &str| key(r, field);
        let text = |field: &str, t: &Text, mode: Mode, what: &str| {
            self.templates
                .render(&key(field), mode, &ctx)
                .map_err(|e| template::error_at(&self.playbook.source, t, &e, what))
        };
        let script = match step.action.script() {
            Some(sc) => text("script", sc, Mode::Shell, "the script")?,
            None => String::new(),
        };
        let http = match &step.action {
            Action::Http { spec, .. } => {
                Some(self.render_request(&key(""), spec, step.timeout, &ctx)?)
            }
            _ => None,
        };
        let unless = match &step.unless {
            Some(u) => Some(text("unless", u, Mode::Shell, "`unless`")?),
            None => None,
        };
        let mut env = Vec::with_capacity(step.env.len());
        for (name, value) in &step.env {
            env.push((
                name.clone(),
                text(&format!("env.{name}"), value, Mode::Text, "`env`")?,
            ));
        }
        let upload = match &step.action {
            Action::Upload(u) => Some(crate::job::upload::Rendered {
                content: match &u.template {
                    Some(t) => {
                        text("content", t, Mode::Text, "the uploaded template")?.into_bytes()
                    }
                    None => u.content.clone(),
                },
                dest: text("dest", &u.dest, Mode::Text, "`dest`")?,
                mode: u.mode,
                owner: u
                    .owner
                    .as_ref()
                    .map(|o| text("owner", o, Mode::Text, "`owner`"))
                    .transpose()?,
            }),
            _ => None,
        };
        let (expect, http_expect) = self.render_expect(&key(""), &step.expect, &ctx)?;
        Ok(RenderedStep {
            script,
            http,
            http_expect,
            upload,
            unless,
            env,
            expect,
        })
    }

    /// Renders gate `i` with the run-wide variables.
    pub fn render_gate(&self, i: usize) -> Result<RenderedGate, Error> {
        let gate = &self.playbook.gates[i];
        let ctx = Context::lazy(|| vars::context(&self.global_vars));
        let src = &self.playbook.source;
        let text = |field: &str, t: &Text, mode: Mode| {
            self.templates
                .render(&format!("g{i}.{field}"), mode, &ctx)
                .map_err(|e| template::error_at(src, t, &e, "a gate"))
        };
        let check = match &gate.check {
            GateCheck::Local { script, shell } => GateRun::Local {
                script: text("script", script, Mode::Shell)?,
                shell: shell.clone(),
            },
            GateCheck::Http(h) => {
                let mut headers = Vec::new();
                for (k, v) in &h.headers {
                    headers.push((k.clone(), text(&format!("header.{k}"), v, Mode::Text)?));
                }
                GateRun::Http(http::Request {
                    method: h.method.clone(),
                    url: text("url", &h.url, Mode::Text)?,
                    headers,
                    body: h
                        .body
                        .as_ref()
                        .map(|b| text("body", b, Mode::Text))
                        .transpose()?,
                    insecure_tls: h.insecure_tls,
                    timeout: h.timeout.or(gate.timeout).unwrap_or(DEFAULT_HTTP_TIMEOUT),
                })
            }
        };
        let expect = self.render_expect(&format!("g{i}"), &gate.expect, &ctx)?;
        Ok(RenderedGate { check, expect })
    }

    /// Renders a request whose templates are registered under `prefix`.
    fn render_request(
        &self,
        prefix: &str,
        h: &HttpSpec,
        fallback_timeout: Option<std::time::Duration>,
        ctx: &Context<'_>,
    ) -> Result<http::Request, Error> {
        let src = &self.playbook.source;
        let text = |field: &str, t: &Text| {
            self.templates
                .render(&format!("{prefix}.{field}"), Mode::Text, ctx)
                .map_err(|e| template::error_at(src, t, &e, "an HTTP request"))
        };
        let mut headers = Vec::new();
        for (k, v) in &h.headers {
            headers.push((k.clone(), text(&format!("header.{k}"), v)?));
        }
        Ok(http::Request {
            method: h.method.clone(),
            url: text("url", &h.url)?,
            headers,
            body: h.body.as_ref().map(|b| text("body", b)).transpose()?,
            insecure_tls: h.insecure_tls,
            timeout: h
                .timeout
                .or(fallback_timeout)
                .unwrap_or(DEFAULT_HTTP_TIMEOUT),
        })
    }

    /// Renders the expectation templates registered under `prefix`.
    fn render_expect(
        &self,
        prefix: &str,
        e: &Expect,
        ctx: &Context<'_>,
    ) -> Result<(RenderedExpect, http::Expect), Error> {
        let src = &self.playbook.source;
        let text = |field: &str, t: &Text| {
            self.templates
                .render(&format!("{prefix}.expect.{field}"), Mode::Text, ctx)
                .map_err(|err| template::error_at(src, t, &err, "`expect`"))
        };
        let opt = |field: &str, t: &Option<Text>| t.as_ref().map(|t| text(field, t)).transpose();
        let all = |field: &str, ts: &[Text]| {
            ts.iter()
                .enumerate()
                .map(|(i, t)| text(&format!("{field}.{i}"), t))
                .collect::<Result<Vec<_>, _>>()
        };
        let stdout_regex = match (&e.stdout_regex, opt("stdout_regex", &e.stdout_regex)?) {
            (Some(t), Some(re)) => Some(RegexBuilder::new(&re).multi_line(true).build().map_err(|err| {
                let e = Error::at(
                    src.locate(t.span.clone()),
                    format!("stdout_regex is not a valid regular expression: {err}"),
                    "the syntax is Rust's regex crate (like RE2); `^` and `$` match at line ends",
                );
                // A captured value stood in by a placeholder proves nothing.
                if re.contains("${{") { e.provisional() } else { e }
            })?),
            _ => None,
        };
        let mut headers = Vec::new();
        for (k, v) in &e.headers {
            headers.push((k.clone(), text(&format!("header.{k}"), v)?));
        }
        let command = RenderedExpect {
            exit: e.exit.clone(),
            stdout_contains: all("stdout_contains", &e.stdout_contains)?,
            stdout_regex,
            stderr_not_contains: all("stderr_not_contains", &e.stderr_not_contains)?,
        };
        let web = http::Expect {
            status: e.status.clone(),
            headers,
            body_contains: all("body_contains", &e.body_contains)?,
            body_not_contains: all("body_not_contains", &e.body_not_contains)?,
        };
        Ok((command, web))
    }

    /// Every variable name a step of the playbook captures.
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.playbook
            .all_steps()
            .filter_map(|(s, _)| s.capture.as_ref().map(|c| c.get_ref().as_str()))
    }

    /// A stand-in value for a capture not yet known (shown as itself by `plan`).
    pub fn placeholder(name: &str) -> Value {
        template::verbatim(format!("${{{{ {name} }}}}"))
    }

    /// Evaluates and renders every step for every node with captures
    /// stood in, to find errors before any node is touched. A `when` or a
    /// step's templates give the same result wherever the variables they
    /// read are equal, and only a node's own `vars` and `node.*` differ
    /// between nodes: a step that reads none of those is done once, the
    /// others once per distinct value of what they read of them.
    fn dry_render_all(&self) -> Result<(), Error> {
        let definite = |r: Result<(), Error>| match r {
            Err(e) if !e.is_provisional() => Err(e),
            _ => Ok(()),
        };
        let per_node: std::collections::BTreeSet<&str> = self
            .nodes
            .iter()
            .flat_map(|n| n.vars.keys().map(String::as_str))
            .chain(["node"])
            .collect();
        let keep = |names: Vec<String>| -> Vec<String> {
            names
                .into_iter()
                .filter(|n| per_node.contains(n.as_str()))
                .collect()
        };
        let mut steps = Vec::new();
        for r in self.step_refs(false).chain(self.step_refs(true)) {
            let when_reads = match &self.step(r).when {
                Some(w) => Some(keep(self.templates.expression_reads(&w.text).map_err(
                    |e| template::error_at(&self.playbook.source, w, &e, "`when`"),
                )?)),
                None => None,
            };
            let reads = keep(
                self.templates
                    .reads(&format!("{}.", key(r, "")))
                    .into_iter()
                    .collect(),
            );
            steps.push((r, when_reads, reads));
        }
        // The same values on every node, so they compare equal.
        let placeholders: Vec<(&str, Value)> = self
            .capture_names()
            .map(|c| (c, Self::placeholder(c)))
            .collect();
        // Nodes in order, a thread per share of them; the first error in
        // node order wins, whichever thread found it.
        let check = |from: usize, to: usize| -> Result<(), Error> {
            let mut seen = FxHashSet::default();
            for (node, base) in self.nodes[from..to].iter().zip(&self.node_vars[from..to]) {
                let for_node = |e: Error| self.masker.mask_error(e.for_node(&node.name));
                let mut vars = std::borrow::Cow::Borrowed(base);
                for (r, when_reads, reads) in &steps {
                    if let Some(names) = when_reads
                        && seen.insert((*r, true, template::reads_of(names, &vars)))
                    {
                        definite(self.when(*r, &vars).map(drop)).map_err(for_node)?;
                    }
                    if seen.insert((*r, false, template::reads_of(reads, &vars))) {
                        definite(self.render(*r, &vars).map(drop)).map_err(for_node)?;
                    }
                    let capture = self.step(*r).capture.as_ref().filter(|_| !r.on_failure);
                    if let Some((name, value)) =
                        capture.and_then(|c| placeholders.iter().find(|(n, _)| *n == c.get_ref()))
                    {
                        vars.to_mut().insert(name.to_string(), value.clone());
                    }
                }
            }
            Ok(())
        };
        let n = self.nodes.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(n.div_ceil(NODES_PER_THREAD))
            .max(1);
        let bounds: Vec<(usize, usize)> = (0..threads)
            .map(|t| (n * t / threads, n * (t + 1) / threads))
            .collect();
        std::thread::scope(|scope| {
            let rest: Vec<_> = bounds[1..]
                .iter()
                .map(|&(from, to)| scope.spawn(move || check(from, to)))
                .collect();
            let mut result = check(bounds[0].0, bounds[0].1);
            for handle in rest {
                let theirs = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                result = result.and(theirs);
            }
            result
        })
    }

    fn check_report_vars(&self) -> Result<(), Error> {
        let captures: Vec<&str> = self
            .playbook
            .all_steps()
            .filter_map(|(s, _)| s.capture.as_ref().map(|c| c.get_ref().as_str()))
            .collect();
        for rv in &self.playbook.report_vars {
            let name = rv.get_ref().as_str();
            let known =
                captures.contains(&name) || self.node_vars.iter().any(|v| v.contains_key(name));
            if !known {
                return Err(Error::at(
                    self.playbook.source.locate(rv.span()),
                    format!(
                        "report_vars names `{name}`, which no step captures and no variable defines"
                    ),
                    "list captured variables (a step's `capture`) or defined variables",
                ));
            }
        }
        Ok(())
    }
}

/// The template name of a step's field; an empty field gives the prefix.
fn key(r: StepRef, field: &str) -> String {
    let prefix = format!("{}{}", if r.on_failure { "f" } else { "s" }, r.index);
    if field.is_empty() {
        prefix
    } else {
        format!("{prefix}.{field}")
    }
}

/// Compiles every template of the playbook once.
fn compile(pb: &Playbook) -> Result<Templates, Error> {
    let mut t = Templates::new();
    let src = &pb.source;
    let steps = pb.steps.iter().enumerate().map(|(i, s)| {
        (
            StepRef {
                on_failure: false,
                index: i,
            },
            s,
        )
    });
    let failure = pb.on_failure.iter().enumerate().map(|(i, s)| {
        (
            StepRef {
                on_failure: true,
                index: i,
            },
            s,
        )
    });
    for (r, step) in steps.chain(failure) {
        let mut add = |field: &str, text: &Text, mode: Mode| {
            t.add(&key(r, field), mode, &text.text)
                .map_err(|e| template::error_at(src, text, &e, "a template"))
        };
        if let Some(script) = step.action.script() {
            add("script", script, Mode::Shell)?;
        }
        if let Action::Upload(u) = &step.action {
            add("dest", &u.dest, Mode::Text)?;
            if let Some(o) = &u.owner {
                add("owner", o, Mode::Text)?;
            }
            if let Some(t) = &u.template {
                add("content", t, Mode::Text)?;
            }
        }
        if let Action::Http { spec, .. } = &step.action {
            add("url", &spec.url, Mode::Text)?;
            for (k, v) in &spec.headers {
                add(&format!("header.{k}"), v, Mode::Text)?;
            }
            if let Some(b) = &spec.body {
                add("body", b, Mode::Text)?;
            }
        }
        if let Some(u) = &step.unless {
            add("unless", u, Mode::Shell)?;
        }
        for (name, v) in &step.env {
            add(&format!("env.{name}"), v, Mode::Text)?;
        }
        add_expect(&mut t, src, &key(r, ""), &step.expect)?;
        if let Some(w) = &step.when {
            t.check_expression(&w.text)
                .map_err(|e| template::error_at(src, w, &e, "`when`"))?;
        }
    }
    for (i, gate) in pb.gates.iter().enumerate() {
        let mut add = |field: &str, text: &Text, mode: Mode| {
            t.add(&format!("g{i}.{field}"), mode, &text.text)
                .map_err(|e| template::error_at(src, text, &e, "a gate"))
        };
        match &gate.check {
            GateCheck::Local { script, .. } => add("script", script, Mode::Shell)?,
            GateCheck::Http(h) => add_request(&mut t, src, &format!("g{i}"), h)?,
        }
        add_expect(&mut t, src, &format!("g{i}"), &gate.expect)?;
    }
    Ok(t)
}

/// Registers a request's templates under `{prefix}.url|header.*|body`.
fn add_request(
    t: &mut Templates,
    src: &crate::support::error::SourceFile,
    prefix: &str,
    h: &HttpSpec,
) -> Result<(), Error> {
    let mut fields: Vec<(String, &Text)> = vec![("url".to_string(), &h.url)];
    fields.extend(h.headers.iter().map(|(k, v)| (format!("header.{k}"), v)));
    fields.extend(h.body.as_ref().map(|b| ("body".to_string(), b)));
    for (field, text) in fields {
        t.add(&format!("{prefix}.{field}"), Mode::Text, &text.text)
            .map_err(|e| template::error_at(src, text, &e, "an HTTP request"))?;
    }
    Ok(())
}

/// Registers an expectation's templates under `{prefix}.expect.*`.
fn add_expect(
    t: &mut Templates,
    src: &crate::support::error::SourceFile,
    prefix: &str,
    e: &Expect,
) -> Result<(), Error> {
    let mut fields: Vec<(String, &Text)> = Vec::new();
    if let Some(v) = &e.stdout_regex {
        fields.push(("stdout_regex".to_string(), v));
    }
    for (name, vs) in [
        ("stdout_contains", &e.stdout_contains),
        ("stderr_not_contains", &e.stderr_not_contains),
        ("body_contains", &e.body_contains),
        ("body_not_contains", &e.body_not_contains),
    ] {
        for (i, v) in vs.iter().enumerate() {
            fields.push((format!("{name}.{i}"), v));
        }
    }
    for (k, v) in &e.headers {
        fields.push((format!("header.{k}"), v));
    }
    for (field, text) in fields {
        t.add(&format!("{prefix}.expect.{field}"), Mode::Text, &text.text)
            .map_err(|err| template::error_at(src, text, &err, "`expect`"))?;
    }
    Ok(())
}

/// A capture may not reuse a name defined elsewhere (SPEC section 5).
fn check_captures(pb: &Playbook, layers: &Layers<'_>, nodes: &[Arc<Node>]) -> Result<(), Error> {
    let mut seen: Vec<&str> = Vec::new();
    for (step, _) in pb.all_steps() {
        let Some(c) = &step.capture else { continue };
        let name = c.get_ref().as_str();
        let why = if layers.defines(name, nodes) {
            Some(
                "a variable of that name is already defined (vars, inventory, --var or a built-in)",
            )
        } else if seen.contains(&name) {
            Some("an earlier step already captures that name")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::at(
                pb.source.locate(c.span()),
                format!("capture `{name}` shadows a variable: {why}"),
                "give the capture a name of its own",
            ));
        }
        seen.push(name);
    }
    Ok(())
}

/// `check` warns where `${{ }}` stands inside shell quotes.
fn quote_warnings(pb: &Playbook) -> Vec<String> {
    let mut out = Vec::new();
    for (step, _) in pb.all_steps() {
        let mut texts: Vec<&Text> = step.action.script().into_iter().collect();
        texts.extend(step.unless.as_ref());
        for text in texts {
            for (line, col) in template::quoted_insertions(&text.text) {
                let at = locate_in(pb, text, line, col);
                out.push(format!(
                    "warning: {}:{}:{}: `${{{{ }}}}` inside quotes in step `{}`; values are \
                     shell-quoted already, so remove the quotes around it",
                    at.file.display(),
                    at.line,
                    at.col,
                    step.name
                ));
            }
        }
    }
    out
}

fn locate_in(
    pb: &Playbook,
    text: &Text,
    line: usize,
    col: usize,
) -> crate::support::error::Location {
    let offset: usize = text
        .text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum::<usize>()
        + col
        - 1;
    template::locate_in_text(&pb.source, text, offset..offset + 3)
}
