//! Layer 1: the user's files (inventory, playbook, variables, secrets,
//! templates) read with their positions, checked, and nothing run.

pub mod inventory;
pub mod playbook;
pub mod rollout;
pub mod secrets;
pub mod select;
pub mod ssh_config;
pub mod template;
pub mod toml_source;
pub mod vars;
