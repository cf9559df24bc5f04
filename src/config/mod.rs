//! Layer 1: the user's files (inventory, playbook, variables, secrets,
//! templates) read with their positions, checked, and nothing run.

pub(crate) mod ansible;
pub(crate) mod inventory;
pub(crate) mod playbook;
pub(crate) mod rollout;
pub(crate) mod secrets;
pub(crate) mod select;
pub(crate) mod ssh_config;
pub(crate) mod template;
pub(crate) mod toml_source;
pub(crate) mod vars;
