//! Writers that consume the event stream: live bars, plain lines, JSON
//! Lines and grouped `exec` output; and the finishers that render the run's
//! one [`RunRecord`] when it is over: the summary table, `--report`,
//! `--junit`, `--metrics` (and `fleetfix runs`, from a journal). They run on a thread of
//! their own, so a slow terminal never holds the executor up; only the
//! journal is written on the executor's thread (see [`EventSink`]).

mod bars;
mod json;
pub(crate) mod junit;
pub(crate) mod metrics;
mod plain;
pub(crate) mod report;
pub(crate) mod runs;
pub(crate) mod summary;
pub(crate) mod web;

use std::sync::Arc;
use std::thread::JoinHandle;

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Row, Table};
use tokio::sync::mpsc;

pub(crate) use bars::Bars;
pub(crate) use json::JsonLines;
pub(crate) use plain::{ExecGrouped, PlainLines};
pub(crate) use summary::SummaryTable;

use crate::config::secrets::Masker;
pub(crate) use crate::events::Reporter;
use crate::events::{EventSink, Inline, Stamped};
use crate::record::RunRecord;

/// How long the writer thread lets events gather once a burst came in.
/// A busy run then wakes it (and the executor pays a thread wake-up) once
/// per tick rather than once per event; a quiet run wakes it per event.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// Renders the run from its record once it is over.
pub(crate) trait Finisher: Send {
    fn finish(&mut self, run: &RunRecord);
}

/// The run's one record as the writer thread builds it, and how many
/// events it has taken; a live web view renders pages from it.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) record: RunRecord,
    pub(crate) seq: u64,
}

/// [`Applied`], shared by the writer thread and a live web view.
pub(crate) type SharedRecord = Arc<std::sync::Mutex<Applied>>;

/// Locks the shared record; a panic elsewhere leaves it readable.
pub(crate) fn lock_record(r: &SharedRecord) -> std::sync::MutexGuard<'_, Applied> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writers of a run: `finish` once the run is over.
pub(crate) struct Writers {
    thread: JoinHandle<()>,
    inline: Inline,
    record: SharedRecord,
}

impl Writers {
    /// Waits for the writer thread (it ends with the last [`EventSink`]),
    /// then finishes the inline writers; the run's record.
    pub(crate) fn finish(self) -> RunRecord {
        let _ = self.thread.join();
        let mut inline = self.inline.lock().unwrap_or_else(|p| p.into_inner());
        for r in inline.iter_mut() {
            r.finish();
        }
        // A live view may still serve pages from it (--serve-linger).
        match Arc::try_unwrap(self.record) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()).record,
            Err(shared) => lock_record(&shared).record.clone(),
        }
    }
}

/// Feeds every event to `inline` on the emitting thread (the journal) and,
/// on a thread of their own, to `record` and to `threaded` (terminal,
/// stdout), in order; once the run is over, `finishers` render the record
/// (summary, reports).
pub(crate) fn spawn(
    masker: Arc<Masker>,
    inline: Vec<Box<dyn Reporter>>,
    mut threaded: Vec<Box<dyn Reporter>>,
    record: SharedRecord,
    mut finishers: Vec<Box<dyn Finisher>>,
) -> (EventSink, Writers) {
    let shared = record.clone();
    let inline: Inline = Arc::new(std::sync::Mutex::new(inline));
    let (sink, mut rx) = EventSink::channel(masker, inline.clone());
    // Named, so a profile (or `top -H`) tells its cost from the executor's.
    let thread = std::thread::Builder::new()
        .name("fleetfix-writer".into())
        .spawn(move || {
            let feed = |reporters: &mut Vec<Box<dyn Reporter>>, ev: Arc<Stamped>| {
                {
                    let mut applied = lock_record(&record);
                    applied.record.apply(&ev);
                    applied.seq += 1;
                }
                for r in reporters.iter_mut() {
                    r.event(&ev);
                }
            };
            'run: while let Some(ev) = rx.blocking_recv() {
                feed(&mut threaded, ev);
                loop {
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => feed(&mut threaded, ev),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => break 'run,
                        }
                    }
                    for r in threaded.iter_mut() {
                        r.idle();
                    }
                    // While this thread sleeps it is not parked on the channel,
                    // so sending costs the executor no wake-up.
                    std::thread::sleep(GATHER);
                    if rx.is_empty() {
                        break;
                    }
                }
            }
            for r in threaded.iter_mut() {
                r.finish();
            }
            let applied = lock_record(&record);
            for f in finishers.iter_mut() {
                f.finish(&applied.record);
            }
        })
        // As `std::thread::spawn` does: without a thread there is no run.
        .expect("cannot start the writer thread");
    (
        sink,
        Writers {
            thread,
            inline,
            record: shared,
        },
    )
}

/// A table as fleetfix draws them: borders only, `header` on top.
/// `arrangement`: `Dynamic` wraps cells to fit the terminal.
pub(crate) fn table<H: Into<Row>>(header: H, arrangement: ContentArrangement) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_content_arrangement(arrangement);
    t.set_header(header);
    t
}

/// Writes `text` to stdout. A closed stdout (its reader went away, as with
/// `fleetfix nodes | head`) ends the output quietly instead of a panic:
/// what is left is dropped, and the run, its journal and its exit code go
/// on as they would.
pub(crate) fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// [`print`] and a newline.
pub(crate) fn println(text: &str) {
    print(&format!("{text}\n"));
}

/// What an interrupt means, for people.
pub(crate) fn interrupted_line(grace_secs: u64, kill: bool) -> String {
    if kill {
        format!("interrupted: {grace_secs}s passed; ending running commands (their process groups)")
    } else {
        format!(
            "interrupted: no new node or step starts; running commands get {grace_secs}s \
             (interrupt again to end now)"
        )
    }
}
