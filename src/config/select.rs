//! `--limit`: node names, group names and globs; `!pat` excludes.

use globset::{Glob, GlobMatcher};

use crate::config::inventory::Node;
use crate::support::error::Error;

enum Matcher {
    Exact(String),
    Glob(GlobMatcher),
}

impl Matcher {
    fn parse(pat: &str) -> Result<Self, Error> {
        if pat.contains(['*', '?', '[', '{']) {
            let glob = Glob::new(pat).map_err(|e| {
                Error::input(
                    format!("--limit pattern `{pat}` is not a valid glob: {e}"),
                    "use `*` and `?` wildcards, e.g. --limit 'dfw*'",
                )
            })?;
            Ok(Matcher::Glob(glob.compile_matcher()))
        } else {
            Ok(Matcher::Exact(pat.to_string()))
        }
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            Matcher::Exact(e) => e == s,
            Matcher::Glob(g) => g.is_match(s),
        }
    }

    /// A node matches by its name or any of its groups.
    fn matches(&self, node: &Node) -> bool {
        self.is_match(&node.name) || node.groups.iter().any(|g| self.is_match(g))
    }
}

/// Indices of the nodes `limit` selects, in inventory order.
pub(crate) fn select(
    nodes: &[std::sync::Arc<Node>],
    limit: Option<&str>,
) -> Result<Vec<usize>, Error> {
    let Some(limit) = limit else {
        return Ok((0..nodes.len()).collect());
    };
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for raw in limit.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (negated, pat) = match raw.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, raw),
        };
        let m = Matcher::parse(pat)?;
        if !nodes.iter().any(|n| m.matches(n)) {
            return Err(Error::input(
                format!("--limit pattern `{pat}` matches no node name or group"),
                "run `fleetfix nodes` to list node names and groups",
            ));
        }
        if negated {
            exclude.push(m)
        } else {
            include.push(m)
        }
    }
    let chosen: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| include.is_empty() || include.iter().any(|m| m.matches(n)))
        .filter(|(_, n)| !exclude.iter().any(|m| m.matches(n)))
        .map(|(i, _)| i)
        .collect();
    if chosen.is_empty() {
        return Err(Error::input(
            format!("--limit `{limit}` selects no node"),
            "loosen the pattern; run `fleetfix nodes` to see what exists",
        ));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn node(name: &str, groups: &[&str]) -> std::sync::Arc<Node> {
        std::sync::Arc::new(Node {
            name: name.into(),
            host: name.into(),
            port: 22,
            user: "root".into(),
            identity_file: None,
            connect_timeout: Duration::from_secs(1),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            vars: Default::default(),
            host_key: None,
            jump: Vec::new(),
            origins: Vec::new(),
        })
    }

    #[test]
    fn names_groups_globs_and_excludes() {
        let nodes = [
            node("dfw1", &["relay", "dfw"]),
            node("dfw2", &["relay", "dfw"]),
            node("ord1", &["relay"]),
        ];
        assert_eq!(select(&nodes, None).expect("all"), vec![0, 1, 2]);
        assert_eq!(select(&nodes, Some("dfw")).expect("group"), vec![0, 1]);
        assert_eq!(
            select(&nodes, Some("ord1,dfw2")).expect("names"),
            vec![1, 2]
        );
        assert_eq!(select(&nodes, Some("*1")).expect("glob"), vec![0, 2]);
        assert_eq!(
            select(&nodes, Some("relay,!dfw1")).expect("exclude"),
            vec![1, 2]
        );
        assert_eq!(select(&nodes, Some("!dfw")).expect("only exclude"), vec![2]);
        assert!(select(&nodes, Some("nope")).is_err());
        assert!(select(&nodes, Some("dfw,!relay")).is_err());
    }
}
