//! The relay remediation end to end: the shipped relay playbooks, with only
//! `--inventory` and `--var` overrides, against three nodes that each run
//! their own OpenSSH sshd and their own dockerd (see `crate::common::lab`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::cli::Run;
use crate::common::lab::{BROKEN, Lab, NEW, OLD, VERCEL_TEAM, VERCEL_TOKEN};
use serde_json::Value;

/// node → status of every `node_finished` event.
fn node_statuses(out: &Run) -> BTreeMap<String, String> {
    out.of_kind("node_finished")
        .iter()
        .map(|e| (s(&e["node"]), s(&e["status"])))
        .collect()
}

/// (node, step, status) of every `step_finished` event.
fn step_statuses(out: &Run) -> Vec<(String, String, String)> {
    out.of_kind("step_finished")
        .iter()
        .map(|e| (s(&e["node"]), s(&e["step"]), s(&e["status"])))
        .collect()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The nodes of each batch, in order.
fn batches(out: &Run) -> Vec<Vec<String>> {
    let mut batches: Vec<Vec<String>> = Vec::new();
    for e in out.events() {
        match e["event"].as_str() {
            Some("batch_started") => batches.push(Vec::new()),
            Some("node_started") => {
                if let Some(b) = batches.last_mut() {
                    b.push(s(&e["node"]));
                }
            }
            _ => {}
        }
    }
    batches
}

fn report(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("report json")
}

/// The report's `report_vars` of node `node`.
fn report_vars(report: &Value, node: &str) -> Value {
    report["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == node))
        .map(|n| n["report_vars"].clone())
        .unwrap_or(Value::Null)
}

fn image_var(lab: &Lab, tag: &str) -> String {
    format!("image={}", lab.image(tag))
}

/// Node `i` runs `tag`, with `/srv/relay/data` on the `relay-data` volume
/// and the deployment's env and letsencrypt volumes.
fn assert_rolled(lab: &Lab, i: usize, tag: &str) {
    let name = &lab.nodes[i].name;
    assert_eq!(
        lab.inspect(i, "{{.Config.Image}}"),
        lab.image(tag),
        "{name}"
    );
    let mounts = lab.inspect(
        i,
        "{{range .Mounts}}{{.Type}} {{.Name}}{{.Source}} {{.Destination}};{{end}}",
    );
    assert!(mounts.contains("volume relay-data"), "{name}: {mounts}");
    assert!(mounts.contains("/srv/relay/data;"), "{name}: {mounts}");
    assert!(
        mounts.contains("/opt/relay/letsencrypt /etc/letsencrypt;")
            && mounts.contains("/opt/relay/letsencrypt-var /var/lib/letsencrypt;"),
        "{name}: {mounts}"
    );
    let env = lab.inspect(i, "{{range .Config.Env}}{{println .}}{{end}}");
    for want in [
        "RELAY_SSL_MODE=auto".to_string(),
        format!("RELAY_DNS_SUBDOMAIN={name}"),
        "RELAY_DNS_DOMAIN=relaynet.test".to_string(),
        "RELAY_CERTBOT_EMAIL=ops@relaynet.test".to_string(),
        format!("VERCEL_API_TOKEN={VERCEL_TOKEN}"),
        format!("VERCEL_TEAM_ID={VERCEL_TEAM}"),
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{name}: no {want} in\n{env}"
        );
    }
}

/// The runner's own request to node `i` sees the version header and CORS.
fn assert_serves_new(lab: &Lab, i: usize) {
    let get = lab.request(i, "GET").expect("an answer");
    assert_eq!(get.status, 200);
    assert_eq!(get.header("x-relay-version"), Some("0.2.0"), "{get:?}");
    let options = lab.request(i, "OPTIONS").expect("an answer");
    assert_eq!(
        options.header("access-control-allow-origin"),
        Some("*"),
        "{options:?}"
    );
}

/// Secrets stay out of everything fleetfix writes.
fn assert_no_secret(lab: &Lab, out: &Run) {
    let mut written = format!("{}{}", out.stdout, out.stderr);
    for entry in std::fs::read_dir(lab.dir.path().join("state/runs")).expect("journal dir") {
        written.push_str(&std::fs::read_to_string(entry.expect("entry").path()).expect("journal"));
    }
    assert!(!written.contains(VERCEL_TOKEN) && !written.contains(VERCEL_TEAM));
}

#[test]
fn a_stale_fleet_is_diagnosed_rolled_one_by_one_and_verified() {
    let lab = Lab::start(3);
    let new = image_var(&lab, NEW);

    // Diagnose: read-only, every node stale (runs v0.1.0, no header).
    let report_path = lab.dir.path().join("diagnose.json");
    let out = lab.run(
        "relay-diagnose.toml",
        &["-e", &new, "--report", report_path.to_str().expect("utf8")],
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    let diagnosis = report(&report_path);
    for n in &lab.nodes {
        let vars = report_vars(&diagnosis, &n.name);
        assert_eq!(vars["running_image"], lab.image(OLD), "{}: {vars}", n.name);
        assert_eq!(vars["served_version"], "", "{}: {vars}", n.name);
        assert_eq!(vars["public_version"], "", "{}: {vars}", n.name);
        let verdict = s(&vars["verdict"]);
        assert!(
            verdict.starts_with("stale:") && verdict.contains("image") && verdict.contains("data"),
            "{}: {vars}",
            n.name
        );
    }
    assert!(
        step_statuses(&out).iter().all(|(_, _, st)| st == "ok"),
        "diagnose changes nothing: {:?}",
        step_statuses(&out)
    );
    // The operator's table: a verdict column that says "stale" per node.
    let human = lab.run_human("relay-diagnose.toml", &["-e", &new, "--progress", "never"]);
    assert_eq!(human.code, 0, "{}", human.dump());
    eprintln!("{}", human.stdout);
    let table: Vec<&str> = human
        .stdout
        .lines()
        .skip_while(|l| !l.contains("verdict"))
        .collect();
    for n in &lab.nodes {
        assert!(
            table
                .iter()
                .any(|l| l.contains(&n.name) && l.contains("stale: image version public data")),
            "{}",
            human.stdout
        );
    }

    // The cron on the stale fleet: drift (5), not "broken" (1): no node
    // runs the pinned image, so nothing after the drift step runs, and the
    // old version's 405 and error page fail no check.
    let out = lab.run("relay-verify.toml", &["--check", "-e", &new]);
    assert_eq!(out.code, 5, "{}", out.dump());
    assert!(
        node_statuses(&out).values().all(|st| st == "changed"),
        "{}",
        out.dump()
    );
    for n in &lab.nodes {
        assert!(
            step_statuses(&out).contains(&(
                n.name.clone(),
                "in sync with relay-rollout".into(),
                "would_run".into()
            )),
            "{}",
            out.dump()
        );
    }
    assert!(
        step_statuses(&out).iter().all(|(_, _, st)| st != "failed"),
        "{}",
        out.dump()
    );

    // The rollout under --check: drift on every node, nothing touched.
    let before: Vec<String> = (0..3).map(|i| lab.inspect(i, "{{.Id}}")).collect();
    let out = lab.run("relay-rollout.toml", &["--check", "-e", &new]);
    assert_eq!(out.code, 5, "{}", out.dump());
    assert!(
        step_statuses(&out).contains(&(
            "relay1".into(),
            "swap container".into(),
            "would_run".into()
        )),
        "{}",
        out.dump()
    );
    for (i, id) in before.iter().enumerate() {
        assert_eq!(&lab.inspect(i, "{{.Id}}"), id);
    }

    // Rollout: one node per batch, all three at 0.2.0.
    let out = lab.run("relay-rollout.toml", &["-e", &new]);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        batches(&out),
        vec![vec!["relay1"], vec!["relay2"], vec!["relay3"]],
        "{}",
        out.dump()
    );
    assert!(
        node_statuses(&out).values().all(|st| st == "changed"),
        "{:?}",
        node_statuses(&out)
    );
    for i in 0..3 {
        assert_rolled(&lab, i, NEW);
        assert_serves_new(&lab, i);
    }
    assert_no_secret(&lab, &out);

    // Again: nothing to do.
    let out = lab.run("relay-rollout.toml", &["-e", &new]);
    assert_eq!(out.code, 0, "{}", out.dump());
    let steps = step_statuses(&out);
    assert!(
        steps.iter().all(|(_, _, st)| st == "ok" || st == "skipped"),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|(_, step, st)| step == "swap container" && st == "skipped")
    );
    assert!(
        node_statuses(&out).values().all(|st| st == "ok"),
        "{:?}",
        node_statuses(&out)
    );

    // The cron: in sync after the rollout.
    let out = lab.run("relay-verify.toml", &["--check", "-e", &new]);
    assert_eq!(out.code, 0, "{}", out.dump());
    // A node on the pinned image that does not serve is broken (1): the
    // rollout would not fix it.
    lab.docker_ok(2, &["stop", "relay"]);
    let out = lab.run("relay-verify.toml", &["--check", "-e", &new]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let statuses = node_statuses(&out);
    assert_eq!(statuses["relay3"], "failed", "{statuses:?}");
    assert_eq!(statuses["relay1"], "ok", "{statuses:?}");
    assert!(
        step_statuses(&out).contains(&(
            "relay3".into(),
            "in sync with relay-rollout".into(),
            "would_skip".into()
        )),
        "{}",
        out.dump()
    );
    lab.docker_ok(2, &["start", "relay"]);
    assert!(lab.wait_answer(2, Duration::from_secs(30)).is_some());
    let out = lab.run("relay-verify.toml", &["--check", "-e", &new]);
    assert_eq!(out.code, 0, "{}", out.dump());
    // Drift on a node set back by hand.
    lab.deploy(1, OLD, false);
    assert!(lab.wait_answer(1, Duration::from_secs(30)).is_some());
    let out = lab.run("relay-verify.toml", &["--check", "-e", &new]);
    assert_eq!(out.code, 5, "{}", out.dump());
    let statuses = node_statuses(&out);
    assert_eq!(statuses["relay2"], "changed", "{statuses:?}");
    assert_eq!(statuses["relay1"], "ok", "{statuses:?}");
    assert_eq!(statuses["relay3"], "ok", "{statuses:?}");
    assert!(
        step_statuses(&out).contains(&(
            "relay2".into(),
            "in sync with relay-rollout".into(),
            "would_run".into()
        )),
        "{}",
        out.dump()
    );
    // Without --check the verification fails on that node and says why.
    let out = lab.run("relay-verify.toml", &["-e", &new]);
    assert_eq!(out.code, 1, "{}", out.dump());
    let failed = out
        .of_kind("step_finished")
        .into_iter()
        .find(|e| e["node"] == "relay2" && e["status"] == "failed")
        .expect("relay2 failed a step");
    assert!(
        s(&failed["stderr"]).contains("drift: run playbooks/relay-rollout.toml"),
        "{failed}"
    );
}

#[test]
fn a_broken_image_is_rolled_back_and_an_unreachable_node_is_skipped() {
    let mut lab = Lab::start(3);
    let before: Vec<String> = (0..3).map(|i| lab.inspect(i, "{{.Id}}")).collect();

    // The broken release never answers: the first node fails, gets its
    // previous image back, and the rollout stops there.
    let out = lab.run(
        "relay-rollout.toml",
        &["-e", &image_var(&lab, BROKEN), "-e", "start_timeout=6"],
    );
    assert_eq!(out.code, 3, "{}", out.dump());
    let statuses = node_statuses(&out);
    assert_eq!(statuses["relay1"], "failed", "{statuses:?}");
    assert_eq!(statuses["relay2"], "not_run", "{statuses:?}");
    assert_eq!(statuses["relay3"], "not_run", "{statuses:?}");
    let steps = step_statuses(&out);
    for (step, status) in [
        ("swap container", "changed"),
        ("server answers", "failed"),
        ("restore previous image", "changed"),
        ("previous image answers", "ok"),
    ] {
        assert!(
            steps.contains(&("relay1".into(), step.into(), status.into())),
            "{step} {status}: {steps:?}"
        );
    }
    assert_eq!(lab.inspect(0, "{{.Config.Image}}"), lab.image(OLD));
    let answer = lab
        .wait_answer(0, Duration::from_secs(30))
        .expect("relay1 answers again");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("x-relay-version"),
        None,
        "the old release: {answer:?}"
    );
    for (i, id) in before.iter().enumerate().skip(1) {
        assert_eq!(
            &lab.inspect(i, "{{.Id}}"),
            id,
            "{} untouched",
            lab.nodes[i].name
        );
    }

    // A node nobody can log in to is unreachable; the other two roll.
    lab.stop_sshd(2);
    let out = lab.run("relay-rollout.toml", &["-e", &image_var(&lab, NEW)]);
    assert_eq!(out.code, 6, "{}", out.dump());
    let statuses = node_statuses(&out);
    assert_eq!(statuses["relay1"], "changed", "{statuses:?}");
    assert_eq!(statuses["relay2"], "changed", "{statuses:?}");
    assert_eq!(statuses["relay3"], "unreachable", "{statuses:?}");
    for i in 0..2 {
        assert_rolled(&lab, i, NEW);
        assert_serves_new(&lab, i);
    }
    assert_eq!(lab.inspect(2, "{{.Config.Image}}"), lab.image(OLD));
}
