//! The playbooks and inventory in the repository are valid as shipped.

mod common;

use common::cli::{fleetfix, run};

#[test]
fn every_shipped_playbook_checks_against_the_shipped_inventory() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("playbooks")).expect("playbooks/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = run(fleetfix(root).current_dir(root).arg("check").arg(&path));
        assert_eq!(out.code, 0, "{}: {}", path.display(), out.dump());
        assert!(
            !out.stderr.contains("warning"),
            "{}: {}",
            path.display(),
            out.dump()
        );
        let plan = run(fleetfix(root).current_dir(root).arg("plan").arg(&path));
        assert_eq!(plan.code, 0, "{}: {}", path.display(), plan.dump());
        checked += 1;
    }
    assert!(checked >= 1, "no playbook found");
}
