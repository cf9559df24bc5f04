//! Commands that connect to nothing: `check`, `plan`, `nodes`, `runs`.

use std::path::Path;

use super::prepare;
use crate::app::cli::{Common, OutputFormat};
use crate::config::playbook::Playbook;
use crate::config::vars;
use crate::events::ExitCode;
use crate::job::action::Action;
use crate::job::{Job, StepRef};
use crate::output::runs::{render_detail, render_list};
use crate::output::web;
use crate::record;
use crate::support::error::Error;

pub(super) fn check(path: &Path, common: &Common) -> Result<ExitCode, Error> {
    let job = prepare(Playbook::load(path)?, common, None, false)?;
    for w in &job.warnings {
        eprintln!("{w}");
    }
    crate::output::println(&format!(
        "ok: {} ({} steps, {} on_failure) is valid for {} node(s)",
        job.playbook.name,
        job.playbook.steps.len(),
        job.playbook.on_failure.len(),
        job.nodes.len()
    ));
    // The process ends now: leave the job's memory to the OS instead of
    // freeing a thousand nodes' variables one allocation at a time.
    std::mem::forget(job);
    Ok(ExitCode::Ok)
}

pub(super) fn plan(path: &Path, common: &Common) -> Result<ExitCode, Error> {
    let job = prepare(Playbook::load(path)?, common, None, false)?;
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
    // Rendered scripts hold secret values: mask them like every other sink.
    crate::output::print(&job.masker.mask(&out));
    Ok(ExitCode::Ok)
}

fn plan_step(job: &Job, r: StepRef, vars: &mut vars::Vars, out: &mut String) -> Result<(), Error> {
    let step = job.step(r);
    let task = job.render(r, vars)?;
    let (kind, shell) = match &task.action {
        Action::Run(c) => ("run", c.shell.as_str()),
        Action::Local(c) => ("local", c.shell.as_str()),
        Action::Http(h) if h.via_ssh => ("http via ssh", "sh"),
        Action::Http(_) => ("http", "sh"),
        Action::Upload(_) => ("upload", "sh"),
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
    if let Some(u) = &task.unless {
        out.push_str(&format!("   unless: {}\n", u.trim()));
    }
    for (k, v) in &task.env {
        out.push_str(&format!("   env {k}={v}\n"));
    }
    match &task.action {
        Action::Upload(u) => {
            let u = &u.file;
            let mode = u.mode.map(|m| format!(" mode {m:04o}")).unwrap_or_default();
            let owner = u
                .owner
                .as_ref()
                .map(|o| format!(" owner {o}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "   -> {} ({} bytes){mode}{owner}\n",
                u.dest,
                u.content.len()
            ));
        }
        Action::Http(h) => {
            let req = &h.check.request;
            out.push_str(&format!("   {} {}\n", req.method, req.url));
            for (k, v) in &req.headers {
                out.push_str(&format!("   {k}: {v}\n"));
            }
        }
        Action::Run(c) | Action::Local(c) => {
            for line in c.script.trim_end().lines() {
                out.push_str(&format!("   | {line}\n"));
            }
        }
    }
    if let Some(c) = &step.capture {
        vars.insert(c.get_ref().clone(), Job::placeholder(c.get_ref()));
        out.push_str(&format!("   capture -> {}\n", c.get_ref()));
    }
    Ok(())
}

pub(super) fn nodes(common: &Common) -> Result<ExitCode, Error> {
    let inventory = super::load_inventory(common)?;
    let chosen = crate::config::select::select(&inventory.nodes, common.limit.as_deref())?;
    if common.output == OutputFormat::Json {
        for &i in &chosen {
            let n = &inventory.nodes[i];
            // The resolved fleet: the inventory's fleet-wide variables
            // under the node's own.
            let origins: serde_json::Map<String, serde_json::Value> = inventory
                .var_origins
                .iter()
                .chain(&n.origins)
                .map(|(what, o)| (what.to_string(), o.to_string().into()))
                .collect();
            let mut vars = inventory.vars.clone();
            vars.extend(n.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            let line = serde_json::json!({
                "name": &*n.name, "host": n.host, "port": n.port, "user": n.user,
                "identity_file": n.identity_file, "groups": n.groups,
                "connect_timeout_ms": n.connect_timeout.as_millis() as u64,
                "host_key_pinned": n.host_key.is_some(),
                "jump": n.jump.iter().map(|j| j.label()).collect::<Vec<_>>(),
                "vars": vars,
                "origins": origins,
            });
            crate::output::println(&line.to_string());
        }
        return Ok(ExitCode::Ok);
    }
    // An Ansible inventory says where each setting came from.
    let sourced = chosen
        .iter()
        .any(|&i| !inventory.nodes[i].origins.is_empty());
    let mut header = vec![
        "node", "host", "port", "user", "identity", "groups", "host key",
    ];
    if sourced {
        header.push("from");
    }
    let mut table = crate::output::table(header, comfy_table::ContentArrangement::Disabled);
    for &i in &chosen {
        let n = &inventory.nodes[i];
        let mut row = vec![
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
        ];
        if sourced {
            row.push(origins_cell(&inventory, n));
        }
        table.add_row(row);
    }
    crate::output::println(&table.to_string());
    Ok(ExitCode::Ok)
}

/// Where a node's settings and variables came from, one line per origin:
/// `hosts.ini:3  host port`, `group_vars/web.yml:2  vars.app`.
fn origins_cell(
    inventory: &crate::config::inventory::Inventory,
    n: &crate::config::inventory::Node,
) -> String {
    let mut by_origin: Vec<(String, Vec<&str>)> = Vec::new();
    // Fleet-wide variables a node's own does not override.
    let fleet = inventory
        .var_origins
        .iter()
        .filter(|(what, _)| !n.origins.iter().any(|(w, _)| w == what));
    for (what, o) in fleet.chain(&n.origins) {
        let o = o.to_string();
        match by_origin.iter_mut().find(|(k, _)| *k == o) {
            Some((_, v)) => v.push(what),
            None => by_origin.push((o, vec![what])),
        }
    }
    by_origin
        .iter()
        .map(|(o, what)| format!("{o}  {}", what.join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn runs(
    id: Option<&str>,
    html: Option<&Path>,
    serve: Option<&str>,
    _common: &Common,
) -> Result<ExitCode, Error> {
    let state = crate::support::state::state_dir();
    if let Some(addr) = serve {
        let bound = web::server::bind(addr, "--serve")?;
        eprintln!(
            "serving the journaled runs at {} (Ctrl-C ends)",
            bound.url()
        );
        web::server::serve_until_interrupted(bound, web::server::Site::Journals(state)).map_err(
            |e| Error::Runtime {
                message: format!("cannot serve the runs: {e}"),
            },
        )?;
        return Ok(ExitCode::Ok);
    }
    match (id, html) {
        (Some(id), Some(path)) => {
            crate::output::report::check_output_path(path, "--html")?;
            let run = record::load(&state, id)?;
            let page = web::page::render_run(&run, &web::page::PageOptions::default());
            crate::output::report::write_atomic(path, page.as_bytes()).map_err(|e| {
                Error::Runtime {
                    message: format!("cannot write --html {}: {e}", path.display()),
                }
            })?;
        }
        (None, _) => crate::output::print(&render_list(&record::list(&state)?)),
        (Some(id), None) => crate::output::print(&render_detail(&record::load(&state, id)?)),
    }
    Ok(ExitCode::Ok)
}
