//! Variable layering (SPEC section 5): playbook `[vars]` < inventory `[vars]`
//! < node `vars` < `--var`, plus the built-ins `node.*` and `run.*`.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use minijinja::value::Value;

use crate::config::inventory::Node;
use crate::support::error::Error;

/// Names a capture may never take: they are built-ins.
pub(crate) const BUILTINS: &[&str] = &["node", "run", "secret"];

/// A node's variables, by name.
pub(crate) type Vars = BTreeMap<String, Value>;

/// Parses `--var KEY=VALUE` items.
pub(crate) fn parse_overrides(items: &[String]) -> Result<IndexMap<String, String>, Error> {
    let mut out = IndexMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if is_identifier(k) => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => {
                return Err(Error::input(
                    format!("--var `{item}` is not KEY=VALUE"),
                    "write --var image=ghcr.io/org/app:tag (KEY is a variable name)",
                ));
            }
        }
    }
    Ok(out)
}

/// Whether `s` can name a variable.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Run-wide facts available as `run.*`.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: String,
    pub playbook: String,
}

/// The layers every node shares; built once per run.
pub(crate) struct Layers<'a> {
    pub playbook: &'a IndexMap<String, toml::Value>,
    pub inventory: &'a IndexMap<String, toml::Value>,
    pub overrides: &'a IndexMap<String, String>,
    pub run: &'a RunInfo,
    /// `secret.NAME` values (masked wherever output goes).
    pub secrets: &'a [(String, String)],
}

impl Layers<'_> {
    /// Each node's full variable set, before any capture; the layers the
    /// nodes share are converted once, not per node.
    pub(crate) fn for_nodes<'n>(&self, nodes: impl IntoIterator<Item = &'n Node>) -> Vec<Vars> {
        let shared = self.shared();
        nodes
            .into_iter()
            .map(|n| self.over(shared.clone(), Some(n)))
            .collect()
    }

    /// The variables of run-wide checks (gates): every layer but a node's.
    pub(crate) fn global(&self) -> Vars {
        self.over(self.shared(), None)
    }

    /// Playbook and inventory `[vars]`, `secret.*` and `run.*`.
    fn shared(&self) -> Vars {
        let mut vars = Vars::new();
        for layer in [self.playbook, self.inventory] {
            for (k, v) in layer {
                vars.insert(k.clone(), Value::from_serialize(v));
            }
        }
        vars.insert(
            "secret".into(),
            Value::from_iter(
                self.secrets
                    .iter()
                    .map(|(k, v)| (k.as_str(), Value::from(v.as_str()))),
            ),
        );
        vars.insert(
            "run".into(),
            Value::from_iter([
                ("id", Value::from(self.run.id.as_str())),
                ("playbook", Value::from(self.run.playbook.as_str())),
            ]),
        );
        vars
    }

    /// `vars` with a node's own layer, then `--var`, then `node.*`; the
    /// built-ins always win.
    fn over(&self, mut vars: Vars, node: Option<&Node>) -> Vars {
        if let Some(node) = node {
            for (k, v) in node
                .vars
                .iter()
                .filter(|(k, _)| !BUILTINS.contains(&k.as_str()))
            {
                vars.insert(k.clone(), Value::from_serialize(v));
            }
        }
        for (k, v) in self
            .overrides
            .iter()
            .filter(|(k, _)| !BUILTINS.contains(&k.as_str()))
        {
            vars.insert(k.clone(), Value::from(v.as_str()));
        }
        if let Some(node) = node {
            vars.insert("node".into(), node_value(node));
        }
        vars
    }

    /// Whether `name` is defined by any layer for any node, or is a built-in.
    pub(crate) fn defines(&self, name: &str, nodes: &[std::sync::Arc<Node>]) -> bool {
        BUILTINS.contains(&name)
            || self.playbook.contains_key(name)
            || self.inventory.contains_key(name)
            || self.overrides.contains_key(name)
            || nodes.iter().any(|n| n.vars.contains_key(name))
    }
}

fn node_value(node: &Node) -> Value {
    Value::from_iter([
        ("name", Value::from(&*node.name)),
        ("host", Value::from(node.host.as_str())),
        ("port", Value::from(node.port)),
        ("user", Value::from(node.user.as_str())),
        (
            "groups",
            Value::from_iter(node.groups.iter().map(|g| Value::from(g.as_str()))),
        ),
    ])
}

/// The template context for a variable set.
pub(crate) fn context(vars: &Vars) -> Value {
    Value::from_iter(vars.iter().map(|(k, v)| (k.as_str(), v.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_need_key_and_value() {
        assert!(parse_overrides(&["a=b=c".into()]).expect("ok")["a"] == "b=c");
        assert!(parse_overrides(&["novalue".into()]).is_err());
        assert!(parse_overrides(&["1x=2".into()]).is_err());
    }
}
