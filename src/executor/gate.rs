//! `[[gate]]`s: checks on the runner after each batch; a failing gate
//! stops the rollout before the next batch starts.

use std::time::Instant;

use super::Shared;
use super::node::{check, script_input};
use crate::events::Event;
use crate::job::action::GateCheck;
use crate::transport::local;
use crate::transport::{Connector, ExecRequest};

/// Runs every gate in order; the first failure stops the run.
pub(super) async fn run_all<C: Connector>(shared: &Shared<C>, batch: usize) {
    for (i, gate) in shared.job.playbook.gates.iter().enumerate() {
        let started = Instant::now();
        let (attempt, failure) = match shared.job.render_gate(i) {
            Ok(rendered) => {
                attempts(
                    shared,
                    gate.retries,
                    gate.retry_delay,
                    gate.timeout,
                    &rendered,
                )
                .await
            }
            Err(e) => (0, Some(e.one_line())),
        };
        shared.events.emit(Event::GateFinished {
            batch,
            gate: gate.name.clone(),
            ok: failure.is_none(),
            attempt,
            error: failure.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
        });
        if let Some(why) = failure {
            shared.stop(super::StopReason::Gate(format!(
                "gate `{}` failed after batch {batch}: {why}",
                gate.name
            )));
            return;
        }
    }
}

/// Tries a gate up to `retries + 1` times; the attempt count and the last failure.
async fn attempts<C: Connector>(
    shared: &Shared<C>,
    retries: u32,
    delay: std::time::Duration,
    timeout: Option<std::time::Duration>,
    gate: &GateCheck,
) -> (u32, Option<String>) {
    let mut last = None;
    for attempt in 1..=retries + 1 {
        last = once(shared, timeout, gate).await;
        if last.is_none() {
            return (attempt, None);
        }
        if attempt <= retries {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shared.opts.control.interrupt.cancelled() => return (attempt, last),
            }
        }
    }
    (retries + 1, last)
}

async fn once<C: Connector>(
    shared: &Shared<C>,
    timeout: Option<std::time::Duration>,
    gate: &GateCheck,
) -> Option<String> {
    match gate {
        GateCheck::Local(c) => {
            let req = ExecRequest {
                shell: c.shell.clone(),
                sudo: false,
                stdin: script_input(&c.script, &[]).into_bytes(),
                timeout,
                output_cap: shared.opts.output_cap,
                cancel: shared.opts.control.kill.clone(),
                interrupt: shared.opts.control.interrupt.clone(),
                step: None,
            };
            match local::exec(&req).await {
                Ok(out) => check(&out, &c.expect, timeout, false).map(|why| {
                    let tail = crate::support::text::last_lines(&out.stderr.text(), 3);
                    if tail.is_empty() {
                        why
                    } else {
                        format!("{why}: {tail}")
                    }
                }),
                Err(e) => Some(e.to_string()),
            }
        }
        GateCheck::Http(h) => {
            match async {
                shared
                    .http()?
                    .send(&h.request, shared.opts.output_cap)
                    .await
            }
            .await
            {
                Ok(resp) => h
                    .expect
                    .check(&resp)
                    .map(|why| format!("{why}\n{}", resp.describe())),
                Err(e) => Some(e.to_string()),
            }
        }
    }
}
