//! Step fields (env, local, sudo, ignore_failure, changes) and client
//! authentication (encrypted keys, ssh-agent) against real sshd.

use std::process::{Command, Stdio};

use crate::common::Fleet;
use crate::common::cli::{Run, fleetfix, playbook, run, run_json_on};
use serde_json::Value;

fn run_json(fleet: &Fleet, inv: &std::path::Path, pb: &std::path::Path) -> Run {
    run_json_on(fleet, inv, pb, &[])
}

fn steps(out: &Run) -> Vec<Value> {
    out.of_kind("step_finished")
}

#[test]
fn env_local_ignore_failure_and_changes() {
    let fleet = Fleet::start(2);
    let inv = fleet.write_inventory(&[]);
    let local_dir = fleet.dir().join("local");
    std::fs::create_dir_all(&local_dir).expect("mkdir");
    let pb = playbook(
        fleet.dir(),
        "fields.toml",
        &format!(
            r#"
name = "fields"
[vars]
greeting = "hello world; it's me"

[[steps]]
name = "env"
env = {{ GREETING = "${{{{ greeting }}}} from ${{{{ node.name }}}}" }}
run = "printf '%s' \"$GREETING\""
expect = {{ stdout_contains = "hello world; it's me from node" }}
changes = false

[[steps]]
name = "on the runner"
local = "echo ${{{{ node.name }}}} > {local}/${{{{ node.name }}}}; echo local-$$"
capture = "local_out"

[[steps]]
name = "allowed to fail"
run = "echo boom >&2; exit 7"
ignore_failure = true

[[steps]]
name = "still runs"
run = "echo after"
expect = {{ exit = [0, 1] }}
"#,
            local = local_dir.display()
        ),
    );
    let out = run_json(&fleet, &inv, &pb);
    // A failure that is ignored does not fail the node.
    assert_eq!(out.code, 0, "{}", out.dump());
    let s = steps(&out);
    let by = |name: &str| -> Vec<&Value> { s.iter().filter(|e| e["step"] == name).collect() };
    assert!(by("env").iter().all(|e| e["status"] == "ok"), "{s:?}");
    assert!(
        by("on the runner").iter().all(|e| e["status"] == "changed"),
        "{s:?}"
    );
    for e in by("allowed to fail") {
        assert_eq!(e["status"], "failed");
        assert_eq!(e["exit"], 7);
        assert_eq!(e["stderr"], "boom\n");
    }
    assert_eq!(by("still runs").len(), 2);
    for n in ["node1", "node2"] {
        let written =
            std::fs::read_to_string(local_dir.join(n)).expect("local step ran on the runner");
        assert_eq!(written.trim(), n);
    }
}

#[test]
fn the_script_travels_on_stdin_not_the_command_line() {
    let fleet = Fleet::start(1);
    let inv = fleet.write_inventory(&[]);
    // The step looks at its own process list entry and its parents'.
    let pb = playbook(
        fleet.dir(),
        "argv.toml",
        r#"
name = "argv"
[vars]
token = "s3cr3t-on-stdin-only"
[[steps]]
name = "look"
env = { TOKEN = "${{ token }}" }
run = """
echo ${{ token }} >/dev/null
ps -eo args | grep -c 's3cr3t-on-stdin-onl[y]' || true
"""
"#,
    );
    let out = run_json(&fleet, &inv, &pb);
    assert_eq!(out.code, 0, "{}", out.dump());
    let s = steps(&out);
    assert_eq!(s[0]["stdout"].as_str().map(str::trim), Some("0"), "{s:?}");
}

#[test]
fn sudo_runs_through_sudo_n() {
    if !std::path::Path::new("/usr/bin/sudo").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install sudo (.ci/run does)"
        );
        eprintln!("sudo is not installed here; skipping");
        return;
    }
    let fleet = Fleet::start(1);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "sudo.toml",
        r#"
name = "sudo"
[[steps]]
name = "as root"
sudo = true
run = "echo uid=$(id -u) sudo_user=$SUDO_USER"
expect = { stdout_contains = "uid=0 sudo_user=root" }
"#,
    );
    let out = run_json(&fleet, &inv, &pb);
    assert_eq!(out.code, 0, "{}", out.dump());

    // A timed-out sudo step is ended too, though it runs as another user.
    let pb = playbook(
        fleet.dir(),
        "sudo-timeout.toml",
        "name = \"st\"\n[[steps]]\nsudo = true\nrun = \"sleep 3019\"\ntimeout = \"1s\"\n",
    );
    let out = run_json(&fleet, &inv, &pb);
    assert_eq!(out.code, 1, "{}", out.dump());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let left = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.starts_with("sleep 3019"))
        .count();
    assert_eq!(left, 0, "the sudo step's sleep survived its timeout");
}

#[test]
fn encrypted_identity_needs_its_passphrase() {
    let fleet = Fleet::start(1);
    let key = fleet.dir().join("enc_key");
    std::fs::copy(fleet.client_key(), &key).expect("copy key");
    let status = Command::new("/usr/bin/ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "correct horse", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let inv = fleet.write_inventory(&[]);
    let text = std::fs::read_to_string(&inv).expect("read");
    let text = text.replace(
        &fleet.client_key().display().to_string(),
        &key.display().to_string(),
    );
    std::fs::write(&inv, text).expect("write");
    let pb = playbook(
        fleet.dir(),
        "t.toml",
        "name = \"t\"\n[[steps]]\nrun = \"true\"\n",
    );

    let out = run_json(&fleet, &inv, &pb);
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(out.stderr.contains("is encrypted"), "{}", out.dump());
    assert!(
        out.stderr.contains("FLEETFIX_KEY_PASSPHRASE"),
        "{}",
        out.dump()
    );

    let out = run(fleetfix(fleet.dir())
        .env("FLEETFIX_KEY_PASSPHRASE", "wrong")
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(out.stderr.contains("cannot decrypt"), "{}", out.dump());

    let out = run(fleetfix(fleet.dir())
        .env("FLEETFIX_KEY_PASSPHRASE", "correct horse")
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    assert_eq!(out.code, 0, "{}", out.dump());
}

/// An ssh-agent of the test's own, ended by pid.
struct Agent {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ssh_agent_keys_are_tried_first() {
    let fleet = Fleet::start(2);
    let socket = fleet.dir().join("agent.sock");
    let child = Command::new("/usr/bin/ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let agent = Agent { child, socket };
    for _ in 0..100 {
        if agent.socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = Command::new("/usr/bin/ssh-add")
        .arg(fleet.client_key())
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .expect("ssh-add");
    assert!(added.status.success(), "{added:?}");
    // No identity_file anywhere and no ~/.ssh keys: only the agent can work.
    let inv = fleet.write_inventory(&[]);
    let text = std::fs::read_to_string(&inv).expect("read");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("identity_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&inv, text).expect("write");
    let pb = playbook(
        fleet.dir(),
        "t.toml",
        "name = \"t\"\n[[steps]]\nrun = \"true\"\n",
    );
    let out = run(fleetfix(fleet.dir())
        .env("SSH_AUTH_SOCK", &agent.socket)
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    assert_eq!(out.code, 0, "{}", out.dump());
    // Without the agent the same inventory cannot log in.
    let out = run(fleetfix(fleet.dir())
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    assert_eq!(out.code, 6, "{}", out.dump());
    assert!(out.stdout.contains("no key at all"), "{}", out.dump());
}

#[test]
fn output_beyond_the_cap_is_counted_not_kept() {
    let fleet = Fleet::start(1);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "big.toml",
        "name = \"big\"\n[[steps]]\nrun = \"head -c 300000 /dev/zero | tr '\\\\0' x; echo done >&2\"\n",
    );
    let out = run_json_on(&fleet, &inv, &pb, &["--output-cap", "1K"]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let step = &steps(&out)[0];
    let stdout = step["stdout"].as_str().unwrap_or_default();
    assert!(
        stdout.starts_with(&"x".repeat(1024))
            && stdout.ends_with("\n[… truncated: 298976 more bytes not kept]"),
        "{}",
        &stdout[stdout.len().saturating_sub(80)..]
    );
    assert_eq!(step["stderr"].as_str().map(str::trim), Some("done"));
    // The default keeps 256 KiB.
    let out = run_json_on(&fleet, &inv, &pb, &[]);
    let stdout = steps(&out)[0]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        stdout.ends_with("truncated: 37856 more bytes not kept]"),
        "{}",
        &stdout[stdout.len() - 60..]
    );
}
