//! Validation of a prepared job before any node is touched: every step
//! rendered for every node (as few times as the variables allow),
//! captures that shadow, `report_vars` that name nothing, and quotes
//! around insertions.

use std::sync::Arc;

use minijinja::value::Value;
use rustc_hash::FxHashSet;

use super::{Job, NODES_PER_THREAD};
use crate::config::inventory::Node;
use crate::config::playbook::{Playbook, Text};
use crate::config::template;
use crate::config::vars::Layers;
use crate::support::error::Error;

impl Job {
    /// Evaluates and renders every step for every node with captures
    /// stood in, to find errors before any node is touched. A `when` or a
    /// step's templates give the same result wherever the variables they
    /// read are equal, and only a node's own `vars` and `node.*` differ
    /// between nodes: a step that reads none of those is done once, the
    /// others once per distinct value of what they read of them.
    pub(super) fn dry_render_all(&self) -> Result<(), Error> {
        let definite = |r: Result<(), Error>| match r {
            Err(e) if !e.is_provisional() => Err(e),
            _ => Ok(()),
        };
        let per_node: std::collections::BTreeSet<&str> = self
            .nodes
            .iter()
            .flat_map(|n| n.vars.keys().map(String::as_str))
            .chain(["node"])
            .collect();
        let keep = |names: Vec<String>| -> Vec<String> {
            names
                .into_iter()
                .filter(|n| per_node.contains(n.as_str()))
                .collect()
        };
        let mut steps = Vec::new();
        for r in self.step_refs(false).chain(self.step_refs(true)) {
            let when_reads = match &self.step(r).when {
                Some(w) => Some(keep(
                    self.program
                        .templates
                        .expression_reads(&w.text)
                        .map_err(|e| template::error_at(&self.playbook.source, w, &e, "`when`"))?,
                )),
                None => None,
            };
            let reads = keep(self.compiled(r).reads.iter().cloned().collect());
            steps.push((r, when_reads, reads));
        }
        // The same values on every node, so they compare equal.
        let placeholders: Vec<(&str, Value)> = self
            .capture_names()
            .map(|c| (c, Self::placeholder(c)))
            .collect();
        // Nodes in order, a thread per share of them; the first error in
        // node order wins, whichever thread found it.
        let check = |from: usize, to: usize| -> Result<(), Error> {
            let mut seen = FxHashSet::default();
            for (node, base) in self.nodes[from..to].iter().zip(&self.node_vars[from..to]) {
                let for_node = |e: Error| self.masker.mask_error(e.for_node(&node.name));
                let mut vars = std::borrow::Cow::Borrowed(base);
                for (r, when_reads, reads) in &steps {
                    if let Some(names) = when_reads
                        && seen.insert((*r, true, template::reads_of(names, &vars)))
                    {
                        definite(self.when(*r, &vars).map(drop)).map_err(for_node)?;
                    }
                    if seen.insert((*r, false, template::reads_of(reads, &vars))) {
                        definite(self.render(*r, &vars).map(drop)).map_err(for_node)?;
                    }
                    let capture = self.step(*r).capture.as_ref().filter(|_| !r.on_failure);
                    if let Some((name, value)) =
                        capture.and_then(|c| placeholders.iter().find(|(n, _)| *n == c.get_ref()))
                    {
                        vars.to_mut().insert(name.to_string(), value.clone());
                    }
                }
            }
            Ok(())
        };
        let n = self.nodes.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(n.div_ceil(NODES_PER_THREAD))
            .max(1);
        let bounds: Vec<(usize, usize)> = (0..threads)
            .map(|t| (n * t / threads, n * (t + 1) / threads))
            .collect();
        std::thread::scope(|scope| {
            let rest: Vec<_> = bounds[1..]
                .iter()
                .map(|&(from, to)| scope.spawn(move || check(from, to)))
                .collect();
            let mut result = check(bounds[0].0, bounds[0].1);
            for handle in rest {
                let theirs = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                result = result.and(theirs);
            }
            result
        })
    }

    pub(super) fn check_report_vars(&self) -> Result<(), Error> {
        let captures: Vec<&str> = self
            .playbook
            .all_steps()
            .filter_map(|(s, _)| s.capture.as_ref().map(|c| c.get_ref().as_str()))
            .collect();
        for rv in &self.playbook.report_vars {
            let name = rv.get_ref().as_str();
            let known =
                captures.contains(&name) || self.node_vars.iter().any(|v| v.contains_key(name));
            if !known {
                return Err(Error::at(
                    self.playbook.source.locate(rv.span()),
                    format!(
                        "report_vars names `{name}`, which no step captures and no variable defines"
                    ),
                    "list captured variables (a step's `capture`) or defined variables",
                ));
            }
        }
        Ok(())
    }
}

/// A capture may not reuse a name defined elsewhere (SPEC section 5).
pub(super) fn check_captures(
    pb: &Playbook,
    layers: &Layers<'_>,
    nodes: &[Arc<Node>],
) -> Result<(), Error> {
    let mut seen: Vec<&str> = Vec::new();
    for (step, _) in pb.all_steps() {
        let Some(c) = &step.capture else { continue };
        let name = c.get_ref().as_str();
        let why = if layers.defines(name, nodes) {
            Some(
                "a variable of that name is already defined (vars, inventory, --var or a built-in)",
            )
        } else if seen.contains(&name) {
            Some("an earlier step already captures that name")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::at(
                pb.source.locate(c.span()),
                format!("capture `{name}` shadows a variable: {why}"),
                "give the capture a name of its own",
            ));
        }
        seen.push(name);
    }
    Ok(())
}

/// `check` warns where `${{ }}` stands inside shell quotes.
pub(super) fn quote_warnings(pb: &Playbook) -> Vec<String> {
    let mut out = Vec::new();
    for (step, _) in pb.all_steps() {
        let mut texts: Vec<&Text> = step.action.script().into_iter().collect();
        texts.extend(step.unless.as_ref());
        for text in texts {
            for (line, col) in template::quoted_insertions(&text.text) {
                let at = locate_in(pb, text, line, col);
                out.push(format!(
                    "warning: {}:{}:{}: `${{{{ }}}}` inside quotes in step `{}`; values are \
                     shell-quoted already, so remove the quotes around it",
                    at.file.display(),
                    at.line,
                    at.col,
                    step.name
                ));
            }
        }
    }
    out
}

fn locate_in(
    pb: &Playbook,
    text: &Text,
    line: usize,
    col: usize,
) -> crate::support::error::Location {
    let offset: usize = text
        .text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum::<usize>()
        + col
        - 1;
    template::locate_in_text(&pb.source, text, offset..offset + 3)
}
