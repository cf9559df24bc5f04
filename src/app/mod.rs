//! The commands: load inputs, build a job, wire the executor to its writers.
//! Returns the process exit code; errors are rendered here, once.

pub(crate) mod cli;
mod demo;
mod execute;
mod inspect;
pub(crate) mod lock;

use std::path::PathBuf;

use crate::app::cli::{Cli, Command, Common};
use crate::config::inventory::Inventory;
use crate::config::playbook::Playbook;
use crate::config::toml_source::{self, Zero};
use crate::config::vars;
use crate::job::{Job, JobOptions};
use crate::support::error::Error;
use crate::support::exit::ExitCode;

/// Runs the parsed command line; the returned value is the exit code.
pub fn main(cli: Cli) -> i32 {
    crate::support::heap::tune();
    let common = match &cli.command {
        Command::Run { common, .. }
        | Command::Check { common, .. }
        | Command::Plan { common, .. }
        | Command::Exec { common, .. }
        | Command::Runs { common, .. }
        | Command::Demo { common, .. }
        | Command::Nodes { common } => common.clone(),
    };
    init_tracing(&common);
    match dispatch(cli) {
        Ok(code) => code.code(),
        Err(e) => {
            eprintln!("{}", e.render());
            e.exit_code().code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Check { playbook, common } => inspect::check(&playbook, &common),
        Command::Plan { playbook, common } => inspect::plan(&playbook, &common),
        Command::Nodes { common } => inspect::nodes(&common),
        Command::Runs {
            id,
            html,
            serve,
            common,
        } => inspect::runs(id.as_deref(), html.as_deref(), serve.as_deref(), &common),
        Command::Demo {
            nodes,
            fail,
            serve,
            common,
            outputs,
        } => demo::demo(demo::DemoArgs {
            nodes: nodes as usize,
            fail,
            serve,
            common,
            outputs,
        }),
        Command::Run {
            playbook,
            common,
            conn,
            outputs,
            check,
            resume,
            lock_wait,
            metrics,
            web,
        } => {
            let pb = Playbook::load(&playbook)?;
            let lock_wait = lock_wait
                .as_deref()
                .map(|w| duration_arg("--lock-wait", w, Zero::Allowed))
                .transpose()?;
            let args = execute::RunArgs {
                common: &common,
                conn: &conn,
                outputs: &outputs,
                check,
                resume: resume.as_deref(),
                lock_wait,
                metrics: metrics.as_deref(),
                exec: false,
                web: Some(&web),
            };
            execute::execute(pb, args).map(|(code, _)| code)
        }
        Command::Exec {
            common,
            conn,
            outputs,
            timeout,
            sudo,
            command,
        } => {
            let mut pb = Playbook::ad_hoc(&command.join(" "));
            pb.steps[0].timeout = timeout
                .as_deref()
                .map(|t| duration_arg("--timeout", t, Zero::Refused))
                .transpose()?;
            pb.steps[0].sudo = sudo;
            let args = execute::RunArgs {
                common: &common,
                conn: &conn,
                outputs: &outputs,
                check: false,
                resume: None,
                lock_wait: None,
                metrics: None,
                exec: true,
                web: None,
            };
            execute::execute(pb, args).map(|(code, _)| code)
        }
    }
}

fn duration_arg(flag: &str, value: &str, zero: Zero) -> Result<std::time::Duration, Error> {
    toml_source::duration_text(value, zero).map_err(|why| {
        Error::input(
            format!("{flag} `{}` {why}", toml_source::shorten(value, 60)),
            format!("write e.g. {flag} 30s or 5m (at most 30 days)"),
        )
    })
}

fn init_tracing(common: &Common) {
    let level = match (common.quiet, common.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    // russh_cryptovec warns once that it cannot lock memory: fleetfix
    // refuses that on purpose (see `limits::refuse_memory_locking`).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("fleetfix={level},russh_cryptovec=off,warn"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The inventory file: `-i`, else `$FLEETFIX_INVENTORY`, else
/// `./inventory.toml`; and the variable's name when it came from there.
fn inventory_path(common: &Common) -> (PathBuf, Option<&'static str>) {
    const VAR: &str = "FLEETFIX_INVENTORY";
    match (
        &common.inventory,
        std::env::var_os(VAR).filter(|v| !v.is_empty()),
    ) {
        (Some(path), _) => (path.clone(), None),
        (None, Some(path)) => (PathBuf::from(path), Some(VAR)),
        (None, None) => (PathBuf::from("inventory.toml"), None),
    }
}

/// Loads the inventory; an error names the variable the path came from.
fn load_inventory(common: &Common) -> Result<Inventory, Error> {
    let (path, var) = inventory_path(common);
    Inventory::load(&path).map_err(|e| match (e, var) {
        (Error::Input(mut input), Some(var)) if input.location.is_none() => {
            input.message.push_str(&format!(" (the path is ${var}'s)"));
            Error::Input(input)
        }
        (e, _) => e,
    })
}

/// A fresh run id: sortable by time, unique enough to name a journal file.
pub(crate) fn new_run_id() -> String {
    let now = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    format!("{now}-{:04x}", rand::random::<u16>())
}

/// Loads inventory and playbook and validates them into a job; a run
/// (`for_run`) needs every secret set, `check` and `plan` only warn.
fn prepare(
    playbook: Playbook,
    common: &Common,
    only: Option<std::collections::HashSet<String>>,
    for_run: bool,
) -> Result<Job, Error> {
    let inventory = load_inventory(common)?;
    let opts = JobOptions {
        limit: common.limit.clone(),
        overrides: vars::parse_overrides(&common.vars)?,
        concurrency: common.concurrency.map(|c| c as usize),
        run_id: new_run_id(),
        only,
        secrets_required: for_run,
    };
    Job::prepare(&inventory, playbook, &opts)
}
