//! Host key verification and unreachable nodes, against real sshd.

use crate::common::Fleet;
use crate::common::cli::{Run, fleetfix, playbook, run};
use serde_json::Value;

const PLAYBOOK: &str = r#"
name = "touch"
[[steps]]
name = "touch"
run = "touch ${{ marker_dir }}/touched"
"#;

fn run_json(fleet: &Fleet, inv: &std::path::Path, extra: &[&str]) -> Run {
    let pb = playbook(fleet.dir(), "touch.toml", PLAYBOOK);
    run(fleetfix(fleet.dir())
        .args(["run", "--output", "json", "-i"])
        .arg(inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .args(extra)
        .arg(&pb))
}

/// node name → (status, error) from the node_finished events.
fn outcomes(out: &Run) -> std::collections::HashMap<String, (String, String)> {
    out.events()
        .into_iter()
        .filter(|e| e["event"] == "node_finished")
        .map(|e| {
            let name = e["node"].as_str().unwrap_or_default().to_string();
            let status = e["status"].as_str().unwrap_or_default().to_string();
            let error = match &e["error"] {
                Value::String(s) => s.clone(),
                _ => String::new(),
            };
            (name, (status, error))
        })
        .collect()
}

#[test]
fn unknown_changed_and_pinned_host_keys() {
    let fleet = Fleet::builder()
        .nodes(3)
        .unknown_host_key("newbie")
        .changed_host_key("evil")
        .start();
    let inv = fleet.write_inventory(&[]);
    let newbie_fp = fleet.host_fingerprint("newbie");

    // Unknown key: refused with its fingerprint; changed key: refused loudly.
    let out = run_json(&fleet, &inv, &[]);
    assert_eq!(out.code, 6, "{}", out.dump());
    let o = outcomes(&out);
    assert_eq!(o["newbie"].0, "unreachable");
    assert!(o["newbie"].1.contains(&newbie_fp), "{:?}", o["newbie"]);
    assert!(
        o["newbie"].1.contains("--accept-new-host-keys"),
        "{:?}",
        o["newbie"]
    );
    assert_eq!(o["evil"].0, "unreachable");
    assert!(o["evil"].1.contains("HOST KEY CHANGED"), "{:?}", o["evil"]);
    for n in ["node1", "node2", "node3"] {
        assert_eq!(o[n].0, "changed", "{n}: {:?}", o[n]);
    }
    assert!(!fleet.dir().join("markers/newbie/touched").exists());
    assert!(!fleet.dir().join("markers/evil/touched").exists());

    // Trust on first use learns the unknown key, still refuses the changed one.
    let out = run_json(&fleet, &inv, &["--accept-new-host-keys"]);
    assert_eq!(out.code, 6, "{}", out.dump());
    let o = outcomes(&out);
    assert_eq!(o["newbie"].0, "changed", "{:?}", o["newbie"]);
    assert_eq!(o["evil"].0, "unreachable");
    assert!(o["evil"].1.contains("HOST KEY CHANGED"), "{:?}", o["evil"]);
    let kh = std::fs::read_to_string(fleet.known_hosts()).expect("known_hosts");
    let newbie = fleet.node("newbie");
    let learned = format!(
        "{} {}",
        newbie.known_hosts_host(),
        fleet.host_pubkey_line("newbie")
    );
    assert!(
        kh.contains(&learned),
        "learned line {learned:?} missing from\n{kh}"
    );
    assert!(fleet.dir().join("markers/newbie/touched").exists());

    // Without the flag the learned key is now trusted.
    let out = run_json(&fleet, &fleet.write_inventory_for(&["newbie"], &[]), &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
}

#[test]
fn an_inventory_pin_is_honoured() {
    let fleet = Fleet::builder().nodes(1).unknown_host_key("pinned").start();
    let fp = fleet.host_fingerprint("pinned");
    let good =
        fleet.write_inventory_for(&["pinned"], &[("pinned", &format!("host_key = \"{fp}\""))]);
    let out = run_json(&fleet, &good, &[]);
    assert_eq!(out.code, 0, "pin by fingerprint: {}", out.dump());

    let key = fleet.host_pubkey_line("pinned");
    let by_key =
        fleet.write_inventory_for(&["pinned"], &[("pinned", &format!("host_key = \"{key}\""))]);
    let out = run_json(&fleet, &by_key, &[]);
    assert_eq!(out.code, 0, "pin by key: {}", out.dump());

    // A wrong pin is refused even though known_hosts does not know the host
    // and trust-on-first-use is on: the pin wins.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let bad = fleet.write_inventory_for(
        &["pinned"],
        &[("pinned", &format!("host_key = \"{wrong}\""))],
    );
    let out = run_json(&fleet, &bad, &["--accept-new-host-keys"]);
    assert_eq!(out.code, 6, "{}", out.dump());
    let o = outcomes(&out);
    assert!(
        o["pinned"].1.contains("HOST KEY CHANGED"),
        "{:?}",
        o["pinned"]
    );
    assert!(o["pinned"].1.contains(&fp), "{:?}", o["pinned"]);
}

#[test]
fn closed_port_and_rejected_key_are_unreachable_with_distinct_messages() {
    let fleet = Fleet::builder()
        .nodes(3)
        .closed_port("closed")
        .rejects_client_key("stranger")
        .start();
    let inv = fleet.write_inventory(&[]);
    let out = run_json(&fleet, &inv, &[]);
    assert_eq!(out.code, 6, "{}", out.dump());
    let o = outcomes(&out);
    assert_eq!(o["closed"].0, "unreachable");
    assert!(
        o["closed"].1.contains("connection refused"),
        "{:?}",
        o["closed"]
    );
    assert_eq!(o["stranger"].0, "unreachable");
    assert!(
        o["stranger"].1.contains("authentication failed for root@"),
        "{:?}",
        o["stranger"]
    );
    assert!(
        o["stranger"].1.contains("client_ed25519") || o["stranger"].1.contains("id_"),
        "names the key tried: {:?}",
        o["stranger"]
    );
    for n in ["node1", "node2", "node3"] {
        assert_eq!(o[n].0, "changed", "{n}");
    }
    // The human summary names both reasons too.
    let pb = playbook(fleet.dir(), "touch.toml", PLAYBOOK);
    let human = run(fleetfix(fleet.dir())
        .args(["run", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb));
    assert_eq!(human.code, 6);
    assert!(human.stdout.contains("unreachable"), "{}", human.dump());
    assert!(
        human.stdout.contains("3 changed, 2 unreachable"),
        "{}",
        human.dump()
    );
}

#[test]
fn connect_timeout_is_per_node() {
    // 127.x addresses always answer, so a black hole needs a listener that
    // never speaks SSH: a plain TCP socket that accepts and stays silent.
    let fleet = Fleet::start(2);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let inv = fleet.write_inventory(&[]);
    let mut text = std::fs::read_to_string(&inv).expect("read");
    text.push_str(&format!(
        "\n[nodes.silent]\nhost = \"127.0.0.1\"\nport = {port}\nconnect_timeout = \"1s\"\nvars = {{ marker_dir = \"/nonexistent\" }}\n"
    ));
    std::fs::write(&inv, text).expect("write");
    let started = std::time::Instant::now();
    let out = run_json(&fleet, &inv, &[]);
    assert_eq!(out.code, 6, "{}", out.dump());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let o = outcomes(&out);
    assert!(
        o["silent"].1.contains("timed out after 1.0s"),
        "{:?}",
        o["silent"]
    );
    drop(silent);
}

#[test]
fn a_key_of_another_type_for_a_known_host_is_refused_even_with_tofu() {
    let fleet = Fleet::start(1);
    let inv = fleet.write_inventory(&[]);
    // known_hosts records an ECDSA key for node1; the node presents ed25519.
    let node = fleet.node("node1");
    let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
    std::fs::write(
        fleet.known_hosts(),
        format!("{} {ecdsa}\n", node.known_hosts_host()),
    )
    .expect("write");
    let out = run_json(&fleet, &inv, &["--accept-new-host-keys"]);
    assert_eq!(out.code, 6, "{}", out.dump());
    let o = outcomes(&out);
    assert!(
        o["node1"].1.contains("HOST KEY CHANGED"),
        "{:?}",
        o["node1"]
    );
    let kh = std::fs::read_to_string(fleet.known_hosts()).expect("read");
    assert_eq!(kh.lines().count(), 1, "the new key was learned:\n{kh}");
}

#[test]
fn a_connection_that_dies_mid_step_makes_only_that_node_unreachable() {
    let fleet = Fleet::builder().nodes(3).own_sshd("node3").start();
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(
        fleet.dir(),
        "long.toml",
        "name = \"long\"\n[[steps]]\nname = \"long step\"\nrun = \"sleep 4\"\n",
    );
    let child = fleetfix(fleet.dir())
        .args(["run", "--output", "json", "-i"])
        .arg(&inv)
        .arg("--known-hosts")
        .arg(fleet.known_hosts())
        .arg(&pb)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = std::time::Instant::now();
    fleet.kill_node("node3");
    let out = Run::from(child.wait_with_output().expect("wait"));
    assert!(killed.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(out.code, 6, "{}", out.dump());
    let o = outcomes(&out);
    assert_eq!(o["node3"].0, "unreachable", "{:?}", o["node3"]);
    assert!(
        o["node3"].1.contains("long step"),
        "names the step: {:?}",
        o["node3"]
    );
    assert_eq!(o["node1"].0, "changed");
    assert_eq!(o["node2"].0, "changed");
}

#[test]
fn a_node_known_only_by_an_ssh_config_alias_connects() {
    let fleet = Fleet::start(1);
    let node = fleet.node("node1");
    let ssh_dir = fleet.dir().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).expect("mkdir");
    std::fs::write(
        ssh_dir.join("config"),
        format!(
            "Host relay-alias\n  HostName {}\n  Port {}\n  User root\n  IdentityFile {}\n\nHost *\n  User nobody-else\n",
            node.addr,
            node.port,
            fleet.client_key().display()
        ),
    )
    .expect("write ssh config");
    let marker = fleet.dir().join("markers/node1");
    std::fs::create_dir_all(&marker).expect("mkdir");
    let inv = fleet.dir().join("alias.toml");
    std::fs::write(
        &inv,
        format!(
            "[nodes.relay-alias]\nvars = {{ marker_dir = \"{}\" }}\n",
            marker.display()
        ),
    )
    .expect("write inventory");
    let nodes = run(fleetfix(fleet.dir()).args(["nodes", "-i"]).arg(&inv));
    assert!(
        nodes.stdout.contains(&node.addr.to_string())
            && nodes.stdout.contains(&node.port.to_string()),
        "{}",
        nodes.dump()
    );
    let out = run_json(&fleet, &inv, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(fleet.dir().join("markers/node1/touched").exists());
}

#[test]
fn login_with_an_openssh_user_certificate() {
    // A CA the fleet's sshd trusts, and a client key sshd knows only
    // through the certificate the CA signed for it.
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let keygen = crate::common::cli::ssh_keygen;
    let ca = ca_dir.path().join("ca");
    let key = ca_dir.path().join("certified");
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "ca",
        "-f",
        ca.to_str().expect("utf8"),
    ]);
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "certified",
        "-f",
        key.to_str().expect("utf8"),
    ]);
    let fleet = Fleet::builder()
        .nodes(1)
        .sshd_config(format!("TrustedUserCAKeys {}.pub", ca.display()))
        .start();
    let inv = fleet.write_inventory(&[]);
    let text = std::fs::read_to_string(&inv).expect("read");
    let text = text.replace(
        &fleet.client_key().display().to_string(),
        &key.display().to_string(),
    );
    std::fs::write(&inv, text).expect("write");

    // Without a certificate the key is refused...
    let out = run_json(&fleet, &inv, &[]);
    assert_eq!(out.code, 6, "{}", out.dump());
    // ...with `<key>-cert.pub` beside it, it logs in.
    keygen(&[
        "-q",
        "-s",
        ca.to_str().expect("utf8"),
        "-I",
        "fleetfix-test",
        "-n",
        "root",
        "-V",
        "-5m:+1h",
        &format!("{}.pub", key.display()),
    ]);
    assert!(ca_dir.path().join("certified-cert.pub").exists());
    let out = run_json(&fleet, &inv, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
}

#[test]
fn a_host_certificate_is_accepted_through_cert_authority() {
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let keygen = crate::common::cli::ssh_keygen;
    let ca = ca_dir.path().join("host_ca");
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "host-ca",
        "-f",
        ca.to_str().expect("utf8"),
    ]);
    let cert = ca_dir.path().join("host-cert.pub");
    let fleet = Fleet::builder()
        .nodes(1)
        .sshd_config(format!("HostCertificate {}", cert.display()))
        .start();
    let node = fleet.node("node1").clone();
    // Sign the node's host key for its address, then have sshd reload.
    let host_pub = ca_dir.path().join("host.pub");
    std::fs::copy(
        format!("{}.pub", fleet.host_key_path("node1").display()),
        &host_pub,
    )
    .expect("copy");
    let principal = node.addr.to_string();
    keygen(&[
        "-q",
        "-s",
        ca.to_str().expect("utf8"),
        "-h",
        "-I",
        "node1",
        "-n",
        &principal,
        "-V",
        "-5m:+1h",
        host_pub.to_str().expect("utf8"),
    ]);
    std::fs::rename(ca_dir.path().join("host-cert.pub"), &cert).ok();
    assert!(cert.exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fleet.sshd_pid("node1") as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP sshd");
    let started = std::time::Instant::now();
    while fleet
        .sshd_log("node1")
        .matches("Server listening")
        .nth(1)
        .is_none()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "sshd did not reload:\n{}",
            fleet.sshd_log("node1")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ca_pub = std::fs::read_to_string(format!("{}.pub", ca.display())).expect("ca pub");
    // known_hosts trusts only the CA: no plain key for the node.
    std::fs::write(fleet.known_hosts(), format!("@cert-authority * {ca_pub}")).expect("write");
    let inv = fleet.write_inventory(&[]);
    let out = run_json(&fleet, &inv, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());

    // A CA that did not sign it is refused, with the reason.
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "other",
        "-f",
        ca_dir.path().join("other").to_str().expect("utf8"),
    ]);
    let other = std::fs::read_to_string(ca_dir.path().join("other.pub")).expect("other pub");
    std::fs::write(fleet.known_hosts(), format!("@cert-authority * {other}")).expect("write");
    let out = run_json(&fleet, &inv, &[]);
    assert_eq!(out.code, 6, "{}", out.dump());
    assert!(
        outcomes(&out)["node1"].1.contains("host certificate"),
        "{}",
        out.dump()
    );
}

#[test]
fn the_cheap_strong_cipher_is_negotiated() {
    // sshd logs the negotiated cipher at DEBUG1.
    let fleet = Fleet::builder()
        .nodes(1)
        .sshd_config("LogLevel DEBUG1")
        .start();
    let inv = fleet.write_inventory(&[]);
    let out = run_json(&fleet, &inv, &[]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let want = if cpuinfo.contains(" aes") && cpuinfo.contains(" pclmulqdq") {
        "aes256-gcm@openssh.com"
    } else {
        "chacha20-poly1305@openssh.com"
    };
    let log = fleet.sshd_log("node1");
    assert!(
        log.contains(&format!("kex: client->server cipher: {want}")),
        "want {want}:\n{log}"
    );
}
