//! The tree both Ansible readers build (YAML and JSON alike): values with
//! the line they start on, so every variable can say where it was set.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::{Origin, Sources, Value};
use crate::support::error::{Error, SourceFile};

/// A YAML (or JSON) value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) data: Data,
    /// 1-based.
    pub(crate) line: u32,
    /// Bytes of the source, for error carets.
    pub(crate) span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    /// Null, a bool, a number or a string, typed as PyYAML types it. A
    /// float Python holds but JSON cannot (`.inf`, `.nan`) is the string
    /// Python prints for it (`inf`, `-inf`, `nan`); a timestamp is the ISO
    /// string Ansible's JSON output prints.
    Scalar(Value),
    /// A `!vault` value (JSON: `{"__ansible_vault": …}`), kept apart so
    /// that a reader refuses it naming the variable.
    Vault,
    Seq(Vec<Node>),
    /// Scalar keys, unique: a repeated key keeps its first place and takes
    /// the last value, as a Python dict does (and the last one's line).
    /// `<<` merges are applied.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub(crate) fn scalar(value: Value, line: u32, span: Range<usize>) -> Self {
        Node {
            data: Data::Scalar(value),
            line,
            span,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.data {
            Data::Scalar(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.data, Data::Scalar(Value::Null))
    }

    /// Python's truth test: Ansible's readers take `x or {}`.
    pub(crate) fn is_falsy(&self) -> bool {
        match &self.data {
            Data::Scalar(Value::Null) => true,
            Data::Scalar(Value::Bool(b)) => !b,
            Data::Scalar(Value::Number(n)) => n.as_f64() == Some(0.0),
            Data::Scalar(Value::String(s)) => s.is_empty(),
            Data::Scalar(_) | Data::Vault => false,
            Data::Seq(items) => items.is_empty(),
            Data::Map(entries) => entries.is_empty(),
        }
    }

    /// A key as Ansible's JSON output writes it (Python's `json` turns
    /// `1`, `1.5`, `true`, `null` keys into those strings).
    pub(crate) fn key_text(&self) -> String {
        match &self.data {
            Data::Scalar(Value::String(s)) => s.clone(),
            Data::Scalar(Value::Number(n)) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
                _ => n.to_string(),
            },
            Data::Scalar(v) => v.to_string(),
            Data::Vault => "!vault".to_string(),
            Data::Seq(_) | Data::Map(_) => self.kind().to_string(),
        }
    }

    /// The kind of value, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match &self.data {
            Data::Scalar(Value::Null) => "null",
            Data::Scalar(Value::Bool(_)) => "boolean",
            Data::Scalar(Value::Number(n)) if n.is_f64() => "float",
            Data::Scalar(Value::Number(_)) => "integer",
            Data::Scalar(_) => "string",
            Data::Vault => "vault-encrypted string",
            Data::Seq(_) => "list",
            Data::Map(_) => "mapping",
        }
    }

    /// This node as the value of variable `var`; a vault-encrypted value
    /// anywhere in it is refused, naming `var`. (A nested mapping's keys
    /// end up sorted: serde_json's objects keep no order here.)
    pub(crate) fn to_value(&self, source: &SourceFile, var: &str) -> Result<Value, Error> {
        Ok(match &self.data {
            Data::Scalar(v) => v.clone(),
            Data::Vault => return Err(vault_error(source, self, var)),
            Data::Seq(items) => Value::Array(
                items
                    .iter()
                    .map(|n| n.to_value(source, var))
                    .collect::<Result<_, _>>()?,
            ),
            Data::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.key_text(), v.to_value(source, var)?);
                }
                Value::Object(map)
            }
        })
    }

    pub(crate) fn locate(&self, source: &SourceFile) -> crate::support::error::Location {
        source.locate(self.span.clone())
    }
}

/// fleetfix reads no vault: its secrets come from the runner's
/// environment, and a value it cannot read must not pass as a string.
pub(crate) fn vault_error(source: &SourceFile, node: &Node, var: &str) -> Error {
    Error::at(
        node.locate(source),
        format!(
            "variable `{var}` is vault-encrypted: vault-encrypted values are not read by fleetfix"
        ),
        "give the value to fleetfix as a secret instead: [secrets] in the playbook, read from an \
         environment variable on the runner",
    )
}

/// A Python float as Ansible would hand it on: JSON has no infinities nor
/// NaN, so those become what Python prints for them.
pub(crate) fn float_value(f: f64) -> Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("nan".into()),
        None if f > 0.0 => Value::String("inf".into()),
        None => Value::String("-inf".into()),
    }
}

/// Python's dict keys compare `1`, `1.0` and `true` equal: this is the
/// identity of a key for the "last value wins" rule.
fn key_identity(key: &Node) -> String {
    match &key.data {
        Data::Scalar(Value::String(s)) => format!("s{s}"),
        Data::Scalar(Value::Bool(b)) => format!("n{}", u8::from(*b)),
        Data::Scalar(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => format!("n{i}"),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => format!("n{}", f as i64),
            _ => format!("n{n}"),
        },
        _ => "z".to_string(),
    }
}

/// Entries with unique keys, as a Python dict built from them in order.
pub(crate) fn dedup(entries: impl IntoIterator<Item = (Node, Node)>) -> Vec<(Node, Node)> {
    let mut out: Vec<(Node, Node)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (k, v) in entries {
        match seen.entry(key_identity(&k)) {
            // Python keeps the first key; the line is the winning value's.
            Entry::Occupied(i) => {
                let first = std::mem::replace(&mut out[*i.get()], (k, v));
                out[*i.get()].0.data = first.0.data;
            }
            Entry::Vacant(slot) => {
                slot.insert(out.len());
                out.push((k, v));
            }
        }
    }
    out
}

/// Makes `child` a child group of `parent`, refusing what Ansible refuses:
/// a group its own child, or a loop of groups.
pub(crate) fn link_child(
    into: &mut Sources,
    parent: &str,
    child: &str,
    origin: &Origin,
) -> Result<(), String> {
    if parent == child {
        return Err(format!("group `{child}` cannot be a child of itself"));
    }
    if child == "all" {
        // Every group ends up below `all` (Ansible fails on the loop).
        return Err(format!(
            "`all` cannot be a child of `{parent}`: every group is below `all`"
        ));
    }
    if reaches(into, child, parent) {
        return Err(format!(
            "making `{child}` a child of `{parent}` makes a loop: `{parent}` is already below `{child}`"
        ));
    }
    into.add_child(parent, child, origin);
    Ok(())
}

/// Whether `to` is `from` or below it.
fn reaches(into: &Sources, from: &str, to: &str) -> bool {
    let mut seen = HashSet::new();
    let mut todo = vec![from];
    while let Some(g) = todo.pop() {
        if g == to {
            return true;
        }
        if seen.insert(g)
            && let Some(group) = into.groups.get(g)
        {
            todo.extend(group.children.iter().map(String::as_str));
        }
    }
    false
}
