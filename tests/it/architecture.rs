//! The module graph keeps its shape: every `crate::` (and `super::`) path
//! in `src/` points to a module in the same layer or one below, and no
//! modules import each other in a circle. The layers are the folders under
//! `src/`, in the order ARCHITECTURE.md gives. Code under `#[cfg(test)]`
//! (test helpers may reach anywhere) is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first.
const LAYERS: &[&str] = &[
    "support",
    "config",
    "job",
    "events",
    "transport",
    "executor",
    "record",
    "output",
    "demo",
    "app",
];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every module (`a::b`) and the source text of its file.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("prefix").with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] || parts.last().is_some_and(|p| p == "tests") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            out.insert(parts.join("::"), text);
        }
    }
    out
}

/// The text before the first `#[cfg(test)]` item (test modules come last).
fn without_tests(text: &str) -> String {
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// The longest known module that `path` (`a::b::Item`) starts with.
fn resolve(path: &[&str], known: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains_key(m))
}

/// Paths named after `crate::` or `super::`, with `{a, b::c}` groups
/// expanded one level.
fn paths_in(text: &str, module: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent(module))] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let head: Vec<String> = head
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let taken: usize = head.iter().map(|s| s.len() + 2).sum();
            let after = &rest[taken.min(rest.len())..];
            let mut full = base.clone();
            let mut head = head.as_slice();
            while let [first, more @ ..] = head
                && first == "super"
            {
                full.pop();
                head = more;
            }
            full.extend(head.iter().cloned());
            if let Some(group) = after.strip_prefix('{') {
                expand(&full, group, &mut out);
            } else {
                out.push(full);
            }
        }
    }
    out
}

/// The paths of a `{a, b::{c, self}}` group (given without its `{`)
/// under `prefix`.
fn expand(prefix: &[String], group: &str, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    for item in items {
        let item = item.trim();
        let (path, inner) = match item.find('{') {
            Some(i) => (&item[..i], Some(&item[i + 1..])),
            None => (item.split(" as ").next().unwrap_or("").trim(), None),
        };
        let mut p = prefix.to_vec();
        p.extend(
            path.split("::")
                .filter(|s| !s.is_empty() && *s != "self")
                .map(String::from),
        );
        match inner {
            Some(inner) => expand(&p, inner, out),
            None => out.push(p),
        }
    }
}

fn parent(module: &str) -> Vec<String> {
    let mut parts: Vec<String> = module.split("::").map(String::from).collect();
    parts.pop();
    parts
}

/// Module → the modules it names (itself, its ancestors and its own
/// submodules left out: a parent and its children are one unit).
fn graph(mods: &BTreeMap<String, String>) -> Graph {
    let mut g = Graph::new();
    for (m, text) in mods {
        let edges = g.entry(m.clone()).or_default();
        for p in paths_in(&without_tests(text), m) {
            let p: Vec<&str> = p.iter().map(String::as_str).collect();
            if let Some(t) = resolve(&p, mods)
                && t != *m
                && !m.starts_with(&format!("{t}::"))
                && !t.starts_with(&format!("{m}::"))
            {
                edges.insert(t);
            }
        }
    }
    g
}

fn layer(module: &str) -> Option<usize> {
    let top = module.split("::").next()?;
    LAYERS.iter().position(|l| *l == top)
}

/// Arrows from a lower layer to a higher one, as `from -> to` lines.
fn arrows_up(g: &Graph) -> Vec<String> {
    let mut up = Vec::new();
    for (from, tos) in g {
        for to in tos {
            if layer(to) > layer(from) {
                up.push(format!("{from} -> {to}"));
            }
        }
    }
    up
}

/// Groups of modules that import each other in a circle (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("low");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("low");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                group.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                s.out.push(group);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_import_points_up_a_layer_and_none_goes_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let unlayered: Vec<&String> = mods.keys().filter(|m| layer(m).is_none()).collect();
    assert!(
        unlayered.is_empty(),
        "modules outside the layers: {unlayered:?}"
    );
    let g = graph(&mods);
    let arrows: usize = g.values().map(BTreeSet::len).sum();
    assert!(
        mods.len() > 40 && arrows > 100,
        "{} modules, {arrows} arrows: the scan finds too little",
        mods.len()
    );
    let up = arrows_up(&g);
    assert!(
        up.is_empty(),
        "imports pointing up the layers:\n{}",
        up.join("\n")
    );
    let circles = cycles(&g);
    assert!(
        circles.is_empty(),
        "modules importing each other in a circle: {circles:?}"
    );
}

#[test]
fn the_check_sees_an_arrow_up_and_a_circle() {
    let mut mods = BTreeMap::new();
    mods.insert(
        "support::a".to_string(),
        "use crate::config::b::X;\n".to_string(),
    );
    mods.insert(
        "config::b".to_string(),
        "use crate::{support::a::{self}, job::c};\n#[cfg(test)]\nuse crate::app::d;".to_string(),
    );
    mods.insert(
        "job::c".to_string(),
        "fn f() { super::super::config::b::g() }".to_string(),
    );
    mods.insert("app::d".to_string(), String::new());
    let g = graph(&mods);
    assert_eq!(
        arrows_up(&g),
        ["config::b -> job::c", "support::a -> config::b"]
    );
    assert_eq!(cycles(&g).len(), 1, "{g:?}");
    assert!(
        !g["config::b"].contains("app::d"),
        "test code is not counted"
    );
}
