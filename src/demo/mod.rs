//! `fleetfix demo` (SPEC section 10): an embedded fleet of SSH nodes on
//! 127.0.0.1 that the normal runner rolls out to, and a sandbox
//! (`--serve`) for trying any playbook before it meets real nodes.

mod fleet;
mod node;
mod service;
mod spec;
mod verdict;

pub(crate) use fleet::{Fleet, node_names};
pub(crate) use verdict::Verdict;

use crate::support::error::Error;

/// The demo rollout, shipped inside the binary.
pub(crate) const PLAYBOOK: &str = include_str!("../../playbooks/demo-rollout.toml");

/// Nodes of a demo fleet unless `--nodes` says otherwise.
pub(crate) const DEFAULT_NODES: u32 = 12;

/// The nodes told to fail: `--fail` names them (`none`: no node); without
/// it, the node two thirds into the fleet, so the demo shows a rollback.
pub(crate) fn failing(names: &[String], fail: &[String]) -> Result<Vec<String>, Error> {
    let asked: Vec<&str> = fail
        .iter()
        .flat_map(|f| f.split(','))
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    if asked.is_empty() {
        let pick = (names.len() * 2 / 3).min(names.len().saturating_sub(1));
        // A fleet of one has nothing to roll after its failure.
        return Ok(if names.len() < 2 {
            Vec::new()
        } else {
            vec![names[pick].clone()]
        });
    }
    if asked == ["none"] {
        return Ok(Vec::new());
    }
    asked
        .into_iter()
        .map(|f| {
            if names.iter().any(|n| n == f) {
                Ok(f.to_string())
            } else {
                Err(Error::input(
                    format!("--fail {f}: the demo fleet has no such node"),
                    format!(
                        "the nodes are {}…{}; or `--fail none`",
                        names.first().map(String::as_str).unwrap_or(""),
                        names.last().map(String::as_str).unwrap_or("")
                    ),
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_failure_sits_two_thirds_in() {
        let names = node_names(12);
        assert_eq!(names[0], "node01");
        assert_eq!(failing(&names, &[]).expect("ok"), ["node09"]);
        assert!(failing(&names, &["none".into()]).expect("ok").is_empty());
        assert_eq!(
            failing(&names, &["node02,node03".into()]).expect("ok"),
            ["node02", "node03"]
        );
        assert!(failing(&names, &["node99".into()]).is_err());
        assert!(failing(&node_names(1), &[]).expect("ok").is_empty());
        assert_eq!(node_names(2000)[0], "node0001");
    }
}
