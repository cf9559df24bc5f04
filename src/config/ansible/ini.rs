//! Ansible INI inventories, read the way ansible-core's `ini` inventory
//! plugin reads them (`plugins/inventory/ini.py`), so that a file means in
//! fleetfix what it means to `ansible-inventory`: `[group]`,
//! `[group:vars]` and `[group:children]` sections, hosts before any
//! section in `ungrouped`, host lines split like `shlex.split`, and every
//! value typed by Python's `ast.literal_eval` (host lines and `:vars`
//! sections alike, whatever Ansible's documentation says).
//!
//! Where JSON or Rust cannot hold what Python holds, the value is the text
//! Python would print: ints beyond 64 bits, `inf`, complex numbers. Known
//! differences: sets keep their written order (Python's is by hash),
//! `'\N{name}'` escapes leave the value as written, a dict or set with an
//! unhashable key is refused even when Python would first have found a
//! call, subscript, keyword or comprehension after it,
//! `ansible_group_priority` is kept as a group variable (Ansible keeps it
//! aside, `--export` prints it as one), and host patterns are
//! [`expand_host_pattern`]'s.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use super::{Origin, Sources, Value, Var, expand_host_pattern};
use crate::support::error::{Error, SourceFile};

/// Reads an Ansible INI inventory into `into`.
///
/// On an error `into` may already hold what the lines before it defined;
/// the caller is expected to give up on the inventory.
pub(crate) fn read(source: &SourceFile, into: &mut Sources) -> Result<(), Error> {
    let mut reader = Reader {
        source,
        file: Arc::from(source.path.as_path()),
        into,
        group: "ungrouped".to_string(),
        state: State::Hosts,
        pending: IndexMap::new(),
    };
    for line in lines(&source.text) {
        reader.line(&line)?;
    }
    reader.finish()
}

/// What the lines of the current section hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hosts,
    Vars,
    Children,
}

/// A group named before Ansible would accept it as defined: checked at the
/// end of the file, as Ansible does.
#[derive(Debug)]
enum Pending {
    /// `[g:vars]` for a group no `[g]`/`[g:children]` has defined (yet).
    Vars { line: Line },
    /// Children lines naming a group not defined yet, with the parents
    /// waiting for it (the first line is where the error points).
    Children { parents: Vec<(String, Line)> },
}

/// One line of the file, stripped as Python's `str.strip()` does.
#[derive(Debug, Clone)]
struct Line {
    /// Byte range of the stripped text in the file.
    span: Range<usize>,
    /// 1-based, counted in `\n` like error locations.
    number: u32,
}

struct Reader<'a> {
    source: &'a SourceFile,
    file: Arc<Path>,
    into: &'a mut Sources,
    group: String,
    state: State,
    pending: IndexMap<String, Pending>,
}

impl Reader<'_> {
    fn line(&mut self, line: &Line) -> Result<(), Error> {
        let text = &self.source.text[line.span.clone()];
        if text.is_empty() || text.starts_with(['#', ';']) {
            return Ok(());
        }
        if let Some(section) = section(text) {
            return self.header(line, text, section);
        }
        if text.starts_with('[') && text.ends_with(']') {
            return Err(self.error(
                line.span.clone(),
                format!("`{text}` is not a section header Ansible accepts"),
                "write [group], [group:vars] or [group:children], with no spaces; \
                 a group name cannot contain `:` or `]`",
            ));
        }
        match self.state {
            State::Hosts => self.hosts(line, text),
            State::Vars => self.var(line, text),
            State::Children => self.child(line, text),
        }
    }

    /// `[name]`, `[name:vars]`, `[name:children]`: a `:vars` section alone
    /// does not define its group, so it waits for a definition like a
    /// child named before its section.
    fn header(&mut self, line: &Line, text: &str, (name, tag): Section) -> Result<(), Error> {
        let at = line.span.start;
        let state = match tag.clone().map(|t| &text[t]) {
            None | Some("hosts") => State::Hosts,
            Some("vars") => State::Vars,
            Some("children") => State::Children,
            Some(other) => {
                let span = tag.map_or(line.span.clone(), |t| at + t.start..at + t.end);
                return Err(self.error(
                    span,
                    format!(
                        "section `[{}:{other}]` has the unknown type `{other}`",
                        &text[name]
                    ),
                    "a section is [group], [group:vars] or [group:children]",
                ));
            }
        };
        let name = text[name].to_string();
        if !self.into.groups.contains_key(&name)
            && state == State::Vars
            && !self.pending.contains_key(&name)
        {
            let pending = Pending::Vars { line: line.clone() };
            self.pending.insert(name.clone(), pending);
        }
        self.into.add_group(&name, &self.origin(line));
        if state != State::Vars {
            match self.pending.get(&name) {
                Some(Pending::Children { .. }) => self.adopt(&name)?,
                Some(Pending::Vars { .. }) => {
                    self.pending.shift_remove(&name);
                }
                None => {}
            }
        }
        self.group = name;
        self.state = state;
        Ok(())
    }

    /// A group waited for by children lines is now defined: it becomes the
    /// child of every parent that named it (Ansible's
    /// `_add_pending_children`).
    fn adopt(&mut self, group: &str) -> Result<(), Error> {
        let Some(Pending::Children { parents }) = self.pending.shift_remove(group) else {
            return Ok(());
        };
        for (parent, line) in parents {
            self.link(&parent, group, &line)?;
            if matches!(self.pending.get(&parent), Some(Pending::Children { .. })) {
                self.adopt(&parent)?;
            }
        }
        Ok(())
    }

    /// `pattern key=value ...`: every host of the pattern joins the group
    /// and gets the line's variables; a port becomes `ansible_port` only
    /// for a host seen for the first time (Ansible sets it in `Host()`).
    fn hosts(&mut self, line: &Line, text: &str) -> Result<(), Error> {
        let at = line.span.start;
        let words = shlex_split(text).map_err(|e| self.split_error(at, e))?;
        let Some((pattern, assignments)) = words.split_first() else {
            return Ok(());
        };
        let (hosts, port) = self.expand(pattern, at)?;
        let mut vars = Vec::with_capacity(assignments.len());
        for word in assignments {
            let span = at + word.span.start..at + word.span.end;
            let Some((key, raw)) = word.text.split_once('=') else {
                return Err(self.error(
                    span,
                    format!("`{}` after the host is not `key=value`", word.text),
                    "host lines are `HOST key=value key2=\"a value with spaces\"`; \
                     quote values that contain spaces",
                ));
            };
            // Point at the value as written (quotes may come before `=`).
            let eq = text[word.span.clone()].find('=').map_or(0, |i| i + 1);
            let value_span = span.start + eq..span.end;
            vars.push((key.to_string(), self.value(raw, value_span)?));
        }
        let origin = self.origin(line);
        for host in &hosts {
            let new = !self.into.hosts.contains_key(host);
            self.into.add_host(host, Some(&self.group), &origin);
            if let Some(port) = port.filter(|&p| new && p != 0) {
                let var = self.var_at(Value::from(port), line);
                self.into.set_host_var(host, "ansible_port", var);
            }
            // Ansible's `InventoryData.set_variable` looks the name up among
            // groups first: a host named like a group gives the group its
            // line's variables (only `ansible_port` stays with the host).
            let on_group = self.into.groups.contains_key(host);
            for (key, value) in &vars {
                let var = self.var_at(value.clone(), line);
                if on_group {
                    self.into.set_group_var(host, key, var);
                } else {
                    self.into.set_host_var(host, key, var);
                }
            }
        }
        Ok(())
    }

    /// The host names and port of a host pattern, with the checks Ansible's
    /// INI plugin adds to the shared pattern syntax.
    fn expand(&self, pattern: &Word, at: usize) -> Result<(Vec<String>, Option<u16>), Error> {
        let span = at + pattern.span.start..at + pattern.span.end;
        let text = &pattern.text;
        if text.trim_matches(py_isspace).ends_with(':') {
            return Err(self.error(
                span,
                format!("host pattern `{text}` ends in `:` but gives no port"),
                "write the port after the colon (`host:2222`), or remove the colon",
            ));
        }
        let (hosts, port) = expand_host_pattern(text).map_err(|why| {
            self.error(
                span.clone(),
                why,
                "a host is `name`, `name:port`, `[ipv6]:port`, or a range like \
                 `web[01:20].example.com`",
            )
        })?;
        for host in &hosts {
            if host.is_empty() {
                return Err(self.error(
                    span.clone(),
                    "this host name is empty",
                    "remove the empty quotes, or write a host name in them",
                ));
            }
            if host.trim_matches(py_isspace) == "---" {
                return Err(self.error(
                    span.clone(),
                    "`---` is not a host; it starts a YAML document",
                    "if this is a YAML inventory, read it as YAML; otherwise remove the line",
                ));
            }
        }
        Ok((hosts, port))
    }

    /// `key=value` in a `[group:vars]` section: everything after the first
    /// `=` is the value (comments included, as Ansible hands them to
    /// `literal_eval`, which drops them only after a literal).
    fn var(&mut self, line: &Line, text: &str) -> Result<(), Error> {
        let Some(eq) = text.find('=') else {
            return Err(self.error(
                line.span.clone(),
                format!("`{text}` in [{}:vars] is not `key=value`", self.group),
                "write one `name=value` per line in a :vars section",
            ));
        };
        let key = text[..eq].trim_matches(py_isspace);
        let raw = text[eq + 1..].trim_matches(py_isspace);
        let span = line.span.start + eq + 1..line.span.end;
        let mut value = self.value(raw, span.clone())?;
        if key == "ansible_group_priority" {
            value = priority(&value).ok_or_else(|| {
                self.error(
                    span,
                    format!("ansible_group_priority must be a whole number, not `{raw}`"),
                    "give a number such as 10; groups with a higher priority win ties",
                )
            })?;
        }
        let var = self.var_at(value, line);
        let group = self.group.clone();
        self.into.set_group_var(&group, key, var);
        Ok(())
    }

    /// A group name in a `[group:children]` section; one not defined yet
    /// waits for its section.
    fn child(&mut self, line: &Line, text: &str) -> Result<(), Error> {
        let Some(child) = group_name(text) else {
            return Err(self.error(
                line.span.clone(),
                format!("`{text}` in [{}:children] is not a group name", self.group),
                "list one group per line; a group name has no spaces, `:` or `]`",
            ));
        };
        let parent = self.group.clone();
        if self.into.groups.contains_key(child) {
            return self.link(&parent, child, line);
        }
        match self
            .pending
            .entry(child.to_string())
            .or_insert(Pending::Children {
                parents: Vec::new(),
            }) {
            Pending::Children { parents } => parents.push((parent, line.clone())),
            // Only groups already in the inventory wait as `:vars`.
            Pending::Vars { .. } => {}
        }
        Ok(())
    }

    /// Makes `child` a child of `parent`, refusing loops as Ansible's
    /// `Group.add_child_group` does.
    fn link(&mut self, parent: &str, child: &str, line: &Line) -> Result<(), Error> {
        if parent == child {
            return Err(self.error(
                line.span.clone(),
                format!("group `{child}` cannot be a child of itself"),
                format!("remove `{child}` from [{parent}:children]"),
            ));
        }
        let known = self.into.groups.get(parent);
        if known.is_some_and(|g| g.children.iter().any(|c| c == child)) {
            return Ok(());
        }
        if self.reaches(child, parent) {
            return Err(self.error(
                line.span.clone(),
                format!(
                    "making `{child}` a child of `{parent}` makes a loop: \
                     `{parent}` is already inside `{child}`"
                ),
                "remove one of the :children lines that make the loop",
            ));
        }
        self.into.add_child(parent, child, &self.origin(line));
        Ok(())
    }

    /// Whether `to` is `from` or one of its descendants.
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut stack = vec![from];
        let mut seen = std::collections::HashSet::new();
        while let Some(g) = stack.pop() {
            if g == to {
                return true;
            }
            if seen.insert(g)
                && let Some(group) = self.into.groups.get(g)
            {
                stack.extend(group.children.iter().map(String::as_str));
            }
        }
        false
    }

    /// The first group still waited for at the end is an error, as in
    /// Ansible.
    fn finish(self) -> Result<(), Error> {
        let Some((name, pending)) = self.pending.first() else {
            return Ok(());
        };
        Err(match pending {
            Pending::Vars { line } => self.error(
                line.span.clone(),
                format!("[{name}:vars] sets variables of group `{name}`, which is not defined"),
                format!(
                    "add a [{name}] section (it may be empty) or name `{name}` in a \
                     :children section with a section of its own"
                ),
            ),
            Pending::Children { parents } => {
                let Some((parent, line)) = parents.first() else {
                    return Ok(());
                };
                self.error(
                    line.span.clone(),
                    format!("[{parent}:children] names group `{name}`, which is not defined"),
                    format!("add a [{name}] section (it may be empty), or fix the name"),
                )
            }
        })
    }

    /// A value typed as Ansible types it: a Python literal, else the text.
    fn value(&self, raw: &str, span: Range<usize>) -> Result<Value, Error> {
        match literal::eval(raw) {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Ok(Value::String(raw.to_string())),
            Err(refusal) => Err(self.error(
                span,
                refusal.message(),
                "to keep the value as text, put it in Python quotes: \
                 key=\"'...'\" on a host line, key='...' in a :vars section",
            )),
        }
    }

    fn split_error(&self, at: usize, e: SplitError) -> Error {
        match e {
            SplitError::Unclosed(i) => self.error(
                at + i..at + i + 1,
                "this quote is never closed",
                "close the quote on the same line, or escape it with a backslash",
            ),
            SplitError::TrailingEscape(i) => self.error(
                at + i..at + i + 1,
                "the line ends with a backslash that escapes nothing",
                "remove the backslash, or double it to mean a backslash",
            ),
        }
    }

    fn origin(&self, line: &Line) -> Origin {
        Origin::at(&self.file, line.number)
    }

    fn var_at(&self, value: Value, line: &Line) -> Var {
        Var {
            value,
            origin: self.origin(line),
        }
    }

    fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Error {
        Error::at(self.source.locate(span), message, hint)
    }
}

/// The lines of `text` as Python's `str.splitlines()` cuts them (which is
/// how Ansible reads the file: `\r`, `\v`, `\f` and a few Unicode
/// separators end lines too), each stripped like `str.strip()`.
fn lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    // `\n`s before `counted`, kept up to date as lines go by.
    let (mut newlines, mut counted) = (0, 0);
    let mut push = |start: usize, end: usize| {
        let raw = &text[start..end];
        let trimmed = raw.trim_start_matches(py_isspace);
        let from = start + raw.len() - trimmed.len();
        let to = from + trimmed.trim_end_matches(py_isspace).len();
        newlines += text[counted..start].matches('\n').count();
        counted = start;
        let number = newlines + 1;
        out.push(Line {
            span: from..to,
            number: u32::try_from(number).unwrap_or(u32::MAX),
        });
    };
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let breaks = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if !breaks {
            continue;
        }
        push(start, i);
        start = i + c.len_utf8();
        if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
            chars.next();
            start += 1;
        }
    }
    if start < text.len() {
        push(start, text.len());
    }
    out
}

/// Python's `str.isspace()` (and `\s` of its `re`): Unicode white space
/// plus the information separators U+001C..U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `\w`: letters, digits and `_`.
fn py_isword(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The group name and the optional `:type` of a section header, as byte
/// ranges in the line.
type Section = (Range<usize>, Option<Range<usize>>);

/// A section header as Ansible's regex reads it:
/// `^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$`.
fn section(line: &str) -> Option<Section> {
    let rest = line.strip_prefix('[')?;
    let len = rest
        .find(|c| c == ':' || c == ']' || py_isspace(c))
        .unwrap_or(rest.len());
    if len == 0 {
        return None;
    }
    let name = 1..1 + len;
    let mut i = name.end;
    let mut tag = None;
    if let Some(after) = line[i..].strip_prefix(':') {
        let len = after.find(|c| !py_isword(c)).unwrap_or(after.len());
        if len > 0 {
            tag = Some(i + 1..i + 1 + len);
            i += 1 + len;
        }
    }
    let after = line[i..].strip_prefix(']')?.trim_start_matches(py_isspace);
    (after.is_empty() || after.starts_with('#')).then_some((name, tag))
}

/// A line of a `:children` section as Ansible's regex reads it:
/// `^([^:\]\s]+)\s*(?:#.*)?$` (so `#` inside a name is part of it).
fn group_name(line: &str) -> Option<&str> {
    let len = line
        .find(|c| c == ':' || c == ']' || py_isspace(c))
        .unwrap_or(line.len());
    let after = line[len..].trim_start_matches(py_isspace);
    (len > 0 && (after.is_empty() || after.starts_with('#'))).then_some(&line[..len])
}

/// `int(value)` as Ansible applies it to `ansible_group_priority`.
fn priority(value: &Value) -> Option<Value> {
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(value.clone()),
        Value::Number(n) => {
            let f = n.as_f64()?.trunc();
            (f.abs() < 9.2e18).then(|| Value::from(f as i64))
        }
        Value::Bool(b) => Some(Value::from(i64::from(*b))),
        Value::String(s) => python_int(s),
        _ => None,
    }
}

/// Python's `int(str)`: surrounding white space, a sign, decimal digits
/// with single `_` between them.
fn python_int(s: &str) -> Option<Value> {
    let s = s.trim_matches(py_isspace);
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let valid = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !valid {
        return None;
    }
    let digits = literal::to_decimal(&digits.replace('_', ""), 10);
    let sign = if neg && digits != "0" { "-" } else { "" };
    Some(literal::int_value(&format!("{sign}{digits}")))
}

/// A word of a host line and the bytes of the line it was written in.
#[derive(Debug, Clone, PartialEq)]
struct Word {
    text: String,
    span: Range<usize>,
}

/// Why Python's `shlex.split` gives up on a line (byte offsets in it).
#[derive(Debug, Clone, Copy, PartialEq)]
enum SplitError {
    /// `No closing quotation`, at the opening quote.
    Unclosed(usize),
    /// `No escaped character`, at the backslash.
    TrailingEscape(usize),
}

/// Where `shlex` is inside a word.
#[derive(Clone, Copy, PartialEq)]
enum In {
    Word,
    Quote(char, usize),
    /// After a backslash (at the offset) outside quotes or in `"…"`.
    Escape(Option<(char, usize)>, usize),
}

/// `shlex.split(line, comments=True)` (POSIX mode) as Ansible splits host
/// lines: white space separates words, `'…'` is literal, `"…"` honours
/// `\"` and `\\`, a backslash outside quotes escapes any character, and
/// `#` outside quotes ends the line even inside a word.
fn shlex_split(line: &str) -> Result<Vec<Word>, SplitError> {
    let mut words = Vec::new();
    let mut chars = line.char_indices();
    loop {
        // Between words.
        let (start, first) = loop {
            match chars.next() {
                None => return Ok(words),
                Some((_, ' ' | '\t' | '\r' | '\n')) => {}
                Some((_, '#')) => return Ok(words),
                Some(c) => break c,
            }
        };
        let mut text = String::new();
        let mut quoted = false;
        let mut state = match first {
            '\\' => In::Escape(None, start),
            '\'' | '"' => {
                quoted = true;
                In::Quote(first, start)
            }
            c => {
                text.push(c);
                In::Word
            }
        };
        let mut end = start + first.len_utf8();
        let mut comment = false;
        loop {
            let next = chars.next();
            match (state, next) {
                (In::Word, None) => break,
                (In::Word, Some((_, ' ' | '\t' | '\r' | '\n'))) => break,
                (In::Word, Some((_, '#'))) => {
                    comment = true;
                    break;
                }
                (In::Word, Some((i, q @ ('\'' | '"')))) => {
                    quoted = true;
                    state = In::Quote(q, i);
                }
                (In::Word, Some((i, '\\'))) => state = In::Escape(None, i),
                (In::Word, Some((_, c))) => text.push(c),
                (In::Quote(_, at), None) => return Err(SplitError::Unclosed(at)),
                (In::Quote(q, _), Some((_, c))) if c == q => state = In::Word,
                (In::Quote('"', at), Some((i, '\\'))) => state = In::Escape(Some(('"', at)), i),
                (In::Quote(..), Some((_, c))) => text.push(c),
                (In::Escape(_, at), None) => return Err(SplitError::TrailingEscape(at)),
                (In::Escape(inside, _), Some((_, c))) => {
                    if inside.is_some() && c != '\\' && c != '"' {
                        text.push('\\');
                    }
                    text.push(c);
                    state = inside.map_or(In::Word, |(q, at)| In::Quote(q, at));
                }
            }
            if let Some((i, c)) = next {
                end = i + c.len_utf8();
            }
        }
        if !text.is_empty() || quoted {
            words.push(Word {
                text,
                span: start..end,
            });
        }
        if comment {
            return Ok(words);
        }
    }
}

/// Python's `ast.literal_eval` as Ansible's `_parse_value` applies it:
/// numbers, strings, `True`/`False`/`None`, `...`, tuples, lists, sets and
/// dicts of those, `+`/`-` before a number and `a+bj` complex numbers;
/// anything else (including what Python's parser rejects) is not a
/// literal and stays text. The result is converted to JSON as Ansible
/// does: tuples and sets become lists, complex numbers and `...` their
/// text, bytes text.
mod literal {
    use serde_json::{Map, Number, Value};

    /// A literal that Ansible would refuse (or could not represent).
    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Refusal {
        /// A list, dict or set as a dict key or set element: Python
        /// raises `TypeError: unhashable type`.
        Unhashable(&'static str),
        /// A dict key that is not a string, number, bool or None.
        Key(&'static str),
    }

    impl Refusal {
        pub(super) fn message(&self) -> String {
            match self {
                Refusal::Unhashable(what) => format!(
                    "this value is a Python literal with a {what} as a dict key or set \
                     element, which Python cannot hash (Ansible fails on it too)"
                ),
                Refusal::Key(what) => format!(
                    "this value is a Python dict with a {what} as a key; \
                     keys must be strings, numbers, True/False or None"
                ),
            }
        }
    }

    /// The value of `text` if it is a Python literal, `None` if it is not.
    pub(super) fn eval(text: &str) -> Result<Option<Value>, Refusal> {
        // Python refuses source with NUL bytes (a ValueError: the text stays).
        if text.contains('\0') {
            return Ok(None);
        }
        let Some(tokens) = tokenize(text.trim_start_matches([' ', '\t'])) else {
            return Ok(None);
        };
        let mut parser = Parser { tokens, at: 0 };
        let Some(node) = parser.top() else {
            return Ok(None);
        };
        match convert(&node) {
            Ok(py) => to_json(py).map(Some),
            Err(Fail::Malformed) => Ok(None),
            Err(Fail::Refused(r)) => Err(r),
        }
    }

    /// A Python value as `literal_eval` returns it.
    #[derive(Debug, Clone, PartialEq)]
    enum Py {
        None,
        Bool(bool),
        /// Canonical decimal digits, `-` for a negative number.
        Int(String),
        Float(f64),
        Complex(f64, f64),
        Str(String),
        Bytes(Vec<u8>),
        Ellipsis,
        Tuple(Vec<Py>),
        List(Vec<Py>),
        Set(Vec<Py>),
        Dict(Vec<(Py, Py)>),
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Token {
        Const(Py),
        /// An f-string: valid Python, never a literal.
        FString,
        Name(String),
        Punct(char),
        /// An operator no literal uses (`*`, `**`, `~`, `<=`, ...): valid
        /// Python to parse past, never a literal.
        Operator(&'static str),
    }

    /// Python's operators other than `+` and `-`, longest first.
    const OPERATORS: [&str; 18] = [
        "**", "//", "<<", ">>", "<=", ">=", "==", "!=", "*", "/", "%", "@", "&", "|", "^", "~",
        "<", ">",
    ];

    /// Python's tokenizer, for the tokens literals use; `None` where Python
    /// would report a syntax error or the text uses anything else (either
    /// way the text is not a literal).
    fn tokenize(src: &str) -> Option<Vec<Token>> {
        let mut tokens = Vec::new();
        let mut depth = 0usize;
        let mut rest = src;
        loop {
            rest = rest.trim_start_matches([' ', '\t', '\x0c']);
            let Some(c) = rest.chars().next() else {
                return Some(tokens);
            };
            let (token, len) = match c {
                '#' => return Some(tokens),
                '0'..='9' => number(rest)?,
                '.' if rest[1..].starts_with(|c: char| c.is_ascii_digit()) => number(rest)?,
                '.' if rest.starts_with("...") => (Token::Const(Py::Ellipsis), 3),
                '\'' | '"' => string(rest, "")?,
                '(' | '[' | '{' => {
                    // Python's tokenizer stops at 200 open brackets.
                    depth += 1;
                    if depth > 200 {
                        return None;
                    }
                    (Token::Punct(c), 1)
                }
                ')' | ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    (Token::Punct(c), 1)
                }
                ',' | ':' | '+' | '-' => (Token::Punct(c), 1),
                c if c.is_alphabetic() || c == '_' => {
                    let len = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    let word = &rest[..len];
                    if rest[len..].starts_with(['\'', '"']) {
                        let (token, n) = string(&rest[len..], word)?;
                        (token, len + n)
                    } else {
                        (Token::Name(word.to_string()), len)
                    }
                }
                _ => {
                    let op = OPERATORS.iter().find(|op| rest.starts_with(**op))?;
                    (Token::Operator(op), op.len())
                }
            };
            tokens.push(token);
            rest = &rest[len..];
        }
    }

    /// A number token: integers in any base, floats, imaginary numbers,
    /// with `_` between digits; a letter, digit or `.` right after one is a
    /// syntax error (or an attribute: not a literal either).
    fn number(src: &str) -> Option<(Token, usize)> {
        let b = src.as_bytes();
        let radix = match (b[0], b.get(1).map(u8::to_ascii_lowercase)) {
            (b'0', Some(b'x')) => 16,
            (b'0', Some(b'o')) => 8,
            (b'0', Some(b'b')) => 2,
            _ => 10,
        };
        let (py, len) = if radix != 10 {
            // `0x_1f` is fine: an underscore may follow the prefix.
            let len = 2 + digit_run(&src[2..], radix, true);
            if len == 2 {
                return None;
            }
            let digits = src[2..len].replace('_', "");
            (Py::Int(to_decimal(&digits, radix)), len)
        } else {
            decimal(src)?
        };
        let next = src[len..].chars().next();
        if next.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            return None;
        }
        Some((Token::Const(py), len))
    }

    /// A decimal integer, float or imaginary literal at the start of `src`.
    fn decimal(src: &str) -> Option<(Py, usize)> {
        let int_len = digit_run(src, 10, false);
        let mut len = int_len;
        let mut float = false;
        if src[len..].starts_with('.') {
            float = true;
            len += 1;
            let frac = digit_run(&src[len..], 10, false);
            if int_len == 0 && frac == 0 {
                return None;
            }
            len += frac;
        }
        let b = src.as_bytes();
        if matches!(b.get(len), Some(b'e' | b'E')) {
            let mut at = len + 1;
            if matches!(b.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let exp = digit_run(&src[at..], 10, false);
            if exp == 0 {
                return None;
            }
            float = true;
            len = at + exp;
        }
        let text = src[..len].replace('_', "");
        if matches!(b.get(len), Some(b'j' | b'J')) {
            let imag: f64 = text.parse().ok()?;
            return Some((Py::Complex(0.0, imag), len + 1));
        }
        if float {
            return Some((Py::Float(text.parse().ok()?), len));
        }
        // `007` is a syntax error (`00` is not); Python 3.11 refuses to
        // convert more than 4300 decimal digits (a ValueError: not a literal).
        if text.len() > 1 && text.starts_with('0') && text.bytes().any(|d| d != b'0') {
            return None;
        }
        if text.len() > 4300 {
            return None;
        }
        Some((Py::Int(to_decimal(&text, 10)), len))
    }

    /// Length of a run of digits of `radix` with single underscores between
    /// them (`lead`: an underscore may also come first, as after `0x`).
    fn digit_run(src: &str, radix: u32, lead: bool) -> usize {
        let b = src.as_bytes();
        let is_digit = |i: usize| b.get(i).is_some_and(|&c| (c as char).is_digit(radix));
        let mut i = 0;
        let mut any = false;
        loop {
            if is_digit(i) {
                i += 1;
                any = true;
            } else if b.get(i) == Some(&b'_') && (any || lead) && is_digit(i + 1) {
                i += 2;
                any = true;
            } else {
                return i;
            }
        }
    }

    /// The decimal digits of a number written in `radix` (any size).
    pub(super) fn to_decimal(digits: &str, radix: u32) -> String {
        const BASE: u64 = 1_000_000_000;
        // Little-endian limbs of nine decimal digits.
        let mut limbs: Vec<u64> = vec![0];
        for d in digits.chars().filter_map(|c| c.to_digit(radix)) {
            let mut carry = u64::from(d);
            for limb in &mut limbs {
                let v = *limb * u64::from(radix) + carry;
                *limb = v % BASE;
                carry = v / BASE;
            }
            if carry > 0 {
                limbs.push(carry);
            }
        }
        let mut out = String::new();
        for (i, limb) in limbs.iter().rev().enumerate() {
            if i == 0 {
                out.push_str(&limb.to_string());
            } else {
                out.push_str(&format!("{limb:09}"));
            }
        }
        out
    }

    /// A string token with its prefix (`r`, `b`, `u`, `f` and their
    /// combinations, any case); escapes are decoded unless raw.
    fn string(src: &str, prefix: &str) -> Option<(Token, usize)> {
        let p = prefix.to_ascii_lowercase();
        if !matches!(
            p.as_str(),
            "" | "r" | "u" | "b" | "br" | "rb" | "f" | "fr" | "rf"
        ) {
            return None;
        }
        let (raw, bytes, fstring) = (p.contains('r'), p.contains('b'), p.contains('f'));
        let quote = &src[..1];
        let triple = quote.repeat(3);
        let delim = if src.starts_with(&triple) {
            triple.as_str()
        } else {
            quote
        };
        let body_start = delim.len();
        // Find the closing delimiter; a backslash always takes the next
        // character along (in raw strings too).
        let mut i = body_start;
        let close = loop {
            let rest = &src[i..];
            if rest.starts_with(delim) {
                break i;
            }
            let mut chars = rest.chars();
            match chars.next()? {
                '\\' => i += 1 + chars.next()?.len_utf8(),
                c => i += c.len_utf8(),
            }
        };
        let body = &src[body_start..close];
        let len = close + delim.len();
        if fstring {
            return Some((Token::FString, len));
        }
        if bytes {
            if !body.is_ascii() {
                return None;
            }
            let value = if raw {
                body.as_bytes().to_vec()
            } else {
                unescape_bytes(body)?
            };
            return Some((Token::Const(Py::Bytes(value)), len));
        }
        let value = if raw {
            body.to_string()
        } else {
            unescape_str(body)?
        };
        Some((Token::Const(Py::Str(value)), len))
    }

    /// Escapes shared by `str` and `bytes` literals: the character (or
    /// byte value) and how many characters after the backslash it used.
    fn common_escape(rest: &str) -> Option<Option<(u32, usize)>> {
        let c = rest.chars().next()?;
        let simple = |v: u32| Some(Some((v, 1)));
        match c {
            '\\' => simple(0x5c),
            '\'' => simple(0x27),
            '"' => simple(0x22),
            'a' => simple(0x07),
            'b' => simple(0x08),
            'f' => simple(0x0c),
            'n' => simple(0x0a),
            'r' => simple(0x0d),
            't' => simple(0x09),
            'v' => simple(0x0b),
            '0'..='7' => {
                let n = rest
                    .bytes()
                    .take(3)
                    .take_while(|b| (b'0'..=b'7').contains(b))
                    .count();
                Some(Some((u32::from_str_radix(&rest[..n], 8).ok()?, n)))
            }
            'x' => {
                let hex = rest
                    .get(1..3)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                // A short `\x` is a syntax error.
                Some(Some((u32::from_str_radix(hex?, 16).ok()?, 3)))
            }
            _ => Some(None),
        }
    }

    fn unescape_str(body: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = body;
        while let Some(i) = rest.find('\\') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (value, used) = match common_escape(after)? {
                Some(found) => found,
                None => match after.chars().next()? {
                    'u' => (hex_escape(after, 4)?, 5),
                    'U' => (hex_escape(after, 8)?, 9),
                    // `\N{name}` needs Unicode's name table: not decoded
                    // here, so the value stays text as written.
                    'N' => return None,
                    c => {
                        out.push('\\');
                        (u32::from(c), c.len_utf8())
                    }
                },
            };
            // A lone surrogate (`\ud800`) cannot be in a Rust string.
            out.push(char::from_u32(value).unwrap_or('\u{fffd}'));
            rest = &after[used..];
        }
        out.push_str(rest);
        Some(out)
    }

    fn hex_escape(after: &str, n: usize) -> Option<u32> {
        let hex = after.get(1..1 + n)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let v = u32::from_str_radix(hex, 16).ok()?;
        (v <= 0x10ffff).then_some(v)
    }

    fn unescape_bytes(body: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.find('\\') {
            out.extend_from_slice(&rest.as_bytes()[..i]);
            let after = &rest[i + 1..];
            match common_escape(after)? {
                // `b'\777'` keeps the low byte, as Python does.
                Some((value, used)) => {
                    out.push((value & 0xff) as u8);
                    rest = &after[used..];
                }
                None => {
                    out.push(b'\\');
                    rest = after;
                }
            }
        }
        out.extend_from_slice(rest.as_bytes());
        Some(out)
    }

    /// The expression tree, as far as `literal_eval` looks at it.
    #[derive(Debug, Clone)]
    enum Node {
        Const(Py),
        Tuple(Vec<Node>),
        List(Vec<Node>),
        Set(Vec<Node>),
        /// `set()`.
        EmptySet,
        Dict(Vec<(Node, Node)>),
        Unary(char, Box<Node>),
        Binary(char, Box<Node>, Box<Node>),
        /// Valid Python that `literal_eval` refuses (a name, an f-string).
        Other,
    }

    struct Parser {
        tokens: Vec<Token>,
        at: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Token> {
            self.tokens.get(self.at)
        }

        fn eat(&mut self, c: char) -> bool {
            let found = self.peek() == Some(&Token::Punct(c));
            self.at += usize::from(found);
            found
        }

        /// What `eval` mode accepts: expressions separated by commas (a
        /// tuple when there is a comma), then nothing.
        fn top(&mut self) -> Option<Node> {
            let node = self.expressions()?;
            (self.at == self.tokens.len()).then_some(node)
        }

        fn expressions(&mut self) -> Option<Node> {
            let first = self.expression()?;
            if !self.eat(',') {
                return Some(first);
            }
            let mut items = vec![first];
            while self.starts_expression() {
                items.push(self.expression()?);
                if !self.eat(',') {
                    break;
                }
            }
            Some(Node::Tuple(items))
        }

        fn starts_expression(&self) -> bool {
            match self.peek() {
                Some(Token::Punct(c)) => matches!(c, '(' | '[' | '{' | '+' | '-'),
                Some(_) => true,
                None => false,
            }
        }

        /// Sums and differences, left to right.
        /// Operands joined by binary operators. Whatever their precedence,
        /// such a chain is valid Python; with anything but `+` and `-` in it
        /// it is not a literal, and `literal_eval` looks no deeper (which
        /// matters for which error comes first).
        fn expression(&mut self) -> Option<Node> {
            let mut left = self.unary()?;
            let mut literal = true;
            loop {
                match self.peek() {
                    Some(&Token::Punct(op @ ('+' | '-'))) => {
                        self.at += 1;
                        let right = self.unary()?;
                        left = Node::Binary(op, Box::new(left), Box::new(right));
                    }
                    Some(Token::Operator(op)) if *op != "~" => {
                        self.at += 1;
                        self.unary()?;
                        literal = false;
                    }
                    _ => break,
                }
            }
            Some(if literal { left } else { Node::Other })
        }

        /// Signs before an operand (`~` among them too). A literal has at
        /// most one `+`/`-`, so a longer run is parsed past, not nested.
        fn unary(&mut self) -> Option<Node> {
            let mut signs = Vec::new();
            let mut literal = true;
            loop {
                match self.peek() {
                    Some(&Token::Punct(op @ ('+' | '-'))) => signs.push(op),
                    Some(Token::Operator("~")) => literal = false,
                    _ => break,
                }
                self.at += 1;
            }
            let mut node = self.primary()?;
            if !literal || signs.len() > 1 {
                return Some(Node::Other);
            }
            if let Some(op) = signs.pop() {
                node = Node::Unary(op, Box::new(node));
            }
            Some(node)
        }

        /// An atom; a call, subscript or attribute after it is not a
        /// literal, except `set()`.
        fn primary(&mut self) -> Option<Node> {
            let is_set = self.peek() == Some(&Token::Name("set".into()));
            let atom = self.atom()?;
            if is_set && self.eat('(') {
                return self
                    .eat(')')
                    .then_some(Node::EmptySet)
                    .filter(|_| !self.trailer());
            }
            (!self.trailer()).then_some(atom)
        }

        fn trailer(&self) -> bool {
            matches!(self.peek(), Some(Token::Punct('(' | '[')))
        }

        fn atom(&mut self) -> Option<Node> {
            let token = self.peek()?.clone();
            self.at += 1;
            match token {
                Token::Const(Py::Str(_) | Py::Bytes(_)) | Token::FString => self.strings(token),
                Token::Const(py) => Some(Node::Const(py)),
                Token::Name(name) => Some(match name.as_str() {
                    "True" => Node::Const(Py::Bool(true)),
                    "False" => Node::Const(Py::Bool(false)),
                    "None" => Node::Const(Py::None),
                    _ => Node::Other,
                }),
                Token::Punct('(') => {
                    if self.eat(')') {
                        return Some(Node::Tuple(Vec::new()));
                    }
                    let node = self.expressions()?;
                    self.eat(')').then_some(node)
                }
                Token::Punct('[') => Some(Node::List(self.items(']')?)),
                Token::Punct('{') => self.braces(),
                Token::Punct(_) | Token::Operator(_) => None,
            }
        }

        /// Adjacent strings concatenate; bytes and text do not mix.
        fn strings(&mut self, first: Token) -> Option<Node> {
            let mut parts = vec![first];
            while let Some(t @ (Token::Const(Py::Str(_) | Py::Bytes(_)) | Token::FString)) =
                self.peek()
            {
                parts.push(t.clone());
                self.at += 1;
            }
            let is_bytes = |t: &Token| matches!(t, Token::Const(Py::Bytes(_)));
            if parts.iter().any(is_bytes) && !parts.iter().all(is_bytes) {
                return None;
            }
            if parts.contains(&Token::FString) {
                return Some(Node::Other);
            }
            let mut text = String::new();
            let mut bytes = Vec::new();
            for part in &parts {
                match part {
                    Token::Const(Py::Str(s)) => text.push_str(s),
                    Token::Const(Py::Bytes(b)) => bytes.extend_from_slice(b),
                    _ => {}
                }
            }
            Some(Node::Const(if is_bytes(&parts[0]) {
                Py::Bytes(bytes)
            } else {
                Py::Str(text)
            }))
        }

        /// Comma-separated expressions up to `close` (a trailing comma is
        /// fine).
        fn items(&mut self, close: char) -> Option<Vec<Node>> {
            let mut items = Vec::new();
            loop {
                if self.eat(close) {
                    return Some(items);
                }
                items.push(self.expression()?);
                if !self.eat(',') {
                    return self.eat(close).then_some(items);
                }
            }
        }

        /// `{}` and `{k: v, ...}` are dicts, `{a, ...}` a set.
        fn braces(&mut self) -> Option<Node> {
            if self.eat('}') {
                return Some(Node::Dict(Vec::new()));
            }
            let first = self.expression()?;
            if !self.eat(':') {
                let mut items = vec![first];
                if self.eat(',') {
                    items.extend(self.items('}')?);
                    return Some(Node::Set(items));
                }
                return self.eat('}').then_some(Node::Set(items));
            }
            let mut pairs = vec![(first, self.expression()?)];
            loop {
                if !self.eat(',') {
                    return self.eat('}').then_some(Node::Dict(pairs));
                }
                if self.eat('}') {
                    return Some(Node::Dict(pairs));
                }
                let key = self.expression()?;
                if !self.eat(':') {
                    return None;
                }
                pairs.push((key, self.expression()?));
            }
        }
    }

    enum Fail {
        /// `ValueError: malformed node or string`: the text is kept.
        Malformed,
        Refused(Refusal),
    }

    /// `literal_eval`'s `_convert`, in its order of evaluation (which
    /// decides whether an unhashable key or a name is found first).
    fn convert(node: &Node) -> Result<Py, Fail> {
        let all = |nodes: &[Node]| nodes.iter().map(convert).collect::<Result<Vec<_>, _>>();
        match node {
            Node::Const(py) => Ok(py.clone()),
            Node::Tuple(items) => Ok(Py::Tuple(all(items)?)),
            Node::List(items) => Ok(Py::List(all(items)?)),
            Node::EmptySet => Ok(Py::Set(Vec::new())),
            Node::Set(items) => {
                let mut set: Vec<Py> = Vec::new();
                for item in items {
                    let value = convert(item)?;
                    hashable(&value)?;
                    if !set.iter().any(|v| same(v, &value)) {
                        set.push(value);
                    }
                }
                Ok(Py::Set(set))
            }
            Node::Dict(pairs) => {
                let mut dict: Vec<(Py, Py)> = Vec::new();
                for (k, v) in pairs {
                    let (key, value) = (convert(k)?, convert(v)?);
                    hashable(&key)?;
                    match dict.iter_mut().find(|(k, _)| same(k, &key)) {
                        // Python keeps the first key and the last value.
                        Some(entry) => entry.1 = value,
                        None => dict.push((key, value)),
                    }
                }
                Ok(Py::Dict(dict))
            }
            Node::Binary(op, left, right) => {
                let (l, r) = (signed_number(left)?, number_of(right)?);
                match (real(&l), r) {
                    (Some(a), Py::Complex(re, im)) => Ok(if *op == '+' {
                        Py::Complex(a + re, 0.0 + im)
                    } else {
                        Py::Complex(a - re, 0.0 - im)
                    }),
                    _ => Err(Fail::Malformed),
                }
            }
            Node::Unary(..) | Node::Other => signed_number(node),
        }
    }

    /// `_convert_signed_num`: a number with at most one sign.
    fn signed_number(node: &Node) -> Result<Py, Fail> {
        let Node::Unary(op, inner) = node else {
            return number_of(node);
        };
        let n = number_of(inner)?;
        if *op == '+' {
            return Ok(n);
        }
        Ok(match n {
            Py::Int(d) if d == "0" => Py::Int(d),
            Py::Int(d) => Py::Int(d.strip_prefix('-').map_or(format!("-{d}"), str::to_string)),
            Py::Float(f) => Py::Float(-f),
            Py::Complex(re, im) => Py::Complex(-re, -im),
            other => other,
        })
    }

    /// `_convert_num`: an int, float or complex constant (not a bool).
    fn number_of(node: &Node) -> Result<Py, Fail> {
        match node {
            Node::Const(py @ (Py::Int(_) | Py::Float(_) | Py::Complex(..))) => Ok(py.clone()),
            _ => Err(Fail::Malformed),
        }
    }

    fn real(py: &Py) -> Option<f64> {
        match py {
            Py::Int(d) => d.parse().ok(),
            Py::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Python's `hash()` refuses lists, dicts and sets (also inside tuples).
    fn hashable(py: &Py) -> Result<(), Fail> {
        let refuse = |what| Err(Fail::Refused(Refusal::Unhashable(what)));
        match py {
            Py::List(_) => refuse("list"),
            Py::Dict(_) => refuse("dict"),
            Py::Set(_) => refuse("set"),
            Py::Tuple(items) => items.iter().try_for_each(hashable),
            _ => Ok(()),
        }
    }

    /// Python's `==` for hashable values: `1`, `1.0` and `True` are one key.
    fn same(a: &Py, b: &Py) -> bool {
        match (numeric(a), numeric(b)) {
            (Some(x), Some(y)) => return x == y,
            (Some(_), None) | (None, Some(_)) => return false,
            (None, None) => {}
        }
        match (a, b) {
            (Py::Tuple(x), Py::Tuple(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            _ => a == b,
        }
    }

    /// A number as (exact integer digits or float, imaginary part) for
    /// comparison; integral floats compare by their exact digits.
    fn numeric(py: &Py) -> Option<(Result<String, f64>, f64)> {
        let of_float = |f: f64| {
            if f.is_finite() && f.fract() == 0.0 {
                let d = format!("{f:.0}");
                Ok(if d == "-0" { "0".to_string() } else { d })
            } else {
                Err(f)
            }
        };
        match py {
            Py::Bool(b) => Some((Ok(u8::from(*b).to_string()), 0.0)),
            Py::Int(d) => Some((Ok(d.clone()), 0.0)),
            Py::Float(f) => Some((of_float(*f), 0.0)),
            Py::Complex(re, im) => Some((of_float(*re), *im)),
            _ => None,
        }
    }

    fn to_json(py: Py) -> Result<Value, Refusal> {
        Ok(match py {
            Py::None => Value::Null,
            Py::Bool(b) => Value::Bool(b),
            Py::Int(d) => int_value(&d),
            Py::Float(f) => match Number::from_f64(f) {
                Some(n) => Value::Number(n),
                // Infinity has no JSON form; this is how it prints.
                None => Value::String(float_repr(f, true)),
            },
            Py::Complex(re, im) => Value::String(complex_repr(re, im)),
            Py::Str(s) => Value::String(s),
            Py::Bytes(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
            Py::Ellipsis => Value::String("...".to_string()),
            Py::Tuple(items) | Py::List(items) | Py::Set(items) => {
                Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
            }
            Py::Dict(pairs) => {
                let mut map = Map::new();
                for (k, v) in pairs {
                    map.insert(json_key(k)?, to_json(v)?);
                }
                Value::Object(map)
            }
        })
    }

    /// An int as a JSON number when it fits one, else its digits.
    pub(super) fn int_value(digits: &str) -> Value {
        if let Ok(i) = digits.parse::<i64>() {
            Value::from(i)
        } else if let Ok(u) = digits.parse::<u64>() {
            Value::from(u)
        } else {
            Value::String(digits.to_string())
        }
    }

    /// A dict key as Python's `json` writes it.
    fn json_key(py: Py) -> Result<String, Refusal> {
        Ok(match py {
            Py::Str(s) => s,
            Py::Int(d) => d,
            Py::Bool(b) => b.to_string(),
            Py::None => "null".to_string(),
            Py::Float(f) if f.is_infinite() => {
                if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
            }
            Py::Float(f) => float_repr(f, true),
            Py::Tuple(_) => return Err(Refusal::Key("tuple")),
            Py::Bytes(_) => return Err(Refusal::Key("bytes string")),
            Py::Complex(..) => return Err(Refusal::Key("complex number")),
            Py::Ellipsis => return Err(Refusal::Key("`...`")),
            Py::List(_) | Py::Set(_) | Py::Dict(_) => return Err(Refusal::Key("container")),
        })
    }

    /// Python's `repr(float)` (`dot0`) or a complex number's part (no
    /// `.0`): shortest round-trip digits, exponent form below 1e-4 and
    /// from 1e16 on.
    fn float_repr(f: f64, dot0: bool) -> String {
        if f.is_nan() {
            return "nan".to_string();
        }
        let sign = if f.is_sign_negative() { "-" } else { "" };
        if f.is_infinite() {
            return format!("{sign}inf");
        }
        let sci = format!("{:e}", f.abs());
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let digits = mantissa.replace('.', "");
        let n = digits.len() as i32;
        let point = exp + 1;
        let body = if point <= -4 || point > 16 {
            let (head, tail) = digits.split_at(1);
            let dot = if tail.is_empty() { "" } else { "." };
            let esign = if exp < 0 { '-' } else { '+' };
            format!("{head}{dot}{tail}e{esign}{:02}", exp.abs())
        } else if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point >= n {
            let zeros = "0".repeat((point - n) as usize);
            format!("{digits}{zeros}{}", if dot0 { ".0" } else { "" })
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    }

    /// Python's `str(complex)`, which Ansible stores instead of the number.
    fn complex_repr(re: f64, im: f64) -> String {
        if re == 0.0 && re.is_sign_positive() {
            return format!("{}j", float_repr(im, false));
        }
        let plus = if im.is_sign_negative() { "" } else { "+" };
        format!(
            "({}{plus}{}j)",
            float_repr(re, false),
            float_repr(im, false)
        )
    }
}

/// Expected values below were printed by ansible-core 2.19's
/// `ansible-inventory -i FILE --list --export` (and `--list`) for the same
/// text, unless a comment says otherwise. Ansible's `reconcile_inventory`
/// (which drops hosts from `ungrouped` once they are in another group and
/// puts top-level groups under `all`) runs after the parser and is not the
/// reader's business: these tests look at the model as the parser leaves it.
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<Sources, Error> {
        let mut sources = Sources::default();
        read(&source(text), &mut sources).map(|()| sources)
    }

    fn source(text: &str) -> SourceFile {
        SourceFile {
            path: "inv.ini".into(),
            text: text.into(),
        }
    }

    fn ok(text: &str) -> Sources {
        parse(text).unwrap_or_else(|e| panic!("{}", e.one_line()))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("no error for {text:?}"),
            Err(e) => e.one_line(),
        }
    }

    fn vars(vars: &IndexMap<String, Var>) -> Value {
        vars.iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    fn host(s: &Sources, name: &str) -> Value {
        vars(
            &s.hosts
                .get(name)
                .unwrap_or_else(|| panic!("no host {name}"))
                .vars,
        )
    }

    fn group(s: &Sources, name: &str) -> Value {
        let g = s
            .groups
            .get(name)
            .unwrap_or_else(|| panic!("no group {name}"));
        json!({"hosts": g.hosts, "children": g.children, "vars": vars(&g.vars)})
    }

    fn line_of(var: Option<&Var>) -> Option<u32> {
        var.and_then(|v| v.origin.line)
    }

    /// The value a host line gives `a` (`raw` is one shell word).
    fn host_value(raw: &str) -> Value {
        host(&ok(&format!("h a={raw}\n")), "h")["a"].clone()
    }

    /// The value a `:vars` line gives `a`.
    fn vars_value(raw: &str) -> Value {
        group(&ok(&format!("[all:vars]\na={raw}\n")), "all")["vars"]["a"].clone()
    }

    /// Example 1 of the plugin's own documentation.
    const DOC_EXAMPLE: &str = "\
[web]
host1
host2 ansible_port=222 # defined inline, interpreted as an integer

[web:vars]
http_port=8080 # all members of 'web' will inherit these
myvar=23 # defined in a :vars section, interpreted as a string

[web:children] # child groups will automatically add their hosts to parent group
apache
nginx

[apache]
tomcat1
tomcat2 myvar=34 # host specific vars override group vars
tomcat3 mysecret=\"'03#pa33w0rd'\" # proper quoting to prevent value changes

[nginx]
jenkins1

[nginx:vars]
has_java = True # vars in child groups override same in parent

[all:vars]
has_java = False # 'all' is 'top' parent
";

    #[test]
    fn documentation_example_reads_as_ansible_inventory_prints_it() {
        let s = ok(DOC_EXAMPLE);
        assert_eq!(host(&s, "host1"), json!({}));
        assert_eq!(host(&s, "host2"), json!({"ansible_port": 222}));
        assert_eq!(host(&s, "tomcat2"), json!({"myvar": 34}));
        assert_eq!(host(&s, "tomcat3"), json!({"mysecret": "03#pa33w0rd"}));
        // The documentation says `myvar=23` in :vars is a string; it is not.
        assert_eq!(
            group(&s, "web"),
            json!({"hosts": ["host1", "host2"], "children": ["apache", "nginx"],
                   "vars": {"http_port": 8080, "myvar": 23}})
        );
        assert_eq!(
            group(&s, "apache")["hosts"],
            json!(["tomcat1", "tomcat2", "tomcat3"])
        );
        assert_eq!(
            group(&s, "nginx"),
            json!({"hosts": ["jenkins1"], "children": [], "vars": {"has_java": true}})
        );
        assert_eq!(group(&s, "all")["vars"], json!({"has_java": false}));
        let groups: Vec<&str> = s.groups.keys().map(String::as_str).collect();
        assert_eq!(groups, ["all", "ungrouped", "web", "apache", "nginx"]);
    }

    #[test]
    fn origins_are_the_lines_that_wrote_them() {
        let s = ok(DOC_EXAMPLE);
        let web = &s.groups["web"];
        assert_eq!(web.origin.as_ref().and_then(|o| o.line), Some(1));
        assert_eq!(line_of(web.vars.get("myvar")), Some(7));
        assert_eq!(s.hosts["tomcat3"].origin.line, Some(16));
        assert_eq!(line_of(s.hosts["host2"].vars.get("ansible_port")), Some(3));
        assert_eq!(line_of(s.groups["all"].vars.get("has_java")), Some(25));
        assert_eq!(s.hosts["host1"].origin.to_string(), "inv.ini:2");
        // `apache` is first named by a children line, but Ansible only
        // defines it at its own section.
        assert_eq!(
            s.groups["apache"].origin.as_ref().and_then(|o| o.line),
            Some(13)
        );
    }

    const TRICKY: &str = r#"top1 ansible_host=10.0.0.1
top2:2200 note="two words" count='3' raw=\#hash

[db:children]
primary
replicas

[replicas]
db-[a:c].example.com:5432 role=replica tags="['r', 'ro']"

[primary]
db-a.example.com role=primary weight=1.5 opts="{'wal': True, 'n': None}"
top1

[app]
app[01:03] ansible_user=deploy
app02 ansible_user=root extra='x y' 

[app:vars]
timeout = 30
label = hello world # not a comment
quoted = "kept quoted"

[all:vars]
env=prod
"#;

    #[test]
    fn ranges_ports_quotes_and_late_children_read_as_ansible_inventory_prints_them() {
        let s = ok(TRICKY);
        assert_eq!(host(&s, "top1"), json!({"ansible_host": "10.0.0.1"}));
        assert_eq!(
            host(&s, "top2"),
            json!({"ansible_port": 2200, "note": "two words", "count": 3, "raw": "#hash"})
        );
        // The range's port applies to db-a too: it is new on that line.
        assert_eq!(
            host(&s, "db-a.example.com"),
            json!({"ansible_port": 5432, "role": "primary", "tags": ["r", "ro"],
                   "weight": 1.5, "opts": {"wal": true, "n": null}})
        );
        assert_eq!(
            host(&s, "db-c.example.com"),
            json!({"ansible_port": 5432, "role": "replica", "tags": ["r", "ro"]})
        );
        assert_eq!(host(&s, "app01"), json!({"ansible_user": "deploy"}));
        assert_eq!(
            host(&s, "app02"),
            json!({"ansible_user": "root", "extra": "x y"})
        );
        // Children in the order their sections define them.
        assert_eq!(group(&s, "db")["children"], json!(["replicas", "primary"]));
        assert_eq!(
            group(&s, "replicas")["hosts"],
            json!(["db-a.example.com", "db-b.example.com", "db-c.example.com"])
        );
        assert_eq!(
            group(&s, "primary")["hosts"],
            json!(["db-a.example.com", "top1"])
        );
        assert_eq!(
            group(&s, "app")["hosts"],
            json!(["app01", "app02", "app03"])
        );
        assert_eq!(
            group(&s, "app")["vars"],
            json!({"timeout": 30, "label": "hello world # not a comment", "quoted": "kept quoted"})
        );
        assert_eq!(group(&s, "all")["vars"], json!({"env": "prod"}));
        // As the parser leaves it; `ansible-inventory` shows only top2
        // after reconciling.
        assert_eq!(group(&s, "ungrouped")["hosts"], json!(["top1", "top2"]));
    }

    #[test]
    fn host_line_values_are_typed_like_literal_eval() {
        let cases = [
            ("1", json!(1)),
            ("-5", json!(-5)),
            ("'- 5'", json!(-5)),
            ("+5", json!(5)),
            ("--5", json!("--5")),
            ("-True", json!("-True")),
            ("0x1F", json!(31)),
            ("0o17", json!(15)),
            ("0b101", json!(5)),
            ("1_000", json!(1000)),
            ("1__0", json!("1__0")),
            ("007", json!("007")),
            ("00", json!(0)),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            (".5", json!(0.5)),
            ("5.", json!(5.0)),
            ("-0.0", json!(-0.0)),
            ("1.5e-7", json!(1.5e-7)),
            ("True", json!(true)),
            ("False", json!(false)),
            ("TRUE", json!("TRUE")),
            ("true", json!("true")),
            ("None", json!(null)),
            ("null", json!("null")),
            ("...", json!("...")),
            ("Ellipsis", json!("Ellipsis")),
            ("'3'", json!(3)),
            (r#""'3'""#, json!("3")),
            (r#""'it''s'""#, json!("its")),
            (r#""'a' 'b'""#, json!("ab")),
            (r#""b'xy'""#, json!("xy")),
            (r#""u'x'""#, json!("x")),
            (r#""r'\n'""#, json!("\\n")),
            (r#""'\n'""#, json!("\n")),
            (r#""'\x41\u00e9\101'""#, json!("AéA")),
            (r#""'\d'""#, json!("\\d")),
            (r#""f'x'""#, json!("f'x'")),
            (r#""[1, 2,]""#, json!([1, 2])),
            (r#""(1,)""#, json!([1])),
            (r#""()""#, json!([])),
            (r#""{}""#, json!({})),
            ("set()", json!([])),
            (r#""{'a': 1, 2: [3]}""#, json!({"a": 1, "2": [3]})),
            (
                r#""{'a': {'b': [1, (2, 3)]}}""#,
                json!({"a": {"b": [1, [2, 3]]}}),
            ),
            (
                r#""{True: 1, None: 2, 1.5: 3}""#,
                json!({"true": 1, "null": 2, "1.5": 3}),
            ),
            (r#""{1: 'a', 1.0: 'b', True: 'c'}""#, json!({"1": "c"})),
            (r#""{1, 1.0, True, 2}""#, json!([1, 2])),
            (
                r#""{2.5e20: 1, 1e16: 2, 0.0001: 3, 1e-5: 4}""#,
                json!({"2.5e+20": 1, "1e+16": 2, "0.0001": 3, "1e-05": 4}),
            ),
            (r#""1, 2""#, json!([1, 2])),
            ("1j", json!("1j")),
            (r#""2+3j""#, json!("(2+3j)")),
            (r#""-1.5-0j""#, json!("(-1.5+0j)")),
            ("1e16j", json!("1e+16j")),
            ("-0j", json!("(-0-0j)")),
            (
                "123456789012345678901234567890",
                json!("123456789012345678901234567890"),
            ),
            ("0xFFFFFFFFFFFFFFFFFF", json!("4722366482869645213695")),
            ("18446744073709551615", json!(18446744073709551615u64)),
            // Printed as `Infinity`, which JSON has no word for.
            ("1e999", json!("inf")),
            (r#""[""#, json!("[")),
            (r#""1 # x""#, json!(1)),
            (r#""'''a'b'''""#, json!("a'b")),
            (r#""1 2""#, json!("1 2")),
            (r#""1 if 1 else 2""#, json!("1 if 1 else 2")),
            ("x", json!("x")),
            (r#""[x]""#, json!("[x]")),
            (r#""'unterminated""#, json!("'unterminated")),
            ("x=y", json!("x=y")),
            ("''", json!("")),
            (r#""~1""#, json!("~1")),
            (r#""1 < 2 < 3""#, json!("1 < 2 < 3")),
            (r#""{[1]: 2} * 3""#, json!("{[1]: 2} * 3")),
            (r#""[1 * 2, {[1]: 2}]""#, json!("[1 * 2, {[1]: 2}]")),
        ];
        for (raw, want) in cases {
            assert_eq!(host_value(raw), want, "h a={raw}");
        }
    }

    #[test]
    fn odd_literals_stay_text_without_running_deep() {
        // Python refuses NUL bytes in source, and more than 200 open brackets.
        assert_eq!(literal::eval("'a\0'"), Ok(None));
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(matches!(literal::eval(&deep(200)), Ok(Some(_))));
        assert_eq!(literal::eval(&deep(201)), Ok(None));
        assert_eq!(
            literal::eval(&format!("{}1", "-".repeat(100_000))),
            Ok(None)
        );
        assert_eq!(literal::eval("- -1"), Ok(None));
        // `\N{...}` needs Unicode's names: kept as written (Ansible: "•").
        assert_eq!(literal::eval("'\\N{BULLET}'"), Ok(None));
    }

    #[test]
    fn vars_sections_type_values_too_and_keep_the_rest_of_the_line() {
        let cases = [
            ("8080 # comment", json!(8080)),
            ("hello # comment", json!("hello # comment")),
            ("'single' # c", json!("single")),
            ("\"a b\"", json!("a b")),
            ("'a' ; no", json!("'a' ; no")),
            ("1;2", json!("1;2")),
            ("key=val", json!("key=val")),
            ("=1", json!("=1")),
            ("", json!("")),
            ("[1, 'a', None]", json!([1, "a", null])),
            ("True", json!(true)),
        ];
        for (raw, want) in cases {
            assert_eq!(vars_value(raw), want, "a={raw}");
        }
        let s = ok("[g]\n[g:vars]\n sp = spaced value  \nf=\ttab\n");
        assert_eq!(
            group(&s, "g")["vars"],
            json!({"sp": "spaced value", "f": "tab"})
        );
    }

    #[test]
    fn host_lines_split_like_shlex_with_comments() {
        let words = |line: &str| -> Vec<String> {
            let words = shlex_split(line).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            words.into_iter().map(|w| w.text).collect()
        };
        // From Python's `shlex.split(line, comments=True)`.
        assert_eq!(words("h a=1#c b=2"), ["h", "a=1"]);
        assert_eq!(words(r#"h a="x y"z"#), ["h", "a=x yz"]);
        assert_eq!(words("h a='it''s' "), ["h", "a=its"]);
        assert_eq!(words(r#"h c="a\"b" d='a\b' "#), ["h", "c=a\"b", "d=a\\b"]);
        assert_eq!(
            words(r#"h e=a\ b f="a\$b" g="a\\b""#),
            ["h", "e=a b", "f=a\\$b", "g=a\\b"]
        );
        assert_eq!(words(r#"h i=x=y'' j="""#), ["h", "i=x=y", "j="]);
        assert_eq!(words("a#b"), ["a"]);
        assert_eq!(words(r##"a "#" b"##), ["a", "#", "b"]);
        assert_eq!(words(r#"h a='b"c'"d'e""#), ["h", "a=b\"cd'e"]);
        assert_eq!(words(r"h x=\'q\' "), ["h", "x='q'"]);
        assert_eq!(words("h\ta\r b"), ["h", "a", "b"]);
        assert_eq!(words(r"h a=\#b"), ["h", "a=#b"]);
        assert_eq!(words(r#"h a="\'" "#), ["h", "a=\\'"]);
        assert_eq!(shlex_split(r#"h a="x"#), Err(SplitError::Unclosed(4)));
        assert_eq!(shlex_split(r"h a=\"), Err(SplitError::TrailingEscape(4)));
        let words = shlex_split(r#"h  a="x y" b"#).unwrap_or_default();
        let spans: Vec<_> = words.into_iter().map(|w| w.span).collect();
        assert_eq!(spans, [0..1, 3..10, 11..12]);
    }

    #[test]
    fn ports_go_to_hosts_seen_for_the_first_time() {
        let s = ok("h:22 ansible_port=23\n");
        assert_eq!(host(&s, "h"), json!({"ansible_port": 23}));
        let s = ok("h ansible_port=23\n[g]\nh:24\n");
        assert_eq!(host(&s, "h"), json!({"ansible_port": 23}));
        assert_eq!(group(&s, "g")["hosts"], json!(["h"]));
        // `if port:` in Ansible's Host(): port 0 sets nothing.
        assert_eq!(host(&ok("h:0\n"), "h"), json!({}));
        let s = ok("[::1]:22\nfe80::1:22\n");
        assert_eq!(host(&s, "::1"), json!({"ansible_port": 22}));
        assert_eq!(host(&s, "fe80::1:22"), json!({}));
    }

    #[test]
    fn later_lines_override_earlier_ones_host_by_host() {
        let s = ok("[g]\nh a=1\nh a=2 b=3\n[k]\nh:2200 a=4\n");
        assert_eq!(host(&s, "h"), json!({"a": 4, "b": 3}));
        assert_eq!(line_of(s.hosts["h"].vars.get("a")), Some(5));
        assert_eq!(line_of(s.hosts["h"].vars.get("b")), Some(3));
        assert_eq!(s.hosts["h"].origin.line, Some(2));
        assert_eq!(group(&s, "g")["hosts"], json!(["h"]));
        assert_eq!(group(&s, "k")["hosts"], json!(["h"]));
        let s = ok("[g]\nh\n[g:vars]\nx=1\nx=2\n[g:vars]\nx=3\n");
        assert_eq!(group(&s, "g")["vars"], json!({"x": 3}));
    }

    #[test]
    fn a_host_named_like_a_group_gives_the_group_its_variables() {
        // `ansible-inventory --export`: `"g": {"hosts": ["g"], "vars": {"x": 1}}`,
        // `"h": {"vars": {"z": 3}}`, hostvars `{"h": {"ansible_port": 22}}`.
        let s = ok("[g]\ng x=1\n[h]\n[ungrouped]\nh:22 z=3\nk y=2\n[k]\nk w=4\n");
        assert_eq!(
            group(&s, "g"),
            json!({"hosts": ["g"], "children": [], "vars": {"x": 1}})
        );
        assert_eq!(host(&s, "g"), json!({}));
        assert_eq!(group(&s, "h")["vars"], json!({"z": 3}));
        assert_eq!(host(&s, "h"), json!({"ansible_port": 22}));
        // Only once the group exists.
        assert_eq!(host(&s, "k"), json!({"y": 2}));
        assert_eq!(group(&s, "k")["vars"], json!({"w": 4}));
    }

    #[test]
    fn hosts_may_sit_in_all_ungrouped_and_several_groups() {
        let s = ok("[all]\nh\n[ungrouped]\nu\n[g]\nh\n[g2:hosts]\nh\n");
        assert_eq!(group(&s, "all")["hosts"], json!(["h"]));
        assert_eq!(group(&s, "ungrouped")["hosts"], json!(["u"]));
        assert_eq!(group(&s, "g")["hosts"], json!(["h"]));
        assert_eq!(group(&s, "g2")["hosts"], json!(["h"]));
    }

    #[test]
    fn children_and_vars_may_come_before_the_group_is_defined() {
        let s = ok("[p:children]\nc\n[c:vars]\nx=1\n[c]\nh\n");
        assert_eq!(group(&s, "p")["children"], json!(["c"]));
        assert_eq!(
            group(&s, "c"),
            json!({"hosts": ["h"], "children": [], "vars": {"x": 1}})
        );
        let s = ok("[g:vars]\nx=1\n[g]\nh\n");
        assert_eq!(group(&s, "g")["vars"], json!({"x": 1}));
        // Group names are taken as written (Ansible only warns).
        let s = ok("[p:children]\nweb-x # c\nweb#c\n[web-x]\nh\n[web#c]\n[p]\n");
        assert_eq!(group(&s, "p")["children"], json!(["web-x", "web#c"]));
    }

    #[test]
    fn a_group_of_an_earlier_source_counts_as_defined() {
        let mut s = Sources::default();
        let first = read(&source("[g]\nh\n"), &mut s);
        let second = read(&source("[g:vars]\nx=1\n[p:children]\ng\n"), &mut s);
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(group(&s, "g")["vars"], json!({"x": 1}));
        assert_eq!(group(&s, "p")["children"], json!(["g"]));
    }

    #[test]
    fn group_priority_is_a_whole_number() {
        let s = ok("[g]\nh\n[g:vars]\nansible_group_priority=\"7\"\nx=1\n");
        assert_eq!(
            group(&s, "g")["vars"],
            json!({"ansible_group_priority": 7, "x": 1})
        );
        let s = ok("[g]\n[g:vars]\nansible_group_priority=2.7\n");
        assert_eq!(group(&s, "g")["vars"]["ansible_group_priority"], json!(2));
        // On a host it is an ordinary variable.
        let s = ok("h ansible_group_priority=x\n");
        assert_eq!(host(&s, "h"), json!({"ansible_group_priority": "x"}));
    }

    #[test]
    fn lines_end_where_python_splitlines_ends_them() {
        let s = ok("a\r\nb\x0cc x=1\r\n[g]\r\nd\x0bz\n");
        assert_eq!(group(&s, "ungrouped")["hosts"], json!(["a", "b", "c"]));
        assert_eq!(host(&s, "c"), json!({"x": 1}));
        assert_eq!(group(&s, "g")["hosts"], json!(["d", "z"]));
        assert_eq!(s.hosts["z"].origin.line, Some(4));
    }

    #[test]
    fn names_are_unicode_and_comments_are_skipped() {
        let s = ok("# c\n; c\n\n  \n[g:hosts]  # c\nh  #c\n[Grüße]\nhöst x=ü\n");
        assert_eq!(group(&s, "g")["hosts"], json!(["h"]));
        assert_eq!(group(&s, "Grüße")["hosts"], json!(["höst"]));
        assert_eq!(host(&s, "höst"), json!({"x": "ü"}));
    }

    #[test]
    fn errors_point_at_the_line_and_column_ansible_fails_on() {
        let cases = [
            (
                "[g:vars]\nx=1\n",
                "inv.ini:1:1: [g:vars] sets variables of group `g`",
            ),
            ("[g:vars]\nx=1\n[p:children]\ng\n", "inv.ini:1:1: [g:vars]"),
            (
                "[p:children]\nc\n[c:vars]\nx=1\n",
                "inv.ini:2:1: [p:children] names group `c`",
            ),
            (
                "[p:children]\nc\n[q:children]\nc\nd\n",
                "inv.ini:2:1: [p:children] names group `c`",
            ),
            (
                "h\n[g:foo]\nh\n",
                "inv.ini:2:4: section `[g:foo]` has the unknown type `foo`",
            ),
            ("[g x]\n", "inv.ini:1:1: `[g x]` is not a section header"),
            ("[g:]\n", "inv.ini:1:1: `[g:]` is not a section header"),
            ("[::1]\n", "inv.ini:1:1: `[::1]` is not a section header"),
            (
                "[g]\n[g:vars]\nnovalue\n",
                "inv.ini:3:1: `novalue` in [g:vars] is not `key=value`",
            ),
            (
                "[g:children]\na b\n",
                "inv.ini:2:1: `a b` in [g:children] is not a group name",
            ),
            (
                "h x\n",
                "inv.ini:1:3: `x` after the host is not `key=value`",
            ),
            ("h x=1 ;c\n", "inv.ini:1:7: `;c` after the host"),
            (
                "\nh x=\"unterminated\n",
                "inv.ini:2:5: this quote is never closed",
            ),
            ("h x=\\\n", "inv.ini:1:5: the line ends with a backslash"),
            ("---\n", "inv.ini:1:1: `---` is not a host"),
            (
                "host: a=1\n",
                "inv.ini:1:1: host pattern `host:` ends in `:`",
            ),
            ("'' a=1\n", "inv.ini:1:1: this host name is empty"),
            (
                "n[1:5:0]\n",
                "inv.ini:1:1: `[1:5:0]` in `n[1:5:0]` is not a range",
            ),
            (
                "[g:children]\ng\n",
                "inv.ini:2:1: group `g` cannot be a child of itself",
            ),
            (
                "[a:children]\nb\n[b:children]\na\n",
                "inv.ini:4:1: making `a` a child of `b`",
            ),
            (
                "h a=\"{[1]: 2}\"\n",
                "inv.ini:1:5: this value is a Python literal with a list",
            ),
            // Python meets the dict before the operators.
            (
                "h a='[{[1]: 2}, 1 - ~2]'\n",
                "inv.ini:1:5: this value is a Python literal",
            ),
            (
                "[g]\n[g:vars]\nansible_group_priority=abc\n",
                "inv.ini:3:24: ansible_group_priority",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn errors_carry_a_hint() {
        let Err(Error::Input(e)) = parse("[g]\n[g:vars]\nx\n") else {
            panic!("expected an input error");
        };
        assert!(e.hint.is_some_and(|h| h.contains("name=value")));
    }
}
