//! Writers that consume the event stream: live bars, plain lines, JSON
//! Lines, grouped `exec` output and the final summary table. They run on a
//! thread of their own, so output never slows the executor down.

mod bars;
pub mod journal;
mod json;
pub mod junit;
mod plain;
pub mod report;
pub mod summary;

use std::sync::Arc;
use std::thread::JoinHandle;

pub use bars::Bars;
pub use json::JsonLines;
pub use plain::{ExecGrouped, PlainLines};
pub use summary::SummaryTable;

use crate::events::{EventSink, Stamped};
use crate::secrets::Masker;

/// A consumer of the event stream.
pub trait Reporter: Send {
    fn event(&mut self, ev: &Stamped);
    /// Called whenever no further event is waiting: write out what is
    /// buffered. A busy run then costs one write per burst, not per event,
    /// and nothing waits longer than the writer takes to catch up.
    fn idle(&mut self) {}
    /// Called once after the last event.
    fn finish(&mut self) {}
}

/// Starts a thread feeding every event to `reporters`, in order.
pub fn spawn(
    masker: Arc<Masker>,
    mut reporters: Vec<Box<dyn Reporter>>,
) -> (EventSink, JoinHandle<()>) {
    let (sink, mut rx) = EventSink::channel(masker);
    let handle = std::thread::spawn(move || {
        while let Some(ev) = rx.blocking_recv() {
            let ev: Arc<Stamped> = ev;
            for r in reporters.iter_mut() {
                r.event(&ev);
            }
            if rx.is_empty() {
                for r in reporters.iter_mut() {
                    r.idle();
                }
            }
        }
        for r in reporters.iter_mut() {
            r.finish();
        }
    });
    (sink, handle)
}

/// Shortens text to its last `n` non-empty lines (for failure details).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `1.2s`, `850ms`, `2m03s`.
pub fn human_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// What an interrupt means, for people.
pub fn interrupted_line(grace_secs: u64, kill: bool) -> String {
    if kill {
        format!("interrupted: {grace_secs}s passed; ending running commands (their process groups)")
    } else {
        format!(
            "interrupted: no new node or step starts; running commands get {grace_secs}s \
             (interrupt again to end now)"
        )
    }
}
