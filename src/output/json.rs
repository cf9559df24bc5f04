//! `--output json`: one JSON object per line on stdout (SPEC section 7).

use std::io::{BufWriter, Stdout, Write};

use super::Reporter;
use crate::events::{Event, Stamped};

pub(crate) struct JsonLines {
    out: BufWriter<Stdout>,
}

impl Default for JsonLines {
    fn default() -> Self {
        JsonLines {
            out: BufWriter::new(std::io::stdout()),
        }
    }
}

impl Reporter for JsonLines {
    fn event(&mut self, ev: &Stamped) {
        // Attempts starting are for the bars; the contract lists the rest.
        if matches!(ev.event, Event::StepStarted { .. }) {
            return;
        }
        let _ = self.out.write_all(ev.json_line());
    }

    /// A scripted consumer sees each event as soon as the writer caught up.
    fn idle(&mut self) {
        let _ = self.out.flush();
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}
