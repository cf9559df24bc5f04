//! The playbook compiled, once: every template added to one environment,
//! and each step and gate turned into its typed form, which holds the
//! handles of its templates.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::config::playbook::{self, Playbook, Step, Text};
use crate::config::template::{self, Mode, Templates};
use crate::job::action::{Action, Command, GateCheck, Http, HttpCheck, Task, UploadStep};
use crate::job::expect::{CommandExpect, HttpExpect};
use crate::job::form::{Compiled, Content, Tpl};
use crate::job::http::{DEFAULT_HTTP_TIMEOUT, Request};
use crate::job::upload::Upload;
use crate::support::error::{Error, SourceFile};

/// A playbook compiled.
pub struct Program {
    pub templates: Templates,
    pub steps: Vec<CompiledStep>,
    pub on_failure: Vec<CompiledStep>,
    pub gates: Vec<GateCheck<Compiled>>,
}

/// A step compiled.
pub struct CompiledStep {
    pub task: Task<Compiled>,
    /// The variables its templates read (its `when` aside): all its
    /// rendering can depend on.
    pub reads: BTreeSet<String>,
}

/// How errors name a template: while compiling, and while rendering.
type Names = (&'static str, &'static str);

const SCRIPT: Names = ("a template", "the script");
const UNLESS: Names = ("a template", "`unless`");
const ENV: Names = ("a template", "`env`");
const DEST: Names = ("a template", "`dest`");
const OWNER: Names = ("a template", "`owner`");
const CONTENT: Names = ("a template", "the uploaded template");
const REQUEST: Names = ("an HTTP request", "an HTTP request");
const GATE: Names = ("a gate", "a gate");
const GATE_REQUEST: Names = ("an HTTP request", "a gate");
const EXPECT: Names = ("`expect`", "`expect`");

/// Compiles every template of the playbook once. The order in which
/// templates are compiled decides which error is reported first.
pub fn compile(pb: &Playbook) -> Result<Program, Error> {
    let mut c = Compiler {
        templates: Templates::new(),
        src: &pb.source,
        reads: BTreeSet::new(),
    };
    let steps = pb
        .steps
        .iter()
        .map(|s| c.step(s))
        .collect::<Result<Vec<_>, _>>()?;
    let on_failure = pb
        .on_failure
        .iter()
        .map(|s| c.step(s))
        .collect::<Result<Vec<_>, _>>()?;
    let gates = pb
        .gates
        .iter()
        .map(|g| c.gate(g))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Program {
        templates: c.templates,
        steps,
        on_failure,
        gates,
    })
}

struct Compiler<'a> {
    templates: Templates,
    src: &'a SourceFile,
    /// What the templates compiled since the last step read.
    reads: BTreeSet<String>,
}

impl Compiler<'_> {
    fn tpl(
        &mut self,
        text: &Text,
        mode: Mode,
        (compiling, rendering): Names,
    ) -> Result<Tpl, Error> {
        let id = self
            .templates
            .add(mode, &text.text)
            .map_err(|e| template::error_at(self.src, text, &e, compiling))?;
        self.reads.extend(self.templates.reads(id).iter().cloned());
        Ok(Tpl {
            id,
            text: text.clone(),
            what: rendering,
        })
    }

    fn step(&mut self, step: &Step) -> Result<CompiledStep, Error> {
        self.reads.clear();
        let (action, (unless, env)) = match &step.action {
            playbook::Action::Run { script, shell } => {
                let script = self.tpl(script, Mode::Shell, SCRIPT)?;
                let rest = self.guard_and_env(step)?;
                (
                    Action::Run(self.command(script, shell, &step.expect)?),
                    rest,
                )
            }
            playbook::Action::Local { script, shell } => {
                let script = self.tpl(script, Mode::Shell, SCRIPT)?;
                let rest = self.guard_and_env(step)?;
                (
                    Action::Local(self.command(script, shell, &step.expect)?),
                    rest,
                )
            }
            playbook::Action::Upload(u) => {
                let file = self.upload(u)?;
                let rest = self.guard_and_env(step)?;
                let expect = self.command_expect(&step.expect)?;
                (Action::Upload(UploadStep { file, expect }), rest)
            }
            playbook::Action::Http {
                spec,
                via_ssh,
                capture_header,
            } => {
                let request = self.request(spec, step.timeout, REQUEST)?;
                let rest = self.guard_and_env(step)?;
                let expect = self.http_expect(&step.expect)?;
                let http = Http {
                    check: HttpCheck { request, expect },
                    via_ssh: *via_ssh,
                    capture_header: capture_header.clone(),
                };
                (Action::Http(http), rest)
            }
        };
        if let Some(w) = &step.when {
            self.templates
                .check_expression(&w.text)
                .map_err(|e| template::error_at(self.src, w, &e, "`when`"))?;
        }
        Ok(CompiledStep {
            task: Task {
                action,
                unless,
                env,
            },
            reads: std::mem::take(&mut self.reads),
        })
    }

    /// A step's `unless` and `env`.
    #[allow(clippy::type_complexity)]
    fn guard_and_env(&mut self, step: &Step) -> Result<(Option<Tpl>, Vec<(String, Tpl)>), Error> {
        let unless = step
            .unless
            .as_ref()
            .map(|u| self.tpl(u, Mode::Shell, UNLESS))
            .transpose()?;
        let env = step
            .env
            .iter()
            .map(|(name, v)| Ok((name.clone(), self.tpl(v, Mode::Text, ENV)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok((unless, env))
    }

    fn command(
        &mut self,
        script: Tpl,
        shell: &str,
        expect: &playbook::Expect,
    ) -> Result<Command<Compiled>, Error> {
        Ok(Command {
            script,
            shell: shell.to_string(),
            expect: self.command_expect(expect)?,
        })
    }

    fn upload(&mut self, u: &playbook::UploadSpec) -> Result<Upload<Compiled>, Error> {
        let dest = self.tpl(&u.dest, Mode::Text, DEST)?;
        let owner = u
            .owner
            .as_ref()
            .map(|o| self.tpl(o, Mode::Text, OWNER))
            .transpose()?;
        let content = match &u.template {
            Some(t) => Content::Template(self.tpl(t, Mode::Text, CONTENT)?),
            None => Content::Bytes(Arc::from(u.content.as_slice())),
        };
        Ok(Upload {
            content,
            dest,
            mode: u.mode,
            owner,
        })
    }

    /// A request; `fallback_timeout` is its step's or gate's.
    fn request(
        &mut self,
        h: &playbook::HttpSpec,
        fallback_timeout: Option<Duration>,
        names: Names,
    ) -> Result<Request<Compiled>, Error> {
        let url = self.tpl(&h.url, Mode::Text, names)?;
        let headers = h
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.tpl(v, Mode::Text, names)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let body = h
            .body
            .as_ref()
            .map(|b| self.tpl(b, Mode::Text, names))
            .transpose()?;
        Ok(Request {
            method: h.method.clone(),
            url,
            headers,
            body,
            insecure_tls: h.insecure_tls,
            timeout: h
                .timeout
                .or(fallback_timeout)
                .unwrap_or(DEFAULT_HTTP_TIMEOUT),
        })
    }

    fn texts(&mut self, texts: &[Text]) -> Result<Vec<Tpl>, Error> {
        texts
            .iter()
            .map(|t| self.tpl(t, Mode::Text, EXPECT))
            .collect()
    }

    /// A command's expectations (the playbook refuses HTTP ones there).
    fn command_expect(&mut self, e: &playbook::Expect) -> Result<CommandExpect<Compiled>, Error> {
        let stdout_regex = e
            .stdout_regex
            .as_ref()
            .map(|t| self.tpl(t, Mode::Text, EXPECT))
            .transpose()?;
        let stdout_contains = self.texts(&e.stdout_contains)?;
        let stderr_not_contains = self.texts(&e.stderr_not_contains)?;
        Ok(CommandExpect {
            exit: e.exit.clone(),
            stdout_contains,
            stdout_regex,
            stderr_not_contains,
        })
    }

    /// An HTTP check's expectations (the playbook refuses command ones there).
    fn http_expect(&mut self, e: &playbook::Expect) -> Result<HttpExpect<Compiled>, Error> {
        let body_contains = self.texts(&e.body_contains)?;
        let body_not_contains = self.texts(&e.body_not_contains)?;
        let headers = e
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.tpl(v, Mode::Text, EXPECT)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(HttpExpect {
            status: e.status.clone(),
            headers,
            body_contains,
            body_not_contains,
        })
    }

    fn gate(&mut self, gate: &playbook::Gate) -> Result<GateCheck<Compiled>, Error> {
        Ok(match &gate.check {
            playbook::GateCheck::Local { script, shell } => {
                let script = self.tpl(script, Mode::Shell, GATE)?;
                GateCheck::Local(self.command(script, shell, &gate.expect)?)
            }
            playbook::GateCheck::Http(h) => {
                let request = self.request(h, gate.timeout, GATE_REQUEST)?;
                let expect = self.http_expect(&gate.expect)?;
                GateCheck::Http(HttpCheck { request, expect })
            }
        })
    }
}
