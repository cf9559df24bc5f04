//! The embedded demo fleet: N nodes on 127.0.0.1, each a russh server of
//! its own with a fresh host key (written to the fleet's known_hosts, so the
//! runner verifies it like any host), all trusting one fresh client key.
//! Everything lives in a temporary directory removed with the fleet.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::Config;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::node::NodeHandler;
use super::service::FIRST_VERSION;
use super::spec::NodeSpec;
use crate::support::error::Error;

/// A running demo fleet; dropping it stops every node and removes its files.
pub(crate) struct Fleet {
    /// Where the fleet's files live (removed on drop).
    dir: tempfile::TempDir,
    pub inventory: PathBuf,
    pub known_hosts: PathBuf,
    /// The demo playbook, as shipped in the binary.
    pub playbook: PathBuf,
    pub names: Vec<String>,
    pub ports: Vec<u16>,
    listeners: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Starts `n` nodes; those named in `fail` break on a new version.
    /// Must run inside a tokio runtime, which then serves the nodes.
    pub(crate) async fn start(n: usize, fail: &[String], playbook: &str) -> Result<Fleet, Error> {
        let dir = tempfile::Builder::new()
            .prefix("fleetfix-demo-")
            .tempdir()
            .map_err(|e| io_error("create the demo directory", e))?;
        let names = node_names(n);
        let client = keypair();
        let client_path = dir.path().join("client_key");
        client
            .write_openssh_file(&client_path, LineEnding::LF)
            .map_err(|e| runtime(format!("cannot write the demo client key: {e}")))?;
        let client_key = Arc::new(client.public_key().clone());
        let mut fleet = Fleet {
            inventory: dir.path().join("inventory.toml"),
            known_hosts: dir.path().join("known_hosts"),
            playbook: dir.path().join("demo-rollout.toml"),
            dir,
            names: names.clone(),
            ports: Vec::with_capacity(n),
            listeners: Vec::with_capacity(n),
        };
        let mut known_hosts = String::new();
        for name in &names {
            let sandbox = fleet.dir.path().join("nodes").join(name);
            std::fs::create_dir_all(&sandbox).map_err(|e| io_error("create a node sandbox", e))?;
            std::fs::write(sandbox.join("version"), format!("{FIRST_VERSION}\n"))
                .map_err(|e| io_error("write a node's version", e))?;
            let spec = Arc::new(NodeSpec {
                name: name.clone(),
                dir: sandbox,
                fail: fail.contains(name),
            });
            let host_key = keypair();
            let public = host_key.public_key().to_openssh().unwrap_or_default();
            let (port, task) = serve_node(spec, host_key, client_key.clone()).await?;
            known_hosts.push_str(&format!("[127.0.0.1]:{port} {public}\n"));
            fleet.ports.push(port);
            fleet.listeners.push(task);
        }
        let write = |path: &Path, text: &str, what: &str| {
            std::fs::write(path, text).map_err(|e| io_error(what, e))
        };
        write(
            &fleet.known_hosts,
            &known_hosts,
            "write the demo known_hosts",
        )?;
        write(
            &fleet.inventory,
            &fleet.inventory_text(&client_path),
            "write the demo inventory",
        )?;
        write(&fleet.playbook, playbook, "write the demo playbook")?;
        Ok(fleet)
    }

    /// The fleet's directory (sandboxes under `nodes/NAME`).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn inventory_text(&self, client_key: &Path) -> String {
        let mut text = format!(
            "# The embedded demo fleet (`fleetfix demo`): {} nodes on 127.0.0.1.\n\
             [defaults]\nuser = \"demo\"\nidentity_file = \"{}\"\nconnect_timeout = \"10s\"\n",
            self.names.len(),
            client_key.display()
        );
        for (name, port) in self.names.iter().zip(&self.ports) {
            text.push_str(&format!(
                "\n[nodes.{name}]\nhost = \"127.0.0.1\"\nport = {port}\ngroups = [\"demo\"]\n"
            ));
        }
        text
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
    }
}

/// `node01`, `node02`, …: zero-padded so they sort.
pub(crate) fn node_names(n: usize) -> Vec<String> {
    let width = n.to_string().len().max(2);
    (1..=n).map(|i| format!("node{i:0width$}")).collect()
}

/// A fresh ed25519 key (the demo's host and client keys).
fn keypair() -> PrivateKey {
    let seed: [u8; 32] = rand::random();
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

/// Binds a loopback port for one node and serves SSH on it.
async fn serve_node(
    spec: Arc<NodeSpec>,
    host_key: PrivateKey,
    client_key: Arc<PublicKey>,
) -> Result<(u16, JoinHandle<()>), Error> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| io_error("listen on 127.0.0.1", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| io_error("read a listener's port", e))?
        .port();
    let config = Arc::new(Config {
        keys: vec![host_key],
        methods: (&[russh::MethodKind::PublicKey][..]).into(),
        // A key the node does not know is refused at once: the runner tries
        // agent keys first, and a demo has no attacker to slow down.
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: None,
        nodelay: true,
        ..Config::default()
    });
    let task = tokio::spawn(async move {
        loop {
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(_) => {
                    // Out of file descriptors, say: let others finish.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let handler = NodeHandler::new(spec.clone(), client_key.clone());
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(session) = russh::server::run_stream(config, socket, handler).await {
                    let _ = session.await;
                }
            });
        }
    });
    Ok((port, task))
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    runtime(format!("cannot {what}: {e}"))
}

fn runtime(message: String) -> Error {
    Error::Runtime { message }
}
