//! One node: connect once, run its steps in order, then `[[on_failure]]`
//! steps if one failed. `--check` runs only read-only steps and guards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Shared;
use crate::config::vars::Vars;
use crate::events::{Event, NodeStatus, StepResult, StepStatus};
use crate::job::StepRef;
use crate::job::action::{Action, Task};
use crate::job::expect::CommandExpect;
use crate::support::quote::shell_quote;
use crate::transport::{
    Ahead, Connector, ExecOutput, ExecRequest, ExitStatus, Session, SessionError,
};
use crate::{job::upload, transport::local};

/// Steps sent ahead of their turn at most (see [`NodeRun::ahead`]).
const AHEAD_STEPS: usize = 8;

/// How a node's run ended, before it is reported.
struct NodeEnd {
    status: NodeStatus,
    error: Option<String>,
}

/// Runs node `i` start to end and reports it.
pub(super) async fn run<C: Connector>(shared: &Shared<C>, i: usize) -> NodeStatus {
    let job = &shared.job;
    let node = &job.nodes[i];
    let started = Instant::now();
    shared.events.emit(Event::NodeStarted {
        node: node.name.clone(),
    });
    let mut vars = job.node_vars[i].clone();
    // A capture whose step did not succeed reads as empty, so guards such as
    // `when = "running_image != ''"` work in on_failure steps too.
    for name in job.capture_names() {
        vars.insert(name.to_string(), minijinja::Value::from(""));
    }
    let connected = tokio::select! {
        c = shared.connector.connect(node) => Some(c),
        _ = shared.opts.control.interrupt.cancelled() => None,
    };
    let end = match connected {
        None => NodeEnd {
            status: NodeStatus::NotRun,
            error: Some("not run: interrupted while connecting".into()),
        },
        Some(Err(e)) => NodeEnd {
            status: NodeStatus::Unreachable,
            error: Some(e.to_string()),
        },
        Some(Ok(session)) => {
            let end = NodeRun {
                shared,
                node: i,
                session: &session,
            }
            .run(&mut vars)
            .await;
            session.close().await;
            end
        }
    };
    let report = job
        .playbook
        .report_vars
        .iter()
        .filter_map(|name| {
            let v = vars.get(name.get_ref().as_str())?;
            Some((name.get_ref().clone(), v.to_string()))
        })
        .collect::<BTreeMap<_, _>>();
    shared.events.emit(Event::NodeFinished {
        node: node.name.clone(),
        status: end.status,
        error: end.error,
        duration_ms: started.elapsed().as_millis() as u64,
        report,
    });
    end.status
}

/// One node's steps over its open session.
struct NodeRun<'a, C: Connector> {
    shared: &'a Shared<C>,
    node: usize,
    session: &'a C::Session,
}

/// A step's end as the node loop sees it.
enum StepEnd {
    Done(StepStatus),
    Lost(String),
    /// Another run holds the node lock: nothing ran.
    Locked(String),
}

impl<C: Connector> NodeRun<'_, C> {
    async fn run(&self, vars: &mut Vars) -> NodeEnd {
        let job = &self.shared.job;
        let interrupt = &self.shared.opts.control.interrupt;
        let mut changed = false;
        let mut failed: Option<String> = None;
        // Under --check, once a step would change the node, the steps after
        // it would act on a state that does not exist yet: none of them runs.
        let mut pending_change = false;
        for (ran, r) in job.step_refs(false).enumerate() {
            if interrupt.is_cancelled() {
                let status = if ran == 0 {
                    NodeStatus::NotRun
                } else {
                    NodeStatus::Failed
                };
                let error = format!("interrupted before step `{}`", job.step(r).name);
                return NodeEnd {
                    status,
                    error: Some(error),
                };
            }
            match self.step(r, vars, pending_change).await {
                StepEnd::Locked(holder) => return self.locked(holder),
                StepEnd::Lost(msg) => {
                    return NodeEnd {
                        status: NodeStatus::Unreachable,
                        error: Some(format!("step `{}`: {msg}", job.step(r).name)),
                    };
                }
                StepEnd::Done(StepStatus::WouldRun) => {
                    changed = true;
                    pending_change = true;
                }
                StepEnd::Done(StepStatus::Changed) => changed = true,
                StepEnd::Done(StepStatus::Failed) if !job.step(r).ignore_failure => {
                    failed = Some(format!("step `{}` failed", job.step(r).name));
                    break;
                }
                StepEnd::Done(_) => {}
            }
        }
        let Some(error) = failed else {
            let status = if changed {
                NodeStatus::Changed
            } else {
                NodeStatus::Ok
            };
            return NodeEnd {
                status,
                error: None,
            };
        };
        if interrupt.is_cancelled() {
            return NodeEnd {
                status: NodeStatus::Failed,
                error: Some(format!("{error} (interrupted; on_failure steps not run)")),
            };
        }
        for r in job.step_refs(true) {
            if interrupt.is_cancelled() {
                return NodeEnd {
                    status: NodeStatus::Failed,
                    error: Some(format!(
                        "{error} (interrupted before on_failure step `{}`)",
                        job.step(r).name
                    )),
                };
            }
            match self.step(r, vars, false).await {
                StepEnd::Lost(msg) => {
                    return NodeEnd {
                        status: NodeStatus::Unreachable,
                        error: Some(format!(
                            "{error}; then on_failure step `{}`: {msg}",
                            job.step(r).name
                        )),
                    };
                }
                StepEnd::Locked(holder) => {
                    return NodeEnd {
                        status: NodeStatus::Failed,
                        error: Some(format!(
                            "{error}; then on_failure step `{}`: the node is locked by another run: {holder}",
                            job.step(r).name
                        )),
                    };
                }
                StepEnd::Done(_) => {}
            }
        }
        NodeEnd {
            status: NodeStatus::Failed,
            error: Some(error),
        }
    }

    /// The node lock is held by another run of the playbook: this node is
    /// not run, and the run starts no other node (exit 4).
    fn locked(&self, holder: String) -> NodeEnd {
        let job = &self.shared.job;
        let why = format!(
            "node {} is locked by another run of `{}`: {holder}",
            job.nodes[self.node].name, job.playbook.name
        );
        self.shared.stop(super::StopReason::Locked(why.clone()));
        NodeEnd {
            status: NodeStatus::NotRun,
            error: Some(format!("not run: {why}")),
        }
    }

    /// Runs one step: guards, attempts, expectations, capture; emits its
    /// result. `after_change`: under --check, an earlier step would have
    /// changed the node, so even a read-only step only has its guards run.
    async fn step(&self, r: StepRef, vars: &mut Vars, after_change: bool) -> StepEnd {
        let job = &self.shared.job;
        let step = job.step(r);
        let started = Instant::now();
        let mut result = StepResult {
            node: job.nodes[self.node].name.clone(),
            step: step.name.clone(),
            index: r.index,
            on_failure: r.on_failure,
            status: StepStatus::Failed,
            attempt: 0,
            exit: None,
            stdout: String::new(),
            stderr: String::new(),
            duration_ms: 0,
            error: None,
        };
        let end = self.attempt_all(r, vars, &mut result, after_change).await;
        result.duration_ms = started.elapsed().as_millis() as u64;
        self.shared.events.emit(Event::StepFinished(result));
        end
    }

    async fn attempt_all(
        &self,
        r: StepRef,
        vars: &mut Vars,
        result: &mut StepResult,
        after_change: bool,
    ) -> StepEnd {
        let job = &self.shared.job;
        let step = job.step(r);
        // Under --check a step that may change the node only has its guards
        // evaluated; read-only steps run for real, unless a change before
        // them is only pretended.
        let dry = self.shared.opts.check && (step.changes || after_change);
        let skipped = if dry {
            StepStatus::WouldSkip
        } else {
            StepStatus::Skipped
        };
        match job.when(r, vars) {
            Ok(true) => {}
            Ok(false) => return skip(result, skipped, "`when` is false"),
            Err(e) => return fail(result, e.one_line()),
        }
        let task = match job.render(r, vars) {
            Ok(x) => x,
            Err(e) => return fail(result, e.one_line()),
        };
        if let Some(guard) = &task.unless {
            match self
                .exec(r, &task.action, guard, &task.env, None, false)
                .await
            {
                Ok(out) if out.status == ExitStatus::Code(0) => {
                    return skip(result, skipped, "`unless` command exited 0");
                }
                Ok(_) => {}
                Err(SessionError::Lost(m)) => return StepEnd::Lost(m),
                Err(SessionError::Locked(h)) => return StepEnd::Locked(h),
                Err(e) => return fail(result, format!("`unless` could not run: {e}")),
            }
        }
        if dry {
            // An upload can tell, read-only, whether it would write.
            let status = match &task.action {
                Action::Upload(u) => match self
                    .exec(
                        r,
                        &task.action,
                        &upload::script(&u.file, true),
                        &[],
                        step.timeout,
                        false,
                    )
                    .await
                {
                    Ok(out)
                        if upload::outcome(&out.stdout.text()) == Some(upload::Outcome::Same) =>
                    {
                        StepStatus::WouldSkip
                    }
                    Ok(_) => StepStatus::WouldRun,
                    Err(SessionError::Lost(m)) => return StepEnd::Lost(m),
                    Err(SessionError::Locked(h)) => return StepEnd::Locked(h),
                    Err(e) => return fail(result, e.to_string()),
                },
                _ => StepStatus::WouldRun,
            };
            result.status = status;
            return StepEnd::Done(status);
        }
        let attempts = step.retries + 1;
        let ahead = self.ahead(r, &task, vars);
        if !ahead.is_empty() {
            self.session.run_ahead(ahead);
        }
        for attempt in 1..=attempts {
            result.attempt = attempt;
            self.shared.events.emit(Event::StepStarted {
                node: result.node.clone(),
                step: step.name.clone(),
                index: r.index,
                steps: job.steps(r.on_failure).len(),
                attempt,
                on_failure: r.on_failure,
            });
            let out = match self.attempt(r, &task).await {
                Ok(out) => out,
                Err(SessionError::Lost(m)) => {
                    result.error = Some(m.clone());
                    return StepEnd::Lost(m);
                }
                Err(SessionError::Locked(h)) => return StepEnd::Locked(h),
                Err(e) => return fail(result, e.to_string()),
            };
            result.exit = out.exit;
            result.stdout = out.stdout;
            result.stderr = out.stderr;
            match out.failure {
                None => {
                    result.error = None;
                    result.status = if step.changes && !out.unchanged {
                        StepStatus::Changed
                    } else {
                        StepStatus::Ok
                    };
                    if let Some(c) = &step.capture {
                        vars.insert(
                            c.get_ref().clone(),
                            minijinja::Value::from(out.capture.trim()),
                        );
                    }
                    return StepEnd::Done(result.status);
                }
                Some(why) => result.error = Some(why),
            }
            if out.interrupted {
                break;
            }
            if attempt < attempts {
                let interrupt = &self.shared.opts.control.interrupt;
                tokio::select! {
                    _ = tokio::time::sleep(step.retry_delay) => {}
                    _ = interrupt.cancelled() => break,
                }
            }
        }
        result.status = StepStatus::Failed;
        StepEnd::Done(StepStatus::Failed)
    }

    /// One attempt of the step's action, checked against its expectations.
    async fn attempt(&self, r: StepRef, task: &Task) -> Result<Attempt, SessionError> {
        let step = self.shared.job.step(r);
        let h = match &task.action {
            Action::Upload(u) => {
                let script = upload::script(&u.file, false);
                let out = self
                    .exec(r, &task.action, &script, &task.env, step.timeout, false)
                    .await?;
                let stdout = out.stdout.text();
                let outcome = upload::outcome(&stdout);
                let failure = check(&out, &u.expect, step.timeout, step.sudo).or_else(|| {
                    outcome
                        .is_none()
                        .then(|| "the node did not confirm the upload".to_string())
                });
                return Ok(Attempt {
                    exit: out.status.code(),
                    failure,
                    capture: String::new(),
                    stdout,
                    stderr: out.stderr.text(),
                    interrupted: out.status.interrupted(),
                    unchanged: outcome == Some(upload::Outcome::Same),
                });
            }
            Action::Run(c) | Action::Local(c) => {
                let out = self
                    .exec(r, &task.action, &c.script, &task.env, step.timeout, true)
                    .await?;
                let stdout = out.stdout.text();
                return Ok(Attempt {
                    exit: out.status.code(),
                    failure: check(&out, &c.expect, step.timeout, step.sudo),
                    capture: stdout.clone(),
                    stdout,
                    stderr: out.stderr.text(),
                    interrupted: out.status.interrupted(),
                    unchanged: false,
                });
            }
            Action::Http(h) => h,
        };
        let req = &h.check.request;
        let cap = self.shared.opts.output_cap;
        let kill = &self.shared.opts.control.kill;
        let sent = async {
            if h.via_ssh {
                crate::transport::http::send_via(self.session, req, cap).await
            } else {
                self.shared.http()?.send(req, cap).await
            }
        };
        let resp = tokio::select! {
            r = sent => r,
            _ = kill.cancelled() => {
                return Ok(Attempt::failed("interrupted".into(), true));
            }
        };
        let resp = match resp {
            Ok(resp) => resp,
            Err(crate::transport::http::SendError::Lost(m)) => return Err(SessionError::Lost(m)),
            Err(crate::transport::http::SendError::Failed(m)) => {
                return Ok(Attempt::failed(m, false));
            }
        };
        let capture = match &h.capture_header {
            Some(name) => resp.header(name).unwrap_or_default().to_string(),
            None => resp.body.clone(),
        };
        Ok(Attempt {
            exit: None,
            failure: h.check.expect.check(&resp),
            capture,
            stdout: resp.describe(),
            stderr: String::new(),
            interrupted: false,
            unchanged: false,
        })
    }

    /// Runs a script on the node (or the runner, for `local`); `own`: the
    /// step's own script, not a guard or an upload's.
    async fn exec(
        &self,
        r: StepRef,
        action: &Action,
        script: &str,
        env: &[(String, String)],
        timeout: Option<Duration>,
        own: bool,
    ) -> Result<ExecOutput, SessionError> {
        let (req, local) = self.request(r, action, script, env, timeout, own);
        if local {
            local::exec(&req).await
        } else {
            self.session.exec(req).await
        }
    }

    /// The request that runs `script` for step `r`; true when it runs on
    /// the runner (`local`). `script` is the step's own when `own`.
    fn request(
        &self,
        r: StepRef,
        action: &Action,
        script: &str,
        env: &[(String, String)],
        timeout: Option<Duration>,
        own: bool,
    ) -> (ExecRequest, bool) {
        let step = self.shared.job.step(r);
        let (shell, local) = action.shell();
        let req = ExecRequest {
            shell: shell.to_string(),
            sudo: step.sudo,
            stdin: script_input(script, env).into_bytes(),
            timeout,
            output_cap: self.shared.opts.output_cap,
            cancel: self.shared.opts.control.kill.clone(),
            interrupt: self.shared.opts.control.interrupt.clone(),
            step: own.then_some(r),
        };
        (req, local)
    }

    /// The steps after `r` that may be sent ahead behind `r`'s command (at
    /// most [`AHEAD_STEPS`]), each to start on the node only after an exit
    /// status that passes the step before it. A step goes ahead when it
    /// runs on the node, is read-only and unguarded, and the step before it
    /// is a command whose success the node can tell from its exit status
    /// alone (no output expectations, no `ignore_failure`) and captures
    /// nothing its rendering could read (rendered before the capture, it
    /// would not be the step its turn asks for). None under --check.
    fn ahead(&self, r: StepRef, task: &Task, vars: &Vars) -> Vec<Ahead> {
        let job = &self.shared.job;
        let len = job.steps(r.on_failure).len();
        let mut chain = Vec::new();
        if self.shared.opts.check {
            return chain;
        }
        let mut cur = r;
        // The expectations of `cur` when it is a run step.
        let mut expect = match &task.action {
            Action::Run(c) => Some(c.expect.clone()),
            _ => None,
        };
        while chain.len() < AHEAD_STEPS && cur.index + 1 < len {
            let (step, next) = (
                job.step(cur),
                StepRef {
                    index: cur.index + 1,
                    ..cur
                },
            );
            let after = job.step(next);
            let Some(before) = expect.take().filter(CommandExpect::exit_decides) else {
                break;
            };
            if step.capture.is_some()
                || step.ignore_failure
                || after.changes
                || after.when.is_some()
                || after.unless.is_some()
                || !matches!(job.action(next), Action::Run(_))
            {
                break;
            }
            let Ok(next_task) = job.render(next, vars) else {
                break;
            };
            let Action::Run(c) = &next_task.action else {
                break;
            };
            let (req, _) = self.request(
                next,
                &next_task.action,
                &c.script,
                &next_task.env,
                after.timeout,
                true,
            );
            chain.push(Ahead {
                req,
                after: before.exit,
            });
            expect = Some(c.expect.clone());
            cur = next;
        }
        chain
    }
}

/// What one attempt produced.
struct Attempt {
    exit: Option<i32>,
    stdout: String,
    stderr: String,
    /// Why the attempt fails its expectations, if it does.
    failure: Option<String>,
    /// The text a `capture` takes (stdout, a response body or header).
    capture: String,
    interrupted: bool,
    /// The step found nothing to change (an identical upload).
    unchanged: bool,
}

impl Attempt {
    fn failed(why: String, interrupted: bool) -> Self {
        Attempt {
            exit: None,
            stdout: String::new(),
            stderr: String::new(),
            failure: Some(why),
            capture: String::new(),
            interrupted,
            unchanged: false,
        }
    }
}

fn skip(result: &mut StepResult, status: StepStatus, why: &str) -> StepEnd {
    result.status = status;
    result.error = Some(why.to_string());
    StepEnd::Done(status)
}

fn fail(result: &mut StepResult, why: String) -> StepEnd {
    result.status = StepStatus::Failed;
    result.error = Some(why);
    StepEnd::Done(StepStatus::Failed)
}

/// The stdin of the shell: environment exports and the script, as one brace
/// group read completely before it runs, with its stdin from /dev/null so
/// that no command of the script can swallow the rest of it.
pub(super) fn script_input(script: &str, env: &[(String, String)]) -> String {
    let mut s = String::with_capacity(script.len() + 32);
    s.push_str("{\n");
    for (k, v) in env {
        s.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    s.push_str(script);
    if !script.ends_with('\n') {
        s.push('\n');
    }
    s.push_str("} </dev/null\n");
    s
}

/// Why a command's output fails `e`, if it does (steps and local gates):
/// how it ended, then the expectations.
pub(super) fn check(
    out: &ExecOutput,
    e: &CommandExpect,
    timeout: Option<Duration>,
    sudo: bool,
) -> Option<String> {
    let code = match &out.status {
        ExitStatus::TimedOut(ending) => {
            let secs = timeout.map(|t| t.as_secs_f64()).unwrap_or_default();
            return Some(format!("timed out after {secs}s; {}", ending.describe()));
        }
        ExitStatus::Interrupted(ending) => {
            return Some(format!("interrupted; {}", ending.describe()));
        }
        ExitStatus::NotStarted { code, said } => {
            let status = code.map(|c| format!(" (exit {c})")).unwrap_or_default();
            let said = if said.is_empty() {
                String::new()
            } else {
                format!(": {}", said.trim())
            };
            return Some(format!(
                "the account's login shell did not run the command{status}{said}"
            ));
        }
        ExitStatus::Signal(s) => return Some(format!("killed by signal {s}")),
        ExitStatus::Unknown => return Some("the command ended without an exit status".into()),
        ExitStatus::Code(c) => *c,
    };
    let stderr = String::from_utf8_lossy(&out.stderr.bytes);
    if sudo && code != 0 && stderr.contains("a password is required") {
        return Some(
            "sudo needs a password on this node; fleetfix runs `sudo -n` and never types \
             passwords: allow NOPASSWD for this user, or drop `sudo`"
                .into(),
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout.bytes);
    e.check(code, &stdout, &stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_input_wraps_in_a_brace_group() {
        let s = script_input("echo hi", &[("TOKEN".into(), "a b".into())]);
        assert_eq!(s, "{\nexport TOKEN='a b'\necho hi\n} </dev/null\n");
    }

    fn output(code: i32, stdout: &str, stderr: &str) -> ExecOutput {
        let cap = |s: &str| crate::transport::Captured {
            bytes: s.as_bytes().to_vec(),
            dropped: 0,
        };
        ExecOutput {
            status: ExitStatus::Code(code),
            stdout: cap(stdout),
            stderr: cap(stderr),
        }
    }

    fn expecting(exit: Vec<i32>) -> CommandExpect {
        CommandExpect {
            exit,
            ..Default::default()
        }
    }

    #[test]
    fn a_sudo_password_prompt_is_explained() {
        let out = output(1, "", "sudo: a password is required\n");
        let why = check(&out, &expecting(vec![0]), None, true).expect("fails");
        assert!(why.contains("NOPASSWD"), "{why}");
    }

    #[test]
    fn expectations_compose() {
        let mut r = expecting(vec![0, 3]);
        r.stdout_contains = vec!["ready".into()];
        r.stderr_not_contains = vec!["error".into()];
        assert_eq!(check(&output(3, "ready\n", ""), &r, None, false), None);
        assert!(
            check(&output(1, "ready", ""), &r, None, false)
                .is_some_and(|w| w.contains("exit code 1, expected 0 or 3"))
        );
        assert!(
            check(&output(0, "nope", ""), &r, None, false)
                .is_some_and(|w| w.contains("does not contain"))
        );
        assert!(
            check(&output(0, "ready", "an error"), &r, None, false)
                .is_some_and(|w| w.contains("stderr contains"))
        );
        let timed_out = ExecOutput {
            status: ExitStatus::TimedOut(crate::transport::Ending::Ended),
            ..output(0, "", "")
        };
        assert!(
            check(&timed_out, &r, Some(Duration::from_secs(2)), false)
                .is_some_and(|w| w == "timed out after 2s; its processes were ended")
        );
    }
}
