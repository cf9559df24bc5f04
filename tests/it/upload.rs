//! `upload` steps against real sshd nodes: atomic, idempotent, templated.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::Fleet;
use crate::common::cli::{Run, fleetfix, playbook, run_json_on};
use serde_json::Value;

fn run_json(fleet: &Fleet, pb: &std::path::Path, extra: &[&str]) -> Run {
    run_json_on(fleet, &fleet.write_inventory(&[]), pb, extra)
}

fn statuses(out: &Run) -> Vec<String> {
    out.of_kind("step_finished")
        .into_iter()
        .map(|e: Value| e["status"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn upload_twice_is_changed_then_ok_with_mode_and_template() {
    let fleet = Fleet::start(2);
    std::fs::write(
        fleet.dir().join("relay.conf"),
        "node=${{ node.name }}\nport=${{ port }}\n",
    )
    .expect("write src");
    let pb = playbook(
        fleet.dir(),
        "upload.toml",
        r#"
name = "upload"
[vars]
port = 8088
[[steps]]
name = "config"
upload = { src = "relay.conf", dest = "${{ marker_dir }}/relay.conf", mode = "0640", owner = "root:root", template = true }
"#,
    );
    let out = run_json(&fleet, &pb, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(statuses(&out), ["changed", "changed"]);
    for n in ["node1", "node2"] {
        let dest = fleet.dir().join("markers").join(n).join("relay.conf");
        assert_eq!(
            std::fs::read_to_string(&dest).expect("uploaded"),
            format!("node={n}\nport=8088\n")
        );
        let mode = std::fs::metadata(&dest).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
    }
    let again = run_json(&fleet, &pb, &[]);
    assert_eq!(again.code, 0, "{}", again.dump());
    assert_eq!(
        statuses(&again),
        ["ok", "ok"],
        "identical content must not be written again"
    );

    // --check: a node whose file drifted would be written, the other not.
    let drifted = fleet.dir().join("markers/node2/relay.conf");
    std::fs::write(&drifted, "tampered\n").expect("tamper");
    let check = run_json(&fleet, &pb, &["--check"]);
    assert_eq!(check.code, 5, "{}", check.dump());
    let mut st = statuses(&check);
    st.sort();
    assert_eq!(st, ["would_run", "would_skip"]);
    assert_eq!(
        std::fs::read_to_string(&drifted).expect("read"),
        "tampered\n"
    );
}

#[test]
fn a_run_killed_mid_upload_never_leaves_a_half_written_dest() {
    let fleet = Fleet::start(1);
    let big: Vec<u8> = (0..24 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(fleet.dir().join("big.bin"), &big).expect("write");
    let pb = playbook(
        fleet.dir(),
        "big.toml",
        r#"
name = "big"
[[steps]]
upload = { src = "big.bin", dest = "${{ marker_dir }}/big.bin" }
"#,
    );
    let inv = fleet.write_inventory(&[]);
    let dest = fleet.dir().join("markers/node1/big.bin");
    std::fs::write(&dest, b"the old, complete file").expect("old");
    let mut child = fleetfix(fleet.dir())
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill as soon as the temporary file starts to grow.
    let markers = fleet.dir().join("markers/node1");
    let started = std::time::Instant::now();
    let mut seen = false;
    while started.elapsed() < Duration::from_secs(20) && !seen {
        seen = std::fs::read_dir(&markers)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().contains("fleetfix-tmp"))
            })
            .unwrap_or(false);
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    assert!(seen, "never caught the upload in flight");
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(500));
    let now = std::fs::read(&dest).expect("dest still there");
    assert!(
        now == b"the old, complete file" || now == big,
        "dest is half-written: {} bytes",
        now.len()
    );
}
