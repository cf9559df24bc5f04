//! `--junit FILE`: the run as JUnit XML, so CI systems show it like a test
//! run — a testsuite per node, a testcase per step, one for the gates.

use std::path::PathBuf;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::Finisher;
use super::report::write_atomic;
use crate::events::{NodeStatus, StepResult, StepStatus};
use crate::record::{GateRecord, RunRecord};

/// Writes the run's record as JUnit XML when the run is over.
pub(crate) struct JunitReport {
    path: PathBuf,
}

impl JunitReport {
    pub(crate) fn new(path: PathBuf) -> Self {
        JunitReport { path }
    }
}

fn step_case(playbook: &str, s: &StepResult) -> TestCase {
    let status = match s.status {
        StepStatus::Ok | StepStatus::Changed => TestCaseStatus::success(),
        StepStatus::Skipped | StepStatus::WouldSkip | StepStatus::WouldRun => {
            let mut st = TestCaseStatus::skipped();
            st.set_message(s.status.as_str());
            if let Some(why) = &s.error {
                st.set_description(why.as_str());
            }
            st
        }
        StepStatus::Failed => {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_message(s.error.as_deref().unwrap_or("failed"));
            if let Some(code) = s.exit {
                st.set_type(format!("exit {code}"));
            }
            st
        }
    };
    let name = if s.on_failure {
        format!("on_failure: {}", s.step)
    } else {
        s.step.clone()
    };
    let mut case = TestCase::new(name, status);
    case.set_classname(playbook)
        .set_time(Duration::from_millis(s.duration_ms));
    if s.attempt > 1 {
        case.add_property(Property::new("attempt", s.attempt.to_string()));
    }
    // Output is what one needs to see why a step failed.
    if s.status == StepStatus::Failed {
        if !s.stdout.is_empty() {
            case.set_system_out(s.stdout.as_str());
        }
        if !s.stderr.is_empty() {
            case.set_system_err(s.stderr.as_str());
        }
    }
    case
}

fn gate_case(playbook: &str, g: &GateRecord) -> TestCase {
    let status = if g.ok {
        TestCaseStatus::success()
    } else {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
        st.set_message(g.error.as_deref().unwrap_or("gate failed"));
        st
    };
    // Gates run after every batch: the batch keeps names unique.
    let mut case = TestCase::new(format!("batch {}: {}", g.batch, g.gate), status);
    case.set_classname(playbook)
        .set_time(Duration::from_millis(g.duration_ms));
    if g.attempt > 1 {
        case.add_property(Property::new("attempt", g.attempt.to_string()));
    }
    case
}

/// A testsuite per node, a testcase per step, one suite for the gates.
fn build(run: &RunRecord) -> Report {
    let playbook = run.playbook.as_str();
    let mut report = Report::new(playbook);
    if let Some(s) = &run.summary {
        report.set_time(Duration::from_millis(s.duration_ms));
    }
    let props = [
        Property::new("run_id", run.id.as_str()),
        Property::new("check", run.check.to_string()),
    ];
    for node in &run.nodes {
        let mut suite = TestSuite::new(&*node.name);
        suite.add_properties(props.clone());
        suite.set_time(Duration::from_millis(node.duration_ms.unwrap_or(0)));
        for s in &node.steps {
            suite.add_test_case(step_case(playbook, s));
        }
        match node.status {
            Some(NodeStatus::Unreachable) => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
                st.set_message(node.error.as_deref().unwrap_or("unreachable"));
                st.set_type("unreachable");
                let mut case = TestCase::new("connect", st);
                case.set_classname(playbook);
                suite.add_test_case(case);
            }
            // No node_finished at all (an interrupted run) reads as not run.
            Some(NodeStatus::NotRun) | None if node.steps.is_empty() => {
                let mut st = TestCaseStatus::skipped();
                st.set_message(node.error.as_deref().unwrap_or("not_run"));
                st.set_type("not_run");
                let mut case = TestCase::new("not_run", st);
                case.set_classname(playbook);
                suite.add_test_case(case);
            }
            _ => {}
        }
        report.add_test_suite(suite);
    }
    if !run.gates.is_empty() {
        let mut suite = TestSuite::new("gates");
        suite.add_properties(props.clone());
        suite.add_test_cases(run.gates.iter().map(|g| gate_case(playbook, g)));
        report.add_test_suite(suite);
    }
    report
}

impl Finisher for JunitReport {
    fn finish(&mut self, run: &RunRecord) {
        if run.started.is_none() {
            tracing::warn!(
                "no run started; the JUnit report {} was not written",
                self.path.display()
            );
            return;
        }
        let result = build(run)
            .to_string()
            .map_err(std::io::Error::other)
            .and_then(|xml| write_atomic(&self.path, xml.as_bytes()));
        if let Err(e) = result {
            tracing::error!("cannot write the JUnit report {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::output::report::tests::{record_of, sample_run};

    fn statuses(suite: &TestSuite) -> Vec<(&str, &'static str)> {
        suite
            .test_cases
            .iter()
            .map(|c| {
                let kind = match &c.status {
                    TestCaseStatus::Success { .. } => "success",
                    TestCaseStatus::Skipped { .. } => "skipped",
                    TestCaseStatus::NonSuccess {
                        kind: NonSuccessKind::Failure,
                        ..
                    } => "failure",
                    TestCaseStatus::NonSuccess { .. } => "error",
                };
                (c.name.as_str(), kind)
            })
            .collect()
    }

    fn message(c: &TestCase) -> Option<&str> {
        match &c.status {
            TestCaseStatus::Skipped { message, .. }
            | TestCaseStatus::NonSuccess { message, .. } => message.as_ref().map(|m| m.as_str()),
            TestCaseStatus::Success { .. } => None,
        }
    }

    #[test]
    fn writes_a_suite_per_node_and_a_case_per_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        JunitReport::new(path.clone()).finish(&record_of(sample_run()));

        let xml = std::fs::read_to_string(&path).unwrap();
        let report = Report::deserialize_from_str(&xml).unwrap();
        assert_eq!(report.name.as_ref().unwrap().as_str(), "relay-rollout");
        assert_eq!(
            (report.tests, report.failures, report.errors, report.skipped),
            (7, 2, 1, 2),
            "{xml}"
        );
        let suites: Vec<_> = report.test_suites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(suites, ["b", "a", "c", "d", "gates"]);
        let by_name = |n: &str| {
            report
                .test_suites
                .iter()
                .find(|s| s.name.as_str() == n)
                .unwrap()
        };

        let b = by_name("b");
        assert_eq!(
            statuses(b),
            [("pull", "failure"), ("on_failure: restore", "success")]
        );
        let pull = &b.test_cases[0];
        assert_eq!(message(pull), Some("exit code 1, expected 0"));
        assert_eq!(pull.system_err.as_ref().unwrap().as_str(), "pull err");
        assert_eq!(pull.system_out.as_ref().unwrap().as_str(), "pull out");
        assert_eq!(pull.classname.as_ref().unwrap().as_str(), "relay-rollout");
        assert_eq!(pull.time, Some(Duration::from_millis(1250)));
        let run_id = b.properties.iter().find(|p| p.name.as_str() == "run_id");
        assert_eq!(run_id.unwrap().value.as_str(), "20261126T101500Z-3fa2");

        let a = by_name("a");
        assert_eq!(statuses(a), [("pull", "success"), ("swap", "skipped")]);
        assert_eq!(message(&a.test_cases[1]), Some("skipped"));

        let c = by_name("c");
        assert_eq!(statuses(c), [("connect", "error")]);
        assert_eq!(message(&c.test_cases[0]), Some("connection refused"));

        let d = by_name("d");
        assert_eq!(statuses(d), [("not_run", "skipped")]);
        assert_eq!(message(&d.test_cases[0]), Some("a gate failed"));

        let gates = by_name("gates");
        assert_eq!(statuses(gates), [("batch 1: endpoint", "failure")]);
        assert_eq!(message(&gates.test_cases[0]), Some("status 502"));
    }

    #[test]
    fn check_statuses_are_skipped_with_the_status_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.xml");
        use crate::output::report::tests::{done, step};
        let events = vec![
            Event::RunStarted {
                run_id: "r".into(),
                playbook: "p".into(),
                nodes: vec!["a".into()],
                batches: vec![1],
                check: true,
                user: String::new(),
                host: String::new(),
            },
            step("a", "inspect", StepStatus::Ok, false, None),
            step("a", "pull", StepStatus::WouldRun, false, None),
            step("a", "swap", StepStatus::WouldSkip, false, None),
            done("a", NodeStatus::Changed, None),
        ];
        JunitReport::new(path.clone()).finish(&record_of(events));
        let report =
            Report::deserialize_from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let a = &report.test_suites[0];
        assert_eq!(
            statuses(a),
            [
                ("inspect", "success"),
                ("pull", "skipped"),
                ("swap", "skipped")
            ]
        );
        assert_eq!(message(&a.test_cases[1]), Some("would_run"));
        assert_eq!(message(&a.test_cases[2]), Some("would_skip"));
        assert!(
            report
                .test_suites
                .iter()
                .all(|s| s.name.as_str() != "gates")
        );
    }
}
