//! The run page and the list of runs, rendered on the server from the
//! run's one [`RunRecord`] with minijinja (HTML auto-escaping on: every
//! name, output and error is escaped). Inline CSS, SVG and script only:
//! the page fetches nothing, so one file holds it all.

use std::sync::OnceLock;

use minijinja::{Environment, Value, context};
use serde::Serialize;

use crate::events::{NodeStatus, StepStatus};
use crate::record::{NodeRecord, RunRecord};
use crate::support::text::human_duration;

const CSS: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("run.js");

/// The width of a timeline in SVG units.
const TIMELINE: f64 = 1000.0;

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Names ending in `.html` are auto-escaped for HTML.
        env.add_template("run.html", include_str!("run.html"))
            .expect("run.html is a valid template");
        env.add_template("list.html", include_str!("list.html"))
            .expect("list.html is a valid template");
        env
    })
}

/// How the page is served.
#[derive(Debug, Clone, Default)]
pub(crate) struct PageOptions<'a> {
    /// The URL of the event stream, for a live page.
    pub live: Option<&'a str>,
    /// How many events the record holds: the stream goes on after them.
    pub seq: u64,
    /// A link back to the list of runs.
    pub back: Option<&'a str>,
}

#[derive(Serialize)]
struct Count {
    status: &'static str,
    n: usize,
}

#[derive(Serialize)]
struct Header {
    id: String,
    /// `id` for a URL path.
    href: String,
    playbook: String,
    user: String,
    host: String,
    started: String,
    duration: String,
    finished: bool,
    result: &'static str,
    result_class: &'static str,
    exit_code: Option<i32>,
    check: bool,
    selected: usize,
    counts: Vec<Count>,
    stopped: Option<String>,
    batches: String,
    gates: Vec<crate::record::GateRecord>,
}

#[derive(Serialize)]
struct Bar {
    x: String,
    w: String,
    status: &'static str,
    on_failure: bool,
    label: String,
}

#[derive(Serialize)]
struct Step<'a> {
    step: &'a str,
    status: &'static str,
    on_failure: bool,
    attempt: u32,
    exit: Option<i32>,
    duration: String,
    error: Option<&'a str>,
    stdout: &'a str,
    stderr: &'a str,
}

#[derive(Serialize)]
struct Node<'a> {
    name: &'a str,
    status: &'static str,
    duration: Option<String>,
    error: Option<&'a str>,
    open: bool,
    bars: Vec<Bar>,
    report: Vec<(&'a str, &'a str)>,
    steps: Vec<Step<'a>>,
}

/// A node's status as a word and a CSS class: its final status, else
/// `running` once it started, else `pending`.
fn node_status(n: &NodeRecord) -> &'static str {
    match n.status {
        Some(s) => s.as_str(),
        None if n.started.is_some() || !n.attempts.is_empty() => "running",
        None => "pending",
    }
}

/// The class of a run's outcome word.
fn result_class(run: &RunRecord) -> &'static str {
    match run.outcome() {
        "ok" => NodeStatus::Ok.as_str(),
        "failed" => "failed",
        "drift" => "changed",
        "unreachable" => "unreachable",
        "incomplete" => "running",
        _ => "not_run",
    }
}

/// When the run began and ended (or its latest event): the timeline's span.
fn span(run: &RunRecord) -> (Option<jiff::Timestamp>, Option<jiff::Timestamp>) {
    let start = run.started;
    let end = run.finished.or_else(|| {
        run.nodes
            .iter()
            .flat_map(|n| {
                n.attempts
                    .iter()
                    .flat_map(|a| [Some(a.start), a.end])
                    .chain([n.started, n.finished])
            })
            .flatten()
            .max()
    });
    (start, end)
}

fn ms_between(a: jiff::Timestamp, b: jiff::Timestamp) -> f64 {
    b.duration_since(a).as_secs_f64() * 1000.0
}

fn header(run: &RunRecord, end: Option<jiff::Timestamp>) -> Header {
    let counts = run.counts();
    let mut running = 0;
    let mut pending = 0;
    for n in &run.nodes {
        match node_status(n) {
            "running" => running += 1,
            "pending" => pending += 1,
            _ => {}
        }
    }
    let counts = NodeStatus::ALL
        .iter()
        .map(|&s| (s.as_str(), counts.get(s)))
        .chain([("running", running), ("pending", pending)])
        // A live page shows every count, to update them in place.
        .filter(|(_, n)| *n > 0 || run.finished.is_none())
        .map(|(status, n)| Count { status, n })
        .collect();
    let duration_ms = match (&run.summary, run.started, end) {
        (Some(s), _, _) => s.duration_ms,
        (None, Some(a), Some(b)) => ms_between(a, b).max(0.0) as u64,
        _ => 0,
    };
    Header {
        id: run.id.clone(),
        href: url_path_segment(&run.id),
        playbook: run.playbook.clone(),
        user: run.user.clone(),
        host: run.host.clone(),
        started: run
            .started
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default(),
        duration: human_duration(duration_ms),
        finished: run.finished.is_some(),
        result: run.outcome(),
        result_class: result_class(run),
        exit_code: run.exit_code().map(|c| c.code()),
        check: run.check,
        selected: run.selected,
        counts,
        stopped: run.stopped().map(|s| s.describe().to_string()),
        batches: run
            .batches
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        gates: run.gates.clone(),
    }
}

fn bars(n: &NodeRecord, start: Option<jiff::Timestamp>, end: Option<jiff::Timestamp>) -> Vec<Bar> {
    let (Some(start), Some(end)) = (start, end) else {
        return Vec::new();
    };
    let total = ms_between(start, end).max(1.0);
    let scale = |t: jiff::Timestamp| (ms_between(start, t) / total * TIMELINE).clamp(0.0, TIMELINE);
    n.attempts
        .iter()
        .map(|a| {
            let x = scale(a.start);
            let until = a.end.unwrap_or(end);
            let w = (scale(until) - x).max(1.5);
            let status = a.status.map_or("running", StepStatus::as_str);
            let ms = ms_between(a.start, until).max(0.0) as u64;
            let retry = if a.attempt > 1 {
                format!(" (attempt {})", a.attempt)
            } else {
                String::new()
            };
            let kind = if a.on_failure { "on_failure " } else { "" };
            Bar {
                x: format!("{x:.1}"),
                w: format!("{w:.1}"),
                status,
                on_failure: a.on_failure,
                label: format!("{kind}{}{retry}: {status}, {}", a.step, human_duration(ms)),
            }
        })
        .collect()
}

fn node<'a>(
    n: &'a NodeRecord,
    span: (Option<jiff::Timestamp>, Option<jiff::Timestamp>),
    open: bool,
) -> Node<'a> {
    let status = node_status(n);
    Node {
        name: &n.name,
        status,
        duration: n.duration_ms.map(human_duration),
        error: n.error.as_deref(),
        open: open && status == "failed",
        bars: bars(n, span.0, span.1),
        report: n
            .report
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        steps: n
            .steps
            .iter()
            .map(|s| Step {
                step: &s.step,
                status: s.status.as_str(),
                on_failure: s.on_failure,
                attempt: s.attempt,
                exit: s.exit,
                duration: human_duration(s.duration_ms),
                error: s.error.as_deref(),
                stdout: &s.stdout,
                stderr: &s.stderr,
            })
            .collect(),
    }
}

/// The page of one run.
pub(crate) fn render_run(run: &RunRecord, opts: &PageOptions<'_>) -> String {
    let span = span(run);
    // A few failed nodes open by themselves; a thousand stay closed.
    let failed = run
        .nodes
        .iter()
        .filter(|n| n.status == Some(NodeStatus::Failed))
        .count();
    let nodes: Vec<Node<'_>> = run
        .nodes
        .iter()
        .map(|n| node(n, span, failed <= 10))
        .collect();
    let ctx = context! {
        run => Value::from_serialize(header(run, span.1)),
        nodes => Value::from_serialize(&nodes),
        live => opts.live,
        seq => opts.seq,
        back => opts.back,
        css => Value::from_safe_string(CSS.to_string()),
        script => Value::from_safe_string(SCRIPT.to_string()),
    };
    render("run.html", ctx)
}

/// The page listing runs (each from [`crate::record::list`]), linking to
/// `runs/ID`.
pub(crate) fn render_list(runs: &[RunRecord]) -> String {
    let rows: Vec<Header> = runs
        .iter()
        .map(|r| {
            let (_, end) = span(r);
            header(r, end)
        })
        .collect();
    let ctx = context! {
        runs => Value::from_serialize(&rows),
        css => Value::from_safe_string(CSS.to_string()),
    };
    render("list.html", ctx)
}

/// The policy a served page runs under: its own inline style and script
/// (by hash) and its event stream; nothing else.
pub(crate) fn content_security_policy() -> String {
    use sha2::Digest;
    let hash = data_encoding::BASE64.encode(&sha2::Sha256::digest(SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Percent-encodes all but `[A-Za-z0-9._~-]`.
pub(crate) fn url_path_segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn render(name: &str, ctx: Value) -> String {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| {
            // The templates are fixed and their data plain: only a bug here.
            format!(
                "<!DOCTYPE html><title>fleetfix</title><p>cannot render the page: {}</p>",
                minijinja::HtmlEscape(&e.to_string())
            )
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::secrets::Masker;
    use crate::events::{Event, EventSink, ExitCode, Stamped, StepResult, Summary};

    fn at(sec: i64, event: Event) -> Stamped {
        Stamped::new(
            jiff::Timestamp::from_second(1_795_000_000 + sec).unwrap(),
            event,
        )
    }

    fn step(node: &str, name: &str, status: StepStatus, attempt: u32, stderr: &str) -> Event {
        Event::StepFinished(StepResult {
            node: node.into(),
            step: name.into(),
            index: 0,
            on_failure: false,
            status,
            attempt,
            exit: Some(if status == StepStatus::Failed { 1 } else { 0 }),
            stdout: "out".into(),
            stderr: stderr.into(),
            duration_ms: 1000,
            error: None,
        })
    }

    /// A run of `nodes` nodes named `prefix{i}`, every tenth failing.
    fn events(prefix: &str, nodes: usize) -> Vec<Stamped> {
        let names: Vec<Arc<str>> = (0..nodes).map(|i| format!("{prefix}{i}").into()).collect();
        let mut evs = vec![at(
            0,
            Event::RunStarted {
                run_id: "20261126T101500Z-3fa2".into(),
                playbook: "relay <rollout>".into(),
                nodes: names.clone(),
                batches: vec![1, nodes - 1],
                check: false,
                user: "ops".into(),
                host: "runner1".into(),
            },
        )];
        for (i, n) in names.iter().enumerate() {
            let fail = i % 10 == 9;
            evs.push(at(1, Event::NodeStarted { node: n.clone() }));
            evs.push(at(
                1,
                Event::StepStarted {
                    node: n.clone(),
                    step: "pull".into(),
                    index: 0,
                    steps: 1,
                    attempt: 1,
                    on_failure: false,
                },
            ));
            let status = if fail {
                StepStatus::Failed
            } else {
                StepStatus::Changed
            };
            evs.push(at(
                2,
                step(n, "pull", status, 1, "<script>alert(1)</script>"),
            ));
            evs.push(at(
                3,
                Event::NodeFinished {
                    node: n.clone(),
                    status: if fail {
                        NodeStatus::Failed
                    } else {
                        NodeStatus::Changed
                    },
                    error: fail.then(|| "step `pull` failed".into()),
                    duration_ms: 2000,
                    report: Default::default(),
                },
            ));
        }
        evs.push(at(
            4,
            Event::RunFinished {
                summary: Summary {
                    nodes,
                    exit_code: ExitCode::Failed,
                    duration_ms: 4000,
                    ..Default::default()
                },
            },
        ));
        evs
    }

    fn record(evs: &[Stamped]) -> RunRecord {
        let mut run = RunRecord::new();
        for ev in evs {
            run.apply(ev);
        }
        run
    }

    #[test]
    fn everything_from_the_run_is_escaped() {
        let run = record(&events("n<b>\"", 3));
        let page = render_run(&run, &PageOptions::default());
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(page.contains("relay &lt;rollout&gt;"));
        assert!(!page.contains("n<b>"));
        assert!(page.contains("data-node=\"n&lt;b&gt;&quot;0\""));
        // The CSS and the script are the page's own, not escaped.
        assert!(page.contains("details.node>summary"));
        assert_eq!(page.matches("<script>").count(), 1);
        // Nothing is fetched.
        assert!(!page.contains("src="));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn a_secret_never_appears() {
        let secret = "hunter2-s3cr3t";
        let (sink, mut rx) = EventSink::channel(
            Arc::new(Masker::new([secret])),
            Arc::new(std::sync::Mutex::new(Vec::new())),
        );
        for ev in events("web", 3) {
            let mut event = ev.event;
            if let Event::StepFinished(s) = &mut event {
                s.stdout = format!("token={secret}");
                s.stderr = format!("{secret} refused");
                s.error = Some(format!("expected {secret}"));
            }
            sink.emit(event);
        }
        drop(sink);
        let mut run = RunRecord::new();
        while let Ok(ev) = rx.try_recv() {
            run.apply(&ev);
        }
        let page = render_run(&run, &PageOptions::default());
        assert!(page.contains("token="));
        assert!(!page.contains(secret));
    }

    #[test]
    fn a_thousand_nodes_render() {
        let run = record(&events("node-", 1000));
        let t = std::time::Instant::now();
        let page = render_run(&run, &PageOptions::default());
        let took = t.elapsed();
        eprintln!("1000 nodes: {} bytes in {took:?}", page.len());
        for i in [0, 499, 999] {
            assert!(page.contains(&format!("data-node=\"node-{i}\"")));
        }
        assert_eq!(page.matches("<details class=\"node\"").count(), 1000);
        assert_eq!(page.matches("<rect ").count(), 1000);
        assert!(page.contains("900 changed") && page.contains("100 failed"));
        // A hundred failed nodes stay closed.
        assert!(!page.contains(" open>"));
        assert!(page.len() < 2_000_000, "{} bytes", page.len());
    }

    #[test]
    fn a_live_page_names_its_stream_and_shows_running_nodes() {
        let evs = events("n", 2);
        let run = record(&evs[..4]);
        let page = render_run(
            &run,
            &PageOptions {
                live: Some("events"),
                seq: 4,
                back: None,
            },
        );
        assert!(page.contains("data-live=\"events\""));
        assert!(page.contains("data-seq=\"4\""));
        assert!(page.contains("class=\"s-pending\""));
        assert!(page.contains("incomplete"));
    }

    #[test]
    fn the_list_links_every_run() {
        let run = record(&events("n", 2));
        let page = render_list(&[run]);
        assert!(page.contains("href=\"runs/20261126T101500Z-3fa2\""));
        assert!(page.contains("runner1") && page.contains("ops"));
        assert!(page.contains("2 changed"));
    }
}
