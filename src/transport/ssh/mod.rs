//! The transport: a narrow interface (connect a node, run a command on it)
//! and its implementation on russh.

mod algorithms;
mod auth;
mod collect;
mod connect;
pub(crate) mod known_hosts;
mod reap;
mod session;
mod shell;
mod verify;
mod wire;

pub(crate) use auth::Credentials;
pub(crate) use connect::{SshConnector, SshOptions, default_known_hosts_path};
pub(crate) use shell::NodeLock;
