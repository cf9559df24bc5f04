//! The web views of runs: the run page (`page`), one self-contained HTML
//! document rendered from the run's [`crate::record::RunRecord`], and the
//! read-only server (`server`) that serves the journaled runs or one run
//! live, fed from the masked event stream.

pub(crate) mod page;
pub(crate) mod server;
