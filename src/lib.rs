//! fleetfix: run TOML playbooks over SSH across a fleet, in parallel.
//!
//! The executor emits one stream of [`events`]; the writers in [`output`]
//! consume it. The SSH transport sits behind [`ssh::Connector`].

pub mod app;
pub mod cli;
pub mod demo;
pub mod error;
pub mod events;
pub mod executor;
pub mod heap;
pub mod http;
pub mod inventory;
pub mod job;
pub mod limits;
pub mod local;
pub mod lock;
pub mod output;
pub mod playbook;
pub mod quote;
pub mod rollout;
pub mod runs;
pub mod secrets;
pub mod select;
pub mod ssh;
pub mod ssh_config;
pub mod state;
pub mod template;
pub mod toml_source;
pub mod upload;
pub mod vars;
