//! A job: a playbook bound to the selected nodes, compiled once into typed
//! steps and gates ([`action`]), validated before any node is touched
//! ([`validate`]), and rendered per node on demand ([`render`]).

pub(crate) mod action;
pub(crate) mod compile;
pub(crate) mod expect;
pub(crate) mod form;
pub(crate) mod http;
pub(crate) mod render;
pub(crate) mod upload;
mod validate;

use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::value::Value;

use crate::config::inventory::{Inventory, Node};
use crate::config::playbook::{Playbook, Step};
use crate::config::secrets::{self, Masker};
use crate::config::select;
use crate::config::template;
use crate::config::vars::{self, Layers, RunInfo, Vars};
use crate::support::error::Error;
use action::{Action, GateCheck, Task};
use compile::{CompiledStep, Program};
use form::Compiled;
use render::Renderer;

/// The default of `--concurrency` when neither CLI nor playbook set it.
pub(crate) const DEFAULT_CONCURRENCY: usize = 100;

/// Validation takes another thread only for this many nodes or more: a
/// thread costs about what validating a few dozen nodes does.
const NODES_PER_THREAD: usize = 250;

/// Which step of the playbook: a main step or an `[[on_failure]]` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepRef {
    pub on_failure: bool,
    pub index: usize,
}

/// What the CLI adds to a job.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    pub limit: Option<String>,
    pub overrides: IndexMap<String, String>,
    pub concurrency: Option<usize>,
    pub run_id: String,
    /// Run only these nodes (`--resume`: those that did not finish ok).
    pub only: Option<std::collections::HashSet<String>>,
    /// Whether every secret must be set (a run), or may be missing (`check`,
    /// `plan`: a warning).
    pub secrets_required: bool,
}

/// A validated job, shared read-only by every node task.
pub struct Job {
    pub playbook: Playbook,
    pub nodes: Vec<Arc<Node>>,
    /// Each selected node's variables before captures (same order as `nodes`).
    pub node_vars: Vec<Vars>,
    /// Variables of run-wide checks (gates): no `node.*`.
    pub global_vars: Vars,
    pub run: RunInfo,
    pub concurrency: usize,
    /// Hides secret values in everything written.
    pub masker: Arc<Masker>,
    /// Non-fatal findings of `check`, rendered for a person.
    pub warnings: Vec<String>,
    /// The playbook's steps and gates, compiled.
    program: Program,
}

impl Job {
    /// Selects nodes, compiles every template and renders each for every
    /// node, so that any undefined variable stops the run before it starts.
    pub fn prepare(
        inventory: &Inventory,
        playbook: Playbook,
        opts: &JobOptions,
    ) -> Result<Self, Error> {
        let mut selected = select::select(&inventory.nodes, opts.limit.as_deref())?;
        if let Some(only) = &opts.only {
            selected.retain(|&i| only.contains(&*inventory.nodes[i].name));
            if selected.is_empty() {
                return Err(Error::input(
                    "nothing to resume: every selected node finished ok in that run",
                    "`fleetfix runs ID` shows the run",
                ));
            }
        }
        let nodes: Vec<Arc<Node>> = selected
            .iter()
            .map(|&i| inventory.nodes[i].clone())
            .collect();
        let run = RunInfo {
            id: opts.run_id.clone(),
            playbook: playbook.name.clone(),
        };
        let (secret_values, secret_warnings) =
            secrets::resolve(&playbook.secrets, &playbook.source, opts.secrets_required)?;
        let masker = Arc::new(Masker::new(secret_values.iter().map(|(_, v)| v.as_str())));
        let layers = Layers {
            playbook: &playbook.vars,
            inventory: &inventory.vars,
            overrides: &opts.overrides,
            run: &run,
            secrets: &secret_values,
        };
        validate::check_captures(&playbook, &layers, &inventory.nodes)?;
        let node_vars: Vec<Vars> = layers.for_nodes(nodes.iter().map(|n| &**n));
        let global_vars = layers.global();
        let program = compile::compile(&playbook)?;
        let concurrency = opts
            .concurrency
            .or(playbook.rollout.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY)
            .max(1);
        let job = Job {
            warnings: [secret_warnings, validate::quote_warnings(&playbook)].concat(),
            playbook,
            nodes,
            node_vars,
            global_vars,
            run,
            concurrency,
            masker,
            program,
        };
        job.check_report_vars()?;
        // Rendered text may hold secrets; so may an error quoting it.
        job.dry_render_all()?;
        for i in 0..job.playbook.gates.len() {
            job.render_gate(i).map_err(|e| job.masker.mask_error(e))?;
        }
        Ok(job)
    }

    pub fn step(&self, r: StepRef) -> &Step {
        &self.steps(r.on_failure)[r.index]
    }

    /// The main steps, or the on_failure steps.
    pub fn steps(&self, on_failure: bool) -> &[Step] {
        if on_failure {
            &self.playbook.on_failure
        } else {
            &self.playbook.steps
        }
    }

    /// Main steps, then on_failure steps, as references.
    pub fn step_refs(&self, on_failure: bool) -> impl Iterator<Item = StepRef> + use<> {
        let n = self.steps(on_failure).len();
        (0..n).map(move |index| StepRef { on_failure, index })
    }

    /// Step `r` compiled.
    fn compiled(&self, r: StepRef) -> &CompiledStep {
        let steps = if r.on_failure {
            &self.program.on_failure
        } else {
            &self.program.steps
        };
        &steps[r.index]
    }

    /// What step `r` does, compiled: its kind, before it is rendered.
    pub fn action(&self, r: StepRef) -> &Action<Compiled> {
        &self.compiled(r).task.action
    }

    /// Evaluates the step's `when` (true when it has none).
    pub fn when(&self, r: StepRef, vars: &Vars) -> Result<bool, Error> {
        let Some(when) = &self.step(r).when else {
            return Ok(true);
        };
        self.program
            .templates
            .eval(&when.text, &vars::context(vars))
            .map_err(|e| template::error_at(&self.playbook.source, when, &e, "`when`"))
    }

    /// Renders every template of a step for one node's variables.
    pub fn render(&self, r: StepRef, vars: &Vars) -> Result<Task, Error> {
        Renderer::new(&self.program.templates, &self.playbook.source, vars)
            .task(&self.compiled(r).task)
    }

    /// Renders gate `i` with the run-wide variables.
    pub fn render_gate(&self, i: usize) -> Result<GateCheck, Error> {
        Renderer::new(
            &self.program.templates,
            &self.playbook.source,
            &self.global_vars,
        )
        .gate(&self.program.gates[i])
    }

    /// Every variable name a step of the playbook captures.
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.playbook
            .all_steps()
            .filter_map(|(s, _)| s.capture.as_ref().map(|c| c.get_ref().as_str()))
    }

    /// A stand-in value for a capture not yet known (shown as itself by `plan`).
    pub fn placeholder(name: &str) -> Value {
        template::verbatim(format!("${{{{ {name} }}}}"))
    }
}
