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
pub(crate) struct Program {
    pub templates: Templates,
    pub steps: Vec<CompiledStep>,
    pub on_failure: Vec<CompiledStep>,
    pub gates: Vec<GateCheck<Compiled>>,
}

/// A step compiled.
pub(crate) struct CompiledStep {
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
const REQUEST: Names = ("a template", "an HTTP request");
const GATE: Names = ("a gate", "a gate");
const GATE_REQUEST: Names = ("an HTTP request", "a gate");
const EXPECT: Names = ("`expect`", "`expect`");

/// Compiles every template of the playbook once. The order in which
/// templates are compiled decides which error is reported first.
pub(crate) fn compile(pb: &Playbook) -> Result<Program, Error> {
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

/// A step's `unless` and `env`, compiled.
type GuardAndEnv = (Option<Tpl>, Vec<(String, Tpl)>);

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
    fn guard_and_env(&mut self, step: &Step) -> Result<GuardAndEnv, Error> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::job::form::Content;

    /// A playbook from text; `files` are written beside it (upload sources).
    pub(crate) fn playbook(name: &str, text: &str, files: &[(&str, &str)]) -> Playbook {
        let dir = std::env::temp_dir().join(format!("fleetfix-job-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (file, content) in files {
            std::fs::write(dir.join(file), content).expect("writes");
        }
        Playbook::from_source(SourceFile {
            path: dir.join("pb.toml"),
            text: text.into(),
        })
        .unwrap_or_else(|e| panic!("{}", e.render()))
    }

    const EVERY_KIND: &str = r#"name = "kinds"
[[gate]]
name = "local"
local = "echo ${{ image }}"
shell = "bash"
[[gate]]
name = "health"
http = { url = "http://h/${{ image }}", headers = { x-a = "a" } }
timeout = "3s"
[[steps]]
run = "echo ${{ role }}"
expect = { exit = [0, 3], stdout_contains = "ok ${{ x }}", stdout_regex = "^v", stderr_not_contains = ["err", "bad"] }
[[steps]]
local = "echo local"
shell = "bash"
env = { A = "${{ a }}" }
when = "w == 1"
[[steps]]
http = { url = "http://${{ host }}/", method = "POST", body = "b", via = "ssh" }
timeout = "7s"
capture = "v"
capture_header = "X-Version"
expect = { headers = { x-v = "${{ y }}" }, body_contains = "ok", body_not_contains = ["no"] }
[[steps]]
upload = { src = "f.tmpl", dest = "/etc/${{ role }}.conf", template = true, owner = "${{ user }}" }
unless = "test -f ${{ flag }}"
[[steps]]
upload = { src = "f.bin", dest = "/etc/fixed", mode = "0600" }
"#;

    fn every_kind() -> (Playbook, Program) {
        let pb = playbook(
            "kinds",
            EVERY_KIND,
            &[("f.tmpl", "port ${{ port }}\n"), ("f.bin", "raw ${{ x }}")],
        );
        let program = compile(&pb).unwrap_or_else(|e| panic!("{}", e.render()));
        (pb, program)
    }

    #[test]
    fn a_run_step_holds_its_script_shell_and_command_expectations() {
        let (_, p) = every_kind();
        let Action::Run(c) = &p.steps[0].task.action else {
            panic!("{:?}", p.steps[0].task.action)
        };
        assert_eq!(c.script.text.text, "echo ${{ role }}");
        assert_eq!((c.shell.as_str(), c.script.what), ("sh", "the script"));
        assert_eq!(c.expect.exit, [0, 3]);
        assert_eq!(c.expect.stdout_contains.len(), 1);
        assert!(c.expect.stdout_regex.is_some());
        assert_eq!(c.expect.stderr_not_contains.len(), 2);
        let reads: Vec<&str> = p.steps[0].reads.iter().map(String::as_str).collect();
        assert_eq!(reads, ["role", "x"]);
    }

    #[test]
    fn a_local_step_holds_its_shell_and_env_but_not_its_when() {
        let (_, p) = every_kind();
        let step = &p.steps[1];
        let Action::Local(c) = &step.task.action else {
            panic!("{:?}", step.task.action)
        };
        assert_eq!(c.shell, "bash");
        assert_eq!(c.expect.exit, [0]);
        assert_eq!(step.task.action.shell(), ("bash", true));
        assert_eq!(step.task.env.len(), 1);
        assert_eq!(step.task.env[0].1.what, "`env`");
        // `w` is read by `when`, which validation reads apart.
        let reads: Vec<&str> = step.reads.iter().map(String::as_str).collect();
        assert_eq!(reads, ["a"]);
    }

    #[test]
    fn an_http_step_holds_its_request_and_http_expectations() {
        let (_, p) = every_kind();
        let Action::Http(h) = &p.steps[2].task.action else {
            panic!("{:?}", p.steps[2].task.action)
        };
        assert!(h.via_ssh);
        assert_eq!(h.capture_header.as_deref(), Some("x-version"));
        let req = &h.check.request;
        assert_eq!(req.method, "POST");
        assert_eq!(req.timeout, Duration::from_secs(7), "the step's timeout");
        assert!(req.body.is_some() && req.headers.is_empty());
        assert_eq!(req.url.what, "an HTTP request");
        assert_eq!(h.check.expect.status, (200..400).collect::<Vec<u16>>());
        assert_eq!(h.check.expect.headers[0].0, "x-v");
        assert_eq!(h.check.expect.body_contains.len(), 1);
        assert_eq!(h.check.expect.body_not_contains.len(), 1);
        let reads: Vec<&str> = p.steps[2].reads.iter().map(String::as_str).collect();
        assert_eq!(reads, ["host", "y"]);
    }

    #[test]
    fn upload_steps_hold_their_file_as_a_template_or_bytes() {
        let (_, p) = every_kind();
        let Action::Upload(u) = &p.steps[3].task.action else {
            panic!("{:?}", p.steps[3].task.action)
        };
        assert!(
            matches!(&u.file.content, Content::Template(t) if t.what == "the uploaded template")
        );
        assert!(u.file.owner.is_some() && u.file.mode.is_none());
        assert!(p.steps[3].task.unless.is_some());
        let reads: Vec<&str> = p.steps[3].reads.iter().map(String::as_str).collect();
        assert_eq!(reads, ["flag", "port", "role", "user"]);
        let Action::Upload(u) = &p.steps[4].task.action else {
            panic!("{:?}", p.steps[4].task.action)
        };
        // Not a template: `${{ x }}` is the file's own bytes.
        assert!(matches!(&u.file.content, Content::Bytes(b) if &b[..] == b"raw ${{ x }}"));
        assert_eq!(u.file.mode, Some(0o600));
        assert!(p.steps[4].reads.is_empty());
    }

    #[test]
    fn gates_compile_to_a_command_or_a_request() {
        let (_, p) = every_kind();
        let GateCheck::Local(c) = &p.gates[0] else {
            panic!("{:?}", p.gates[0])
        };
        assert_eq!((c.shell.as_str(), c.script.what), ("bash", "a gate"));
        let GateCheck::Http(h) = &p.gates[1] else {
            panic!("{:?}", p.gates[1])
        };
        assert_eq!(
            h.request.timeout,
            Duration::from_secs(3),
            "the gate's timeout"
        );
        assert_eq!(h.request.url.what, "a gate");
        assert_eq!(h.expect.status, (200..300).collect::<Vec<u16>>());
    }

    fn compile_error(name: &str, text: &str) -> String {
        let pb = playbook(name, text, &[]);
        match compile(&pb) {
            Ok(_) => panic!("{text} compiles"),
            Err(e) => e.one_line(),
        }
    }

    #[test]
    fn compile_errors_name_the_template_and_its_place() {
        let head = "name = \"x\"\n[[steps]]\n";
        let cases = [
            (
                "run = \"echo ${{ a b }}\"\n",
                "3:19: template syntax error in a template",
            ),
            (
                "run = \"true\"\nenv = { A = \"${{ }}\" }\n",
                "4:18: template syntax error in a template",
            ),
            (
                "http = { url = \"http://${{ x y }}/\" }\n",
                "3:30: template syntax error in a template",
            ),
            (
                "run = \"true\"\nexpect = { stdout_contains = \"${{ ( }}\" }\n",
                "4:37: template syntax error in `expect`",
            ),
            (
                "run = \"true\"\nwhen = \"a ==\"\n",
                "4:11: template syntax error in `when`",
            ),
        ];
        for (i, (step, want)) in cases.iter().enumerate() {
            let got = compile_error(&format!("err{i}"), &format!("{head}{step}"));
            assert!(got.contains(want), "{step}: {got}");
        }
        let gate = "name = \"x\"\n[[gate]]\nname = \"g\"\nlocal = \"${{ a b }}\"\n[[steps]]\nrun = \"true\"\n";
        let got = compile_error("gate", gate);
        assert!(
            got.contains("4:16: template syntax error in a gate"),
            "{got}"
        );
        // A gate's request, unlike a step's, is named as one.
        let gate = "name = \"x\"\n[[gate]]\nname = \"g\"\nhttp = { url = \"${{ a b }}\" }\n\
                    [[steps]]\nrun = \"true\"\n";
        let got = compile_error("gate-http", gate);
        assert!(
            got.contains("4:23: template syntax error in an HTTP request"),
            "{got}"
        );
    }

    #[test]
    fn the_first_template_in_playbook_order_reports_its_error() {
        // The script compiles before `unless`, and main steps before on_failure.
        let text = "name = \"x\"\n[[steps]]\nrun = \"${{ a b }}\"\nunless = \"${{ c d }}\"\n\
                    [[on_failure]]\nrun = \"${{ e f }}\"\n";
        let got = compile_error("order", text);
        assert!(got.contains(":3:"), "{got}");
    }
}
