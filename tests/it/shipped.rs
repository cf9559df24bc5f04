//! The playbooks and inventory in the repository are valid as shipped.

use crate::common::cli::{fleetfix, run};

#[test]
fn every_shipped_playbook_checks_against_the_shipped_inventory() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(root.join("playbooks")).expect("playbooks/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        // The runner's secrets, as an operator would have them exported.
        let with_secrets = |cmd: &str| {
            let mut c = fleetfix(root);
            c.current_dir(root)
                .env("VERCEL_API_TOKEN", "shipped-token-5e2b")
                .env("VERCEL_TEAM_ID", "shipped-team-9d1f")
                .arg(cmd)
                .arg(&path);
            c
        };
        let out = run(&mut with_secrets("check"));
        assert_eq!(out.code, 0, "{}: {}", path.display(), out.dump());
        assert!(
            !out.stderr.contains("warning"),
            "{}: {}",
            path.display(),
            out.dump()
        );
        let plan = run(&mut with_secrets("plan"));
        assert_eq!(plan.code, 0, "{}: {}", path.display(), plan.dump());
        assert!(!plan.stdout.contains("shipped-token") && !plan.stdout.contains("shipped-team"));
        checked.push(
            path.file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
        );
    }
    for pb in [
        "relay-diagnose.toml",
        "relay-rollout.toml",
        "relay-verify.toml",
    ] {
        assert!(
            checked.iter().any(|c| c == pb),
            "{pb} not shipped: {checked:?}"
        );
    }
}
