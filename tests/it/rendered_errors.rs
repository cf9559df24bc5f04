//! How bad input is rendered, pinned whole with `insta`: the position
//! (file:line:col), the source line with its caret, the message and the
//! hint, one snapshot per kind of mistake. The table in `bad_input_table`
//! checks a piece of each of 150 messages; this pins what a person sees.

use crate::common::cli::{fleetfix, run};

const NODE: &str = "[nodes.a]\nhost = \"127.0.0.1\"\nport = 1\nconnect_timeout = \"1s\"\n";
const STEP: &str = "name = \"x\"\n[[steps]]\nrun = \"true\"\n";

/// `fleetfix run -i inv.toml pb.toml` in a fresh directory; its stderr.
/// Nothing listens on port 1: every case must stop before connecting.
fn rendered(inventory: &str, playbook: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("inv.toml"), inventory).expect("inventory");
    std::fs::write(d.join("pb.toml"), playbook).expect("playbook");
    let mut cmd = fleetfix(d);
    cmd.current_dir(d)
        .env("FLEETFIX_STATE_DIR", d.join("state"))
        .args(["run", "-i", "inv.toml", "pb.toml"]);
    let out = run(&mut cmd);
    assert_eq!(out.code, 2, "bad input exits 2:\n{}", out.stderr);
    out.stderr.replace(&d.display().to_string(), "[DIR]")
}

fn playbook(name: &str, text: &str) {
    insta::assert_snapshot!(name, rendered(NODE, text));
}

fn inventory(name: &str, text: &str) {
    insta::assert_snapshot!(name, rendered(text, STEP));
}

#[test]
fn playbook_errors_render_with_position_caret_and_hint() {
    playbook("toml_syntax", "name = \"x\"\n[[steps]\nrun = \"a\"\n");
    playbook("unknown_key", "name = \"x\"\n[[steps]]\nrn = \"a\"\n");
    playbook("missing_name", "[[steps]]\nrun = \"a\"\n");
    playbook("no_action", "name = \"x\"\n[[steps]]\nname = \"n\"\n");
    playbook(
        "two_actions",
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nlocal = \"b\"\n",
    );
    playbook(
        "wrong_type",
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nsudo = \"yes\"\n",
    );
    playbook(
        "bad_duration",
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"soon\"\n",
    );
    playbook(
        "zero_duration",
        "name = \"x\"\n[[steps]]\nrun = \"a\"\ntimeout = \"0s\"\n",
    );
    playbook(
        "too_many_retries",
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nretries = 10001\n",
    );
}

#[test]
fn template_errors_point_into_the_template() {
    playbook(
        "undefined_variable",
        "name = \"x\"\n[[steps]]\nrun = \"echo ${{ nope }}\"\n",
    );
    playbook(
        "template_syntax",
        "name = \"x\"\n[[steps]]\nrun = \"echo ${{ x + }}\"\n",
    );
    playbook(
        "multi_line_template",
        "name = \"x\"\n[[steps]]\nrun = \"\"\"\necho one\necho ${{ missing }}\n\"\"\"\n",
    );
    playbook(
        "when_syntax",
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nwhen = \"a ==\"\n",
    );
    playbook(
        "when_undefined",
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nwhen = \"undefined_thing == 1\"\n",
    );
    playbook(
        "unless_undefined",
        "name = \"x\"\n[[steps]]\nrun = \"a\"\nunless = \"test ${{ nope }}\"\n",
    );
}

#[test]
fn inventory_errors_render_with_position_caret_and_hint() {
    inventory("inventory_syntax", "[nodes.a\nhost = \"x\"\n");
    inventory(
        "inventory_unknown_key",
        &format!("{NODE}[nodes.b]\nhots = \"x\"\n"),
    );
    inventory("inventory_no_node", "[vars]\nx = 1\n");
    inventory(
        "inventory_port_zero",
        &format!("{NODE}[nodes.b]\nport = 0\n"),
    );
    inventory(
        "inventory_port_range",
        &format!("{NODE}[nodes.b]\nport = 70000\n"),
    );
}
