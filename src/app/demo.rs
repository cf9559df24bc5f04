//! `fleetfix demo`: start the embedded fleet, then either roll the demo
//! playbook out on it through the normal runner, or (`--serve`) keep it up
//! for any playbook until Ctrl-C.

use crate::app::cli::{Common, Connection, OutputFormat, Outputs};
use crate::config::playbook::Playbook;
use crate::demo::{self, Fleet, Verdict};
use crate::events::ExitCode;
use crate::support::error::Error;

use super::execute::{self, RunArgs, set_limits};

pub(super) struct DemoArgs {
    pub nodes: usize,
    pub fail: Vec<String>,
    pub serve: bool,
    pub common: Common,
    pub outputs: Outputs,
}

pub(super) fn demo(args: DemoArgs) -> Result<ExitCode, Error> {
    set_limits();
    let names = demo::node_names(args.nodes);
    let failing = if args.serve {
        Vec::new()
    } else {
        demo::failing(&names, &args.fail)?
    };
    // The fleet's own runtime serves the nodes while the runner, with a
    // runtime of its own, connects to them like to any host.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("demo-fleet")
        .build()
        .map_err(|e| Error::Runtime {
            message: format!("cannot start the demo fleet's runtime: {e}"),
        })?;
    let fleet = runtime.block_on(Fleet::start(args.nodes, &failing, demo::PLAYBOOK))?;
    if args.serve {
        return serve(&runtime, &fleet, &args.common);
    }
    let mut common = args.common.clone();
    common.inventory = Some(fleet.inventory.clone());
    let conn = Connection {
        known_hosts: Some(fleet.known_hosts.clone()),
        accept_new_host_keys: false,
    };
    let outputs = Outputs {
        yes: true,
        ..args.outputs.clone()
    };
    let verdict = Verdict::new(failing);
    let run = RunArgs {
        common: &common,
        conn: &conn,
        outputs: &outputs,
        check: false,
        resume: None,
        lock_wait: None,
        metrics: None,
        exec: false,
        web: None,
    };
    let (code, record) = execute::execute(Playbook::load(&fleet.playbook)?, run)?;
    let (code, line) = verdict.judge(&record, code);
    if common.output == OutputFormat::Json {
        eprintln!("{line}");
    } else {
        crate::output::println(&line.to_string());
    }
    drop(fleet);
    runtime.shutdown_background();
    Ok(code)
}

/// Prints where the fleet is and how to use it, then serves until Ctrl-C
/// or SIGTERM.
fn serve(
    runtime: &tokio::runtime::Runtime,
    fleet: &Fleet,
    common: &Common,
) -> Result<ExitCode, Error> {
    let ports = match (fleet.ports.iter().min(), fleet.ports.iter().max()) {
        (Some(lo), Some(hi)) => format!("{lo}–{hi}"),
        _ => String::new(),
    };
    let inventory = fleet.inventory.display();
    let known_hosts = fleet.known_hosts.display();
    if common.output == OutputFormat::Json {
        let line = serde_json::json!({
            "event": "demo_serving",
            "nodes": fleet.names.len(),
            "inventory": fleet.inventory,
            "known_hosts": fleet.known_hosts,
            "playbook": fleet.playbook,
            "dir": fleet.dir(),
        });
        crate::output::println(&line.to_string());
    } else {
        crate::output::println(&format!(
            "demo fleet: {} nodes on 127.0.0.1 (ports {ports}), up until Ctrl-C\n\
             inventory:   {inventory}\nknown_hosts: {known_hosts}\nplaybook:    {}\n\
             sandboxes:   {}/nodes/NAME (each node's `version` file says what it serves)\n\n\
             try:\n  fleetfix exec -i {inventory} --known-hosts {known_hosts} -- cat version\n  \
             fleetfix run  -i {inventory} --known-hosts {known_hosts} {}",
            fleet.names.len(),
            fleet.playbook.display(),
            fleet.dir().display(),
            fleet.playbook.display(),
        ));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
    });
    eprintln!("demo fleet stopped");
    Ok(ExitCode::Ok)
}
