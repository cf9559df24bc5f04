//! Compiled steps and gates rendered with a set of variables: the same
//! typed parts, holding text instead of templates. One request renderer
//! and one expectation renderer serve steps and gates.

use regex::RegexBuilder;

use crate::config::template::{self, Context, Templates};
use crate::config::vars::{self, Vars};
use crate::job::action::{Action, Command, GateCheck, Http, HttpCheck, Task, UploadStep};
use crate::job::expect::{CommandExpect, HttpExpect};
use crate::job::form::{Compiled, Content, Tpl};
use crate::job::http::Request;
use crate::job::upload::Upload;
use crate::support::error::{Error, SourceFile};

/// Renders compiled parts with one set of variables. The order in which
/// templates are rendered decides which error is reported first.
pub struct Renderer<'a> {
    templates: &'a Templates,
    src: &'a SourceFile,
    ctx: Context<'a>,
}

impl<'a> Renderer<'a> {
    pub fn new(templates: &'a Templates, src: &'a SourceFile, vars: &'a Vars) -> Self {
        Renderer {
            templates,
            src,
            ctx: Context::lazy(move || vars::context(vars)),
        }
    }

    fn text(&self, t: &Tpl) -> Result<String, Error> {
        self.templates
            .render(t.id, &self.ctx)
            .map_err(|e| template::error_at(self.src, &t.text, &e, t.what))
    }

    fn texts(&self, ts: &[Tpl]) -> Result<Vec<String>, Error> {
        ts.iter().map(|t| self.text(t)).collect()
    }

    /// A step's task: its script or request, `unless`, `env`, an upload's
    /// file, then its expectations.
    pub fn task(&self, t: &Task<Compiled>) -> Result<Task, Error> {
        let rest = || -> Result<_, Error> {
            let unless = t.unless.as_ref().map(|u| self.text(u)).transpose()?;
            let env = t
                .env
                .iter()
                .map(|(name, v)| Ok((name.clone(), self.text(v)?)))
                .collect::<Result<Vec<_>, Error>>()?;
            Ok((unless, env))
        };
        let (action, (unless, env)) = match &t.action {
            Action::Run(c) => {
                let script = self.text(&c.script)?;
                let rest = rest()?;
                (Action::Run(self.command(script, c)?), rest)
            }
            Action::Local(c) => {
                let script = self.text(&c.script)?;
                let rest = rest()?;
                (Action::Local(self.command(script, c)?), rest)
            }
            Action::Http(h) => {
                let request = self.request(&h.check.request)?;
                let rest = rest()?;
                let http = Http {
                    check: HttpCheck {
                        request,
                        expect: self.http_expect(&h.check.expect)?,
                    },
                    via_ssh: h.via_ssh,
                    capture_header: h.capture_header.clone(),
                };
                (Action::Http(http), rest)
            }
            Action::Upload(u) => {
                let rest = rest()?;
                let step = UploadStep {
                    file: self.upload(&u.file)?,
                    expect: self.command_expect(&u.expect)?,
                };
                (Action::Upload(step), rest)
            }
        };
        Ok(Task {
            action,
            unless,
            env,
        })
    }

    /// A gate's check.
    pub fn gate(&self, g: &GateCheck<Compiled>) -> Result<GateCheck, Error> {
        Ok(match g {
            GateCheck::Local(c) => {
                let script = self.text(&c.script)?;
                GateCheck::Local(self.command(script, c)?)
            }
            GateCheck::Http(h) => GateCheck::Http(HttpCheck {
                request: self.request(&h.request)?,
                expect: self.http_expect(&h.expect)?,
            }),
        })
    }

    /// A command whose script is rendered already.
    fn command(&self, script: String, c: &Command<Compiled>) -> Result<Command, Error> {
        Ok(Command {
            script,
            shell: c.shell.clone(),
            expect: self.command_expect(&c.expect)?,
        })
    }

    /// A request: headers, URL, body.
    fn request(&self, r: &Request<Compiled>) -> Result<Request, Error> {
        let headers = r
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.text(v)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Request {
            method: r.method.clone(),
            url: self.text(&r.url)?,
            headers,
            body: r.body.as_ref().map(|b| self.text(b)).transpose()?,
            insecure_tls: r.insecure_tls,
            timeout: r.timeout,
        })
    }

    /// An upload's file: content, `dest`, `owner`.
    fn upload(&self, u: &Upload<Compiled>) -> Result<Upload, Error> {
        Ok(Upload {
            content: match &u.content {
                Content::Template(t) => self.text(t)?.into_bytes(),
                Content::Bytes(b) => b.to_vec(),
            },
            dest: self.text(&u.dest)?,
            mode: u.mode,
            owner: u.owner.as_ref().map(|o| self.text(o)).transpose()?,
        })
    }

    fn command_expect(&self, e: &CommandExpect<Compiled>) -> Result<CommandExpect, Error> {
        let stdout_regex = match &e.stdout_regex {
            Some(t) => Some(self.regex(t)?),
            None => None,
        };
        Ok(CommandExpect {
            exit: e.exit.clone(),
            stdout_contains: self.texts(&e.stdout_contains)?,
            stdout_regex,
            stderr_not_contains: self.texts(&e.stderr_not_contains)?,
        })
    }

    /// `stdout_regex`: `^` and `$` match at line ends.
    fn regex(&self, t: &Tpl) -> Result<regex::Regex, Error> {
        let re = self.text(t)?;
        RegexBuilder::new(&re)
            .multi_line(true)
            .build()
            .map_err(|err| {
                let e = Error::at(
                    self.src.locate(t.text.span.clone()),
                    format!("stdout_regex is not a valid regular expression: {err}"),
                    "the syntax is Rust's regex crate (like RE2); `^` and `$` match at line ends",
                );
                // A captured value stood in by a placeholder proves nothing.
                if re.contains("${{") {
                    e.provisional()
                } else {
                    e
                }
            })
    }

    fn http_expect(&self, e: &HttpExpect<Compiled>) -> Result<HttpExpect, Error> {
        let headers = e
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.text(v)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(HttpExpect {
            status: e.status.clone(),
            headers,
            body_contains: self.texts(&e.body_contains)?,
            body_not_contains: self.texts(&e.body_not_contains)?,
        })
    }
}
