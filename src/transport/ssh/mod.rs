//! The transport: a narrow interface (connect a node, run a command on it)
//! and its implementation on russh.

mod algorithms;
mod auth;
mod collect;
mod connect;
pub mod known_hosts;
mod reap;
mod session;
mod shell;
mod verify;
mod wire;

pub use auth::Credentials;
pub use connect::{SshConnector, SshOptions, default_known_hosts_path};
pub use shell::NodeLock;
