//! A property test in the manner of a fuzzer: the repository's playbooks
//! and inventory, and template text, mutated at random (bytes inserted,
//! deleted and replaced; tokens that have broken parsers before spliced
//! in), go through the playbook and inventory loaders, validation, the
//! template renderer and error rendering. Nothing may panic.
//!
//! It runs for `FLEETFIX_FUZZ_SECS` seconds (default 3; `.ci/run` gives
//! it 60), as many cases as fit.

use std::time::{Duration, Instant};

use fleetfix::Inventory;
use fleetfix::Playbook;
use fleetfix::{Error, SourceFile};
use fleetfix::{Job, JobOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// What has broken parsers and renderers before.
const TOKENS: &[&str] = &[
    "${{",
    "}}",
    "${{ x }}",
    "${{ secret.t }}",
    "${{ node.name | raw }}",
    "{%",
    "%}",
    "{#",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "[",
    "]",
    "[[steps]]",
    "[[on_failure]]",
    "[[gate]]",
    "=",
    "\n",
    "\\",
    "\\u",
    "\u{0}",
    "\u{feff}",
    "é",
    "🦀",
    "%",
    "-1",
    "0",
    "0s",
    "18446744073709551615",
    "18446744073709551615s",
    "9999999999999999999999999",
    "1e309",
    "nan",
    "inf",
    "true",
    "{ }",
    "[]",
    "\"25%\"",
    "\"-5%\"",
    "timeout = \"0s\"",
    "retries = 4294967296",
    "port = 0",
    "env = { \"A B\" = \"x\" }",
    "when = \"",
    "capture = \"",
    "expect = { exit = ",
    "#",
    "x = ",
    "\r\n",
    "\t",
    "..",
    "../../../etc/passwd",
];

const CORPUS: &[(&str, &str)] = &[
    (
        "relay-rollout",
        include_str!("../../playbooks/relay-rollout.toml"),
    ),
    (
        "relay-verify",
        include_str!("../../playbooks/relay-verify.toml"),
    ),
    (
        "relay-diagnose",
        include_str!("../../playbooks/relay-diagnose.toml"),
    ),
    (
        "demo-rollout",
        include_str!("../../playbooks/demo-rollout.toml"),
    ),
];

const INVENTORY: &str = include_str!("../../inventory.toml");

/// One edit of a text: at a position (as a fraction of its length),
/// insert, delete or replace with a token or arbitrary text.
#[derive(Debug, Clone)]
enum Edit {
    Insert(u16, String),
    Delete(u16, u8),
    Replace(u16, u8, String),
    Truncate(u16),
    DuplicateLine(u16),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(TOKENS).prop_map(str::to_string),
        1 => ".{0,12}",
        1 => proptest::collection::vec(any::<u8>(), 0..8)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<u16>(), text()).prop_map(|(p, t)| Edit::Insert(p, t)),
        2 => (any::<u16>(), any::<u8>()).prop_map(|(p, n)| Edit::Delete(p, n)),
        3 => (any::<u16>(), any::<u8>(), text()).prop_map(|(p, n, t)| Edit::Replace(p, n, t)),
        1 => any::<u16>().prop_map(Edit::Truncate),
        1 => any::<u16>().prop_map(Edit::DuplicateLine),
    ]
}

/// The char boundary at `fraction` of `s`.
fn at(s: &str, fraction: u16) -> usize {
    let mut i = s.len() * fraction as usize / u16::MAX as usize;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(mut s: String, edits: &[Edit]) -> String {
    for e in edits {
        match e {
            Edit::Insert(p, t) => {
                let i = at(&s, *p);
                s.insert_str(i, t);
            }
            Edit::Delete(p, n) | Edit::Replace(p, n, _) => {
                let i = at(&s, *p);
                let j = s[i..]
                    .char_indices()
                    .nth(*n as usize % 16)
                    .map_or(s.len(), |(k, _)| i + k);
                let with = match e {
                    Edit::Replace(_, _, t) => t.as_str(),
                    _ => "",
                };
                s.replace_range(i..j, with);
            }
            Edit::Truncate(p) => {
                let i = at(&s, *p);
                s.truncate(i);
            }
            Edit::DuplicateLine(p) => {
                let i = at(&s, *p);
                let start = s[..i].rfind('\n').map_or(0, |k| k + 1);
                let end = s[i..].find('\n').map_or(s.len(), |k| i + k + 1);
                let line = s[start..end].to_string();
                s.insert_str(end, &line);
            }
        }
    }
    s
}

fn source(path: &str, text: String) -> SourceFile {
    SourceFile {
        path: path.into(),
        text: text.into(),
    }
}

/// Loads, validates and renders what it can; every error is rendered too.
fn exercise(playbook: String, inventory: String, var: (String, String)) {
    let render = |e: Error| {
        let _ = e.render();
        let _ = e.one_line();
    };
    let pb = match Playbook::from_source(source("pb.toml", playbook)) {
        Ok(pb) => pb,
        Err(e) => return render(e),
    };
    let inv = match Inventory::from_source(source("inventory.toml", inventory)) {
        Ok(inv) => inv,
        Err(e) => return render(e),
    };
    let opts = JobOptions {
        run_id: "fuzz".into(),
        overrides: [var].into_iter().collect(),
        ..Default::default()
    };
    let job = match Job::prepare(&inv, pb, &opts) {
        Ok(job) => job,
        Err(e) => return render(e),
    };
    for on_failure in [false, true] {
        for r in job.step_refs(on_failure) {
            let vars = &job.node_vars[0];
            if let Err(e) = job.when(r, vars) {
                render(e);
            }
            match job.render(r, vars) {
                Ok(rendered) => {
                    if let Some(script) = rendered.action.script() {
                        let _ = job.masker.mask(script);
                    }
                }
                Err(e) => render(e),
            }
        }
    }
}

fn budget() -> Duration {
    let secs = std::env::var("FLEETFIX_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

/// Runs `cases` at a time until the budget is spent; a panic fails it
/// with the input that caused it (shrunk).
fn for_a_while<S: Strategy>(strategy: S, test: impl Fn(S::Value)) -> usize
where
    S::Value: std::fmt::Debug,
{
    let until = Instant::now() + budget();
    let mut cases = 0;
    while Instant::now() < until {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, |v| {
            test(v);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        cases += 64;
    }
    cases
}

#[test]
fn mutated_playbooks_and_inventories_never_panic() {
    let strategy = (
        0..CORPUS.len(),
        proptest::collection::vec(edit(), 0..6),
        proptest::collection::vec(edit(), 0..3),
        ("[a-z_]{1,6}", text()),
    );
    let cases = for_a_while(strategy, |(i, pb_edits, inv_edits, var)| {
        let pb = apply(CORPUS[i].1.to_string(), &pb_edits);
        let inv = apply(INVENTORY.to_string(), &inv_edits);
        exercise(pb, inv, var);
    });
    eprintln!("{cases} mutated playbook/inventory pairs");
}

#[test]
fn random_templates_never_panic() {
    let fragment = prop_oneof![
        proptest::sample::select(TOKENS).prop_map(str::to_string),
        proptest::sample::select(
            &[
                "x",
                "y",
                "node.name",
                "node.groups",
                "run.id",
                "secret.t",
                "x | raw",
                "x ~ y",
                "x[0]",
                "x.y.z",
                "range(10)",
                "x * 1000000",
                "(",
                ")",
                "if",
                "else",
                "in",
                "not",
                "|",
                "length",
                "upper",
                "join",
                "\"s\"",
                "1/0",
                "x % 0",
                "[1,2][5]",
            ][..]
        )
        .prop_map(str::to_string),
        ".{0,6}",
    ];
    let strategy = (
        proptest::collection::vec(fragment.clone(), 0..12),
        proptest::collection::vec(fragment, 0..8),
    );
    let inventory = "[vars]\nx = \"a b\"\ny = [1, 2]\n[nodes.n1]\nhost = \"h\"\ngroups = [\"g\"]\n";
    let cases = for_a_while(strategy, |(script, when)| {
        let script = format!("echo ${{{{ {} }}}}", script.join(" "));
        let when = when.join(" ");
        let playbook = format!(
            "name = \"t\"\n[secrets]\nt = {{ env = \"FLEETFIX_FUZZ_UNSET\" }}\n[[steps]]\nrun = {}\nwhen = {}\n",
            toml_string(&script),
            toml_string(&when),
        );
        exercise(playbook, inventory.to_string(), ("x".into(), "v".into()));
    });
    eprintln!("{cases} random templates");
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
