//! Ansible's YAML: inventories of the `yaml` plugin (`all:` with `hosts:`,
//! `children:`, `vars:`) and `host_vars/`/`group_vars/` files, read as
//! ansible-core reads them. Ansible loads YAML with PyYAML's YAML 1.1 rules
//! (`yes` is true, `0755` is 493, `1:30` is 90), which no YAML 1.2 library
//! follows, so the parser's events are typed here; and, like Ansible's
//! loader, a file that parses as JSON is read as JSON (`json::parse`).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Span, Tag};

use super::tree::{Data, Node, dedup, float_value, link_child};
use super::{Origin, Sources, Value, Var, expand_host_pattern};
use crate::support::error::{Error, SourceFile};

// ---------------------------------------------------------------------------
// Parsing: saphyr's events into nodes, typed as PyYAML's SafeLoader does.

/// How deep collections may nest: the readers walk nodes recursively.
const MAX_DEPTH: usize = 400;

/// How many nodes aliases may copy in all: bounds "billion laughs".
const MAX_ALIASED: usize = 1_000_000;

/// A YAML document as Ansible reads it: values typed by PyYAML's YAML 1.1
/// rules, each map key with its line. An empty stream is null.
pub(crate) fn parse_yaml(source: &SourceFile) -> Result<Node, Error> {
    let mut b = Builder::new(source);
    for event in Parser::new_from_str(&source.text) {
        let (event, span) = event.map_err(|e| b.syntax_error(&e))?;
        b.event(event, span)?;
    }
    Ok(b.root.unwrap_or_else(|| Node::scalar(Value::Null, 1, 0..0)))
}

/// What a scalar is once typed.
enum Typed {
    Value(Value),
    Vault,
    /// A plain `<<`: YAML 1.1's merge key.
    Merge,
    /// A plain `=`: YAML 1.1's "value" key, a string as a map key only.
    Equals,
}

/// A collection being built.
struct Open {
    map: bool,
    anchor: usize,
    line: u32,
    start: usize,
    /// Keys and values alternate in a map.
    items: Vec<Node>,
    /// Positions in `items` of `<<` keys.
    merges: Vec<usize>,
}

struct Builder<'a> {
    source: &'a SourceFile,
    /// Byte offset of each char, when the text is not ASCII (saphyr
    /// counts chars).
    offsets: Option<Vec<usize>>,
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    aliased: usize,
}

impl<'a> Builder<'a> {
    fn new(source: &'a SourceFile) -> Self {
        let text = &source.text;
        let offsets = (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect());
        Builder {
            source,
            offsets,
            stack: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            documents: 0,
            aliased: 0,
        }
    }

    fn byte(&self, m: &Marker) -> usize {
        match &self.offsets {
            None => m.index().min(self.source.text.len()),
            Some(o) => o.get(m.index()).copied().unwrap_or(self.source.text.len()),
        }
    }

    fn span(&self, span: &Span) -> Range<usize> {
        self.byte(&span.start)..self.byte(&span.end)
    }

    fn line(m: &Marker) -> u32 {
        u32::try_from(m.line()).unwrap_or(u32::MAX)
    }

    fn error(&self, span: &Span, message: impl Into<String>, hint: &str) -> Error {
        Error::at(self.source.locate(self.span(span)), message, hint)
    }

    fn syntax_error(&self, e: &ScanError) -> Error {
        let at = self.byte(e.marker());
        Error::at(
            self.source.locate(at..at + 1),
            format!("YAML syntax: {}", e.info()),
            "check the indentation, quotes and `:` here",
        )
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Error> {
        match event {
            Event::DocumentStart(_) => {
                if self.documents > 0 {
                    return Err(self.error(
                        &span,
                        "a second YAML document: Ansible reads one document per file",
                        "remove the `---` and what follows, or merge it into the first document",
                    ));
                }
                self.documents += 1;
                self.anchors.clear();
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.scalar(&text, style, anchor, tag.as_deref(), &span)
            }
            Event::Alias(id) => self.alias(id, &span),
            Event::SequenceStart(anchor, tag) => self.open(false, anchor, tag.as_deref(), &span),
            Event::MappingStart(anchor, tag) => self.open(true, anchor, tag.as_deref(), &span),
            Event::SequenceEnd | Event::MappingEnd => self.close(&span),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
        }
    }

    /// Whether the next node is a map's key.
    fn at_key(&self) -> bool {
        self.stack
            .last()
            .is_some_and(|o| o.map && o.items.len() % 2 == 0)
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        span: &Span,
    ) -> Result<(), Error> {
        let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
        let typed = typed(text, style, tag.as_deref())
            .map_err(|m| self.error(span, m, "quote the value to keep it a string"))?;
        let key = self.at_key();
        let merge = key && matches!(typed, Typed::Merge);
        let data = match typed {
            Typed::Value(v) => Data::Scalar(v),
            Typed::Vault => Data::Vault,
            Typed::Equals if key => Data::Scalar(Value::String("=".into())),
            Typed::Merge if key => Data::Scalar(Value::String("<<".into())),
            Typed::Equals | Typed::Merge => {
                return Err(self.error(
                    span,
                    format!("a plain `{text}` is a YAML 1.1 key type, not a value"),
                    &format!("quote it: '{text}'"),
                ));
            }
        };
        let node = Node {
            data,
            line: Self::line(&span.start),
            span: self.span(span),
        };
        self.complete(node, anchor, merge);
        Ok(())
    }

    fn alias(&mut self, id: usize, span: &Span) -> Result<(), Error> {
        let Some(node) = self.anchors.get(&id) else {
            return Err(self.error(
                span,
                "this alias refers to the collection it is in",
                "Ansible cannot read a value that contains itself; copy the values instead",
            ));
        };
        self.aliased += size(node);
        if self.aliased > MAX_ALIASED {
            return Err(self.error(
                span,
                format!("aliases copy more than {MAX_ALIASED} values in all"),
                "write the values out, or use fewer nested aliases",
            ));
        }
        let node = node.clone();
        self.complete(node, 0, false);
        Ok(())
    }

    fn open(
        &mut self,
        map: bool,
        anchor: usize,
        tag: Option<&Tag>,
        span: &Span,
    ) -> Result<(), Error> {
        let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
        collection_tag(map, tag.as_deref()).map_err(|m| self.error(span, m, "remove the tag"))?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(
                span,
                format!("values nest more than {MAX_DEPTH} levels deep"),
                "flatten the structure",
            ));
        }
        self.stack.push(Open {
            map,
            anchor,
            line: Self::line(&span.start),
            start: self.byte(&span.start),
            items: Vec::new(),
            merges: Vec::new(),
        });
        Ok(())
    }

    fn close(&mut self, span: &Span) -> Result<(), Error> {
        let Some(open) = self.stack.pop() else {
            return Ok(());
        };
        let end = self.byte(&span.end).max(open.start);
        let data = if open.map {
            Data::Map(self.entries(open.items, &open.merges)?)
        } else {
            Data::Seq(open.items)
        };
        let node = Node {
            data,
            line: open.line,
            span: open.start..end,
        };
        self.complete(node, open.anchor, false);
        Ok(())
    }

    /// A map's entries as PyYAML's `flatten_mapping` and dict make them:
    /// merged entries first (of a list of maps, the earlier map wins), the
    /// map's own after them, the last value of a key winning.
    fn entries(&self, items: Vec<Node>, merges: &[usize]) -> Result<Vec<(Node, Node)>, Error> {
        let mut merged = Vec::new();
        let mut own = Vec::new();
        let mut items = items.into_iter().enumerate();
        while let (Some((i, key)), Some((_, value))) = (items.next(), items.next()) {
            if merges.contains(&i) {
                merged.extend(self.merge(value)?);
                continue;
            }
            self.check_key(&key)?;
            own.push((key, value));
        }
        Ok(dedup(merged.into_iter().chain(own)))
    }

    fn merge(&self, value: Node) -> Result<Vec<(Node, Node)>, Error> {
        let bad = |n: &Node| {
            Error::at(
                n.locate(self.source),
                format!(
                    "`<<` merges a mapping or a list of mappings, not a {}",
                    n.kind()
                ),
                "give `<<:` an alias of a mapping (`<<: *defaults`) or a list of them",
            )
        };
        match value.data {
            Data::Map(entries) => Ok(entries),
            Data::Seq(maps) => {
                let mut out = Vec::new();
                for m in maps.into_iter().rev() {
                    match m.data {
                        Data::Map(entries) => out.extend(entries),
                        _ => return Err(bad(&m)),
                    }
                }
                Ok(out)
            }
            _ => Err(bad(&value)),
        }
    }

    fn check_key(&self, key: &Node) -> Result<(), Error> {
        match key.data {
            Data::Scalar(_) => Ok(()),
            _ => Err(Error::at(
                key.locate(self.source),
                format!("a mapping key must be a scalar, not a {}", key.kind()),
                "use a string as the key",
            )),
        }
    }

    fn complete(&mut self, node: Node, anchor: usize, merge: bool) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            Some(open) => {
                if merge {
                    open.merges.push(open.items.len());
                }
                open.items.push(node);
            }
            None => self.root = Some(node),
        }
    }
}

/// How many nodes `node` holds.
fn size(node: &Node) -> usize {
    1 + match &node.data {
        Data::Seq(items) => items.iter().map(size).sum(),
        Data::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
        Data::Scalar(_) | Data::Vault => 0,
    }
}

const CORE: &str = "tag:yaml.org,2002:";

/// The tags a collection may carry in Ansible (SafeConstructor and
/// `!unsafe`).
fn collection_tag(map: bool, tag: Option<&str>) -> Result<(), String> {
    let core = tag.and_then(|t| t.strip_prefix(CORE));
    match (tag, core) {
        (None | Some("!" | "!unsafe"), _) => Ok(()),
        (_, Some("seq")) if !map => Ok(()),
        (_, Some("map" | "python/dict")) if map => Ok(()),
        (Some("!vault" | "!vault-encrypted"), _) => Err("`!vault` takes a string value".into()),
        (Some(t), _) => Err(format!(
            "fleetfix does not read the tag `{t}` on a {}",
            if map { "mapping" } else { "list" }
        )),
    }
}

/// Types a scalar as Ansible's YAML constructor does.
fn typed(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Typed, String> {
    let string = || Ok(Typed::Value(Value::String(text.to_string())));
    match tag {
        None if style == ScalarStyle::Plain => resolve_plain(text),
        None => string(),
        // The non-specific tag resolves as a plain scalar, even quoted.
        Some("!") => resolve_plain(text),
        // Ansible 2.19 resolves an `!unsafe` scalar as a plain one (so
        // `!unsafe 1` is 1) and marks strings not to be templated, a mark
        // a JSON value cannot carry.
        Some("!unsafe") => match resolve_plain(text)? {
            Typed::Merge | Typed::Equals => Err(format!("`!unsafe {text}` cannot be read")),
            t => Ok(t),
        },
        Some("!vault" | "!vault-encrypted") => match resolve_plain(text)? {
            Typed::Value(Value::String(_)) => Ok(Typed::Vault),
            _ => Err("`!vault` takes a string value".into()),
        },
        Some(t) => match t.strip_prefix(CORE) {
            Some("str") => string(),
            Some("int") => int(text).map(Typed::Value),
            Some("float") => float(text).map(Typed::Value),
            Some("bool") => bool_word(text)
                .map(|b| Typed::Value(Value::Bool(b)))
                .ok_or_else(|| format!("`{text}` is not a YAML 1.1 boolean")),
            Some("null") => Ok(Typed::Value(Value::Null)),
            Some("timestamp") => timestamp(text).map(Typed::Value),
            _ => Err(format!("fleetfix does not read the tag `{t}`")),
        },
    }
}

static BOOL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")
        .expect("constant regex")
});
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    )
    .expect("constant regex")
});
static INT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
    )
    .expect("constant regex")
});
static NULL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:~|null|Null|NULL|)$").expect("constant regex"));
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
    )
    .expect("constant regex")
});

/// PyYAML's implicit resolvers (YAML 1.1), in their order.
fn resolve_plain(text: &str) -> Result<Typed, String> {
    let value = if BOOL.is_match(text) {
        Value::Bool(bool_word(text).unwrap_or(false))
    } else if FLOAT.is_match(text) {
        float(text)?
    } else if INT.is_match(text) {
        int(text)?
    } else if text == "<<" {
        return Ok(Typed::Merge);
    } else if NULL.is_match(text) {
        Value::Null
    } else if TIMESTAMP.is_match(text) {
        timestamp(text)?
    } else if text == "=" {
        return Ok(Typed::Equals);
    } else {
        Value::String(text.to_string())
    };
    Ok(Typed::Value(value))
}

fn bool_word(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Splits a leading sign off, as PyYAML's constructors do.
fn sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

/// PyYAML's `construct_yaml_int`: `_` ignored, `0b`, `0x`, a leading `0`
/// for octal, `a:b:c` in base 60.
fn int(text: &str) -> Result<Value, String> {
    let bad = || format!("`{text}` is not an integer");
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (negative, digits) = sign(&cleaned);
    let magnitude = if digits == "0" {
        Ok(0)
    } else if let Some(b) = digits.strip_prefix("0b") {
        i128::from_str_radix(b, 2)
    } else if let Some(h) = digits.strip_prefix("0x") {
        i128::from_str_radix(h, 16)
    } else if let Some(o) = digits.strip_prefix('0') {
        i128::from_str_radix(o.strip_prefix(['o', 'O']).unwrap_or(o), 8)
    } else if digits.contains(':') {
        let mut n: i128 = 0;
        for part in digits.split(':') {
            let d: i128 = part.parse().map_err(|_| bad())?;
            n = n
                .checked_mul(60)
                .and_then(|n| n.checked_add(d))
                .ok_or_else(bad)?;
        }
        Ok(n)
    } else {
        match digits.parse::<i128>() {
            Err(_) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                // Beyond i128: Python keeps it exactly, JSON numbers here
                // cannot.
                let f: f64 = digits.parse().map_err(|_| bad())?;
                return Ok(float_value(if negative { -f } else { f }));
            }
            r => r,
        }
    };
    let magnitude = magnitude.map_err(|_| bad())?;
    let n = if negative { -magnitude } else { magnitude };
    Ok(match (i64::try_from(n), u64::try_from(n)) {
        (Ok(i), _) => Value::from(i),
        (_, Ok(u)) => Value::from(u),
        _ => float_value(n as f64),
    })
}

/// PyYAML's `construct_yaml_float`: `_` ignored, `.inf`, `.nan`, base 60.
fn float(text: &str) -> Result<Value, String> {
    let bad = || format!("`{text}` is not a number");
    let cleaned: String = text
        .chars()
        .filter(|&c| c != '_')
        .collect::<String>()
        .to_lowercase();
    let (negative, rest) = sign(&cleaned);
    let f = match rest {
        ".inf" => f64::INFINITY,
        ".nan" => f64::NAN,
        _ if rest.contains(':') => {
            let mut f = 0.0;
            for part in rest.split(':') {
                f = f * 60.0 + part.parse::<f64>().map_err(|_| bad())?;
            }
            f
        }
        _ => rest.trim().parse::<f64>().map_err(|_| bad())?,
    };
    Ok(float_value(if negative { -f } else { f }))
}

static TIMESTAMP_PARTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:(?:[Tt]|[ \t]+)([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]*))?(?:[ \t]*(Z|([-+])([0-9]{1,2})(?::([0-9]{2}))?))?)?$",
    )
    .expect("constant regex")
});

/// PyYAML's `construct_yaml_timestamp`, written as Python's `isoformat()`
/// (what Ansible's JSON output holds): a date, or a date and time with
/// microseconds when not zero and the offset when given.
fn timestamp(text: &str) -> Result<Value, String> {
    let bad = || format!("`{text}` is not a valid date or time");
    let c = TIMESTAMP_PARTS.captures(text).ok_or_else(bad)?;
    let num = |i: usize| -> Result<i64, String> {
        c.get(i)
            .map_or(Ok(0), |m| m.as_str().parse().map_err(|_| bad()))
    };
    let (y, mo, d) = (num(1)?, num(2)?, num(3)?);
    let date = jiff::civil::Date::new(
        i16::try_from(y).map_err(|_| bad())?,
        i8::try_from(mo).map_err(|_| bad())?,
        i8::try_from(d).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    let day = format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day());
    if c.get(4).is_none() {
        return Ok(Value::String(day));
    }
    let (h, mi, s) = (num(4)?, num(5)?, num(6)?);
    if h > 23 || mi > 59 || s > 59 {
        return Err(bad());
    }
    let mut out = format!("{day}T{h:02}:{mi:02}:{s:02}");
    let fraction = c.get(7).map_or("", |m| m.as_str());
    let micros: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(6)
        .collect();
    if micros != "000000" {
        out.push('.');
        out.push_str(&micros);
    }
    match (c.get(8).map(|m| m.as_str()), c.get(9).map(|m| m.as_str())) {
        (Some("Z"), _) => out.push_str("+00:00"),
        (Some(_), Some(sign)) => {
            let (th, tm) = (num(10)?, num(11)?);
            if th * 60 + tm >= 24 * 60 {
                return Err(bad());
            }
            let sign = if sign == "-" && th + tm > 0 { '-' } else { '+' };
            out.push_str(&format!("{sign}{th:02}:{tm:02}"));
        }
        _ => {}
    }
    Ok(Value::String(out))
}

// ---------------------------------------------------------------------------
// Reading: an inventory, a vars file.

/// A file as Ansible's loader reads one: as JSON when it parses as JSON
/// (where `{"__ansible_vault": …}` is a vault value and `1e3` a number),
/// else as YAML. A file encrypted whole with ansible-vault is refused.
fn load(source: &SourceFile) -> Result<Node, Error> {
    if source.text.trim_start().starts_with("$ANSIBLE_VAULT;") {
        return Err(Error::at(
            source.locate(0..0),
            "this file is vault-encrypted: vault-encrypted values are not read by fleetfix",
            "keep the inventory in plain text and give secrets to fleetfix as [secrets] in the \
             playbook, read from environment variables on the runner",
        ));
    }
    match super::json::parse(source) {
        Ok(node) => Ok(node),
        Err(_) => parse_yaml(source),
    }
}

/// Reads an Ansible YAML inventory (`all: {hosts:, children:, vars:}`
/// shape) into `into`, as ansible-core's `yaml` inventory plugin does: the
/// top-level keys are groups; an empty file is an empty inventory.
pub(crate) fn read(source: &SourceFile, into: &mut Sources) -> Result<(), Error> {
    let root = load(source)?;
    let entries = match &root.data {
        Data::Map(entries) => entries,
        _ if root.is_falsy() => return Ok(()),
        _ => {
            return Err(Error::at(
                root.locate(source),
                format!(
                    "a YAML inventory is a mapping of groups (`all:` with `hosts:`, `children:`, \
                     `vars:`), not a {}",
                    root.kind()
                ),
                "start the file with `all:` and put the hosts under `hosts:`",
            ));
        }
    };
    if let Some((key, _)) = entries
        .iter()
        .find(|(k, v)| k.as_str() == Some("plugin") && !v.is_falsy())
    {
        return Err(Error::at(
            key.locate(source),
            "this is the configuration of an inventory plugin (`plugin:`), not an inventory",
            "fleetfix runs no inventory plugin: save what it finds with \
             `ansible-inventory -i FILE --list > inventory.json` and give fleetfix that file",
        ));
    }
    let mut reader = Inventory {
        source,
        file: Arc::from(source.path.as_path()),
        into,
    };
    for (key, body) in entries {
        reader.group(key, body)?;
    }
    Ok(())
}

/// Reads a host_vars/ or group_vars/ file (a YAML or JSON mapping) as
/// variables with their origins (the line of each key). An empty file,
/// or one that holds only `~` or `{}`, has none, as in Ansible.
pub(crate) fn read_vars(source: &SourceFile) -> Result<Vec<(String, Var)>, Error> {
    let root = load(source)?;
    let file: Arc<Path> = Arc::from(source.path.as_path());
    match &root.data {
        Data::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let name = k.key_text();
                let var = Var {
                    value: v.to_value(source, &name)?,
                    origin: Origin::at(&file, k.line),
                };
                Ok((name, var))
            })
            .collect(),
        _ if root.is_falsy() => Ok(Vec::new()),
        _ => Err(Error::at(
            root.locate(source),
            format!(
                "a variables file is a mapping of names to values, not a {}",
                root.kind()
            ),
            "write one `name: value` per line",
        )),
    }
}

/// The sections of a group in the `yaml` plugin.
const SECTIONS: [&str; 3] = ["vars", "children", "hosts"];

struct Inventory<'a> {
    source: &'a SourceFile,
    file: Arc<Path>,
    into: &'a mut Sources,
}

impl Inventory<'_> {
    fn origin(&self, node: &Node) -> Origin {
        Origin::at(&self.file, node.line)
    }

    fn error(&self, node: &Node, message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::at(node.locate(self.source), message, hint)
    }

    /// The plugin's `_parse_group`: names the group and reads its sections.
    /// A body that is neither a mapping nor empty is skipped with Ansible's
    /// warning, the group left unnamed. Returns the group's name.
    fn group(&mut self, key: &Node, body: &Node) -> Result<String, Error> {
        let name = self.group_name(key)?;
        let entries = match &body.data {
            Data::Map(entries) => entries.as_slice(),
            _ if body.is_null() => &[],
            _ => {
                tracing::warn!(
                    "{}: skipping group `{name}`: its value is a {}, not a mapping",
                    self.origin(key),
                    body.kind()
                );
                return Ok(name);
            }
        };
        self.into.add_group(&name, &self.origin(key));
        for (k, v) in entries {
            self.check_section(&name, k, v)?;
        }
        for (k, v) in entries {
            self.section(&name, k, v)?;
        }
        Ok(name)
    }

    fn group_name(&self, key: &Node) -> Result<String, Error> {
        match key.as_str() {
            Some(name) if !name.is_empty() => Ok(name.to_string()),
            _ => Err(self.error(
                key,
                format!(
                    "a group name must be a non-empty string, not `{}` ({})",
                    key.key_text(),
                    key.kind()
                ),
                "quote the group name",
            )),
        }
    }

    /// `hosts`, `children` and `vars` must be mappings (a string `s` is
    /// read as `{s: null}`) or empty.
    fn check_section(&self, group: &str, key: &Node, value: &Node) -> Result<(), Error> {
        let Some(section) = key.as_str().filter(|k| SECTIONS.contains(k)) else {
            return Ok(());
        };
        match &value.data {
            Data::Map(_) | Data::Scalar(Value::Null | Value::String(_)) => Ok(()),
            _ => Err(self.error(
                value,
                format!(
                    "`{section}` of group `{group}` must be a mapping, not a {}",
                    value.kind()
                ),
                match section {
                    "hosts" => "write each host as a key: `hosts:` then `  web1:` on its own line",
                    "children" => "write each child group as a key: `children:` then `  web:`",
                    _ => "write each variable as `name: value` under `vars:`",
                },
            )),
        }
    }

    fn section(&mut self, group: &str, key: &Node, value: &Node) -> Result<(), Error> {
        let section = key.as_str().filter(|k| SECTIONS.contains(k));
        let single;
        let entries = match (&value.data, section) {
            (Data::Map(entries), _) => entries.as_slice(),
            // A lone name stands for a mapping with that key.
            (Data::Scalar(Value::String(_)), Some(_)) => {
                single = [(
                    value.clone(),
                    Node::scalar(Value::Null, value.line, value.span.clone()),
                )];
                &single[..]
            }
            _ if value.is_null() => return Ok(()),
            _ => {
                tracing::warn!(
                    "{}: skipping `{}` in group `{group}`: it is a {}, not a mapping",
                    self.origin(key),
                    key.key_text(),
                    value.kind()
                );
                return Ok(());
            }
        };
        match section {
            Some("vars") => self.vars(group, entries),
            Some("children") => self.children(group, entries),
            Some(_) => self.hosts(group, entries),
            None => {
                tracing::warn!(
                    "{}: skipping `{}` in group `{group}`: only `hosts`, `children` and `vars` are read",
                    self.origin(key),
                    key.key_text()
                );
                Ok(())
            }
        }
    }

    fn vars(&mut self, group: &str, entries: &[(Node, Node)]) -> Result<(), Error> {
        for (name, var) in self.var_list(entries)? {
            self.into.set_group_var(group, &name, var);
        }
        Ok(())
    }

    fn var_list(&self, entries: &[(Node, Node)]) -> Result<Vec<(String, Var)>, Error> {
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

    /// Each child is read as a group, then linked. A child whose body was
    /// skipped is still linked, as in Ansible, which then fails unless a
    /// group (or host) of that name exists already.
    fn children(&mut self, parent: &str, entries: &[(Node, Node)]) -> Result<(), Error> {
        for (key, body) in entries {
            let child = self.group(key, body)?;
            let origin = self.origin(key);
            if self.into.groups.contains_key(&child) {
                link_child(self.into, parent, &child, &origin)
                    .map_err(|m| self.error(key, m, "remove one of the links"))?;
            } else if self.into.hosts.contains_key(&child) {
                // Ansible's `add_child` takes a host's name too.
                self.into.add_host(&child, Some(parent), &origin);
            } else {
                return Err(self.error(
                    body,
                    format!(
                        "child group `{child}` of `{parent}` is a {}, not a mapping",
                        body.kind()
                    ),
                    format!(
                        "write `{child}:` alone, or with `hosts:`, `children:` or `vars:` under it"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn hosts(&mut self, group: &str, entries: &[(Node, Node)]) -> Result<(), Error> {
        for (key, vars) in entries {
            self.host(group, key, vars)?;
        }
        Ok(())
    }

    /// One host pattern (`web[01:20]:2222`) and its variables. A port sets
    /// `ansible_port` only on hosts new to the inventory, and before their
    /// own variables, as Ansible's `Host()` does; port 0 sets nothing.
    fn host(&mut self, group: &str, key: &Node, vars: &Node) -> Result<(), Error> {
        let Some(pattern) = key.as_str() else {
            return Err(self.error(
                key,
                format!(
                    "host pattern `{}` must be a string, not a {}",
                    key.key_text(),
                    key.kind()
                ),
                format!("quote it: \"{}\":", key.key_text()),
            ));
        };
        let (names, port) = expand_host_pattern(pattern).map_err(|m| {
            self.error(
                key,
                m,
                "write a host name, `name:port`, or a range like web[01:20]",
            )
        })?;
        let entries = match &vars.data {
            Data::Map(entries) => entries.as_slice(),
            _ if vars.is_falsy() => &[],
            _ => {
                return Err(self.error(
                    vars,
                    format!(
                        "the variables of host `{pattern}` must be a mapping, not a {}",
                        vars.kind()
                    ),
                    format!("write `{pattern}:` alone, or with `name: value` lines under it"),
                ));
            }
        };
        let list = self.var_list(entries)?;
        let origin = self.origin(key);
        for name in names {
            if name.is_empty() {
                return Err(self.error(
                    key,
                    "a host name cannot be empty",
                    "write the host's name",
                ));
            }
            let new = !self.into.hosts.contains_key(&name);
            self.into.add_host(&name, Some(group), &origin);
            if let Some(port) = port.filter(|&p| new && p != 0) {
                let var = Var {
                    value: Value::from(port),
                    origin: origin.clone(),
                };
                self.into.set_host_var(&name, "ansible_port", var);
            }
            for (k, var) in &list {
                self.into.set_host_var(&name, k, var.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::support::error::InputError;

    pub(crate) fn source(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: text.into(),
        }
    }

    fn inventory(text: &str) -> Sources {
        let mut sources = Sources::default();
        read(&source("/inv/hosts.yml", text), &mut sources).expect("inventory");
        sources
    }

    /// The error's message and line.
    pub(crate) fn failure(result: Result<impl std::fmt::Debug, Error>) -> (String, usize) {
        match result.expect_err("an error") {
            Error::Input(e) => {
                let InputError {
                    message, location, ..
                } = *e;
                (message, location.map_or(0, |l| l.line))
            }
            other => panic!("not an input error: {other:?}"),
        }
    }

    fn inventory_error(text: &str) -> (String, usize) {
        failure(read(
            &source("/inv/hosts.yml", text),
            &mut Sources::default(),
        ))
    }

    fn values(text: &str) -> Value {
        let src = source("/v.yml", text);
        parse_yaml(&src)
            .expect("yaml")
            .to_value(&src, "v")
            .expect("value")
    }

    /// What `ansible-inventory --list --export` prints for `sources` (keys
    /// sorted by serde_json as Ansible sorts them, `profile` left out): the
    /// groups no group names as a child are children of `all`, after
    /// `ungrouped`, which holds the hosts of no other group; empty groups
    /// are left out.
    pub(crate) fn export(s: &Sources) -> Value {
        let parented: HashSet<&str> = s
            .groups
            .values()
            .flat_map(|g| g.children.iter().map(String::as_str))
            .collect();
        let mut top = vec!["ungrouped"];
        let orphans = s
            .groups
            .keys()
            .map(String::as_str)
            .filter(|n| *n != "all" && !parented.contains(n));
        for name in s.groups["all"]
            .children
            .iter()
            .map(String::as_str)
            .chain(orphans)
        {
            if !top.contains(&name) {
                top.push(name);
            }
        }
        let grouped: HashSet<&str> = s
            .groups
            .iter()
            .filter(|(n, _)| *n != "all" && *n != "ungrouped")
            .flat_map(|(_, g)| g.hosts.iter().map(String::as_str))
            .collect();
        let explicit = s.groups["ungrouped"].hosts.iter().map(String::as_str);
        let mut ungrouped: Vec<&str> = Vec::new();
        for h in explicit.chain(s.hosts.keys().map(String::as_str)) {
            if !grouped.contains(h) && !ungrouped.contains(&h) {
                ungrouped.push(h);
            }
        }
        let mut out = serde_json::Map::new();
        let mut seen = HashSet::new();
        export_group(s, "all", &top, &ungrouped, &mut out, &mut seen);
        let hostvars: serde_json::Map<String, Value> = s
            .hosts
            .iter()
            .filter(|(_, h)| !h.vars.is_empty())
            .map(|(n, h)| (n.clone(), vars_json(&h.vars)))
            .collect();
        out.insert("_meta".into(), serde_json::json!({ "hostvars": hostvars }));
        Value::Object(out)
    }

    fn vars_json(vars: &indexmap::IndexMap<String, Var>) -> Value {
        Value::Object(
            vars.iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
        )
    }

    fn export_group<'s>(
        s: &'s Sources,
        name: &'s str,
        top: &[&'s str],
        ungrouped: &[&str],
        out: &mut serde_json::Map<String, Value>,
        seen: &mut HashSet<&'s str>,
    ) {
        let group = &s.groups[name];
        let mut entry = serde_json::Map::new();
        let hosts: Vec<&str> = match name {
            "all" => Vec::new(),
            "ungrouped" => ungrouped.to_vec(),
            _ => group.hosts.iter().map(String::as_str).collect(),
        };
        if !hosts.is_empty() {
            entry.insert("hosts".into(), serde_json::json!(hosts));
        }
        let children: Vec<&str> = if name == "all" {
            top.to_vec()
        } else {
            group.children.iter().map(String::as_str).collect()
        };
        if !children.is_empty() {
            entry.insert("children".into(), serde_json::json!(children));
        }
        for child in children {
            if seen.insert(child) {
                export_group(s, child, top, ungrouped, out, seen);
            }
        }
        if !group.vars.is_empty() {
            entry.insert("vars".into(), vars_json(&group.vars));
        }
        if !entry.is_empty() {
            out.insert(name.to_string(), Value::Object(entry));
        }
    }

    /// What ansible-inventory printed, as fleetfix holds it: `NaN` and
    /// `Infinity` as Python prints them, `{"__ansible_unsafe": s}` as `s`.
    pub(crate) fn ansible(printed: &str) -> Value {
        let text = printed
            .replace("-Infinity", "\"-inf\"")
            .replace("Infinity", "\"inf\"")
            .replace("NaN", "\"nan\"");
        unwrap_unsafe(serde_json::from_str(&text).expect("ansible's JSON"))
    }

    fn unwrap_unsafe(v: Value) -> Value {
        match v {
            Value::Object(m) => match m.get("__ansible_unsafe") {
                Some(s) => s.clone(),
                None => Value::Object(m.into_iter().map(|(k, v)| (k, unwrap_unsafe(v))).collect()),
            },
            Value::Array(a) => Value::Array(a.into_iter().map(unwrap_unsafe).collect()),
            v => v,
        }
    }

    const TYPES: &str = r#"all:
  vars:
    top: 1
    octal: 0755
    octal_o: 0o755
    hex: 0x1F
    under: 1_000
    sexa: 1:30
    sexaf: 1:30.5
    flt: 1.5
    flt_e: 1.0e+3
    flt_e_nosign: 1.0e3
    inf: .inf
    ninf: -.Inf
    nan: .NaN
    b_yes: yes
    b_No: No
    b_ON: ON
    b_y: y
    b_n: n
    b_True: True
    b_tRue: tRue
    nul1: ~
    nul2: null
    nul3:
    nul4: NULL
    quoted: "yes"
    squoted: '0755'
    str_int: !!str 123
    int_str: !!int "0x10"
    float_tag: !!float 1
    date: 2001-12-14
    ts: 2001-12-14t21:59:43.10-05:00
    ts2: 2001-12-14 21:59:43.10
    eight: 08
    bin: 0b1010
    neg: -0x10
    plus: +12
    lst: [1, yes, "no", ~]
    folded: >
      a
      b
    literal: |
      a
      b
  hosts:
    web[01:03]:2222:
      hv: 1
    solo:
    db.example.com:
      ansible_port: 5555
  children:
    app:
      hosts:
        web01:
          hv: 2
        web02:
      vars:
        appvar: x
      children:
        inner:
          hosts:
            solo:
          vars:
            innervar: [a, b]
    empty:
    other: {}
"#;

    #[test]
    fn yaml_1_1_values_and_groups_read_as_ansible_inventory_exports_them() {
        // ansible-inventory 2.19 -i FILE --list --export.
        let printed = r#"{"_meta": {"hostvars": {"db.example.com": {"ansible_port": 5555}, "web01": {"ansible_port": 2222, "hv": 2}, "web02": {"ansible_port": 2222, "hv": 1}, "web03": {"ansible_port": 2222, "hv": 1}}}, "all": {"children": ["ungrouped", "app", "empty", "other"], "vars": {"b_No": false, "b_ON": true, "b_True": true, "b_n": "n", "b_tRue": "tRue", "b_y": "y", "b_yes": true, "bin": 10, "date": "2001-12-14", "eight": "08", "float_tag": 1.0, "flt": 1.5, "flt_e": 1000.0, "flt_e_nosign": "1.0e3", "folded": "a b\n", "hex": 31, "inf": Infinity, "int_str": 16, "literal": "a\nb\n", "lst": [1, true, "no", null], "nan": NaN, "neg": -16, "ninf": -Infinity, "nul1": null, "nul2": null, "nul3": null, "nul4": null, "octal": 493, "octal_o": "0o755", "plus": 12, "quoted": "yes", "sexa": 90, "sexaf": 90.5, "squoted": "0755", "str_int": "123", "top": 1, "ts": "2001-12-14T21:59:43.100000-05:00", "ts2": "2001-12-14T21:59:43.100000", "under": 1000}}, "app": {"children": ["inner"], "hosts": ["web01", "web02"], "vars": {"appvar": "x"}}, "inner": {"hosts": ["solo"], "vars": {"innervar": ["a", "b"]}}, "ungrouped": {"hosts": ["web03", "db.example.com"]}}"#;
        assert_eq!(export(&inventory(TYPES)), ansible(printed));
    }

    const MERGES: &str = r#"base: &base
  vars: &bv
    common: 1
    shared: base
  hosts:
    h1:2201:
      hv: &hv {a: 1, b: [1, 2]}
all:
  vars: {allvar: 0}
  children:
    g1:
      hosts:
        h1:2222:
          <<: *hv
          b: override
        h2:
          <<: [*hv, {c: 3, a: 9}]
          ansible_port: 23
        h3:
          ansible_port: "25"
        h4: 0
        h5: ""
        h6: []
      vars:
        <<: *bv
        shared: g1
        mine: x
    g2:
      hosts:
        h1:
        h3:2233:
      vars: foo
"#;

    #[test]
    fn anchors_merges_ports_and_hosts_in_several_groups_as_ansible() {
        // A port names `ansible_port` only for a host new to the inventory
        // (h1 keeps 2201, h3 its "25"); with a list of merges the first
        // map wins (h2's a is 1); `h4: 0`, `h5: ""` are hosts without
        // variables; `vars: foo` is a variable foo = null.
        let printed = r#"{"_meta": {"hostvars": {"h1": {"a": 1, "ansible_port": 2201, "b": "override", "hv": {"a": 1, "b": [1, 2]}}, "h2": {"a": 1, "ansible_port": 23, "b": [1, 2], "c": 3}, "h3": {"ansible_port": "25"}}}, "all": {"children": ["ungrouped", "g1", "g2", "base"], "vars": {"allvar": 0}}, "base": {"hosts": ["h1"], "vars": {"common": 1, "shared": "base"}}, "g1": {"hosts": ["h1", "h2", "h3", "h4", "h5", "h6"], "vars": {"common": 1, "mine": "x", "shared": "g1"}}, "g2": {"hosts": ["h1", "h3"], "vars": {"foo": null}}}"#;
        let s = inventory(MERGES);
        assert_eq!(export(&s), ansible(printed));
        // Origins: the line of each key, the merged ones where written.
        let line = |v: &Var| v.origin.line;
        let h1 = &s.hosts["h1"];
        assert_eq!(h1.origin.line, Some(6));
        assert_eq!(line(&h1.vars["ansible_port"]), Some(6));
        assert_eq!(line(&h1.vars["a"]), Some(7));
        assert_eq!(line(&h1.vars["b"]), Some(15));
        let g1 = &s.groups["g1"];
        assert_eq!(g1.origin.as_ref().and_then(|o| o.line), Some(11));
        assert_eq!(line(&g1.vars["common"]), Some(3));
        assert_eq!(line(&g1.vars["shared"]), Some(26));
        assert_eq!(line(&s.groups["g2"].vars["foo"]), Some(32));
        assert_eq!(h1.origin.to_string(), "/inv/hosts.yml:6");
    }

    #[test]
    fn bad_group_entries_are_skipped_as_ansible_warns() {
        // Ansible warns "Skipping unexpected key (bogus)" and "Skipping key
        // (strkey) ... as it is not a mapping"; a lone string under hosts
        // or children is one host or group.
        let text = "all:\n  hosts: lonely\n  children:\n    g1:\n      hosts:\n        h1:\n      bogus: {a: 1}\n      strkey: text\n      vars:\n    g4:\n      children: g1\n      hosts:\n        h1:\n          x: 1\n        h2:\n";
        let printed = r#"{"_meta": {"hostvars": {"h1": {"x": 1}}}, "all": {"children": ["ungrouped", "g1", "g4"]}, "g1": {"hosts": ["h1"]}, "g4": {"children": ["g1"], "hosts": ["h1", "h2"]}, "ungrouped": {"hosts": ["lonely"]}}"#;
        assert_eq!(export(&inventory(text)), ansible(printed));
        // A top-level group that is not a mapping is skipped too.
        let s = inventory("g1: text\ng2:\n  hosts: {h: }\n");
        assert!(!s.groups.contains_key("g1"));
        assert!(s.groups["g2"].hosts.iter().eq(["h"]));
    }

    #[test]
    fn empty_files_are_empty_inventories() {
        for text in ["", "# nothing\n", "---\n", "~\n", "{}\n"] {
            let s = inventory(text);
            assert!(s.hosts.is_empty(), "{text:?}");
            assert_eq!(s.groups.len(), 2, "{text:?}");
        }
    }

    #[test]
    fn inventory_errors_ansible_makes_too() {
        let cases: &[(&str, &str, usize)] = &[
            // "Invalid "hosts" entry for "g5" group, requires a dictionary"
            (
                "all:\n  children:\n    g5:\n      hosts: [x, y]\n",
                "`hosts` of group `g5` must be a mapping, not a list",
                4,
            ),
            // "g2 is not a known host nor group"
            (
                "all:\n  children:\n    g2: notamap\n",
                "child group `g2` of `all` is a string, not a mapping",
                3,
            ),
            // "Host pattern 1 must be a string."
            (
                "all:\n  hosts:\n    1:\n",
                "host pattern `1` must be a string, not a integer",
                3,
            ),
            // "Invalid data from file, expected dictionary and got: x"
            (
                "all:\n  hosts:\n    h1: x\n",
                "the variables of host `h1` must be a mapping, not a string",
                3,
            ),
            // "Invalid group name supplied, expected a string"
            (
                "1:\n  hosts:\n",
                "a group name must be a non-empty string, not `1` (integer)",
                1,
            ),
            // "YAML inventory has invalid structure, it should be a dictionary"
            ("- a\n- b\n", "a YAML inventory is a mapping of groups", 1),
            // "Plugin configuration YAML file, not YAML inventory"
            (
                "plugin: aws_ec2\n",
                "this is the configuration of an inventory plugin",
                1,
            ),
            // "can't add group to itself", "... creates a recursive dependency loop."
            (
                "a:\n  children:\n    a:\n",
                "group `a` cannot be a child of itself",
                3,
            ),
            (
                "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a:\n",
                "making `b` a child of `a` makes a loop",
                5,
            ),
            (
                "all:\n  hosts:\n    web[1:\n",
                "opens a range with `[` but does not close it",
                3,
            ),
            // "Adding group 'g' as child to 'all' creates a recursive dependency loop."
            (
                "g:\n  children:\n    all:\n",
                "`all` cannot be a child of `g`",
                3,
            ),
        ];
        for (text, message, line) in cases {
            let (got, got_line) = inventory_error(text);
            assert!(got.contains(message), "{text:?}: {got}");
            assert_eq!(got_line, *line, "{text:?}: {got}");
        }
    }

    #[test]
    fn a_skipped_child_links_to_a_group_or_host_of_its_name() {
        let s = inventory("g2:\n  hosts: {h: }\nall:\n  children:\n    g2: notamap\n    h: 5\n");
        assert_eq!(s.groups["all"].children, ["g2"]);
        assert!(s.groups["all"].hosts.iter().eq(["h"]));
    }

    #[test]
    fn vault_values_are_refused_naming_the_variable_and_line() {
        let text = "all:\n  vars:\n    plain: 1\n    db_pass: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      3336656564\n";
        let (message, line) = inventory_error(text);
        assert_eq!(
            message,
            "variable `db_pass` is vault-encrypted: vault-encrypted values are not read by fleetfix"
        );
        assert_eq!(line, 4);
        let (_, line) = inventory_error("all:\n  hosts:\n    h:\n      x: [1, !vault a]\n");
        assert_eq!(line, 4);
        let (message, _) = failure(read_vars(&source(
            "/hv",
            "$ANSIBLE_VAULT;1.1;AES256\n3336\n",
        )));
        assert!(
            message.starts_with("this file is vault-encrypted"),
            "{message}"
        );
        let (message, line) = failure(read_vars(&source(
            "/hv.json",
            "{\"k\":\n {\"__ansible_vault\": \"$ANSIBLE_VAULT;1.1\"}}",
        )));
        assert!(message.contains("`k` is vault-encrypted"), "{message}");
        assert_eq!(line, 2);
    }

    #[test]
    fn scalars_typed_as_pyyaml_types_them() {
        // Checked against python3 -c 'yaml.safe_load(...)' (PyYAML 6).
        let v = values(
            "a: ! \"12\"\nb: !!int 0o10\nc: !!int \"0x1_0\"\nd: !!float 1e3\ne: !!float \"inf\"\n\
             f: !!bool \"Yes\"\ng: !!null foo\nh: 2001-1-5 1:02:03Z\ni: 2001-01-05 01:02:03.1234567 +5\n\
             j: 9007199254740993\nk: 0b1_0\nl: -1:30\nm: 1.5e-3\nn: .5\no: 1e3\np: 0_7\nq: -0\nr: 190:20:30\n\
             s: 'single ''q'''\nt: \"d\\tq\"\nu: 2001-12-14 21:59:43\nv: 10:61\nw: 0.\n",
        );
        let expected = serde_json::json!({
            "a": 12, "b": 8, "c": 16, "d": 1000.0, "e": "inf", "f": true, "g": null,
            "h": "2001-01-05T01:02:03+00:00", "i": "2001-01-05T01:02:03.123456+05:00",
            "j": 9007199254740993u64, "k": 2, "l": -90, "m": 0.0015, "n": 0.5, "o": "1e3", "p": 7,
            "q": 0, "r": 685230, "s": "single 'q'", "t": "d\tq", "u": "2001-12-14T21:59:43",
            "v": "10:61", "w": 0.0,
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn unsafe_resolves_as_plain_in_ansible_2_19() {
        // ansible-inventory 2.19: u1 123, u2 true, u3 "{{ x }}" (marked
        // unsafe), u5 {"k": true}.
        let v = values(
            "u1: !unsafe 123\nu2: !unsafe \"yes\"\nu3: !unsafe '{{ x }}'\nu4: !unsafe [1, '{{a}}']\nu5: !unsafe\n  k: yes\n",
        );
        let expected = serde_json::json!({"u1": 123, "u2": true, "u3": "{{ x }}", "u4": [1, "{{a}}"], "u5": {"k": true}});
        assert_eq!(v, expected);
    }

    #[test]
    fn keys_that_are_not_strings_are_named_as_ansible_prints_them() {
        // Python's dict takes `true` as the key `1` (first key kept, last
        // value): ansible-inventory printed {"1": "boolkey", "1.5": ..., "null": ...}.
        let v = values(
            "1: intkey\ntrue: boolkey\n~: nullkey\n1.5: floatkey\ndup: first\nother: o\ndup: second\n2.0: f\n",
        );
        let expected = serde_json::json!({"1": "boolkey", "null": "nullkey", "1.5": "floatkey", "dup": "second", "other": "o", "2.0": "f"});
        assert_eq!(v, expected);
        let src = source("/v.yml", "dup: first\nother: o\ndup: second\n");
        let Data::Map(entries) = parse_yaml(&src).expect("yaml").data else {
            panic!("a map")
        };
        let keys: Vec<(String, u32)> = entries
            .iter()
            .map(|(k, _)| (k.key_text(), k.line))
            .collect();
        assert_eq!(keys, [("dup".to_string(), 3), ("other".to_string(), 2)]);
    }

    #[test]
    fn yaml_that_ansible_refuses_is_refused() {
        let cases: &[(&str, &str, usize)] = &[
            ("a: 1\n---\nb: 2\n", "a second YAML document", 2),
            ("x: =\n", "a plain `=` is a YAML 1.1 key type", 1),
            ("x: <<\n", "a plain `<<` is a YAML 1.1 key type", 1),
            ("x: !foo bar\n", "fleetfix does not read the tag `!foo`", 1),
            (
                "x: !!binary aGVsbG8=\n",
                "fleetfix does not read the tag `tag:yaml.org,2002:binary`",
                1,
            ),
            ("x: !!int abc\n", "`abc` is not an integer", 1),
            ("x: 0x_\n", "`0x_` is not an integer", 1),
            (
                "x: 2001-02-30\n",
                "`2001-02-30` is not a valid date or time",
                1,
            ),
            ("x: !vault [1]\n", "`!vault` takes a string value", 1),
            (
                "? [c]\n: 2\n",
                "a mapping key must be a scalar, not a list",
                1,
            ),
            (
                "a: &x [*x]\n",
                "this alias refers to the collection it is in",
                1,
            ),
            ("a: *nope\n", "unknown anchor", 1),
            ("a:\n  - b\n c: d\n", "YAML syntax", 3),
            (
                "x:\n  <<: 1\n",
                "`<<` merges a mapping or a list of mappings, not a integer",
                2,
            ),
        ];
        for (text, message, line) in cases {
            let (got, got_line) = failure(parse_yaml(&source("/v.yml", text)));
            assert!(got.contains(message), "{text:?}: {got}");
            assert_eq!(got_line, *line, "{text:?}: {got}");
        }
        let deep = format!("{}1\n", "- ".repeat(MAX_DEPTH + 1));
        let (message, _) = failure(parse_yaml(&source("/v.yml", &deep)));
        assert!(message.contains("nest more than"), "{message}");
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        assert!(
            failure(parse_yaml(&source("/v.yml", laughs)))
                .0
                .contains("aliases copy more than")
        );
    }

    #[test]
    fn positions_count_bytes_in_non_ascii_text() {
        let src = source("/v.yml", "é: ü\nkey: [1, !foo x]\n");
        let Error::Input(e) = parse_yaml(&src).expect_err("tag") else {
            panic!("input error")
        };
        let at = e.location.expect("location");
        assert_eq!((at.line, at.col), (2, 10));
    }

    #[test]
    fn group_and_host_vars_files_read_as_ansible_reads_them() {
        // An inventory with group_vars/web.yml, group_vars/all.json and
        // host_vars/h1.yml beside it, as ansible-inventory --list --export
        // printed it (a JSON file read as JSON: 1e3 is a number there,
        // NaN allowed, `__ansible_unsafe` a string).
        let mut s = inventory(
            "all:\n  children:\n    web:\n      hosts:\n        h1:\n        h2:\n          own: 1\n",
        );
        let web = "---\ndefaults: &d\n  mode: 0644\n  enabled: on\nweb_port: 8080\n<<: *d\nmode: 0600\nwhen: 2024-02-29\nlist: [a, 'b', 1e3, 1.0e+3]\n";
        let all = r#"{"from_json": 1e3, "nan": NaN, "unsafe": {"__ansible_unsafe": "{{ x }}"}, "dup": 1, "dup": 2, "yes": "yes"}"#;
        let h1 = "# host vars\nansible_host: 10.0.0.1\nansible_port: \"2222\"\ntags: !unsafe [a, '{{b}}']\n";
        for (group, path, text) in [
            ("web", "/inv/group_vars/web.yml", web),
            ("all", "/inv/group_vars/all.json", all),
        ] {
            for (k, var) in read_vars(&source(path, text)).expect("vars") {
                s.set_group_var(group, &k, var);
            }
        }
        let h1_vars = read_vars(&source("/inv/host_vars/h1.yml", h1)).expect("vars");
        assert_eq!(h1_vars[1].1.origin.to_string(), "/inv/host_vars/h1.yml:3");
        for (k, var) in h1_vars {
            s.set_host_var("h1", &k, var);
        }
        let printed = r#"{"_meta": {"hostvars": {"h1": {"ansible_host": "10.0.0.1", "ansible_port": "2222", "tags": [{"__ansible_unsafe": "a"}, {"__ansible_unsafe": "{{b}}"}]}, "h2": {"own": 1}}}, "all": {"children": ["ungrouped", "web"], "vars": {"dup": 2, "from_json": 1000.0, "nan": NaN, "unsafe": {"__ansible_unsafe": "{{ x }}"}, "yes": "yes"}}, "web": {"hosts": ["h1", "h2"], "vars": {"defaults": {"enabled": true, "mode": 420}, "enabled": true, "list": ["a", "b", "1e3", 1000.0], "mode": 384, "web_port": 8080, "when": "2024-02-29"}}}"#;
        assert_eq!(export(&s), ansible(printed));
        assert_eq!(s.groups["web"].vars["mode"].origin.line, Some(7));
        assert_eq!(s.groups["web"].vars["enabled"].origin.line, Some(4));
        // Falsy documents hold no variables; other non-mappings are refused.
        assert!(read_vars(&source("/v", "")).expect("empty").is_empty());
        assert!(
            read_vars(&source("/v", "[]"))
                .expect("empty list")
                .is_empty()
        );
        let (message, line) = failure(read_vars(&source("/v", "- a\n")));
        assert_eq!(
            (message.as_str(), line),
            (
                "a variables file is a mapping of names to values, not a list",
                1
            )
        );
    }
}
