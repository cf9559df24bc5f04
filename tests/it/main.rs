//! fleetfix's integration tests, in one binary: each module is one area
//! (the former `tests/*.rs` files), all sharing the harness in `common`
//! (real `sshd`, dropbear and tinysshd daemons, network namespaces, the
//! docker relay lab, running the built `fleetfix`). They need root and the
//! packages `.ci/run` installs.

mod common;

mod ansible;
mod architecture;

mod bad_input;
mod bad_input_table;
mod demo;
mod fuzz;
mod http;
mod jump;
mod kex;
mod metrics;
mod node_lock;
mod reach;
mod relay;
mod rendered_errors;
mod rollout;
mod run;
mod safety;
mod servers;
mod shipped;
mod step_shell;
mod steps;
mod tty;
mod upload;
mod web;
