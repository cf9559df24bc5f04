//! Layer 0: what every layer above may use and that knows none of them.

pub mod error;
pub mod exit;
pub mod heap;
pub mod limits;
pub mod quote;
pub mod state;
pub mod text;
