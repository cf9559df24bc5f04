//! Ansible inventories as a way in (INI, YAML, `ansible-inventory --list`
//! JSON, inventory scripts, directories with `host_vars/`/`group_vars/`):
//! each source is read into [`Sources`], Ansible's own model (groups with
//! hosts, children and variables; hosts with variables), every value
//! remembering where it was written. Resolution into fleetfix nodes is
//! `resolve.rs`; fleetfix's TOML stays the reference format.

use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

pub(crate) mod ini;
pub(crate) mod json;
pub(crate) mod load;
pub(crate) mod resolve;
pub(crate) mod tree;
pub(crate) mod yaml;

/// Where a value was written: a file and line, or the output of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub(crate) file: Arc<Path>,
    /// 1-based; `None` for a script's output or where no line is known.
    pub(crate) line: Option<u32>,
    /// The file is an inventory script and this came from its output.
    pub(crate) script: bool,
}

impl Origin {
    pub(crate) fn at(file: &Arc<Path>, line: u32) -> Self {
        Origin {
            file: file.clone(),
            line: Some(line),
            script: false,
        }
    }

    pub(crate) fn script(file: &Arc<Path>) -> Self {
        Origin {
            file: file.clone(),
            line: None,
            script: true,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.script, self.line) {
            (true, _) => write!(f, "{} (inventory script)", self.file.display()),
            (false, Some(line)) => write!(f, "{}:{line}", self.file.display()),
            (false, None) => write!(f, "{}", self.file.display()),
        }
    }
}

/// A variable's value as Ansible holds it (JSON's types; YAML and INI
/// values are converted the way Ansible converts them).
pub(crate) type Value = serde_json::Value;

/// A variable and where it was set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Var {
    pub(crate) value: Value,
    pub(crate) origin: Origin,
}

/// Ansible's inventory model, filled by one or more sources in order.
/// `all` and `ungrouped` always exist, as in Ansible.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub(crate) groups: IndexMap<String, Group>,
    pub(crate) hosts: IndexMap<String, Host>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    /// Hosts placed directly in this group, in first-seen order (a set:
    /// a group of thousands is filled one host at a time).
    pub(crate) hosts: indexmap::IndexSet<String>,
    /// Child groups, in first-seen order.
    pub(crate) children: Vec<String>,
    pub(crate) vars: IndexMap<String, Var>,
    /// From `group_vars/NAME` files, which outrank every group's own
    /// variables in Ansible's precedence.
    pub(crate) file_vars: IndexMap<String, Var>,
    /// Where the group was first named (`None` for `all`/`ungrouped`
    /// when no source names them).
    pub(crate) origin: Option<Origin>,
}

#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub(crate) vars: IndexMap<String, Var>,
    /// From `host_vars/NAME` files, which outrank the inventory's.
    pub(crate) file_vars: IndexMap<String, Var>,
    /// Where the host was first named.
    pub(crate) origin: Origin,
}

impl Default for Sources {
    fn default() -> Self {
        let mut groups = IndexMap::new();
        groups.insert("all".to_string(), Group::default());
        groups.insert("ungrouped".to_string(), Group::default());
        Sources {
            groups,
            hosts: IndexMap::new(),
        }
    }
}

impl Sources {
    /// Names a group (again); the first naming is its origin.
    pub(crate) fn add_group(&mut self, name: &str, origin: &Origin) -> &mut Group {
        // Looked up before a key is made: most namings are of known groups.
        let i = match self.groups.get_index_of(name) {
            Some(i) => i,
            None => {
                self.groups
                    .insert_full(name.to_string(), Group::default())
                    .0
            }
        };
        let g = &mut self.groups[i];
        if g.origin.is_none() {
            g.origin = Some(origin.clone());
        }
        g
    }

    /// Names a host, placing it in `group` when given (the group is named
    /// too). A host named again keeps its variables and first origin.
    pub(crate) fn add_host(&mut self, host: &str, group: Option<&str>, origin: &Origin) {
        if !self.hosts.contains_key(host) {
            let new = Host {
                vars: IndexMap::new(),
                file_vars: IndexMap::new(),
                origin: origin.clone(),
            };
            self.hosts.insert(host.to_string(), new);
        }
        if let Some(group) = group {
            let g = self.add_group(group, origin);
            if !g.hosts.contains(host) {
                g.hosts.insert(host.to_string());
            }
        }
    }

    /// Makes `child` a child group of `parent`, naming both.
    pub(crate) fn add_child(&mut self, parent: &str, child: &str, origin: &Origin) {
        self.add_group(child, origin);
        let p = self.add_group(parent, origin);
        if !p.children.iter().any(|c| c == child) {
            p.children.push(child.to_string());
        }
    }

    /// Sets a group variable (a later source replaces an earlier value).
    pub(crate) fn set_group_var(&mut self, group: &str, key: &str, var: Var) {
        let g = match self.groups.get_index_of(group) {
            Some(i) => &mut self.groups[i],
            None => {
                let origin = var.origin.clone();
                self.add_group(group, &origin)
            }
        };
        g.vars.insert(key.to_string(), var);
    }

    /// Sets a host variable (a later source replaces an earlier value).
    pub(crate) fn set_host_var(&mut self, host: &str, key: &str, var: Var) {
        if !self.hosts.contains_key(host) {
            let origin = var.origin.clone();
            self.add_host(host, None, &origin);
        }
        if let Some(h) = self.hosts.get_mut(host) {
            h.vars.insert(key.to_string(), var);
        }
    }
}

/// Ansible's host patterns: `name`, `name:port`, `[v6addr]:port`, with
/// ranges `web[01:20]`, `db[a:f]`, `n[1:10:2]` (several ranges multiply).
/// Returns the host names and the port if one was given (port 0 sets
/// none, as in Ansible).
pub(crate) fn expand_host_pattern(pattern: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let (name, port) = split_port(pattern)?;
    Ok((expand_ranges(&name)?, port.filter(|p| *p != 0)))
}

/// Splits a trailing `:port` off a host pattern as Ansible's
/// `parse_address` does: `[addr]:port` for IPv6, `name:port` otherwise; a
/// bare IPv6 address has no port, and text after the colon that is no
/// number leaves the whole pattern a name (Ansible keeps `h:x` as is).
fn split_port(pattern: &str) -> Result<(String, Option<u16>), String> {
    let parse_port = |p: &str| -> Result<Option<u16>, String> {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        p.parse::<u16>()
            .map(Some)
            .map_err(|_| format!("`{pattern}` has a port above 65535"))
    };
    if let Some(rest) = pattern.strip_prefix('[')
        && let Some((addr, tail)) = rest.split_once(']')
        && addr.contains(':')
        && let Some(p) = tail.strip_prefix(':')
        && let Some(port) = parse_port(p)?
    {
        return Ok((addr.to_string(), Some(port)));
    }
    // Colons outside brackets: more than one is an IPv6 address, no port.
    let mut depth = 0i32;
    let outside: Vec<usize> = pattern
        .char_indices()
        .filter_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                ':' if depth == 0 => return Some(i),
                _ => {}
            }
            None
        })
        .collect();
    if let [i] = outside[..]
        && let Some(port) = parse_port(&pattern[i + 1..])?
    {
        return Ok((pattern[..i].to_string(), Some(port)));
    }
    Ok((pattern.to_string(), None))
}

/// Ansible's order of letters in a range: a–z, then A–Z.
const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Expands every `[a:b]` / `[a:b:step]` range in `name`.
fn expand_ranges(name: &str) -> Result<Vec<String>, String> {
    let Some(open) = name.find('[') else {
        return Ok(vec![name.to_string()]);
    };
    let close = name[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("`{name}` opens a range with `[` but does not close it"))?;
    let (head, range, tail) = (&name[..open], &name[open + 1..close], &name[close + 1..]);
    let parts: Vec<&str> = range.split(':').collect();
    let bad = || format!("`[{range}]` in `{name}` is not a range like [01:20], [a:f] or [1:9:2]");
    let (start, end, step) = match parts.as_slice() {
        [s, e] => (*s, *e, 1usize),
        [s, e, st] => (*s, *e, st.parse::<usize>().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    if step == 0 || end.is_empty() {
        return Err(bad());
    }
    let backwards = || format!("range `[{range}]` in `{name}` runs backwards, so it names no host");
    // An empty start is 0, as in Ansible.
    let start = if start.is_empty() { "0" } else { start };
    let items: Vec<String> = if start.chars().all(|c| c.is_ascii_digit()) {
        if !end.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let (s, e): (u64, u64) = (
            start.parse().map_err(|_| bad())?,
            end.parse().map_err(|_| bad())?,
        );
        if s > e {
            return Err(backwards());
        }
        // A leading zero pads every number to the start's width, which
        // the end must then have too (as Ansible requires).
        let width = if start.len() > 1 && start.starts_with('0') {
            if end.len() != start.len() {
                return Err(format!(
                    "range `[{range}]` in `{name}` starts with a zero-padded number, so its end needs as many digits"
                ));
            }
            start.len()
        } else {
            0
        };
        (s..=e)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else {
        let letter = |t: &str| {
            let mut cs = t.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) => LETTERS.find(c),
                _ => None,
            }
        };
        let (Some(s), Some(e)) = (letter(start), letter(end)) else {
            return Err(bad());
        };
        if s > e {
            return Err(backwards());
        }
        LETTERS[s..=e]
            .chars()
            .step_by(step)
            .map(String::from)
            .collect()
    };
    let tails = expand_ranges(tail)?;
    Ok(items
        .iter()
        .flat_map(|i| tails.iter().map(move |t| format!("{head}{i}{t}")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_expand_like_ansible() {
        let names = |p: &str| expand_host_pattern(p).expect(p).0;
        assert_eq!(names("web[01:03].x")[..], ["web01.x", "web02.x", "web03.x"]);
        assert_eq!(names("db[a:c]")[..], ["dba", "dbb", "dbc"]);
        assert_eq!(names("n[1:9:4]")[..], ["n1", "n5", "n9"]);
        assert_eq!(names("r[1:2]c[1:2]")[..], ["r1c1", "r1c2", "r2c1", "r2c2"]);
        assert_eq!(names("n[8:10]")[..], ["n8", "n9", "n10"]);
        assert_eq!(expand_host_pattern("h:2222").expect("port").1, Some(2222));
        assert_eq!(
            expand_host_pattern("web[1:2]:2222").expect("port"),
            (vec!["web1".to_string(), "web2".to_string()], Some(2222))
        );
        assert_eq!(
            expand_host_pattern("fe80::1").expect("v6"),
            (vec!["fe80::1".into()], None)
        );
        assert_eq!(
            expand_host_pattern("[::1]:22").expect("v6"),
            (vec!["::1".into()], Some(22))
        );
        assert!(expand_host_pattern("web[3:1]").is_err());
        assert!(expand_host_pattern("h[01:3]").is_err(), "as in Ansible");
        assert!(expand_host_pattern("web[1:").is_err());
        assert_eq!(
            expand_host_pattern("h:x").expect("a name"),
            (vec!["h:x".into()], None)
        );
        assert_eq!(expand_host_pattern("h:0").expect("port 0").1, None);
        assert!(expand_host_pattern("h:65536").is_err());
        assert_eq!(
            names("n[y:B]")[..],
            ["ny", "nz", "nA", "nB"],
            "a-z, then A-Z"
        );
        assert!(expand_host_pattern("x[A:c]").is_err());
        assert_eq!(
            names("[a:c]")[..],
            ["a", "b", "c"],
            "brackets without a port are a range"
        );
        assert_eq!(names("n[:2]")[..], ["n0", "n1", "n2"]);
        assert!(expand_host_pattern("g[1:]").is_err());
    }
}
