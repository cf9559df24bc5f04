//! Jump hosts: nodes reachable only from a bastion's network namespace.

use crate::common::cli::{Run, fleetfix, playbook, run};
use crate::common::netns::{Netns, client_key, sshd_setup};

struct Site {
    dir: tempfile::TempDir,
    ns: Netns,
    known_hosts: String,
}

/// A namespace with a bastion on its veth address and two inner sshds on
/// its own loopback (127.0.0.1:2222 and :2223), which the runner cannot reach.
fn site() -> Site {
    site_with(&[
        ("bastion", None, 22),
        ("inner", Some(std::net::Ipv4Addr::LOCALHOST), 2222),
        ("deeper", Some(std::net::Ipv4Addr::LOCALHOST), 2223),
    ])
}

/// A site of sshds `(name, address (None: the veth's), port)`.
fn site_with(sshds: &[(&str, Option<std::net::Ipv4Addr>, u16)]) -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ns = Netns::create();
    let mut known_hosts = String::new();
    for &(name, addr, port) in sshds {
        let addr = addr.unwrap_or(ns.ns_ip);
        let (conf, line) = sshd_setup(dir.path(), name, addr, port);
        let log = dir.path().join(format!("{name}.log"));
        ns.spawn(
            "/usr/sbin/sshd",
            &["-D", "-e", "-f", conf.to_str().expect("utf8")],
            &log,
        );
        Netns::wait_for(&log, "Server listening");
        known_hosts.push_str(&line);
        known_hosts.push('\n');
    }
    Site {
        dir,
        ns,
        known_hosts,
    }
}

impl Site {
    fn run(&self, inventory: &str, known_hosts: &str) -> Run {
        let inv = self.dir.path().join("inventory.toml");
        std::fs::write(&inv, inventory).expect("inventory");
        let kh = self.dir.path().join("known_hosts");
        std::fs::write(&kh, known_hosts).expect("known_hosts");
        let pb = playbook(
            self.dir.path(),
            "pb.toml",
            "name = \"jump\"\n[[steps]]\nrun = \"echo on $(hostname) via ${{ node.name }}\"\n",
        );
        run(fleetfix(self.dir.path())
            .args(["run", "--output", "json", "-i"])
            .arg(&inv)
            .arg("--known-hosts")
            .arg(&kh)
            .arg(&pb))
    }

    fn inventory(&self, jump: &str) -> String {
        let key = client_key(self.dir.path());
        format!(
            "[defaults]\nuser = \"root\"\nidentity_file = \"{key}\"\n\
             [jump_hosts.bastion]\nhost = \"{bastion}\"\nuser = \"root\"\nidentity_file = \"{key}\"\n\
             [nodes.inner]\nhost = \"127.0.0.1\"\nport = 2222\n{jump}\n\
             [nodes.inner2]\nhost = \"127.0.0.1\"\nport = 2222\n{jump}\n",
            key = key.display(),
            bastion = self.ns.ns_ip,
        )
    }
}

fn statuses(out: &Run) -> Vec<(String, String, String)> {
    out.events()
        .into_iter()
        .filter(|e| e["event"] == "node_finished")
        .map(|e| {
            (
                e["node"].as_str().unwrap_or("").to_string(),
                e["status"].as_str().unwrap_or("").to_string(),
                e["error"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_node_behind_a_bastion_needs_the_jump() {
    let site = site();
    let out = site.run(&site.inventory("jump = \"bastion\""), &site.known_hosts);
    assert_eq!(out.code, 0, "{}", out.dump());
    // Both nodes went through one bastion connection.
    let bastion_log = std::fs::read_to_string(site.dir.path().join("bastion.log")).expect("log");
    assert_eq!(
        bastion_log.matches("Accepted publickey").count(),
        1,
        "{bastion_log}"
    );

    let out = site.run(&site.inventory(""), &site.known_hosts);
    assert_eq!(
        out.code,
        6,
        "without the jump the runner cannot reach it: {}",
        out.dump()
    );
}

/// Jump hosts take `[defaults]` like nodes, every setting: with
/// `port = 2322` there, a bastion given as `user@host` or as a
/// `[jump_hosts]` entry without a port is reached on 2322 too.
#[test]
fn a_jump_host_takes_the_port_of_defaults_like_a_node() {
    let site = site_with(&[
        ("bastion", None, 2322),
        ("inner", Some(std::net::Ipv4Addr::LOCALHOST), 2322),
    ]);
    let key = client_key(site.dir.path());
    let inv = format!(
        "[defaults]\nuser = \"root\"\nport = 2322\nidentity_file = \"{key}\"\n\
         [jump_hosts.bastion]\nhost = \"{ip}\"\n\
         [nodes.by-string]\nhost = \"127.0.0.1\"\njump = \"root@{ip}\"\n\
         [nodes.by-name]\nhost = \"127.0.0.1\"\njump = \"bastion\"\n",
        key = key.display(),
        ip = site.ns.ns_ip,
    );
    let out = site.run(&inv, &site.known_hosts);
    assert_eq!(out.code, 0, "{}", out.dump());
    let s = statuses(&out);
    assert_eq!(s.len(), 2, "{}", out.dump());
    assert!(s.iter().all(|(_, st, _)| st == "changed"), "{s:?}");
}

#[test]
fn a_two_hop_chain_works() {
    let site = site();
    let inv = format!(
        "{}\n[nodes.deepest]\nhost = \"127.0.0.1\"\nport = 2223\njump = [\"bastion\", \"root@127.0.0.1:2222\"]\n",
        site.inventory("jump = \"bastion\"")
    );
    let out = site.run(&inv, &site.known_hosts);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        statuses(&out)
            .iter()
            .any(|(n, s, _)| n == "deepest" && s == "changed")
    );
}

#[test]
fn a_bastion_with_an_unknown_host_key_is_refused() {
    let site = site();
    let without_bastion: String = site
        .known_hosts
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    let out = site.run(&site.inventory("jump = \"bastion\""), &without_bastion);
    assert_eq!(out.code, 6, "{}", out.dump());
    for (node, status, error) in statuses(&out) {
        assert_eq!(status, "unreachable", "{node}");
        assert!(
            error.contains("via jump host root@") && error.contains("unknown"),
            "{error}"
        );
    }
}

#[test]
fn a_cut_link_makes_the_node_unreachable_within_30s() {
    let site = site();
    let key = client_key(site.dir.path());
    // One node straight on the namespace's veth address; the link is cut
    // mid-step, so only keepalives can tell the connection is gone.
    let inv = format!(
        "[nodes.cut]\nhost = \"{}\"\nuser = \"root\"\nidentity_file = \"{}\"\n",
        site.ns.ns_ip,
        key.display()
    );
    let inv_path = site.dir.path().join("cut.toml");
    std::fs::write(&inv_path, inv).expect("inventory");
    let kh = site.dir.path().join("known_hosts");
    std::fs::write(&kh, &site.known_hosts).expect("known_hosts");
    let pb = playbook(
        site.dir.path(),
        "long.toml",
        "name = \"long\"\n[[steps]]\nname = \"long step\"\nrun = \"sleep 120\"\n",
    );
    let child = fleetfix(site.dir.path())
        .args(["run", "--output", "json", "-i"])
        .arg(&inv_path)
        .arg("--known-hosts")
        .arg(&kh)
        .arg(&pb)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let cut = std::time::Instant::now();
    site.ns.cut();
    let out = Run::from(child.wait_with_output().expect("wait"));
    let took = cut.elapsed();
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    assert_eq!(out.code, 6, "{}", out.dump());
    let st = statuses(&out);
    assert_eq!(st[0].1, "unreachable", "{st:?}");
    assert!(st[0].2.contains("long step"), "{st:?}");
}
