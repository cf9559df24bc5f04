//! Running the real `fleetfix` binary against a [`super::Fleet`].

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `fleetfix` command with a clean environment: HOME in the fleet's dir,
/// no ssh-agent, so only what the test sets up is used.
pub fn fleetfix(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetfix"));
    cmd.env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("FLEETFIX_INVENTORY")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    cmd
}

/// Output of a finished command as text, for assertions and messages.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The JSON Lines events on stdout.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// The events of one kind (`step_finished`, `node_finished`, …).
    pub fn of_kind(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// node -> step -> its `step_finished` event (the last one of a step).
    pub fn steps_by_node(
        &self,
    ) -> std::collections::HashMap<String, std::collections::HashMap<String, serde_json::Value>>
    {
        let mut m: std::collections::HashMap<_, std::collections::HashMap<_, _>> =
            Default::default();
        for e in self.of_kind("step_finished") {
            let node = e["node"].as_str().unwrap_or_default().to_string();
            let step = e["step"].as_str().unwrap_or_default().to_string();
            m.entry(node).or_default().insert(step, e);
        }
        m
    }

    pub fn dump(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion.
pub fn run(cmd: &mut Command) -> Run {
    Run::from(cmd.output().expect("fleetfix binary runs"))
}

/// Writes a playbook into `dir` and returns its path.
pub fn playbook(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write playbook");
    p
}

/// `fleetfix run --output json -i INV --known-hosts KH EXTRA… PB`, HOME in
/// `home`, not yet started.
pub fn json_run(home: &Path, inv: &Path, kh: &Path, pb: &Path, extra: &[&str]) -> Command {
    let mut cmd = fleetfix(home);
    cmd.args(["run", "--output", "json", "-i"])
        .arg(inv)
        .arg("--known-hosts")
        .arg(kh)
        .args(extra)
        .arg(pb);
    cmd
}

/// `fleetfix run --output json` on `fleet`'s nodes, trusting its known_hosts.
pub fn run_json_on(fleet: &super::Fleet, inv: &Path, pb: &Path, extra: &[&str]) -> Run {
    run(&mut json_run(
        fleet.dir(),
        inv,
        fleet.known_hosts(),
        pb,
        extra,
    ))
}

/// Runs `/usr/bin/ssh-keygen ARGS`, failing the test with its stderr.
pub fn ssh_keygen(args: &[&str]) {
    let out = Command::new("/usr/bin/ssh-keygen")
        .args(args)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `c` with its output captured, for a test that signals it.
pub fn spawn(mut c: Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fleetfix")
}

/// Waits for a spawned command to end.
pub fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().expect("wait"))
}

/// Polls `ok` every 50 ms; fails the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `sig` to a spawned command, by its pid.
pub fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).expect("signal");
}
