//! Bad input of SPEC section 9: each exits 2 with a clear one-paragraph
//! error naming the file and line, never a panic. No node is contacted.

use std::path::PathBuf;

use crate::common::cli::{Run, fleetfix, run};

const INVENTORY: &str = r#"
[defaults]
user = "ops"

[vars]
domain = "example.net"

[nodes.web1]
host = "127.0.0.1"
groups = ["web"]
vars = { role = "a" }

[nodes.web2]
host = "127.0.0.1"
groups = ["web"]
"#;

const PLAYBOOK: &str = r#"
name = "ok"
[vars]
image = "app:1"
[[steps]]
name = "pull"
run = "docker pull ${{ image }}"
"#;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        let case = Case {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        case.write("inventory.toml", INVENTORY);
        case.write("pb.toml", PLAYBOOK);
        case
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `fleetfix ARGS` in the case's directory.
    fn fleetfix(&self, args: &[&str]) -> Run {
        run(fleetfix(self.dir.path())
            .current_dir(self.dir.path())
            .args(args))
    }
}

/// Exit 2, one error paragraph, the file:line named, no panic.
fn assert_bad(out: &Run, file: &str, line: Option<usize>, needle: &str) {
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(!out.stderr.contains("panicked"), "{}", out.dump());
    assert!(
        !out.stderr.to_lowercase().contains("backtrace"),
        "{}",
        out.dump()
    );
    assert!(out.stderr.starts_with("error: "), "{}", out.dump());
    let at = match line {
        Some(l) => format!("{file}:{l}:"),
        None => file.to_string(),
    };
    assert!(
        out.stderr.contains(&at),
        "expected {at:?} in:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: "), "no hint in:\n{}", out.stderr);
}

fn check_playbook(text: &str, line: usize, needle: &str) {
    let case = Case::new();
    case.write("bad.toml", text);
    assert_bad(
        &case.fleetfix(&["check", "bad.toml"]),
        "bad.toml",
        Some(line),
        needle,
    );
}

fn check_inventory(text: &str, line: usize, needle: &str) {
    let case = Case::new();
    case.write("inventory.toml", text);
    assert_bad(
        &case.fleetfix(&["check", "pb.toml"]),
        "inventory.toml",
        Some(line),
        needle,
    );
}

#[test]
fn malformed_toml() {
    check_playbook("name = \"x\"\n[[steps]\nrun = \"a\"\n", 2, "");
}

#[test]
fn unknown_key_in_a_step() {
    check_playbook(
        "name = \"x\"\n[[steps]]\nrn = \"uname\"\n",
        3,
        "unknown field `rn`",
    );
}

#[test]
fn missing_required_key() {
    check_playbook("[[steps]]\nrun = \"uname\"\n", 1, "missing field `name`");
}

#[test]
fn wrong_type() {
    check_playbook(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nretries = \"three\"\n",
        4,
        "`retries` takes a whole number from 0 to 10000, not string \"three\"",
    );
}

#[test]
fn undefined_variable() {
    check_playbook(
        "name = \"x\"\n[[steps]]\nrun = \"\"\"\necho ok\necho ${{ imgae }}\n\"\"\"\n",
        5,
        "undefined variable",
    );
}

#[test]
fn capture_shadowing_a_variable() {
    check_playbook(
        "name = \"x\"\n[vars]\nimage = \"a\"\n[[steps]]\nrun = \"a\"\ncapture = \"image\"\n",
        6,
        "capture `image` shadows",
    );
}

#[test]
fn step_without_action() {
    check_playbook(
        "name = \"x\"\n[[steps]]\nname = \"nothing\"\n",
        2,
        "step has no action",
    );
}

#[test]
fn bad_duration() {
    check_playbook(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"forever\"\n",
        4,
        "not a duration",
    );
}

#[test]
fn bad_when_expression() {
    check_playbook(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nwhen = \"a ==\"\n",
        4,
        "syntax error",
    );
}

#[test]
fn bad_regex() {
    check_playbook(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { stdout_regex = \"(\" }\n",
        4,
        "not a valid regular expression",
    );
}

#[test]
fn report_var_that_nothing_defines() {
    check_playbook(
        "name = \"x\"\nreport_vars = [\"nope\"]\n[[steps]]\nrun = \"a\"\n",
        2,
        "report_vars names `nope`",
    );
}

#[test]
fn duplicate_node() {
    check_inventory(
        "[nodes.a]\nhost = \"x\"\n[nodes.a]\nhost = \"y\"\n",
        3,
        "duplicate key",
    );
}

#[test]
fn unknown_key_in_inventory() {
    check_inventory("[nodes.a]\nhots = \"x\"\n", 2, "unknown field `hots`");
}

#[test]
fn missing_identity_file() {
    check_inventory(
        "[defaults]\nidentity_file = \"~/.ssh/id_missing\"\n[nodes.a]\nhost = \"x\"\n",
        2,
        "does not exist",
    );
}

#[test]
fn invalid_host_key_pin() {
    check_inventory(
        "[nodes.a]\nhost = \"x\"\nhost_key = \"md5:00\"\n",
        3,
        "neither a SHA256",
    );
}

#[test]
fn undefined_variable_for_one_node_names_the_node() {
    let case = Case::new();
    case.write(
        "bad.toml",
        "name = \"x\"\n[[steps]]\nrun = \"echo ${{ role }}\"\n",
    );
    let out = case.fleetfix(&["check", "bad.toml"]);
    assert_bad(&out, "bad.toml", Some(3), "node web2: undefined variable");
}

/// An inventory of `n` nodes `n0001`…; `vars(i)` is node i's inline vars.
fn many_nodes(n: usize, vars: impl Fn(usize) -> String) -> String {
    let mut s = String::from("[defaults]\nuser = \"ops\"\n");
    for i in 1..=n {
        s.push_str(&format!(
            "\n[nodes.n{i:04}]\nhost = \"127.0.0.1\"\nvars = {{ {} }}\n",
            vars(i)
        ));
    }
    s
}

#[test]
fn on_a_large_fleet_the_first_node_missing_a_variable_is_named() {
    // Validation shares renders between nodes that read the same and
    // splits the fleet between threads: neither may hide a node, and the
    // error must name the first failing node in inventory order.
    let case = Case::new();
    case.write(
        "inventory.toml",
        &many_nodes(1000, |i| match i {
            300 | 900 => "other = 1".into(),
            _ => format!("role = \"r{}\"", i % 3),
        }),
    );
    case.write(
        "bad.toml",
        "name = \"x\"\n[[steps]]\nrun = \"echo ${{ role }}\"\n",
    );
    let out = case.fleetfix(&["check", "bad.toml"]);
    assert_bad(&out, "bad.toml", Some(3), "node n0300: undefined variable");
}

#[test]
fn a_branch_only_one_node_takes_is_still_checked() {
    let case = Case::new();
    case.write(
        "inventory.toml",
        &many_nodes(600, |i| {
            let flavor = if i == 26 { "x" } else { "plain" };
            format!("flavor = \"{flavor}\"")
        }),
    );
    case.write(
        "tmpl.toml",
        "name = \"x\"\n[[steps]]\nrun = \"echo ${% if flavor == 'x' %}${{ missing }}${% endif %}\"\n",
    );
    let out = case.fleetfix(&["check", "tmpl.toml"]);
    assert_bad(&out, "tmpl.toml", Some(3), "node n0026: undefined variable");
    case.write(
        "when.toml",
        "name = \"x\"\n[[steps]]\nrun = \"true\"\nwhen = \"flavor != 'x' or nope == 1\"\n",
    );
    let out = case.fleetfix(&["check", "when.toml"]);
    assert_bad(&out, "when.toml", Some(4), "node n0026: undefined variable");
}

#[test]
fn unknown_limit_pattern_and_empty_selection() {
    let case = Case::new();
    let out = case.fleetfix(&["check", "pb.toml", "--limit", "db"]);
    assert_bad(
        &out,
        "",
        None,
        "--limit pattern `db` matches no node name or group",
    );
    let out = case.fleetfix(&["check", "pb.toml", "--limit", "web,!web1,!web2"]);
    assert_bad(&out, "", None, "selects no node");
}

#[test]
fn bad_var_override() {
    let case = Case::new();
    let out = case.fleetfix(&["plan", "pb.toml", "--var", "novalue"]);
    assert_bad(&out, "", None, "--var `novalue` is not KEY=VALUE");
}

#[test]
fn unreadable_known_hosts_file() {
    let case = Case::new();
    let dir = case.path("kh-is-a-directory");
    std::fs::create_dir(&dir).expect("mkdir");
    let out = case.fleetfix(&[
        "run",
        "pb.toml",
        "--known-hosts",
        dir.to_str().expect("utf8"),
    ]);
    assert_bad(
        &out,
        dir.to_str().expect("utf8"),
        None,
        "cannot read known hosts file",
    );
}

#[test]
fn missing_playbook_and_inventory_files() {
    let case = Case::new();
    let out = case.fleetfix(&["check", "nope.toml"]);
    assert_bad(&out, "nope.toml", None, "cannot read playbook");
    let out = case.fleetfix(&["check", "pb.toml", "-i", "missing.toml"]);
    assert_bad(&out, "missing.toml", None, "cannot read inventory");
}

#[test]
fn error_shows_the_line_and_a_caret() {
    let case = Case::new();
    case.write(
        "bad.toml",
        "name = \"x\"\n[[steps]]\nrun = \"echo ${{ nope }}\"\n",
    );
    let out = case.fleetfix(&["check", "bad.toml"]);
    assert!(
        out.stderr.contains("3 | run = \"echo ${{ nope }}\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("^"), "{}", out.stderr);
    let caret_line = out.stderr.lines().find(|l| l.contains('^')).expect("caret");
    let src_line = out
        .stderr
        .lines()
        .find(|l| l.contains("3 | run"))
        .expect("source");
    // The caret sits under the `nope`/`${{` insertion, not at column 1.
    assert!(
        caret_line.find('^') > src_line.find("run"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_warns_about_quoted_insertions() {
    let case = Case::new();
    case.write(
        "q.toml",
        "name = \"x\"\n[vars]\nv = \"a\"\n[[steps]]\nrun = \"echo '${{ v }}'\"\n",
    );
    let out = case.fleetfix(&["check", "q.toml"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.stderr.contains("warning: q.toml:5:"), "{}", out.dump());
    assert!(out.stderr.contains("inside quotes"), "{}", out.dump());
}

#[test]
fn an_unset_secret_stops_a_run_but_only_warns_in_check_and_plan() {
    let case = Case::new();
    case.write(
        "s.toml",
        "name = \"x\"\n[secrets]\ntoken = { env = \"FLEETFIX_TEST_UNSET_TOKEN\" }\n\
         [[steps]]\nenv = { T = \"${{ secret.token }}\" }\nrun = \"true\"\n",
    );
    for cmd in ["check", "plan"] {
        let out = case.fleetfix(&[cmd, "s.toml"]);
        assert_eq!(out.code, 0, "{}", out.dump());
        assert!(
            out.stderr
                .contains("warning: s.toml:3:9: secret `token` needs")
                && out.stderr.contains("FLEETFIX_TEST_UNSET_TOKEN"),
            "{}",
            out.dump()
        );
    }
    let out = case.fleetfix(&["run", "s.toml"]);
    assert_bad(
        &out,
        "s.toml",
        Some(3),
        "FLEETFIX_TEST_UNSET_TOKEN, which is not set",
    );
}

#[test]
fn non_ascii_text_and_escapes_never_panic() {
    let case = Case::new();
    case.write(
        "u.toml",
        "name = \"x\"\n[vars]\nv = \"a\"\n[[steps]]\nrun = \"echo 'é${{ v }}'\"\n[[steps]]\nrun = \"\\\"\\\"é ${{ nope }}\"\n",
    );
    let out = case.fleetfix(&["check", "u.toml"]);
    assert_bad(&out, "u.toml", Some(7), "undefined variable `nope`");
}

/// A 5 MB line is shown as a window around the caret, not whole.
#[test]
fn a_huge_line_is_shown_as_a_window_around_the_caret() {
    let case = Case::new();
    let line = format!("bogus = 1 # {}", "z".repeat(5_000_000));
    case.write(
        "big.toml",
        &format!("name = \"x\"\n[[steps]]\nrun = \"a\"\n{line}\n"),
    );
    let out = case.fleetfix(&["check", "big.toml"]);
    assert_bad(&out, "big.toml", Some(4), "unknown field `bogus`");
    assert!(
        out.stderr.len() < 2000,
        "{} bytes of error",
        out.stderr.len()
    );
    assert!(out.stderr.contains("4 | bogus = 1 # zzz"), "{}", out.stderr);
    assert!(out.stderr.contains("…"), "{}", out.stderr);
    // The caret under a key far into a long line stays under it.
    let long = format!(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = {{ stdout_contains = \"{}\", exitt = 1 }}\n",
        "y".repeat(300)
    );
    case.write("far.toml", &long);
    let out = case.fleetfix(&["check", "far.toml"]);
    assert_bad(&out, "far.toml", Some(4), "unknown field `exitt`");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let src = lines
        .iter()
        .position(|l| l.starts_with("4 | "))
        .expect("source line");
    let caret = lines[src + 1]
        .chars()
        .position(|c| c == '^')
        .expect("caret");
    let under: String = lines[src].chars().skip(caret).take(5).collect();
    assert_eq!(under, "exitt", "{}", out.stderr);
}

/// A symlink planted at the lock's path is not followed (its target is
/// not truncated), and the run stops before it starts.
#[test]
fn a_symlink_at_the_lock_path_is_refused_and_its_target_untouched() {
    let case = Case::new();
    let state = case.path("state");
    std::fs::create_dir_all(state.join("locks")).expect("locks dir");
    let target = case.write("precious", "keep me\n");
    std::os::unix::fs::symlink(&target, state.join("locks/ok.lock")).expect("symlink");
    let out = run(fleetfix(case.dir.path())
        .current_dir(case.dir.path())
        .env("FLEETFIX_STATE_DIR", &state)
        .args(["run", "pb.toml"]));
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(out.stderr.contains("ok.lock"), "{}", out.dump());
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        "keep me\n"
    );
}

/// A closed stdout (`fleetfix nodes | head -1`) ends the output quietly:
/// no panic, exit 0; a run piped the same way keeps its exit code and
/// completes its journal.
#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    use std::io::{BufRead, BufReader};
    let case = Case::new();
    let mut many = String::from("[defaults]\nuser = \"ops\"\n");
    for i in 0..2000 {
        many.push_str(&format!("[nodes.n{i}]\nhost = \"127.0.0.1\"\n"));
    }
    case.write("inventory.toml", &many);
    let mut child = fleetfix(case.dir.path())
        .current_dir(case.dir.path())
        .args(["nodes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    while !first.contains("node") {
        first.clear();
        lines.read_line(&mut first).expect("a line");
    }
    drop(lines);
    let out = Run::from(child.wait_with_output().expect("wait"));
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(!out.stderr.contains("panicked"), "{}", out.dump());
    assert!(first.contains("node"), "{first}");
    // A run whose stdout is gone from the start: check's verdict and the
    // journal of a run are unaffected (the run here is `exec` on no
    // reachable node, so it ends at once: exit 6).
    case.write(
        "inventory.toml",
        "[nodes.a]\nhost = \"127.0.0.1\"\nport = 1\n",
    );
    let mut child = fleetfix(case.dir.path())
        .current_dir(case.dir.path())
        .env("FLEETFIX_STATE_DIR", case.path("state"))
        .args(["run", "-y", "pb.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = Run::from(child.wait_with_output().expect("wait"));
    assert_eq!(out.code, 6, "{}", out.dump());
    assert!(!out.stderr.contains("panicked"), "{}", out.dump());
    let journals: Vec<_> = std::fs::read_dir(case.path("state/runs"))
        .expect("runs dir")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(journals.len(), 1);
    let journal = std::fs::read_to_string(journals[0].path()).expect("journal");
    assert!(journal.contains("\"event\":\"run_finished\""), "{journal}");
}
