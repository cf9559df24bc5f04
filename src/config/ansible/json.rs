//! Ansible inventory JSON: what `ansible-inventory --list` prints and what
//! inventory scripts print for `--list` (read as ansible-core's `script`
//! plugin reads it), and `SCRIPT --host NAME`'s variables.
//!
//! The JSON is parsed here rather than by serde_json, which keeps neither
//! the order of an object's keys (the order of groups and variables) nor
//! their lines (the origins), and refuses the `NaN` and `Infinity` that
//! Python's `json` writes and reads.

use std::collections::{HashMap, HashSet};

use super::tree::{Data, Node, dedup, float_value, link_child};
use super::{Origin, Sources, Value, Var};
use crate::support::error::{Error, SourceFile};

/// How deep arrays and objects may nest (Python's own limit is near 1000).
const MAX_DEPTH: usize = 400;

/// JSON as Python's `json` reads it for Ansible: `NaN`, `Infinity` and
/// `-Infinity` allowed; a repeated key keeps its first place and takes the
/// last value; and Ansible's `{"__ansible_unsafe": s}` is the string `s`,
/// `{"__ansible_vault": c}` a vault value.
pub(crate) fn parse(source: &SourceFile) -> Result<Node, Error> {
    let mut p = JsonParser {
        source,
        text: source.text.as_bytes(),
        pos: 0,
        line: 1,
        depth: 0,
    };
    p.space();
    let node = p.value()?;
    p.space();
    if p.pos < p.text.len() {
        return Err(p.error("extra text after the JSON value"));
    }
    Ok(node)
}

struct JsonParser<'a> {
    source: &'a SourceFile,
    text: &'a [u8],
    pos: usize,
    line: u32,
    depth: usize,
}

impl JsonParser<'_> {
    fn error(&self, what: &str) -> Error {
        let at = self.pos.min(self.text.len());
        Error::at(
            self.source.locate(at..at + 1),
            format!("this is not valid JSON: {what}"),
            "check the JSON syntax here",
        )
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn space(&mut self) {
        while let Some(c @ (b' ' | b'\t' | b'\n' | b'\r')) = self.peek() {
            if c == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
    }

    fn node(&self, data: Data, start: usize, line: u32) -> Node {
        Node {
            data,
            line,
            span: start..self.pos,
        }
    }

    fn value(&mut self) -> Result<Node, Error> {
        let (start, line) = (self.pos, self.line);
        let scalar = |p: &mut Self, word: &str, value: Value| {
            if p.text[p.pos..].starts_with(word.as_bytes()) {
                p.pos += word.len();
                Ok(p.node(Data::Scalar(value), start, line))
            } else {
                Err(p.error("expected a value"))
            }
        };
        match self.peek() {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => {
                let s = self.string()?;
                Ok(self.node(Data::Scalar(Value::String(s)), start, line))
            }
            Some(b't') => scalar(self, "true", Value::Bool(true)),
            Some(b'f') => scalar(self, "false", Value::Bool(false)),
            Some(b'n') => scalar(self, "null", Value::Null),
            Some(b'N') => scalar(self, "NaN", float_value(f64::NAN)),
            Some(b'I') => scalar(self, "Infinity", float_value(f64::INFINITY)),
            Some(b'-') if self.text[self.pos..].starts_with(b"-Infinity") => {
                scalar(self, "-Infinity", float_value(f64::NEG_INFINITY))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<Node, Error>) -> Result<Node, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(&format!("values nest more than {MAX_DEPTH} levels deep")));
        }
        self.depth += 1;
        let node = f(self);
        self.depth -= 1;
        node
    }

    fn object(&mut self) -> Result<Node, Error> {
        let (start, line) = (self.pos, self.line);
        self.pos += 1;
        let mut entries = Vec::new();
        self.space();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(self.node(Data::Map(entries), start, line));
        }
        loop {
            self.space();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key in double quotes"));
            }
            let key = self.value()?;
            self.space();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:` after the key"));
            }
            self.pos += 1;
            self.space();
            let value = self.value()?;
            entries.push((key, value));
            self.space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => break,
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
        self.pos += 1;
        let node = self.node(Data::Map(dedup(entries)), start, line);
        self.tagged(node)
    }

    /// Ansible's JSON decoder turns an object holding `__ansible_unsafe`
    /// (first) or `__ansible_vault` into a string or a vault value.
    fn tagged(&self, node: Node) -> Result<Node, Error> {
        let Data::Map(entries) = &node.data else {
            return Ok(node);
        };
        for (tag, vault) in [("__ansible_unsafe", false), ("__ansible_vault", true)] {
            let Some((_, v)) = entries.iter().find(|(k, _)| k.as_str() == Some(tag)) else {
                continue;
            };
            let Some(s) = v.as_str() else {
                return Err(Error::at(
                    v.locate(self.source),
                    format!("`{tag}` must be a string, not a {}", v.kind()),
                    "this is Ansible's encoding of a tagged string; give it a string",
                ));
            };
            let data = if vault {
                Data::Vault
            } else {
                Data::Scalar(Value::String(s.to_string()))
            };
            return Ok(Node { data, ..node });
        }
        Ok(node)
    }

    fn array(&mut self) -> Result<Node, Error> {
        let (start, line) = (self.pos, self.line);
        self.pos += 1;
        let mut items = Vec::new();
        self.space();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(self.node(Data::Seq(items), start, line));
        }
        loop {
            self.space();
            items.push(self.value()?);
            self.space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => break,
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
        self.pos += 1;
        Ok(self.node(Data::Seq(items), start, line))
    }

    fn string(&mut self) -> Result<String, Error> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run = self.pos;
            while let Some(c) = self.peek()
                && c != b'"'
                && c != b'\\'
                && c >= 0x20
            {
                self.pos += 1;
            }
            // The text is UTF-8 and the run stops at ASCII bytes only.
            out.push_str(&String::from_utf8_lossy(&self.text[run..self.pos]));
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(self.error("a control character (a line break?) inside a string"));
                }
                None => return Err(self.error("the string is not closed")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), Error> {
        let c = self
            .peek()
            .ok_or_else(|| self.error("the string is not closed"))?;
        self.pos += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.unicode()?,
            _ => {
                self.pos -= 1;
                return Err(self.error("an unknown escape"));
            }
        };
        out.push(ch);
        Ok(())
    }

    /// `\uXXXX`, joining a surrogate pair; a lone surrogate (which Python
    /// keeps but Rust strings cannot) becomes U+FFFD.
    fn unicode(&mut self) -> Result<char, Error> {
        let high = self.hex4()?;
        if (0xD800..0xDC00).contains(&high) && self.text[self.pos..].starts_with(b"\\u") {
            let save = self.pos;
            self.pos += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return Ok(char::from_u32(c).unwrap_or('\u{FFFD}'));
            }
            self.pos = save;
        }
        Ok(char::from_u32(high).unwrap_or('\u{FFFD}'))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self.text.get(self.pos..self.pos + 4).unwrap_or_default();
        let n = std::str::from_utf8(digits)
            .ok()
            .filter(|d| d.len() == 4 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.error("`\\u` needs four hex digits"))?;
        self.pos += 4;
        Ok(n)
    }

    /// Python's number syntax: an integer unless it has a fraction or an
    /// exponent. Integers beyond 64 bits become floats.
    fn number(&mut self) -> Result<Node, Error> {
        let (start, line) = (self.pos, self.line);
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.pos += 1;
            }
            p.pos - from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("expected a digit")),
        }
        let mut float = false;
        if self.peek() == Some(b'.') && self.text.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            digits(self);
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                self.pos = save;
            } else {
                float = true;
            }
        }
        let text = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("0");
        let value = match (float, text.parse::<i64>(), text.parse::<u64>()) {
            (false, Ok(i), _) => Value::from(i),
            (false, _, Ok(u)) => Value::from(u),
            _ => float_value(text.parse().map_err(|_| self.error("a malformed number"))?),
        };
        Ok(self.node(Data::Scalar(value), start, line))
    }
}

/// Reads JSON in the shape `ansible-inventory --list` prints (also what
/// inventory scripts print): `{"_meta": {"hostvars": {h: {...}}}, "group":
/// {"hosts": [...], "children": [...], "vars": {...}}, ...}`, and the older
/// script shapes (a group as a list of hosts; a group object without
/// `hosts`/`vars`/`children`, read as its own sole host with those as group
/// variables), as ansible-core's `script` plugin does.
///
/// `source` is the file, or a script's output under the script's path.
/// `origin_of(line)` says where what is on that line of `source` came from:
/// `Origin::at(path, line)` for a file (each variable's key, each host's
/// name in a `hosts` list, each group's key), `Origin::script(path)` for a
/// script. Host names are taken as they are: no ports, no ranges.
///
/// Returns the hosts the output gave no variables for, in first-seen order:
/// those named in groups when there is no `_meta` (Ansible then runs
/// `SCRIPT --host NAME` for each, see [`read_host`]); empty when there is.
pub(crate) fn read(
    source: &SourceFile,
    origin_of: impl Fn(u32) -> Origin,
    into: &mut Sources,
) -> Result<Vec<String>, Error> {
    let root = parse(source)?;
    let Data::Map(entries) = &root.data else {
        return Err(Error::at(
            root.locate(source),
            format!(
                "inventory JSON is an object of groups (and `_meta`), not a {}",
                root.kind()
            ),
            "print an object like {\"all\": {\"hosts\": [\"web1\"]}, \"_meta\": {\"hostvars\": {}}}",
        ));
    };
    let meta = entries.iter().find(|(k, _)| k.as_str() == Some("_meta"));
    let hostvars = meta.map(|(_, m)| host_vars_of(source, m)).transpose()?;
    let mut listing = Listing {
        source,
        origin_of,
        into,
        hosts: Vec::new(),
        seen: HashSet::new(),
    };
    for (key, body) in entries.iter().filter(|(k, _)| k.as_str() != Some("_meta")) {
        listing.group(key, body)?;
    }
    let Some(hostvars) = hostvars else {
        return Ok(listing.hosts);
    };
    // Variables of hosts no group names are ignored, as in Ansible.
    let by_host: HashMap<&str, &Node> = hostvars
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?, v)))
        .collect();
    for host in std::mem::take(&mut listing.hosts) {
        if let Some(vars) = by_host.get(host.as_str()) {
            listing.host_vars(&host, vars)?;
        }
    }
    Ok(Vec::new())
}

/// Reads `SCRIPT --host NAME`'s output: the host's variables as one JSON
/// object; empty output is none.
pub(crate) fn read_host(
    source: &SourceFile,
    host: &str,
    origin_of: impl Fn(u32) -> Origin,
    into: &mut Sources,
) -> Result<(), Error> {
    if source.text.trim().is_empty() {
        return Ok(());
    }
    let vars = parse(source)?;
    let mut listing = Listing {
        source,
        origin_of,
        into,
        hosts: Vec::new(),
        seen: HashSet::new(),
    };
    listing.host_vars(host, &vars)
}

/// `_meta.hostvars`, checked as Ansible checks `_meta`.
fn host_vars_of<'n>(source: &SourceFile, meta: &'n Node) -> Result<&'n [(Node, Node)], Error> {
    let bad = |n: &Node, what: &str| {
        Error::at(
            n.locate(source),
            what.to_string(),
            "print `\"_meta\": {\"hostvars\": {...}}`",
        )
    };
    let Data::Map(entries) = &meta.data else {
        return Err(bad(
            meta,
            &format!("`_meta` must be an object, not a {}", meta.kind()),
        ));
    };
    let field = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    if let Some(profile) = field("profile")
        && !profile
            .as_str()
            .is_some_and(|p| p.starts_with("inventory_"))
    {
        return Err(bad(
            profile,
            "`_meta.profile` must be an Ansible inventory profile (`inventory_legacy`)",
        ));
    }
    match field("hostvars").map(|h| (h, &h.data)) {
        Some((_, Data::Map(hosts))) => Ok(hosts),
        Some((h, _)) => Err(bad(
            h,
            &format!("`_meta.hostvars` must be an object, not a {}", h.kind()),
        )),
        None => Err(bad(meta, "`_meta` has no `hostvars`")),
    }
}

struct Listing<'a, F> {
    source: &'a SourceFile,
    origin_of: F,
    into: &'a mut Sources,
    /// Hosts named in groups, first-seen order.
    hosts: Vec<String>,
    seen: HashSet<String>,
}

impl<F: Fn(u32) -> Origin> Listing<'_, F> {
    fn origin(&self, node: &Node) -> Origin {
        (self.origin_of)(node.line)
    }

    fn error(&self, node: &Node, message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::at(node.locate(self.source), message, hint)
    }

    /// The plugin's `_parse_group`.
    fn group(&mut self, key: &Node, body: &Node) -> Result<(), Error> {
        let name = match key.as_str() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => return Err(self.error(key, "a group name cannot be empty", "name the group")),
        };
        self.into.add_group(&name, &self.origin(key));
        let field = |name: &str| match &body.data {
            Data::Map(e) => e
                .iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v),
            _ => None,
        };
        let (hosts, vars, children) = match &body.data {
            Data::Map(_)
                if ["hosts", "vars", "children"]
                    .iter()
                    .any(|f| field(f).is_some()) =>
            {
                (field("hosts"), field("vars"), field("children"))
            }
            // Neither: the group is its own sole host, the object its vars.
            Data::Map(_) => {
                self.host(&name, &name, key);
                (None, Some(body), None)
            }
            // Not an object: the hosts.
            _ => (Some(body), None, None),
        };
        if let Some(hosts) = hosts {
            self.hosts(&name, hosts)?;
        }
        if let Some(vars) = vars {
            for (k, var) in self.vars(&format!("`{name}.vars`"), vars)? {
                self.into.set_group_var(&name, &k, var);
            }
        }
        if let Some(children) = children {
            self.children(&name, children)?;
        }
        Ok(())
    }

    fn host(&mut self, group: &str, host: &str, at: &Node) {
        self.into.add_host(host, Some(group), &self.origin(at));
        if self.seen.insert(host.to_string()) {
            self.hosts.push(host.to_string());
        }
    }

    fn hosts(&mut self, group: &str, hosts: &Node) -> Result<(), Error> {
        let Data::Seq(items) = &hosts.data else {
            return Err(self.error(
                hosts,
                format!(
                    "`{group}.hosts` must be a list of host names, not a {}",
                    hosts.kind()
                ),
                "print the hosts as a list: \"hosts\": [\"web1\", \"web2\"]",
            ));
        };
        for item in items {
            match item.as_str() {
                Some(h) if !h.is_empty() => self.host(group, h, item),
                _ => {
                    return Err(self.error(
                        item,
                        format!(
                            "a host name in `{group}.hosts` must be a non-empty string, not a {}",
                            item.kind()
                        ),
                        "quote the host name",
                    ));
                }
            }
        }
        Ok(())
    }

    /// An object's entries as variables; `what` names it in messages.
    fn vars(&self, what: &str, vars: &Node) -> Result<Vec<(String, Var)>, Error> {
        let Data::Map(entries) = &vars.data else {
            return Err(self.error(
                vars,
                format!(
                    "{what} must be an object of variables, not a {}",
                    vars.kind()
                ),
                "print the variables as an object: {\"name\": value}",
            ));
        };
        entries
            .iter()
            .map(|(k, v)| {
                let name = k.key_text();
                let value = v.to_value(self.source, &name)?;
                Ok((
                    name,
                    Var {
                        value,
                        origin: self.origin(k),
                    },
                ))
            })
            .collect()
    }

    /// `children`: a list of group names (an object's keys are read too,
    /// as Python iterates them).
    fn children(&mut self, parent: &str, children: &Node) -> Result<(), Error> {
        let names: Vec<&Node> = match &children.data {
            Data::Seq(items) => items.iter().collect(),
            Data::Map(entries) => entries.iter().map(|(k, _)| k).collect(),
            _ => {
                return Err(self.error(
                    children,
                    format!(
                        "`{parent}.children` must be a list of group names, not a {}",
                        children.kind()
                    ),
                    "print the child groups as a list: \"children\": [\"web\"]",
                ));
            }
        };
        for node in names {
            let Some(child) = node.as_str().filter(|c| !c.is_empty()) else {
                return Err(self.error(
                    node,
                    format!(
                        "a child of `{parent}` must be a group name, not a {}",
                        node.kind()
                    ),
                    "quote the group name",
                ));
            };
            let origin = self.origin(node);
            self.into.add_group(child, &origin);
            link_child(self.into, parent, child, &origin)
                .map_err(|m| self.error(node, m, "remove one of the links"))?;
        }
        Ok(())
    }

    fn host_vars(&mut self, host: &str, vars: &Node) -> Result<(), Error> {
        let list = self.vars(&format!("the variables of host `{host}`"), vars)?;
        self.into.add_host(host, None, &self.origin(vars));
        for (k, var) in list {
            self.into.set_host_var(host, &k, var);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::ansible::yaml::tests::{ansible, export, failure, source};

    const SCRIPT: &str = "/inv/ec2.py";

    fn script_origin(_line: u32) -> Origin {
        Origin::script(&Arc::from(Path::new(SCRIPT)))
    }

    fn file_origin(line: u32) -> Origin {
        Origin::at(&Arc::from(Path::new("/inv/list.json")), line)
    }

    fn list(text: &str) -> (Sources, Vec<String>) {
        let mut s = Sources::default();
        let missing = read(&source(SCRIPT, text), script_origin, &mut s).expect("inventory JSON");
        (s, missing)
    }

    fn list_error(text: &str) -> (String, usize) {
        failure(read(
            &source(SCRIPT, text),
            script_origin,
            &mut Sources::default(),
        ))
    }

    fn value(text: &str) -> Value {
        let src = source("/v.json", text);
        parse(&src)
            .expect("json")
            .to_value(&src, "v")
            .expect("value")
    }

    #[test]
    fn script_output_reads_as_the_script_plugin_reads_it() {
        // A group as a list; a group object with none of hosts/vars/children
        // is its own sole host, the object its group variables; hostvars of
        // hosts no group names are ignored; host names are not patterns.
        let output = r#"{"_meta": {"hostvars": {"a": {"x": 1, "u": {"__ansible_unsafe": "{{ z }}"}}, "orphan": {"y": 2}}},
 "web": {"hosts": ["a", "b:22"], "vars": {"gv": true}, "children": ["db", "newchild"]},
 "db": ["c", "a"],
 "weird": {"k": 1, "k2": "v"},
 "all": {"vars": {"av": NaN, "inf": -Infinity}}}"#;
        // ansible-inventory 2.19 -i SCRIPT --list --export.
        let printed = r#"{"_meta": {"hostvars": {"a": {"u": {"__ansible_unsafe": "{{ z }}"}, "x": 1}}}, "all": {"children": ["ungrouped", "web", "weird"], "vars": {"av": NaN, "inf": -Infinity}}, "db": {"hosts": ["c", "a"]}, "web": {"children": ["db", "newchild"], "hosts": ["a", "b:22"], "vars": {"gv": true}}, "weird": {"hosts": ["weird"], "vars": {"k": 1, "k2": {"__ansible_unsafe": "v"}}}}"#;
        let (s, missing) = list(output);
        assert!(missing.is_empty());
        assert_eq!(export(&s), ansible(printed));
        assert!(s.groups.contains_key("newchild"));
        assert_eq!(
            s.hosts["a"].vars["x"].origin.to_string(),
            "/inv/ec2.py (inventory script)"
        );
    }

    #[test]
    fn without_meta_the_hosts_to_ask_with_host_are_returned() {
        let output = r#"{"g": {"hosts": ["a"], "vars": {"v": 1}}, "h": ["b", "a"]}"#;
        let (mut s, missing) = list(output);
        assert_eq!(missing, ["a", "b"]);
        // The script as Ansible ran it: `--host NAME` prints {"hv_from_host": NAME}.
        for host in &missing {
            let answer = source(SCRIPT, &format!("{{\"hv_from_host\": \"{host}\"}}\n"));
            read_host(&answer, host, script_origin, &mut s).expect("--host");
        }
        read_host(&source(SCRIPT, " \n"), "a", script_origin, &mut s).expect("empty --host");
        let printed = r#"{"_meta": {"hostvars": {"a": {"hv_from_host": "a"}, "b": {"hv_from_host": "b"}}}, "all": {"children": ["ungrouped", "g", "h"]}, "g": {"hosts": ["a"], "vars": {"v": 1}}, "h": {"hosts": ["b", "a"]}}"#;
        assert_eq!(export(&s), ansible(printed));
        let (message, _) = failure(read_host(
            &source(SCRIPT, "[1]"),
            "a",
            script_origin,
            &mut s,
        ));
        assert_eq!(
            message,
            "the variables of host `a` must be an object of variables, not a list"
        );
    }

    /// `ansible-inventory -i hosts.yml --list --export` of the YAML tests'
    /// MERGES inventory, as printed.
    const EXPORTED: &str = r#"{
    "_meta": {
        "hostvars": {
            "h1": {
                "a": 1,
                "ansible_port": 2201,
                "b": "override",
                "hv": {
                    "a": 1,
                    "b": [
                        1,
                        2
                    ]
                }
            },
            "h2": {
                "a": 1,
                "ansible_port": 23,
                "b": [
                    1,
                    2
                ],
                "c": 3
            },
            "h3": {
                "ansible_port": "25"
            }
        },
        "profile": "inventory_legacy"
    },
    "all": {
        "children": [
            "ungrouped",
            "g1",
            "g2",
            "base"
        ],
        "vars": {
            "allvar": 0
        }
    },
    "base": {
        "hosts": [
            "h1"
        ],
        "vars": {
            "common": 1,
            "shared": "base"
        }
    },
    "g1": {
        "hosts": [
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6"
        ],
        "vars": {
            "common": 1,
            "mine": "x",
            "shared": "g1"
        }
    },
    "g2": {
        "hosts": [
            "h1",
            "h3"
        ],
        "vars": {
            "foo": null
        }
    }
}
"#;

    #[test]
    fn ansible_inventory_list_output_reads_back_to_itself_with_lines() {
        let mut s = Sources::default();
        let missing = read(&source("/inv/list.json", EXPORTED), file_origin, &mut s).expect("list");
        assert!(missing.is_empty());
        let mut printed: Value = serde_json::from_str(EXPORTED).expect("json");
        if let Some(meta) = printed.get_mut("_meta").and_then(Value::as_object_mut) {
            meta.remove("profile");
        }
        assert_eq!(export(&s), printed);
        assert_eq!(
            s.hosts["h1"].vars["b"].origin.to_string(),
            "/inv/list.json:7"
        );
        assert_eq!(s.hosts["h3"].origin.line, Some(55));
        assert_eq!(s.groups["g2"].vars["foo"].origin.line, Some(72));
        // First named as a child of `all`.
        assert_eq!(
            s.groups["base"].origin.as_ref().and_then(|o| o.line),
            Some(36)
        );
    }

    #[test]
    fn shapes_the_script_plugin_refuses_are_refused() {
        let cases: &[(&str, &str, usize)] = &[
            // "Value contains '_meta.hostvars' which is 'NoneType' instead of 'dict'."
            (
                "{\"g\": {\"hosts\": [\"a\"]},\n \"_meta\": {}}",
                "`_meta` has no `hostvars`",
                2,
            ),
            (
                "{\"_meta\": []}",
                "`_meta` must be an object, not a list",
                1,
            ),
            (
                "{\"_meta\": {\"hostvars\": {}, \"profile\": \"tagged\"}}",
                "`_meta.profile` must be an Ansible inventory profile",
                1,
            ),
            // "Value contains 'g.hosts' which is 'str' instead of 'list'."
            (
                "{\"g\": {\"hosts\": \"a\"}}",
                "`g.hosts` must be a list of host names, not a string",
                1,
            ),
            (
                "{\"g\": null}",
                "`g.hosts` must be a list of host names, not a null",
                1,
            ),
            (
                "{\"g\": {\"vars\": [1]}}",
                "`g.vars` must be an object of variables, not a list",
                1,
            ),
            // "Invalid data from file, expected dictionary and got: [1]"
            (
                "{\"_meta\": {\"hostvars\": {\"a\": [1]}},\n\"g\": [\"a\"]}",
                "the variables of host `a` must be an object of variables, not a list",
                1,
            ),
            // "Invalid host name supplied, expected a string but got <class 'int'> for 5"
            (
                "{\"g\": {\"hosts\": [\"a\",\n 5]}}",
                "a host name in `g.hosts` must be a non-empty string, not a integer",
                2,
            ),
            (
                "{\"g\": {\"children\": \"xy\"}}",
                "`g.children` must be a list of group names, not a string",
                1,
            ),
            (
                "{\"g\": {\"children\": [\"g\"]}}",
                "group `g` cannot be a child of itself",
                1,
            ),
            ("[1]", "inventory JSON is an object of groups", 1),
            (
                "{\"g\": {\"vars\": {\"p\": {\"__ansible_vault\": \"$ANSIBLE_VAULT;1.1\"}}}}",
                "variable `p` is vault-encrypted",
                1,
            ),
            (
                "{\"g\": {\"vars\": {\"p\": {\"__ansible_unsafe\": 1}}}}",
                "`__ansible_unsafe` must be a string, not a integer",
                1,
            ),
        ];
        for (text, message, line) in cases {
            let (got, got_line) = list_error(text);
            assert!(got.contains(message), "{text:?}: {got}");
            assert_eq!(got_line, *line, "{text:?}: {got}");
        }
    }

    #[test]
    fn json_parses_as_python_json_does() {
        // python3: json.loads of this gave 'aé😀\ud800x/\x08' and
        // [0, 0, 150.0, -0.01, 18446744073709551615, 18446744073709551616, inf].
        let v = value(
            r#"{"s": "a\u00e9\ud83d\ude00\ud800x\/\b", "n": [0, -0, 1.5e2, -1E-2, 18446744073709551615, 18446744073709551616, 1e400], "d": 1, "d": 2}"#,
        );
        let expected = serde_json::json!({
            "s": "aé😀\u{FFFD}x/\u{8}",
            "n": [0, 0, 150.0, -0.01, 18446744073709551615u64, 18446744073709551616.0, "inf"],
            "d": 2,
        });
        assert_eq!(v, expected);
        let Data::Map(entries) = parse(&source("/v.json", "{\"d\": 1, \"e\": 0,\n \"d\": 2}"))
            .expect("json")
            .data
        else {
            panic!("an object");
        };
        let keys: Vec<(String, u32)> = entries
            .iter()
            .map(|(k, _)| (k.key_text(), k.line))
            .collect();
        assert_eq!(keys, [("d".to_string(), 2), ("e".to_string(), 1)]);
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&source("/v.json", &deep)).is_ok());
    }

    #[test]
    fn bad_json_is_located_by_line_and_column() {
        let cases: &[(&str, &str, usize, usize)] = &[
            (
                "{\"a\": 1,\n  \"b\": 2,\n}",
                "expected a key in double quotes",
                3,
                1,
            ),
            ("{\"a\": 1}\n{}", "extra text after the JSON value", 2, 1),
            ("{\"a\" 1}", "expected `:` after the key", 1, 6),
            ("[1 2]", "expected `,` or `]`", 1, 4),
            ("{\"a\": \"x\ny\"}", "a control character", 1, 9),
            ("{\"a\": 01}", "expected `,` or `}`", 1, 8),
            ("{\"a\": tru}", "expected a value", 1, 7),
            ("{\"a\": \"\\x\"}", "an unknown escape", 1, 9),
            ("", "expected a value", 1, 1),
            ("{\"a\": \"é", "the string is not closed", 1, 9),
        ];
        for (text, message, line, col) in cases {
            let Error::Input(e) = parse(&source("/v.json", text)).expect_err(text) else {
                panic!("input error")
            };
            let at = e.location.expect("location");
            assert!(e.message.contains(message), "{text:?}: {}", e.message);
            assert_eq!((at.line, at.col), (*line, *col), "{text:?}: {}", e.message);
        }
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(
            failure(parse(&source("/v.json", &deep)))
                .0
                .contains("nest more than")
        );
    }
}
