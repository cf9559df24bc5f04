//! The commands: load inputs, build a job, wire the executor to its writers.
//! Returns the process exit code; errors are rendered here, once.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::{Cli, Command, Common, Connection, OutputFormat, Progress};
use crate::error::Error;
use crate::executor::{self, ExecOptions};
use crate::inventory::Inventory;
use crate::job::{Job, JobOptions, StepRef};
use crate::output::{self, Bars, ExecGrouped, JsonLines, PlainLines, Reporter, SummaryTable};
use crate::playbook::{Action, Playbook};
use crate::ssh::known_hosts::KnownHosts;
use crate::ssh::{Credentials, SshConnector, SshOptions};
use crate::vars;

/// Runs the parsed command line; the returned value is the exit code.
pub fn main(cli: Cli) -> i32 {
    let common = match &cli.command {
        Command::Run { common, .. }
        | Command::Check { common, .. }
        | Command::Plan { common, .. }
        | Command::Exec { common, .. }
        | Command::Nodes { common } => common.clone(),
    };
    init_tracing(&common);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", e.render());
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Check { playbook, common } => check(&playbook, &common),
        Command::Plan { playbook, common } => plan(&playbook, &common),
        Command::Nodes { common } => nodes(&common),
        Command::Run {
            playbook,
            common,
            conn,
        } => {
            let pb = Playbook::load(&playbook)?;
            execute(pb, &common, &conn, false)
        }
        Command::Exec {
            common,
            conn,
            timeout,
            sudo,
            command,
        } => {
            let mut pb = Playbook::ad_hoc(&command.join(" "));
            if let Some(t) = timeout {
                pb.steps[0].timeout = Some(humantime::parse_duration(&t).map_err(|e| {
                    Error::input(format!("--timeout `{t}`: {e}"), "write e.g. --timeout 30s")
                })?);
            }
            pb.steps[0].sudo = sudo;
            execute(pb, &common, &conn, true)
        }
    }
}

fn init_tracing(common: &Common) {
    let level = match (common.quiet, common.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("fleetfix={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn inventory_path(common: &Common) -> PathBuf {
    common
        .inventory
        .clone()
        .unwrap_or_else(|| PathBuf::from("inventory.toml"))
}

/// A fresh run id: sortable by time, unique enough to name a journal file.
pub fn new_run_id() -> String {
    let now = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    format!("{now}-{:04x}", rand::random::<u16>())
}

/// Loads inventory and playbook and validates them into a job.
fn prepare(playbook: Playbook, common: &Common) -> Result<Job, Error> {
    let inventory = Inventory::load(&inventory_path(common))?;
    let opts = JobOptions {
        limit: common.limit.clone(),
        overrides: vars::parse_overrides(&common.vars)?,
        concurrency: common.concurrency.map(|c| c as usize),
        run_id: new_run_id(),
    };
    Job::prepare(&inventory, playbook, &opts)
}

fn check(path: &Path, common: &Common) -> Result<i32, Error> {
    let job = prepare(Playbook::load(path)?, common)?;
    for w in &job.warnings {
        eprintln!("{w}");
    }
    println!(
        "ok: {} ({} steps, {} on_failure) is valid for {} node(s)",
        job.playbook.name,
        job.playbook.steps.len(),
        job.playbook.on_failure.len(),
        job.nodes.len()
    );
    Ok(0)
}

fn plan(path: &Path, common: &Common) -> Result<i32, Error> {
    let job = prepare(Playbook::load(path)?, common)?;
    for w in &job.warnings {
        eprintln!("{w}");
    }
    let mut out = String::new();
    for (i, node) in job.nodes.iter().enumerate() {
        out.push_str(&format!(
            "== {} ({}@{}:{})\n",
            node.name, node.user, node.host, node.port
        ));
        let mut vars = job.node_vars[i].clone();
        for on_failure in [false, true] {
            for r in job.step_refs(on_failure) {
                plan_step(&job, r, &mut vars, &mut out)?;
            }
        }
        out.push('\n');
    }
    print!("{out}");
    Ok(0)
}

fn plan_step(job: &Job, r: StepRef, vars: &mut vars::Vars, out: &mut String) -> Result<(), Error> {
    let step = job.step(r);
    let rendered = job.render(r, vars)?;
    let (kind, shell) = match &step.action {
        Action::Run { shell, .. } => ("run", shell),
        Action::Local { shell, .. } => ("local", shell),
    };
    let label = if r.on_failure { "on_failure" } else { "step" };
    out.push_str(&format!(
        "-- {label} {}: {} [{kind}",
        r.index + 1,
        step.name
    ));
    if shell != "sh" {
        out.push_str(&format!(", {shell}"));
    }
    if step.sudo {
        out.push_str(", sudo");
    }
    out.push_str("]\n");
    if let Some(w) = &step.when {
        out.push_str(&format!("   when: {}\n", w.text.trim()));
    }
    if let Some(u) = &rendered.unless {
        out.push_str(&format!("   unless: {}\n", u.trim()));
    }
    for (k, v) in &rendered.env {
        out.push_str(&format!("   env {k}={v}\n"));
    }
    for line in rendered.script.trim_end().lines() {
        out.push_str(&format!("   | {line}\n"));
    }
    if let Some(c) = &step.capture {
        vars.insert(c.get_ref().clone(), Job::placeholder(c.get_ref()));
        out.push_str(&format!("   capture -> {}\n", c.get_ref()));
    }
    Ok(())
}

fn nodes(common: &Common) -> Result<i32, Error> {
    let inventory = Inventory::load(&inventory_path(common))?;
    let chosen = crate::select::select(&inventory.nodes, common.limit.as_deref())?;
    if common.output == OutputFormat::Json {
        for &i in &chosen {
            let n = &inventory.nodes[i];
            let line = serde_json::json!({
                "name": &*n.name, "host": n.host, "port": n.port, "user": n.user,
                "identity_file": n.identity_file, "groups": n.groups,
                "connect_timeout_ms": n.connect_timeout.as_millis() as u64,
                "host_key_pinned": n.host_key.is_some(),
            });
            println!("{line}");
        }
        return Ok(0);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    table.set_header([
        "node", "host", "port", "user", "identity", "groups", "host key",
    ]);
    for &i in &chosen {
        let n = &inventory.nodes[i];
        table.add_row([
            n.name.to_string(),
            n.host.clone(),
            n.port.to_string(),
            n.user.clone(),
            n.identity_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "agent, ~/.ssh/id_*".into()),
            n.groups.join(","),
            if n.host_key.is_some() {
                "pinned"
            } else {
                "known_hosts"
            }
            .to_string(),
        ]);
    }
    println!("{table}");
    Ok(0)
}

/// `run` and `exec`: connect, execute, report; the exit code of the run.
fn execute(pb: Playbook, common: &Common, conn: &Connection, exec: bool) -> Result<i32, Error> {
    raise_open_files_limit();
    let job = Arc::new(prepare(pb, common)?);
    let kh_path = conn
        .known_hosts
        .clone()
        .unwrap_or_else(crate::ssh::default_known_hosts_path);
    let known_hosts = Arc::new(KnownHosts::load(&kh_path)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime {
            message: format!("cannot start the async runtime: {e}"),
        })?;
    runtime.block_on(async {
        let credentials = Arc::new(Credentials::load(&job.nodes).await?);
        let connector = Arc::new(SshConnector::new(SshOptions {
            known_hosts,
            accept_new_host_keys: conn.accept_new_host_keys,
            credentials,
            keepalive: std::time::Duration::from_secs(5),
        }));
        let (sink, writer) = output::spawn(job.masker.clone(), reporters(&job, common, exec));
        let summary = executor::run(job.clone(), connector, sink, ExecOptions::default()).await;
        let _ = writer.join();
        Ok(summary.exit_code)
    })
}

/// The writers this invocation wants, all fed the same event stream.
fn reporters(job: &Job, common: &Common, exec: bool) -> Vec<Box<dyn Reporter>> {
    if common.output == OutputFormat::Json {
        return vec![Box::new(JsonLines::default())];
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
    out.push(Box::new(SummaryTable::new(report_vars, width)));
    out
}

/// Many nodes in flight need many sockets; take the hard limit up front.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
