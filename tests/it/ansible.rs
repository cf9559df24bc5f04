//! Ansible inventories as `-i`: fleetfix resolves the same hosts, groups
//! and variables as the real `ansible-inventory` (ansible-core from PyPI,
//! which `.ci/run` installs) on the same files, field by field; a run
//! against real sshd nodes named only in an INI inventory selects by
//! group; inventory scripts that fail, hang or print bad JSON are exit 2.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::Fleet;
use crate::common::cli::{fleetfix, playbook, run};

/// The inventories of `tests/data/ansible`.
fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ansible")
        .join(rel)
}

/// A home with the identity file the fixtures name (`~/.ssh/id_fixture`).
fn home() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(home.path().join(".ssh")).expect(".ssh");
    std::fs::write(home.path().join(".ssh/id_fixture"), "not a real key\n").expect("key");
    home
}

/// `ansible-inventory -i INV ARGS` as JSON; it must parse the source
/// (a source no plugin could read is an error, not a warning).
fn ansible_inventory(home: &Path, inv: &Path, args: &[&str]) -> Value {
    let out = Command::new("ansible-inventory")
        .arg("-i")
        .arg(inv)
        .args(args)
        .env("HOME", home)
        .env("USER", "tester")
        .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
        .env("ANSIBLE_LOCAL_TEMP", home.join(".ansible-tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("ansible-inventory runs (pip install ansible-core)");
    assert!(
        out.status.success(),
        "ansible-inventory -i {} {args:?} failed: {}",
        inv.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ansible-inventory prints JSON")
}

/// `fleetfix nodes -i INV --output json`, one object per node, by name.
fn fleetfix_nodes(home: &Path, inv: &Path) -> BTreeMap<String, Value> {
    let r = run(fleetfix(home)
        .env("USER", "tester")
        .args(["nodes", "--output", "json", "-i"])
        .arg(inv));
    assert_eq!(
        r.code,
        0,
        "fleetfix nodes -i {}: {}",
        inv.display(),
        r.stderr
    );
    r.stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            (v["name"].as_str().expect("name").to_string(), v)
        })
        .collect()
}

/// Each host's groups (every group holding it, through children, and
/// `all`) from the group entries of `--list` output.
fn groups_of_hosts(list: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let groups = list.as_object().expect("an object");
    fn hosts_in(
        groups: &serde_json::Map<String, Value>,
        g: &str,
        seen: &mut BTreeSet<String>,
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if !seen.insert(g.to_string()) {
            return out;
        }
        let Some(entry) = groups.get(g) else {
            return out;
        };
        for h in entry["hosts"].as_array().into_iter().flatten() {
            out.insert(h.as_str().expect("host name").to_string());
        }
        for c in entry["children"].as_array().into_iter().flatten() {
            out.extend(hosts_in(groups, c.as_str().expect("group name"), seen));
        }
        out
    }
    let mut by_host: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in groups.keys().filter(|g| *g != "_meta") {
        for h in hosts_in(groups, g, &mut BTreeSet::new()) {
            by_host.entry(h).or_default().insert(g.clone());
        }
    }
    for groups in by_host.values_mut() {
        groups.insert("all".to_string());
    }
    by_host
}

/// `[user@]host[:port]` as fleetfix labels a hop, with its defaults.
fn hop_label(hop: &str) -> String {
    let (user, rest) = hop.split_once('@').unwrap_or(("tester", hop));
    let (host, port) = rest.split_once(':').unwrap_or((rest, "22"));
    format!("{user}@{host}:{port}")
}

/// The hops of a `-o ProxyJump=…` or `-J …` in ssh arguments.
fn proxy_jump(args: &str) -> Vec<String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let mut hops = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let value = if let Some(v) = w.strip_prefix("ProxyJump=") {
            Some(v.to_string())
        } else if let Some(v) = w.strip_prefix("-oProxyJump=") {
            Some(v.to_string())
        } else if *w == "-J" {
            words.get(i + 1).map(|v| v.to_string())
        } else {
            None
        };
        if let Some(v) = value {
            hops = v.split(',').map(hop_label).collect();
        }
    }
    hops
}

/// fleetfix's nodes equal ansible-inventory's hosts: the same names, the
/// same groups, connection variables as settings, every other variable
/// as a node variable (a null one left undefined, as TOML has no null).
fn assert_same_fleet(home: &Path, for_ansible: &Path, for_fleetfix: &Path) {
    let list = ansible_inventory(home, for_ansible, &["--list"]);
    let export = ansible_inventory(home, for_ansible, &["--list", "--export"]);
    let nodes = fleetfix_nodes(home, for_fleetfix);
    let hostvars = list["_meta"]["hostvars"]
        .as_object()
        .expect("_meta.hostvars");
    let groups = groups_of_hosts(&list);
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        nodes.keys().collect::<Vec<_>>(),
        "the same hosts"
    );
    assert_eq!(
        groups,
        groups_of_hosts(&export),
        "--export has the same groups"
    );
    let case = for_ansible.display();
    for (name, node) in &nodes {
        let want_groups = &groups[name];
        let got_groups: BTreeSet<String> = node["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g.as_str().expect("group").to_string())
            .collect();
        assert_eq!(&got_groups, want_groups, "{case}: groups of {name}");
        let empty = serde_json::Map::new();
        let vars = hostvars
            .get(name)
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut want_vars = serde_json::Map::new();
        let (mut host, mut port, mut user) = (
            Value::from(name.as_str()),
            Value::from(22),
            Value::from("tester"),
        );
        let mut key = Value::Null;
        let mut jump: Vec<String> = Vec::new();
        for (k, v) in vars {
            match k.as_str() {
                "ansible_host" => host = v.clone(),
                "ansible_port" => {
                    port = v
                        .as_str()
                        .map(|p| Value::from(p.parse::<u64>().expect("a port")))
                        .unwrap_or_else(|| v.clone())
                }
                "ansible_user" => user = v.clone(),
                "ansible_ssh_private_key_file" => {
                    let p = v.as_str().expect("a path");
                    key = Value::from(p.replacen('~', &home.display().to_string(), 1));
                }
                "ansible_ssh_common_args" | "ansible_ssh_extra_args" => {
                    jump = proxy_jump(v.as_str().expect("ssh args"))
                }
                _ if v.is_null() => {}
                _ => {
                    want_vars.insert(k.clone(), v.clone());
                }
            }
        }
        assert_eq!(node["host"], host, "{case}: host of {name}");
        assert_eq!(node["port"], port, "{case}: port of {name}");
        assert_eq!(node["user"], user, "{case}: user of {name}");
        assert_eq!(
            node["identity_file"], key,
            "{case}: identity file of {name}"
        );
        let got_jump: Vec<String> = node["jump"]
            .as_array()
            .expect("jump")
            .iter()
            .map(|j| j.as_str().expect("hop").to_string())
            .collect();
        assert_eq!(got_jump, jump, "{case}: jump hosts of {name}");
        assert_eq!(
            node["vars"].as_object().expect("vars"),
            &want_vars,
            "{case}: variables of {name}"
        );
    }
}

#[test]
fn an_ini_inventory_resolves_as_ansible_inventory_does() {
    let home = home();
    let inv = data("ini/hosts.ini");
    assert_same_fleet(home.path(), &inv, &inv);
}

#[test]
fn a_yaml_inventory_resolves_as_ansible_inventory_does() {
    let home = home();
    let inv = data("yaml/inventory.yml");
    assert_same_fleet(home.path(), &inv, &inv);
}

#[test]
fn a_directory_inventory_resolves_as_ansible_inventory_does() {
    let home = home();
    let inv = data("dir");
    assert_same_fleet(home.path(), &inv, &inv);
}

#[test]
fn inventory_scripts_resolve_as_ansible_inventory_does() {
    let home = home();
    for script in ["script/with_meta.py", "script/per_host.sh"] {
        let inv = data(script);
        assert_same_fleet(home.path(), &inv, &inv);
    }
}

/// The JSON `ansible-inventory --list` prints, read as a file by fleetfix
/// and through a script that prints it by Ansible.
#[test]
fn list_json_resolves_as_ansible_reads_it_from_a_script() {
    let home = home();
    let json = data("list.json");
    let script = home.path().join("print-list.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in --list) cat '{}' ;; *) echo '{{}}' ;; esac\n",
            json.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    assert_same_fleet(home.path(), &script, &json);
}

/// Precedence conflicts and the mapping, spelled out for the INI fixture
/// (what `assert_same_fleet` checks generally, pinned here by value).
#[test]
fn ini_precedence_and_mapping_by_value() {
    let home = home();
    let nodes = fleetfix_nodes(home.path(), &data("ini/hosts.ini"));
    let web02 = &nodes["web02.example.net"];
    assert_eq!(
        web02["vars"]["tier"], "canary",
        "host_vars/ file over the host line"
    );
    assert_eq!(
        web02["port"], 2202,
        "host_vars/ ansible_port over [all:vars]"
    );
    assert_eq!(web02["user"], "deploy", "[web:vars]");
    assert_eq!(
        web02["vars"]["level"], "web",
        "the child group over its parents"
    );
    let db_b = &nodes["db-b"];
    assert_eq!(
        db_b["vars"]["level"], "db-file",
        "group_vars/db.yml over inventory groups"
    );
    assert_eq!(db_b["jump"][0], "ops@127.0.0.9:2222");
    let origins = &web02["origins"];
    assert!(
        origins["port"]
            .as_str()
            .is_some_and(|o| o.ends_with("host_vars/web02.example.net.yml:2")),
        "{origins}"
    );
    assert!(
        origins["user"]
            .as_str()
            .is_some_and(|o| o.contains("hosts.ini:")),
        "{origins}"
    );
}

/// `fleetfix nodes` shows where each setting came from.
#[test]
fn nodes_shows_where_each_setting_came_from() {
    let home = home();
    let r = run(fleetfix(home.path())
        .env("USER", "tester")
        .args(["nodes", "--limit", "db-a", "-i"])
        .arg(data("ini/hosts.ini")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("from"), "{}", r.stdout);
    assert!(r.stdout.contains("hosts.ini:10  host user"), "{}", r.stdout);
    assert!(
        r.stdout.contains("group_vars/db.yml:2  vars.level"),
        "{}",
        r.stdout
    );
}

/// A script that fails, hangs or prints bad JSON is bad input (exit 2),
/// and what it said on stderr is shown.
#[test]
fn broken_inventory_scripts_are_exit_2_with_their_stderr() {
    let home = home();
    let dir = home.path();
    let cases = [
        (
            "fails",
            "echo 'cannot reach the CMDB' >&2; exit 3",
            "cannot reach the CMDB",
        ),
        (
            "hangs",
            "echo 'waiting for the CMDB' >&2; exec sleep 30",
            "did not finish in time",
        ),
        (
            "bad-json",
            "echo '{\"web\": [' ; echo 'half written' >&2",
            "half written",
        ),
        ("not-a-map", "echo '[1, 2]'", "inventory JSON"),
    ];
    for (name, body, expect) in cases {
        let script = dir.join(name);
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let started = std::time::Instant::now();
        let r = run(fleetfix(dir)
            .env("FLEETFIX_INVENTORY_TIMEOUT", "1s")
            .args(["nodes", "-i"])
            .arg(&script));
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(name),
            "{name} names the script: {}",
            r.stderr
        );
        assert!(
            started.elapsed().as_secs() < 10,
            "{name} took {:?}",
            started.elapsed()
        );
    }
}

/// Errors in INI and YAML inventories name the file and line.
#[test]
fn errors_in_ansible_formats_name_file_and_line() {
    let home = home();
    let dir = home.path();
    let cases = [
        (
            "bad.ini",
            "[web]\nweb1\n[web:vars]\nnot a pair\n",
            "bad.ini:4",
        ),
        ("range.ini", "[web]\nweb[3:1]\n", "range.ini:2"),
        ("bad.yml", "all:\n  hosts:\n    a:\n   b: [\n", "bad.yml:"),
        (
            "pass.ini",
            "[db]\ndb1 ansible_password=hunter2\n",
            "pass.ini:2",
        ),
    ];
    for (name, text, expect) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let r = run(fleetfix(dir).args(["nodes", "-i"]).arg(&path));
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{name}: {}", r.stderr);
        assert!(
            !r.stderr.contains("hunter2"),
            "{name} shows no password: {}",
            r.stderr
        );
    }
}

/// A run against real sshd nodes named only in an Ansible INI inventory,
/// selected by group with `--limit`.
#[test]
fn a_run_on_an_ini_inventory_selects_by_group() {
    let fleet = Fleet::start(3);
    let dir = fleet.dir();
    let n = fleet.nodes();
    let inv = dir.join("hosts.ini");
    std::fs::write(
        &inv,
        format!(
            "[web]\nfront1 ansible_host={} ansible_port={}\nfront2 ansible_host={} ansible_port={}\n\
             [db]\nstore1 ansible_host={} ansible_port={}\n\
             [prod:children]\nweb\ndb\n\
             [all:vars]\nansible_user=root\nansible_ssh_private_key_file={}\ngreeting=hello\n\
             [web:vars]\ngreeting=hello-web\n",
            n[0].addr, n[0].port, n[1].addr, n[1].port, n[2].addr, n[2].port,
            fleet.client_key().display()
        ),
    )
    .expect("inventory");
    let pb = playbook(
        dir,
        "greet",
        "name = \"greet\"\n[[steps]]\nname = \"say\"\nrun = \"echo ${{ greeting }} from ${{ node.name }}\"\nchanges = false\n",
    );
    let go = |limit: &str| {
        run(fleetfix(dir)
            .args([
                "run",
                "-y",
                "--output",
                "json",
                "--progress",
                "never",
                "--known-hosts",
            ])
            .arg(fleet.known_hosts())
            .arg("-i")
            .arg(&inv)
            .args(["--limit", limit])
            .arg(&pb))
    };
    let web = go("web");
    assert_eq!(web.code, 0, "{}", web.dump());
    let said: BTreeSet<String> = web
        .of_kind("step_finished")
        .iter()
        .map(|e| e["stdout"].as_str().unwrap_or_default().trim().to_string())
        .collect();
    assert_eq!(
        said,
        BTreeSet::from([
            "hello-web from front1".to_string(),
            "hello-web from front2".to_string()
        ])
    );
    let prod = go("prod,!front2");
    assert_eq!(prod.code, 0, "{}", prod.dump());
    let ran: BTreeSet<String> = prod
        .of_kind("node_finished")
        .iter()
        .map(|e| e["node"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        ran,
        BTreeSet::from(["front1".to_string(), "store1".to_string()])
    );
    assert_eq!(go("all").of_kind("node_finished").len(), 3);
}
