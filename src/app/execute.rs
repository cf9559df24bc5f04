//! `run` and `exec`: lock, confirm, connect, execute, report.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use super::prepare;
use crate::app::cli::{Common, Connection, OutputFormat, Outputs, Progress, RunWeb};
use crate::config::playbook::Playbook;
use crate::events::{Event, EventSink, ExitCode};
use crate::executor::{self, Control, ExecOptions};
use crate::job::Job;
use crate::output::junit::JunitReport;
use crate::output::metrics::MetricsFile;
use crate::output::report::{self, JsonReport};
use crate::output::{
    self, Bars, ExecGrouped, Finisher, JsonLines, PlainLines, Reporter, SummaryTable,
};
use crate::record::RunRecord;
use crate::record::journal::Journal;
use crate::support::error::Error;
use crate::transport::ssh::known_hosts::KnownHosts;
use crate::transport::ssh::{Credentials, SshConnector, SshOptions};
use crate::{app::lock, record, support::limits, support::state};

/// What `run` and `exec` were asked for beyond the job itself.
pub(super) struct RunArgs<'a> {
    pub common: &'a Common,
    pub conn: &'a Connection,
    pub outputs: &'a Outputs,
    pub check: bool,
    pub resume: Option<&'a str>,
    pub lock_wait: Option<Duration>,
    /// `--metrics FILE` (run only).
    pub metrics: Option<&'a std::path::Path>,
    /// `fleetfix exec`: output grouped per node, no lock, no confirmation.
    pub exec: bool,
    /// `--serve` and `--serve-linger` (run only).
    pub web: Option<&'a RunWeb>,
}

/// `run` and `exec`: lock, confirm, connect, execute, report; the exit
/// code and the run's record (empty when nothing was run).
pub(super) fn execute(pb: Playbook, args: RunArgs<'_>) -> Result<(ExitCode, RunRecord), Error> {
    set_limits();
    let state = state::state_dir();
    let only = match args.resume {
        Some(id) => Some(unfinished_in(&state, id, &pb.name)?),
        None => None,
    };
    let job = Arc::new(prepare(pb, args.common, only, true)?);
    let kh_path = args
        .conn
        .known_hosts
        .clone()
        .unwrap_or_else(crate::transport::ssh::default_known_hosts_path);
    let known_hosts = Arc::new(KnownHosts::load(&kh_path)?);
    for (path, option) in [
        (args.outputs.report.as_deref(), "--report"),
        (args.outputs.junit.as_deref(), "--junit"),
        (args.metrics, "--metrics"),
    ] {
        if let Some(p) = path {
            report::check_output_path(p, option)?;
        }
    }
    // One thread drives every connection: a node's work is mostly waiting,
    // and handing wakeups between worker threads costs more CPU per host
    // than the crypto it would spread (BENCHMARKS.md, "Why it is built so").
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime {
            message: format!("cannot start the async runtime: {e}"),
        })?;
    // Keys (and their passphrases) before the lock, the prompt and the
    // journal: a bad key is bad input, and leaves no trace of a run.
    let credentials = Arc::new(runtime.block_on(Credentials::load(&job.nodes))?);
    let _lock = if args.exec {
        None
    } else {
        let lock = lock::acquire(&state, &job.playbook.name, &job.run.id, args.lock_wait);
        Some(lock.map_err(Error::from)?)
    };
    if let Some(lock) = &_lock {
        tracing::debug!("holding the lock {}", lock.path().display());
    }
    // Listening is checked before anything runs: a taken port is bad input.
    let serve = match args.web.and_then(|w| w.serve.as_deref()) {
        Some(addr) => Some(output::web::server::bind(addr, "--serve")?),
        None => None,
    };
    if !confirmed(&job, &args)? {
        eprintln!("aborted: nothing was run");
        return Ok((ExitCode::Stopped, RunRecord::new()));
    }
    let journal = Journal::create(&state, &job.run.id)?;
    tracing::debug!("journal: {}", journal.path().display());
    runtime.block_on(async {
        let connector = Arc::new(SshConnector::new(SshOptions {
            known_hosts,
            accept_new_host_keys: args.conn.accept_new_host_keys,
            credentials,
            keepalive: Duration::from_secs(5),
            node_lock: needs_node_lock(&job, &args)
                .then(|| lock::node_lock(&job.playbook.name, &job.run.id, args.lock_wait)),
        }));
        // The journal on the executor's thread: no slow terminal may hold
        // it back, and a step is journaled before the node's next one that
        // may change it starts (read-only ones may be sent ahead).
        let inline: Vec<Box<dyn Reporter>> = vec![Box::new(journal)];
        // The run's one record, fed on the writer thread; the finishers
        // (summary, reports) render it once the run is over.
        let (mut streams, mut finishers) = reporters(&job, args.common, args.exec);
        // Only `--report` and the web view show the output of steps that
        // did not fail.
        let record = if args.outputs.report.is_some() || serve.is_some() {
            RunRecord::new()
        } else {
            RunRecord::lean()
        };
        let record: output::SharedRecord =
            Arc::new(std::sync::Mutex::new(output::Applied { record, seq: 0 }));
        if let Some(bound) = serve {
            let (live, feed) = output::web::server::live(record.clone());
            streams.push(Box::new(feed));
            let url = bound.url();
            output::web::server::spawn(bound, output::web::server::Site::Live(live)).map_err(
                |e| Error::Runtime {
                    message: format!("cannot start the web view: {e}"),
                },
            )?;
            eprintln!("serving this run at {url}");
        }
        if let Some(path) = &args.outputs.report {
            finishers.push(Box::new(JsonReport::new(path.clone())));
        }
        if let Some(path) = &args.outputs.junit {
            finishers.push(Box::new(JunitReport::new(path.clone())));
        }
        if let Some(path) = args.metrics {
            finishers.push(Box::new(MetricsFile::new(path.to_path_buf())));
        }
        let (sink, writers) = output::spawn(job.masker.clone(), inline, streams, record, finishers);
        let control = Control::default();
        let signals = tokio::spawn(handle_signals(control.clone(), sink.clone()));
        let opts = ExecOptions {
            check: args.check,
            control,
            output_cap: args
                .outputs
                .output_cap
                .unwrap_or(executor::DEFAULT_OUTPUT_CAP),
        };
        let summary = executor::run(job.clone(), connector, sink, opts).await;
        // The signal task holds a sender too: the writers finish once it is gone.
        signals.abort();
        let _ = signals.await;
        let record = writers.finish();
        if args.web.is_some_and(|w| w.serve_linger) {
            eprintln!("the run is over; still serving its page (--serve-linger) until Ctrl-C");
            output::web::server::interrupted().await;
        }
        Ok((summary.exit_code, record))
    })
}

/// Nodes of run `id` that did not finish ok: all `--resume` may run.
fn unfinished_in(
    state: &std::path::Path,
    id: &str,
    playbook: &str,
) -> Result<HashSet<String>, Error> {
    let targets = record::resume_targets(&record::load(state, id)?);
    if targets.playbook != playbook {
        return Err(Error::input(
            format!(
                "run {id} ran playbook `{}`, not `{playbook}`",
                targets.playbook
            ),
            "resume a run with the playbook it ran; `fleetfix runs` lists them",
        ));
    }
    Ok(targets.rerun.into_iter().collect())
}

/// A run that may change nodes locks each node it connects to; `--check`
/// and `exec` change nothing on purpose and take no lock.
fn needs_node_lock(job: &Job, args: &RunArgs<'_>) -> bool {
    !args.check && !args.exec && job.playbook.all_steps().any(|(s, _)| s.changes)
}

/// A terminal run that would change nodes asks once; `--yes`, `--check`,
/// `exec` and runs without a terminal never ask.
fn confirmed(job: &Job, args: &RunArgs<'_>) -> Result<bool, Error> {
    let changes = job.playbook.all_steps().any(|(s, _)| s.changes);
    let term = console::Term::stderr();
    if args.outputs.yes
        || args.check
        || args.exec
        || !changes
        || !std::io::stdin().is_terminal()
        || !term.is_term()
    {
        return Ok(true);
    }
    let sizes = job.playbook.rollout.batch_sizes(job.nodes.len());
    let batches: Vec<String> = sizes.iter().map(usize::to_string).collect();
    let _ = term.write_str(&format!(
        "Run `{}` on {} node(s) in {} batch(es) ({}); it changes them. Continue? [y/N] ",
        job.playbook.name,
        job.nodes.len(),
        sizes.len(),
        batches.join(", ")
    ));
    let answer = term.read_line().map_err(|e| Error::Runtime {
        message: format!("cannot read the answer: {e}"),
    })?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Ctrl-C (or SIGTERM): no new work, 10 s for running commands, then they
/// are ended; a second signal ends the process at once.
async fn handle_signals(control: Control, events: EventSink) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    events.emit(Event::Interrupted {
        grace_secs: GRACE.as_secs(),
        kill: false,
    });
    control.interrupt.cancel();
    let ended_at_once = tokio::select! {
        _ = tokio::time::sleep(GRACE) => false,
        _ = int.recv() => true,
        _ = term.recv() => true,
    };
    if !ended_at_once {
        events.emit(Event::Interrupted {
            grace_secs: GRACE.as_secs(),
            kill: true,
        });
        control.kill.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    eprintln!("interrupted again: ending now");
    std::process::exit(3);
}

/// How long running commands may go on after an interrupt.
const GRACE: Duration = Duration::from_secs(10);

/// Writers fed the event stream, and finishers of the run's record.
type Consumers = (Vec<Box<dyn Reporter>>, Vec<Box<dyn Finisher>>);

/// The writers this invocation wants, all fed the same event stream, and
/// the finishers that render the run's record when it is over.
fn reporters(job: &Job, common: &Common, exec: bool) -> Consumers {
    if common.output == OutputFormat::Json {
        return (vec![Box::new(JsonLines::default())], Vec::new());
    }
    let tty = std::io::stderr().is_terminal();
    let bars = match common.progress {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => tty,
    };
    let term = console::Term::stdout();
    let (rows, cols) = term.size_checked().unwrap_or((24, 120));
    let mut out: Vec<Box<dyn Reporter>> = Vec::new();
    if exec {
        out.push(Box::new(ExecGrouped));
    } else if !bars {
        out.push(Box::new(PlainLines));
    }
    if bars {
        out.push(Box::new(Bars::new(rows as usize)));
    }
    let report_vars = job
        .playbook
        .report_vars
        .iter()
        .map(|v| v.get_ref().clone())
        .collect();
    let width = std::io::stdout().is_terminal().then_some(cols);
    (out, vec![Box::new(SummaryTable::new(report_vars, width))])
}

/// Limits for a run: many sockets, and no memory locking (see
/// [`limits::refuse_memory_locking`]).
pub(super) fn set_limits() {
    limits::raise_open_files();
    limits::refuse_memory_locking();
}
