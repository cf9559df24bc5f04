//! Bad input, one table: every entry is a `fleetfix run` (or the command
//! named) that must exit 2 with the position of the problem (file:line:col,
//! the flag, or the environment variable), a hint, no panic, and before it
//! connects anywhere: every node of the inventory is a TCP listener of
//! this test that must see no connection.

use std::io::ErrorKind;
use std::net::TcpListener;

use crate::common::cli::{Run, fleetfix, run};

/// Where the bad input is.
enum In {
    /// The playbook `pb.toml` (the inventory is fine).
    Playbook(&'static str),
    /// The inventory `inv.toml` (the playbook is fine); `NODE` in it is
    /// replaced by a valid node table pointing at the listener.
    Inventory(&'static str),
    /// Arguments of `fleetfix`; `PB`, `INV` are replaced by the good files.
    Flags(&'static [&'static str]),
    /// An environment variable set for `fleetfix run INV PB`.
    Env(&'static str, &'static str),
    /// A file `NAME` written into the case's dir, and the flags that use it.
    File(&'static str, &'static [u8], &'static [&'static str]),
}

struct Bad {
    input: In,
    /// What names the position: `pb.toml:4:`, `--concurrency`, `FLEETFIX_STATE_DIR`.
    at: &'static str,
    /// A piece of the message.
    says: &'static str,
}

const fn pb(text: &'static str, at: &'static str, says: &'static str) -> Bad {
    Bad {
        input: In::Playbook(text),
        at,
        says,
    }
}

const fn inv(text: &'static str, at: &'static str, says: &'static str) -> Bad {
    Bad {
        input: In::Inventory(text),
        at,
        says,
    }
}

const fn flags(args: &'static [&'static str], at: &'static str, says: &'static str) -> Bad {
    Bad {
        input: In::Flags(args),
        at,
        says,
    }
}

const fn env(var: &'static str, value: &'static str, says: &'static str) -> Bad {
    Bad {
        input: In::Env(var, value),
        at: var,
        says,
    }
}

const STEP: &str = "name = \"x\"\n[[steps]]\nrun = \"true\"\n";

const CASES: &[Bad] = &[
    // ---- the playbook: syntax and keys
    pb("name = \"x\"\n[[steps]\nrun = \"a\"\n", "pb.toml:2:", ""),
    pb(
        "name = \"x\"\nnmae = 1\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:2:",
        "unknown field `nmae`",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrn = \"a\"\n",
        "pb.toml:3:",
        "unknown field `rn`",
    ),
    pb(
        "[[steps]]\nrun = \"a\"\n",
        "pb.toml:1:",
        "missing field `name`",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nname = \"n\"\n",
        "pb.toml:2:",
        "step has no action",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nlocal = \"b\"\n",
        "pb.toml:2:",
        "more than one action",
    ),
    pb(
        "name = \"x\"\nname = \"y\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:2:",
        "duplicate key",
    ),
    pb(
        "name = 5\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:1:",
        "`name` takes a text",
    ),
    pb("name = \"x\"\n", "pb.toml:1:", "no [[steps]]"),
    pb(
        "name = \"x\"\n[[steps]]\nrun = 5\n",
        "pb.toml:3:",
        "`run` takes a text",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nshell = 5\n",
        "pb.toml:4:",
        "`shell` takes a text",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nsudo = \"yes\"\n",
        "pb.toml:4:",
        "`sudo` takes true or false",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nchanges = 1\n",
        "pb.toml:4:",
        "`changes` takes true or false",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nignore_failure = \"no\"\n",
        "pb.toml:4:",
        "`ignore_failure` takes true",
    ),
    pb(
        "name = \"x\"\nreport_vars = \"v\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:2:",
        "`report_vars` takes a list",
    ),
    pb(
        "name = \"x\"\nreport_vars = [\"nothing\"]\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:2:",
        "nothing",
    ),
    // ---- durations
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"soon\"\n",
        "pb.toml:4:",
        "not a duration",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"0s\"\n",
        "pb.toml:4:",
        "is zero",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"18446744073709551615s\"\n",
        "pb.toml:4:",
        "longer than 30 days",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"31d\"\n",
        "pb.toml:4:",
        "longer than 30 days",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = 5\n",
        "pb.toml:4:",
        "`timeout` takes a duration",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"1 parsec\"\n",
        "pb.toml:4:",
        "not a duration",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"\"\n",
        "pb.toml:4:",
        "not a duration",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nretry_delay = \"-1s\"\n",
        "pb.toml:4:",
        "not a duration",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nretry_delay = \"99999999999999999999h\"\n",
        "pb.toml:4:",
        "duration",
    ),
    pb(
        "name = \"x\"\n[rollout]\npause = \"forever\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "not a duration",
    ),
    pb(
        "name = \"x\"\n[rollout]\npause = \"40d\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "longer than 30 days",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\", timeout = \"0s\" }\n",
        "pb.toml:3:",
        "is zero",
    ),
    pb(
        "name = \"x\"\n[[gate]]\nname = \"g\"\nlocal = \"true\"\ntimeout = \"0ms\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:5:",
        "is zero",
    ),
    pb(
        "name = \"x\"\n[[gate]]\nname = \"g\"\nlocal = \"true\"\nretry_delay = \"400d\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:5:",
        "longer than 30 days",
    ),
    // ---- counts and sizes
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nretries = -1\n",
        "pb.toml:4:",
        "`retries` takes a whole number",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nretries = 10001\n",
        "pb.toml:4:",
        "more than 10000",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nretries = \"three\"\n",
        "pb.toml:4:",
        "`retries` takes a whole number",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nretries = 99999999999\n",
        "pb.toml:4:",
        "`retries` takes a whole number",
    ),
    pb(
        "name = \"x\"\n[rollout]\nbatches = []\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "batches is empty",
    ),
    pb(
        "name = \"x\"\n[rollout]\nbatches = [0]\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "a batch of no nodes",
    ),
    pb(
        "name = \"x\"\n[rollout]\nbatches = [\"0%\"]\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "a batch of no nodes",
    ),
    pb(
        "name = \"x\"\n[rollout]\nbatches = [\"150%\"]\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "percentage",
    ),
    pb(
        "name = \"x\"\n[rollout]\nbatches = [-2]\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "negative",
    ),
    pb(
        "name = \"x\"\n[rollout]\nbatches = [true]\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "`batches` takes a list of node counts",
    ),
    pb(
        "name = \"x\"\n[rollout]\nbatches = \"25%\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "`batches` takes a list",
    ),
    pb(
        "name = \"x\"\n[rollout]\nbatches = [\"half\"]\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "percentage",
    ),
    pb(
        "name = \"x\"\n[rollout]\nconcurrency = 0\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "not from 1 to 100000",
    ),
    pb(
        "name = \"x\"\n[rollout]\nconcurrency = 1000000\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "not from 1 to 100000",
    ),
    pb(
        "name = \"x\"\n[rollout]\nconcurrency = \"many\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "`concurrency` takes a whole number",
    ),
    pb(
        "name = \"x\"\n[rollout]\nconcurrency = -4\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "`concurrency` takes a whole number",
    ),
    pb(
        "name = \"x\"\n[rollout]\nmax_failed = -1\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "negative",
    ),
    pb(
        "name = \"x\"\n[rollout]\nmax_failed = \"150%\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "percentage",
    ),
    pb(
        "name = \"x\"\n[rollout]\nmax_unreachable = \"x%\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "percentage",
    ),
    pb(
        "name = \"x\"\n[rollout]\nmax_unreachable = [1]\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "`max_unreachable` takes a node count",
    ),
    // ---- expectations
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { exit = 256 }\n",
        "pb.toml:4:",
        "exit 256 is not an exit code",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { exit = -1 }\n",
        "pb.toml:4:",
        "exit -1 is not an exit code",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { exit = \"zero\" }\n",
        "pb.toml:4:",
        "`exit` takes an exit code",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { exit = [] }\n",
        "pb.toml:4:",
        "can never be met",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { exit = [0, \"1\"] }\n",
        "pb.toml:4:",
        "`exit` takes an exit code",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\" }\nexpect = { status = 99 }\n",
        "pb.toml:4:",
        "not an HTTP status code",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\" }\nexpect = { status = [] }\n",
        "pb.toml:4:",
        "can never be met",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\" }\nexpect = { status = \"ok\" }\n",
        "pb.toml:4:",
        "`status` takes an HTTP status code",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { status = 200 }\n",
        "pb.toml:4:",
        "belong to http",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\" }\nexpect = { exit = 0 }\n",
        "pb.toml:4:",
        "belong to commands",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { stdout_regex = \"(\" }\n",
        "pb.toml:4:",
        "not a valid regular expression",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { stdout_contains = 5 }\n",
        "pb.toml:4:",
        "`stdout_contains` takes a text",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nexpect = { exitt = 0 }\n",
        "pb.toml:4:",
        "unknown field `exitt`",
    ),
    // ---- env, captures, templates
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nenv = { \"A=1; touch /tmp/x #\" = \"x\" }\n",
        "pb.toml:4:",
        "env name",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nenv = { \"MY-VAR\" = \"x\" }\n",
        "pb.toml:4:",
        "env name `MY-VAR`",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nenv = { \"1ABC\" = \"x\" }\n",
        "pb.toml:4:",
        "env name `1ABC`",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nenv = { \"\" = \"x\" }\n",
        "pb.toml:4:",
        "env name",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nenv = { A = 5 }\n",
        "pb.toml:4:",
        "invalid type",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nenv = \"A=1\"\n",
        "pb.toml:4:",
        "`env` takes a table",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ncapture = \"bad name\"\n",
        "pb.toml:4:",
        "capture name `bad name`",
    ),
    pb(
        "name = \"x\"\n[vars]\nimage = \"a\"\n[[steps]]\nrun = \"a\"\ncapture = \"image\"\n",
        "pb.toml:6:",
        "shadows",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"echo ${{ nope }}\"\n",
        "pb.toml:3:",
        "undefined variable",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"echo ${{ x + }}\"\n",
        "pb.toml:3:",
        "syntax error",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nwhen = \"a ==\"\n",
        "pb.toml:4:",
        "syntax error",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nwhen = \"undefined_thing == 1\"\n",
        "pb.toml:4:",
        "undefined",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nunless = \"test ${{ nope }}\"\n",
        "pb.toml:4:",
        "undefined variable",
    ),
    // (minijinja's lexer panicked on this, found by tests/it/fuzz.rs)
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nwhen = \"}} ${{\"\n",
        "pb.toml:4:",
        "has no place in an expression",
    ),
    // ---- http, upload, gates, secrets
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\", via = \"carrier-pigeon\" }\n",
        "pb.toml:3:",
        "neither \"runner\" nor \"ssh\"",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\", method = \"G E T\" }\n",
        "pb.toml:3:",
        "not an HTTP method",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { method = \"GET\" }\n",
        "pb.toml:3:",
        "missing field `url`",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\" }\nunless = \"true\"\n",
        "pb.toml:4:",
        "`unless` runs a command",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\" }\ncapture_header = \"etag\"\n",
        "pb.toml:4:",
        "capture_header needs",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nhttp = { url = \"http://h/\", insecure_tls = \"yes\" }\n",
        "pb.toml:3:",
        "`insecure_tls` takes true or false",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nupload = { src = \"missing.conf\", dest = \"/etc/x\" }\n",
        "pb.toml:3:",
        "cannot read upload source",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nupload = { src = \"pb.toml\", dest = \"/etc/x\", mode = \"0999\" }\n",
        "pb.toml:3:",
        "not a file mode",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nupload = { src = \"pb.toml\", dest = \"/etc/x\", mode = 99999 }\n",
        "pb.toml:3:",
        "not a file mode",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nupload = { src = \"pb.toml\", dest = \"/etc/x\", mode = true }\n",
        "pb.toml:3:",
        "`mode` takes a file mode",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nupload = { src = \"pb.toml\" }\n",
        "pb.toml:3:",
        "missing field `dest`",
    ),
    pb(
        "name = \"x\"\n[[gate]]\nname = \"g\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:2:",
        "needs exactly one of",
    ),
    pb(
        "name = \"x\"\n[[gate]]\nname = \"g\"\nhttp = { url = \"http://h/\", via = \"ssh\" }\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:4:",
        "`via` does not apply",
    ),
    pb(
        "name = \"x\"\n[[gate]]\nname = \"g\"\nlocal = \"true\"\nretries = -3\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:5:",
        "`retries` takes a whole number",
    ),
    pb(
        "name = \"x\"\n[secrets]\nt = \"VAR\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "invalid type",
    ),
    pb(
        "name = \"x\"\n[secrets]\nt = { env = \"FLEETFIX_TABLE_TEST_UNSET\" }\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:3:",
        "FLEETFIX_TABLE_TEST_UNSET",
    ),
    pb(
        "name = \"x\"\n[[on_failure]]\nname = \"n\"\n[[steps]]\nrun = \"a\"\n",
        "pb.toml:2:",
        "step has no action",
    ),
    pb(
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nretry_delay = [1]\n",
        "pb.toml:4:",
        "`retry_delay` takes a duration",
    ),
    // ---- the inventory
    inv("[nodes.a\nhost = \"x\"\n", "inv.toml:1:", ""),
    inv(
        "NODE\n[nodes.b]\nhots = \"x\"\n",
        "inv.toml:",
        "unknown field `hots`",
    ),
    inv(
        "[defaults]\nusr = \"x\"\nNODE\n",
        "inv.toml:2:",
        "unknown field `usr`",
    ),
    inv(
        "NODE\n[nodes.a]\nhost = \"y\"\n",
        "inv.toml:",
        "duplicate key",
    ),
    inv("[vars]\nx = 1\n", "inv.toml:1:", "defines no node"),
    inv("NODE\n[nodes.b]\nport = 0\n", "inv.toml:", "port 0"),
    inv(
        "NODE\n[nodes.b]\nport = 70000\n",
        "inv.toml:",
        "`port` takes a port number",
    ),
    inv(
        "NODE\n[nodes.b]\nport = -1\n",
        "inv.toml:",
        "`port` takes a port number",
    ),
    inv(
        "NODE\n[nodes.b]\nport = \"22\"\n",
        "inv.toml:",
        "`port` takes a port number",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"\"\n",
        "inv.toml:",
        "host `` is empty",
    ),
    inv("NODE\n[nodes.b]\nhost = \"a b\"\n", "inv.toml:", "spaces"),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\nuser = \"\"\n",
        "inv.toml:",
        "user `` is empty",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\nconnect_timeout = \"0s\"\n",
        "inv.toml:",
        "is zero",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\nconnect_timeout = \"40d\"\n",
        "inv.toml:",
        "longer than 30 days",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\nconnect_timeout = \"soon\"\n",
        "inv.toml:",
        "not a duration",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\nidentity_file = \"/nonexistent/key\"\n",
        "inv.toml:",
        "does not exist",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\nhost_key = \"nope\"\n",
        "inv.toml:",
        "neither a SHA256",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\njump = 42\n",
        "inv.toml:",
        "`jump` takes",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\njump = \"ops@ :22\"\n",
        "inv.toml:",
        "neither a [jump_hosts] entry",
    ),
    inv(
        "NODE\n[jump_hosts.j]\nhost = \"b\"\nport = 0\n[nodes.b]\nhost = \"x\"\njump = \"j\"\n",
        "inv.toml:",
        "port 0",
    ),
    inv(
        "NODE\n[jump_hosts.j]\nhost = \"\"\n[nodes.b]\nhost = \"x\"\njump = \"j\"\n",
        "inv.toml:",
        "host `` is empty",
    ),
    inv("[defaults]\nport = 0\nNODE\n", "inv.toml:2:", "port 0"),
    inv(
        "[defaults]\nuser = 5\nNODE\n",
        "inv.toml:2:",
        "`user` takes a text",
    ),
    inv(
        "NODE\n[nodes.\"a b\"]\nhost = \"x\"\n",
        "inv.toml:",
        "node name `a b`",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\ngroups = \"web\"\n",
        "inv.toml:",
        "`groups` takes a list",
    ),
    inv(
        "NODE\n[nodes.b]\nhost = \"x\"\nvars = 5\n",
        "inv.toml:",
        "`vars` takes a table",
    ),
    // ---- flags
    flags(
        &["run", "-i", "INV", "--limit", "nomatch", "PB"],
        "--limit",
        "nomatch",
    ),
    flags(
        &["run", "-i", "INV", "--limit", "!a", "PB"],
        "--limit",
        "no node",
    ),
    flags(
        &["run", "-i", "INV", "-e", "novalue", "PB"],
        "novalue",
        "KEY=VALUE",
    ),
    flags(&["run", "-i", "INV", "-e", "=x", "PB"], "=x", ""),
    flags(
        &["run", "-i", "INV", "--concurrency", "0", "PB"],
        "--concurrency",
        "",
    ),
    flags(
        &["run", "-i", "INV", "--concurrency", "1000000", "PB"],
        "--concurrency",
        "",
    ),
    flags(
        &["run", "-i", "INV", "--concurrency", "-3", "PB"],
        "'-3'",
        "",
    ),
    flags(
        &["run", "-i", "INV", "--lock-wait", "soon", "PB"],
        "--lock-wait",
        "not a duration",
    ),
    flags(
        &[
            "run",
            "-i",
            "INV",
            "--lock-wait",
            "18446744073709551615s",
            "PB",
        ],
        "--lock-wait",
        "longer than 30 days",
    ),
    flags(
        &["run", "-i", "INV", "--output-cap", "0", "PB"],
        "--output-cap",
        "",
    ),
    flags(
        &["run", "-i", "INV", "--output-cap", "1T", "PB"],
        "--output-cap",
        "",
    ),
    flags(
        &["run", "-i", "INV", "--output-cap", "99999999999999", "PB"],
        "--output-cap",
        "",
    ),
    flags(
        &["run", "-i", "INV", "--output", "xml", "PB"],
        "--output",
        "",
    ),
    flags(
        &["run", "-i", "INV", "--progress", "sometimes", "PB"],
        "--progress",
        "",
    ),
    flags(
        &[
            "run",
            "-i",
            "INV",
            "--resume",
            "20990101T000000Z-dead",
            "PB",
        ],
        "20990101T000000Z-dead",
        "",
    ),
    flags(
        &["exec", "-i", "INV", "--timeout", "0s", "--", "true"],
        "--timeout",
        "is zero",
    ),
    flags(
        &[
            "exec",
            "-i",
            "INV",
            "--timeout",
            "18446744073709551615s",
            "--",
            "true",
        ],
        "--timeout",
        "longer than 30 days",
    ),
    flags(
        &["exec", "-i", "INV", "--timeout", "soon", "--", "true"],
        "--timeout",
        "not a duration",
    ),
    flags(&["exec", "-i", "INV"], "COMMAND", ""),
    flags(
        &["run", "-i", "/nonexistent/inv.toml", "PB"],
        "/nonexistent/inv.toml",
        "cannot read inventory",
    ),
    flags(
        &["run", "-i", "INV", "/nonexistent/pb.toml"],
        "/nonexistent/pb.toml",
        "cannot read playbook",
    ),
    flags(
        &[
            "run",
            "-i",
            "INV",
            "--report",
            "/nonexistent/dir/r.json",
            "PB",
        ],
        "--report",
        "",
    ),
    flags(
        &[
            "run",
            "-i",
            "INV",
            "--junit",
            "/nonexistent/dir/j.xml",
            "PB",
        ],
        "--junit",
        "",
    ),
    flags(&["demo", "--nodes", "0"], "--nodes", ""),
    flags(&["run", "-i", "INV", "--bogus", "PB"], "--bogus", ""),
    // ---- the environment
    env(
        "FLEETFIX_INVENTORY",
        "/nonexistent/fleet.toml",
        "cannot read inventory",
    ),
    env("FLEETFIX_STATE_DIR", "/tmp", "writable by every user"),
    Bad {
        input: In::File("ssh_config", b"Host *\n  Port notaport\n", &[]),
        at: ".ssh/config",
        says: "cannot parse",
    },
    Bad {
        input: In::File(
            "bad8.toml",
            b"name = \"x\"\n[[steps]]\nrun = \"echo caf\xe9\"\n",
            &["run", "-i", "INV", "bad8.toml"],
        ),
        at: "bad8.toml:3:16",
        says: "not UTF-8",
    },
    Bad {
        input: In::File(
            "known_hosts/x",
            b"",
            &["run", "-i", "INV", "--known-hosts", "known_hosts", "PB"],
        ),
        at: "known_hosts",
        says: "cannot read",
    },
];

/// Runs `case` in a fresh dir whose inventory's nodes are `port` on
/// 127.0.0.1.
fn attempt(case: &Bad, port: u16) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let node =
        format!("[nodes.a]\nhost = \"127.0.0.1\"\nport = {port}\nconnect_timeout = \"1s\"\n");
    let good_inv = d.join("good_inv.toml");
    std::fs::write(&good_inv, &node).expect("inventory");
    let good_pb = d.join("good_pb.toml");
    std::fs::write(&good_pb, STEP).expect("playbook");
    let fill = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| match *a {
                "INV" => good_inv.display().to_string(),
                "PB" => good_pb.display().to_string(),
                a => a.to_string(),
            })
            .collect()
    };
    let mut cmd = fleetfix(d);
    cmd.current_dir(d)
        .env("FLEETFIX_STATE_DIR", d.join("state"));
    match &case.input {
        In::Playbook(text) => {
            std::fs::write(d.join("pb.toml"), text).expect("playbook");
            cmd.args(["run", "-i"]).arg(&good_inv).arg("pb.toml");
        }
        In::Inventory(text) => {
            std::fs::write(d.join("inv.toml"), text.replace("NODE", &node)).expect("inventory");
            cmd.args(["run", "-i", "inv.toml"]).arg(&good_pb);
        }
        In::Flags(args) => {
            cmd.args(fill(args));
        }
        In::Env(var, value) => {
            cmd.env(var, value).arg("run");
            if *var != "FLEETFIX_INVENTORY" {
                cmd.arg("-i").arg(&good_inv);
            }
            cmd.arg(&good_pb);
        }
        In::File(name, bytes, args) => {
            let path = if *name == "ssh_config" {
                d.join(".ssh/config")
            } else {
                d.join(name)
            };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("dir");
            }
            std::fs::write(&path, bytes).expect("file");
            if args.is_empty() {
                cmd.arg("run").arg("-i").arg(&good_inv).arg(&good_pb);
            } else {
                cmd.args(fill(args));
            }
        }
    }
    run(&mut cmd)
}

#[test]
fn every_bad_input_exits_2_with_its_position_before_connecting() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    assert!(CASES.len() >= 100, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let out = attempt(case, port);
        let err = &out.stderr;
        let mut wrong = Vec::new();
        if out.code != 2 {
            wrong.push(format!("exit {}", out.code));
        }
        if err.contains("panicked") || err.to_lowercase().contains("backtrace") {
            wrong.push("a panic".to_string());
        }
        if !err.contains(case.at) {
            wrong.push(format!("no {:?}", case.at));
        }
        if !err.contains(case.says) {
            wrong.push(format!("no {:?}", case.says));
        }
        if !(err.contains("hint: ") || err.contains("try '--help'") || err.contains("tip: ")) {
            wrong.push("no hint".to_string());
        }
        match listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            _ => wrong.push("a connection was opened".to_string()),
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "case {i} ({}): {}\n{}",
                case.at,
                wrong.join(", "),
                out.dump()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

/// The table's files are real: a case's own good inventory and playbook run.
#[test]
fn the_good_inventory_and_playbook_reach_the_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let probe = Bad {
        input: In::Flags(&["run", "-i", "INV", "PB"]),
        at: "",
        says: "",
    };
    let out = attempt(&probe, port);
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(listener.accept().is_ok(), "no connection: {}", out.dump());
}
