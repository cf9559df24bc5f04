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
pub(crate) struct Renderer<'a> {
    templates: &'a Templates,
    src: &'a SourceFile,
    ctx: Context<'a>,
}

impl<'a> Renderer<'a> {
    pub(crate) fn new(templates: &'a Templates, src: &'a SourceFile, vars: &'a Vars) -> Self {
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
    pub(crate) fn task(&self, t: &Task<Compiled>) -> Result<Task, Error> {
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
    pub(crate) fn gate(&self, g: &GateCheck<Compiled>) -> Result<GateCheck, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::playbook::Playbook;
    use crate::job::compile::tests::playbook;
    use crate::job::compile::{Program, compile};
    use minijinja::Value;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect()
    }

    fn compiled(name: &str, text: &str, files: &[(&str, &str)]) -> (Playbook, Program) {
        let pb = playbook(name, text, files);
        let program = compile(&pb).unwrap_or_else(|e| panic!("{}", e.render()));
        (pb, program)
    }

    fn task(name: &str, text: &str, files: &[(&str, &str)], v: &Vars) -> Result<Task, Error> {
        let (pb, p) = compiled(name, text, files);
        Renderer::new(&p.templates, &pb.source, v).task(&p.steps[0].task)
    }

    const HEAD: &str = "name = \"x\"\n[[steps]]\n";

    #[test]
    fn a_run_step_renders_its_script_quoted_and_its_expectations_as_text() {
        let text = format!(
            "{HEAD}run = \"echo ${{{{ msg }}}}\"\nenv = {{ A = \"${{{{ msg }}}}\" }}\n\
             unless = \"test ${{{{ msg }}}}\"\n\
             expect = {{ stdout_contains = \"${{{{ msg }}}}\", stdout_regex = \"^${{{{ n }}}}$\" }}\n"
        );
        let t = task("r-run", &text, &[], &vars(&[("msg", "a b"), ("n", "1")])).expect("renders");
        let Action::Run(c) = &t.action else {
            panic!("{:?}", t.action)
        };
        assert_eq!(c.script, "echo 'a b'");
        assert_eq!(t.unless.as_deref(), Some("test 'a b'"));
        assert_eq!(t.env, [("A".to_string(), "a b".to_string())]);
        assert_eq!(c.expect.stdout_contains, ["a b"]);
        assert_eq!(c.expect.check(0, "x\n1\na b", ""), None);
        assert!(c.expect.check(0, "x1", "a b").is_some());
    }

    #[test]
    fn a_local_step_keeps_its_shell() {
        let text = format!("{HEAD}local = \"echo ${{{{ msg }}}}\"\nshell = \"bash\"\n");
        let t = task("r-local", &text, &[], &vars(&[("msg", "hi")])).expect("renders");
        let Action::Local(c) = &t.action else {
            panic!("{:?}", t.action)
        };
        assert_eq!((c.script.as_str(), c.shell.as_str()), ("echo hi", "bash"));
        assert_eq!(t.action.shell(), ("bash", true));
    }

    #[test]
    fn an_http_step_renders_its_request_and_expectations_as_text() {
        let text = format!(
            "{HEAD}http = {{ url = \"http://${{{{ h }}}}/a b\", headers = {{ X-A = \"${{{{ h }}}}\" }}, \
             body = \"${{{{ h }}}}\" }}\n\
             expect = {{ status = 204, headers = {{ x-v = \"${{{{ h }}}}\" }}, body_contains = \"${{{{ h }}}}\" }}\n"
        );
        let t = task("r-http", &text, &[], &vars(&[("h", "a b")])).expect("renders");
        let Action::Http(h) = &t.action else {
            panic!("{:?}", t.action)
        };
        let req = &h.check.request;
        assert_eq!(req.url, "http://a b/a b");
        assert_eq!(req.headers, [("X-A".to_string(), "a b".to_string())]);
        assert_eq!(req.body.as_deref(), Some("a b"));
        assert_eq!(req.timeout, crate::job::http::DEFAULT_HTTP_TIMEOUT);
        assert_eq!(h.check.expect.status, [204]);
        assert_eq!(h.check.expect.headers[0].1, "a b");
        assert_eq!(h.check.expect.body_contains, ["a b"]);
    }

    #[test]
    fn upload_steps_render_a_templated_file_and_keep_a_plain_one() {
        let files = [
            ("f.tmpl", "port ${{ port }}\n"),
            ("f.bin", "raw ${{ port }}"),
        ];
        let text = format!(
            "{HEAD}upload = {{ src = \"f.tmpl\", dest = \"/etc/${{{{ port }}}}\", template = true, \
             owner = \"u${{{{ port }}}}\" }}\n[[steps]]\nupload = {{ src = \"f.bin\", dest = \"/etc/b\" }}\n"
        );
        let (pb, p) = compiled("r-upload", &text, &files);
        let v = vars(&[("port", "80")]);
        let r = Renderer::new(&p.templates, &pb.source, &v);
        let t = r.task(&p.steps[0].task).expect("renders");
        let Action::Upload(u) = &t.action else {
            panic!("{:?}", t.action)
        };
        assert_eq!(u.file.content, b"port 80\n");
        assert_eq!(u.file.dest, "/etc/80");
        assert_eq!(u.file.owner.as_deref(), Some("u80"));
        assert_eq!(u.expect.exit, [0]);
        let t = r.task(&p.steps[1].task).expect("renders");
        let Action::Upload(u) = &t.action else {
            panic!("{:?}", t.action)
        };
        assert_eq!(u.file.content, b"raw ${{ port }}");
    }

    #[test]
    fn gates_render_requests_like_steps_but_name_themselves_in_errors() {
        let text = "name = \"x\"\n[[gate]]\nname = \"g\"\n\
                    http = { url = \"http://${{ h }}/\", headers = { X-A = \"${{ h }}\" } }\n\
                    expect = { body_not_contains = \"${{ h }}\" }\n\
                    [[gate]]\nname = \"l\"\nlocal = \"echo ${{ h }}\"\nexpect = { exit = 3 }\n\
                    [[steps]]\nrun = \"true\"\n";
        let (pb, p) = compiled("r-gate", text, &[]);
        let v = vars(&[("h", "a b")]);
        let r = Renderer::new(&p.templates, &pb.source, &v);
        let GateCheck::Http(h) = r.gate(&p.gates[0]).expect("renders") else {
            panic!("an http gate")
        };
        assert_eq!(h.request.url, "http://a b/");
        assert_eq!(h.request.headers[0].1, "a b");
        assert_eq!(h.expect.body_not_contains, ["a b"]);
        let GateCheck::Local(c) = r.gate(&p.gates[1]).expect("renders") else {
            panic!("a local gate")
        };
        assert_eq!(
            (c.script.as_str(), c.expect.exit.as_slice()),
            ("echo 'a b'", &[3][..])
        );
        let empty = vars(&[]);
        let e = Renderer::new(&p.templates, &pb.source, &empty)
            .gate(&p.gates[0])
            .expect_err("h is undefined");
        // Headers render before the URL, as for steps.
        assert!(
            e.one_line()
                .ends_with(":4:59: undefined variable `h` in a gate"),
            "{}",
            e.one_line()
        );
    }

    #[test]
    fn undefined_variables_are_named_with_the_field_they_are_in() {
        let cases = [
            (
                "run = \"echo ${{ nope }}\"\n",
                "3:17: undefined variable `nope` in the script",
            ),
            (
                "run = \"true\"\nunless = \"${{ nope }}\"\n",
                "4:15: undefined variable `nope` in `unless`",
            ),
            (
                "run = \"true\"\nenv = { A = \"${{ nope }}\" }\n",
                "4:18: undefined variable `nope` in `env`",
            ),
            (
                "http = { url = \"${{ nope }}\" }\n",
                "3:21: undefined variable `nope` in an HTTP request",
            ),
            (
                "upload = { src = \"f\", dest = \"${{ nope }}\" }\n",
                "3:35: undefined variable `nope` in `dest`",
            ),
            (
                "run = \"true\"\nexpect = { stderr_not_contains = [\"${{ nope }}\"] }\n",
                "4:38: undefined variable `nope` in `expect`",
            ),
        ];
        for (i, (step, want)) in cases.iter().enumerate() {
            let text = format!("{HEAD}{step}");
            let e = task(&format!("r-undef{i}"), &text, &[("f", "")], &vars(&[]))
                .expect_err("undefined");
            assert!(e.one_line().ends_with(want), "{step}: {}", e.one_line());
            assert!(!e.is_provisional());
        }
    }

    #[test]
    fn an_invalid_regex_is_refused_and_provisional_behind_a_placeholder() {
        let text =
            format!("{HEAD}run = \"true\"\nexpect = {{ stdout_regex = \"${{{{ re }}}}\" }}\n");
        let e = task("r-regex", &text, &[], &vars(&[("re", "(")])).expect_err("invalid");
        assert!(
            e.one_line()
                .contains("4:27: stdout_regex is not a valid regular expression"),
            "{}",
            e.one_line()
        );
        assert!(!e.is_provisional());
        let v: Vars = [(
            "re".to_string(),
            crate::config::template::verbatim("${{ c }}("),
        )]
        .into_iter()
        .collect();
        let e = task("r-regex2", &text, &[], &v).expect_err("invalid");
        assert!(e.is_provisional());
    }
}
