//! Layer 0: what every layer above may use and that knows none of them.

pub(crate) mod error;
pub(crate) mod exit;
pub(crate) mod heap;
pub(crate) mod limits;
pub(crate) mod quote;
pub(crate) mod runner;
pub(crate) mod state;
pub(crate) mod text;
