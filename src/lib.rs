//! fleetfix: run TOML playbooks over SSH across a fleet, in parallel.
//!
//! The folders are the layers, each using only those below it (see
//! ARCHITECTURE.md): `support` → `config` → `job` → `events` → `transport`
//! → `executor` → `record` → `output` → `demo` → `app`. The executor emits
//! one stream of `events`; the writers in `output` consume it, and the
//! run's `record` is built from it.

// Only what `main` and the tests use is public; the lint keeps it so.
#![warn(unreachable_pub)]

mod app;
mod config;
mod demo;
mod events;
mod executor;
mod job;
mod output;
mod record;
mod support;
mod transport;

pub use app::cli::Cli;
pub use app::main;
pub use config::inventory::Inventory;
pub use config::playbook::Playbook;
pub use job::{Job, JobOptions};
pub use support::error::{Error, SourceFile};
