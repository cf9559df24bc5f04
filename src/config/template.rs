//! `${{ }}` templates and `when` expressions (SPEC section 5), on minijinja.
//!
//! Shell templates (`run`, `local`, `unless`) shell-quote every inserted
//! value through minijinja's auto-escape hook, so a variable can never inject
//! commands; `| raw` marks a value as meant verbatim. Text templates (URLs,
//! headers, expectations) insert plain text.

use std::fmt;
use std::mem::{Discriminant, discriminant};
use std::ops::Range;
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Object, ObjectRepr, Value, ValueKind};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::config::playbook::Text;
use crate::config::vars::Vars;
use crate::support::error::{Error, Location, SourceFile};
use crate::support::quote::shell_quote;

const SHELL_PREFIX: &str = "sh:";

/// How a template's inserted values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Shell-quoted (run, local, unless).
    Shell,
    /// Plain text (everything else).
    Text,
}

/// A compiled template: a handle into the [`Templates`] that compiled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateId(usize);

/// Compiled templates of one playbook, rendered many times (once per node).
pub(crate) struct Templates {
    env: Environment<'static>,
    /// Indexed by [`TemplateId`].
    entries: Vec<Entry>,
}

/// One compiled template.
struct Entry {
    /// Its name in the environment (the auto-escape hook reads the mode
    /// from it).
    name: String,
    /// The output of a template with no `${{ }}` (or block, or comment):
    /// the same on every node, so rendered once.
    fixed: Option<String>,
    /// The top-level variables it reads: all its output can depend on.
    reads: Vec<String>,
}

/// What a template sees of one variable: absent, or its value with its
/// kind (so `1` and `1.0`, equal as values, stay apart). Equal reads render
/// equal output.
pub(crate) type Read = Option<(Discriminant<ValueKind>, bool, Value)>;

/// What templates reading `names` see of `vars`.
pub(crate) fn reads_of<'n>(names: impl IntoIterator<Item = &'n String>, vars: &Vars) -> Vec<Read> {
    names
        .into_iter()
        .map(|n| {
            vars.get(n)
                .map(|v| (discriminant(&v.kind()), v.is_integer(), v.clone()))
        })
        .collect()
}

/// The variables a template is rendered with, built on first use: a node
/// whose templates are all fixed text never needs them.
pub(crate) struct Context<'a> {
    make: Box<dyn Fn() -> Value + 'a>,
    value: std::cell::OnceCell<Value>,
}

impl<'a> Context<'a> {
    pub(crate) fn lazy(make: impl Fn() -> Value + 'a) -> Self {
        Context {
            make: Box::new(make),
            value: std::cell::OnceCell::new(),
        }
    }

    pub(crate) fn value(&self) -> &Value {
        self.value.get_or_init(|| (self.make)())
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub(crate) fn new() -> Self {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .variable_delimiters("${{", "}}")
            .block_delimiters("${%", "%}")
            // Chosen to collide with nothing in shell (`${#var}` is shell).
            .comment_delimiters("$%#", "#%$")
            .build();
        match syntax {
            Ok(syntax) => env.set_syntax(syntax),
            Err(e) => unreachable!("fixed delimiters are valid: {e}"),
        }
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|name| {
            if name.starts_with(SHELL_PREFIX) {
                AutoEscape::Custom("shell")
            } else {
                AutoEscape::None
            }
        });
        // Only `| raw` skips quoting: minijinja's own "safe" strings (from
        // `tojson`, `safe`, `escape`) are HTML-safe, not shell-safe.
        env.set_formatter(|out, state, value| {
            let text = match value.downcast_object_ref::<Raw>() {
                Some(raw) => raw.0.clone(),
                None if state.auto_escape() == AutoEscape::Custom("shell") => {
                    shell_quote(&value_text(value))
                }
                None => value_text(value),
            };
            out.write_str(&text)?;
            Ok(())
        });
        env.add_filter("raw", |v: Value| verbatim(value_text(&v)));
        Templates {
            env,
            entries: Vec::new(),
        }
    }

    /// Compiles a template; the handle renders it.
    pub(crate) fn add(&mut self, mode: Mode, source: &str) -> Result<TemplateId, minijinja::Error> {
        let id = TemplateId(self.entries.len());
        let name = match mode {
            Mode::Shell => format!("{SHELL_PREFIX}{}", id.0),
            Mode::Text => id.0.to_string(),
        };
        let is_fixed = !["${{", "${%", "$%#"].iter().any(|d| source.contains(d));
        self.env
            .add_template_owned(name.clone(), source.to_string())?;
        let template = self.env.get_template(&name)?;
        let (fixed, reads) = if is_fixed {
            (Some(template.render(Value::UNDEFINED)?), Vec::new())
        } else {
            let reads = template.undeclared_variables(false).into_iter().collect();
            (None, reads)
        };
        self.entries.push(Entry { name, fixed, reads });
        Ok(id)
    }

    /// The variables a template reads (none for fixed text).
    pub(crate) fn reads(&self, id: TemplateId) -> &[String] {
        &self.entry(id).reads
    }

    fn entry(&self, id: TemplateId) -> &Entry {
        &self.entries[id.0]
    }

    /// A `when` expression compiled. The template delimiters have no place
    /// in one, and minijinja's lexer panics on some of them there (`}} ${{`
    /// empties its state stack), so they are refused first.
    fn expression<'s>(
        &'s self,
        expr: &'s str,
    ) -> Result<minijinja::Expression<'s, 's>, minijinja::Error> {
        const DELIMITERS: [&str; 6] = ["${{", "}}", "${%", "%}", "$%#", "#%$"];
        if let Some(d) = DELIMITERS.iter().find(|d| expr.contains(**d)) {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::SyntaxError,
                format!("`{d}` has no place in an expression; write it without `${{{{ }}}}`"),
            ));
        }
        self.env.compile_expression(expr)
    }

    /// The variables a `when` expression reads.
    pub(crate) fn expression_reads(&self, expr: &str) -> Result<Vec<String>, minijinja::Error> {
        let compiled = self.expression(expr)?;
        Ok(compiled.undeclared_variables(false).into_iter().collect())
    }

    /// Renders a template added to these templates.
    pub(crate) fn render(
        &self,
        id: TemplateId,
        ctx: &Context<'_>,
    ) -> Result<String, minijinja::Error> {
        let entry = self.entry(id);
        if let Some(text) = &entry.fixed {
            return Ok(text.clone());
        }
        self.env.get_template(&entry.name)?.render(ctx.value())
    }

    /// Evaluates a `when` expression to a boolean.
    pub(crate) fn eval(&self, expr: &str, ctx: &Value) -> Result<bool, minijinja::Error> {
        let compiled = self.expression(expr)?;
        Ok(compiled.eval(ctx)?.is_true())
    }

    /// Checks that a `when` expression parses.
    pub(crate) fn check_expression(&self, expr: &str) -> Result<(), minijinja::Error> {
        self.expression(expr).map(|_| ())
    }
}

/// A value inserted as is, even into shell templates.
#[derive(Debug)]
struct Raw(String);

impl Object for Raw {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value every template inserts verbatim (what `| raw` returns).
pub(crate) fn verbatim(text: impl Into<String>) -> Value {
    Value::from_object(Raw(text.into()))
}

/// The text of a value as inserted into output.
fn value_text(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None if v.is_none() => String::new(),
        None => v.to_string(),
    }
}

/// Places where `${{` stands inside a quoted shell string (1-based line, col):
/// the value is already quoted, so extra quotes change its meaning. An
/// insertion ending in `| raw` is verbatim on purpose and may sit in quotes.
pub(crate) fn quoted_insertions(script: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (lineno, line) in script.lines().enumerate() {
        let mut quote: Option<char> = None;
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        let at = |i: usize| chars.get(i).map(|&(_, c)| c);
        let mut i = 0;
        while i < chars.len() {
            let (byte, c) = chars[i];
            if c == '$' && at(i + 1) == Some('{') && at(i + 2) == Some('{') {
                let end = line[byte..].find("}}").map(|e| byte + e);
                let raw = end.is_some_and(|e| is_raw(&line[byte + 3..e]));
                if quote.is_some() && !raw {
                    found.push((lineno + 1, byte + 1));
                }
                // Skip to the closing `}}`.
                i = match end {
                    Some(e) => chars.partition_point(|&(b, _)| b < e + 2),
                    None => i + 3,
                };
                continue;
            }
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some('"'), '\\') => i += 1,
                (None, '\\') => i += 1,
                (None, '#') if i == 0 || chars[i - 1].1.is_whitespace() => break,
                _ => {}
            }
            i += 1;
        }
    }
    found
}

/// Whether an insertion's expression ends in the `raw` filter.
fn is_raw(expr: &str) -> bool {
    expr.rsplit_once('|')
        .is_some_and(|(_, filter)| filter.trim() == "raw")
}

/// Where a template error sits in the playbook file.
pub(crate) fn locate_error(source: &SourceFile, text: &Text, err: &minijinja::Error) -> Location {
    let range = err.range().unwrap_or_else(|| {
        let line = err.line().unwrap_or(1);
        let start: usize = text
            .text
            .split_inclusive('\n')
            .take(line - 1)
            .map(str::len)
            .sum();
        start..start + 1
    });
    locate_in_text(source, text, range)
}

/// Maps a byte range of a template's text to the playbook file.
pub(crate) fn locate_in_text(source: &SourceFile, text: &Text, range: Range<usize>) -> Location {
    let start = content_start(source, &text.span);
    let (line, col) = line_col(&text.text, range.start);
    let body = &source.text[start.min(source.text.len())..];
    let mut offset = start;
    for _ in 1..line {
        match body[offset - start..].find('\n') {
            Some(i) => offset += i + 1,
            None => break,
        }
    }
    let offset = (offset + col - 1).min(source.text.len());
    source.locate(offset..offset + range.len().max(1))
}

/// The byte where a TOML string's content begins (after quotes and the
/// newline TOML trims after `'''`/`"""`).
fn content_start(source: &SourceFile, span: &Range<usize>) -> usize {
    let raw = source.text.get(span.clone()).unwrap_or("");
    let delim = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        3
    } else if raw.starts_with('\'') || raw.starts_with('"') {
        1
    } else {
        0
    };
    let mut start = span.start + delim;
    if delim == 3 {
        let after = &source.text[start.min(source.text.len())..];
        if after.starts_with("\r\n") {
            start += 2;
        } else if after.starts_with('\n') {
            start += 1;
        }
    }
    start
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..crate::support::text::floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// A template failure as a user-facing error at the template's position.
pub(crate) fn error_at(
    source: &SourceFile,
    text: &Text,
    err: &minijinja::Error,
    what: &str,
) -> Error {
    let kind = err.kind().to_string();
    let detail = err.detail().unwrap_or(&kind);
    let (message, hint) = match err.kind() {
        minijinja::ErrorKind::UndefinedError => (
            match err.range().and_then(|r| text.text.get(r)) {
                Some(name) => format!("undefined variable `{}` in {what}", name.trim()),
                None => format!("undefined variable in {what}: {detail}"),
            },
            "define it in the playbook's [vars], the inventory, or with --var KEY=VALUE; \
             check its spelling",
        ),
        minijinja::ErrorKind::SyntaxError => (
            format!("template syntax error in {what}: {detail}"),
            "insert values as ${{ name }}; write `${{ x | raw }}` to insert verbatim",
        ),
        _ => (
            format!("template error in {what}: {detail}"),
            "check the expression against the variables that are defined",
        ),
    };
    let e = Error::at(locate_error(source, text, err), message, hint);
    // Undefined names and bad syntax are wrong whatever the values; other
    // failures (a filter on a captured value) may only be so at run time.
    match err.kind() {
        minijinja::ErrorKind::UndefinedError | minijinja::ErrorKind::SyntaxError => e,
        _ => e.provisional(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn render(mode: Mode, src: &str, ctx: Value) -> Result<String, minijinja::Error> {
        let mut t = Templates::new();
        let id = t.add(mode, src)?;
        t.render(id, &Context::lazy(move || ctx.clone()))
    }

    #[test]
    fn fixed_text_is_rendered_once_without_the_variables() {
        let mut t = Templates::new();
        let src = "echo '$HOME' ${#x} {{ not ours }}\n";
        let fixed = t.add(Mode::Shell, src).expect("compiles");
        let var = t.add(Mode::Shell, "echo ${{ x }}").expect("compiles");
        let never = Context::lazy(|| panic!("a fixed template needs no variables"));
        assert_eq!(t.render(fixed, &never).expect("renders"), src);
        assert!(t.reads(fixed).is_empty());
        assert_eq!(t.reads(var), ["x"]);
        let ctx = Context::lazy(|| Value::from_iter([("x", "a b")]));
        assert_eq!(t.render(var, &ctx).expect("renders"), "echo 'a b'");
    }

    #[test]
    fn shell_mode_quotes_values() {
        let out = render(
            Mode::Shell,
            "echo ${{ x }}",
            context! { x => "a b; rm -rf /" },
        );
        assert_eq!(out.expect("renders"), "echo 'a b; rm -rf /'");
        let out = render(Mode::Shell, "echo ${{ x }}", context! { x => "it's" });
        assert_eq!(out.expect("renders"), "echo 'it'\\''s'");
        let out = render(
            Mode::Shell,
            "docker pull ${{ i }}",
            context! { i => "ghcr.io/a/b:sha-1" },
        );
        assert_eq!(out.expect("renders"), "docker pull ghcr.io/a/b:sha-1");
    }

    #[test]
    fn only_raw_skips_quoting() {
        for filter in ["tojson", "safe", "e"] {
            let src = format!("echo ${{{{ x | {filter} }}}}");
            let out =
                render(Mode::Shell, &src, context! { x => "$(touch /tmp/x)" }).expect("renders");
            assert!(out.starts_with("echo '"), "{filter}: {out}");
        }
    }

    #[test]
    fn raw_filter_and_text_mode_insert_verbatim() {
        let out = render(Mode::Shell, "${{ x | raw }}", context! { x => "a b" });
        assert_eq!(out.expect("renders"), "a b");
        let out = render(Mode::Text, "http://${{ h }}/", context! { h => "a b" });
        assert_eq!(out.expect("renders"), "http://a b/");
    }

    #[test]
    fn shell_and_go_template_syntax_pass_through() {
        let src = "docker inspect --format '{{.Config.Image}}' ${VAR} $HOME ${#VAR} {% x %}";
        let out = render(Mode::Shell, src, context! {});
        assert_eq!(out.expect("renders"), src);
    }

    #[test]
    fn undefined_variable_is_an_error() {
        let err = render(Mode::Shell, "echo ${{ nope }}", context! {}).unwrap_err();
        assert_eq!(err.kind(), minijinja::ErrorKind::UndefinedError);
    }

    #[test]
    fn when_expressions() {
        let t = Templates::new();
        let ctx = context! { a => "x", b => "y", v => "0.1.3" };
        assert!(t.eval("a != b", &ctx).expect("evaluates"));
        assert!(t.eval("\"0.1\" in v", &ctx).expect("evaluates"));
        assert!(!t.eval("nope is defined", &ctx).expect("evaluates"));
    }

    #[test]
    fn quoted_insertions_count_bytes() {
        assert_eq!(quoted_insertions("echo 'é${{ x }}'"), vec![(1, 9)]);
    }

    #[test]
    fn quoted_insertions_are_found() {
        assert_eq!(
            quoted_insertions("echo '${{ x }}'\necho \"a ${{ y }}\""),
            vec![(1, 7), (2, 9)]
        );
        assert!(quoted_insertions("echo ${{ x }} 'lit' \"${HOME}\"").is_empty());
        assert!(quoted_insertions("echo \"port ${{ p | raw }}\"").is_empty());
    }
}
