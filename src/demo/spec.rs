//! What the demo knows of one node: its name, its sandbox, whether it is
//! told to fail.

use std::path::PathBuf;

/// What makes one node itself.
#[derive(Debug)]
pub(super) struct NodeSpec {
    pub name: String,
    /// The sandbox: commands run here; `version` says what the node runs.
    pub dir: PathBuf,
    /// Told to fail: its service breaks on any version but the first.
    pub fail: bool,
}
