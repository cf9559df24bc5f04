//! One embedded demo node: the server side of SSH (russh) for a single
//! node. Public-key auth with the demo's client key only; `exec` runs
//! `/bin/sh -c` in the node's sandbox directory, in a process group of its
//! own (so timeouts can end it as on a real host); direct-tcpip to
//! `127.0.0.1:SERVICE_PORT` reaches the node's HTTP service.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;

use russh::keys::PublicKey;
use russh::server::{
    Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::io::AsyncWriteExt;

use super::service;
use super::spec::NodeSpec;

/// The port a node's HTTP service answers on, through the SSH tunnel.
pub(super) const SERVICE_PORT: u32 = 8088;

/// The SSH session handler of one client connection to one node.
pub(super) struct NodeHandler {
    node: Arc<NodeSpec>,
    client_key: Arc<PublicKey>,
    /// Session channels opened but not yet given a command.
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl NodeHandler {
    pub(super) fn new(node: Arc<NodeSpec>, client_key: Arc<PublicKey>) -> Self {
        NodeHandler {
            node,
            client_key,
            channels: HashMap::new(),
        }
    }

    fn known(&self, key: &PublicKey) -> Auth {
        if key.key_data() == self.client_key.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

impl Handler for NodeHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.known(offer.public_key))
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.known(key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(channel) = self.channels.remove(&id) else {
            return session.channel_failure(id);
        };
        session.channel_success(id)?;
        let command = String::from_utf8_lossy(data).into_owned();
        tokio::spawn(run_command(channel, command, self.node.clone()));
        Ok(())
    }

    async fn channel_close(
        &mut self,
        id: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&id);
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let local = matches!(host, "127.0.0.1" | "localhost" | "::1");
        if !local || port != SERVICE_PORT {
            // As on a host where nothing listens there.
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        }
        reply.accept().await;
        tokio::spawn(service::serve(channel.into_stream(), self.node.clone()));
        Ok(())
    }
}

/// Runs one command like sshd would: stdin from the channel, stdout and
/// stderr back, then the exit status, EOF and close.
async fn run_command(channel: Channel<Msg>, command: String, node: Arc<NodeSpec>) {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&command)
        .current_dir(&node.dir)
        .env("HOME", &node.dir)
        // Each demo node is a machine of its own: its locks too.
        .env("FLEETFIX_LOCK_DIR", &node.dir)
        .env("FLEETFIX_DEMO_NODE", &node.name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: child_limits only calls getrlimit and setrlimit.
    unsafe { cmd.pre_exec(crate::support::limits::child_limits) };
    let spawned = cmd.spawn();
    let (mut read, write) = channel.split();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("cannot start /bin/sh: {e}\n");
            let _ = write.extended_data_bytes(1, msg.into_bytes()).await;
            let _ = write.exit_status(127).await;
            let _ = write.eof().await;
            let _ = write.close().await;
            return;
        }
    };
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = write.close().await;
        return;
    };
    // Stdin is pumped until the client's EOF; the command may end first.
    let feed = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut read.make_reader(), &mut stdin).await;
        let _ = stdin.shutdown().await;
    });
    let mut out = write.make_writer();
    let mut err = write.make_writer_ext(Some(1));
    let _ = tokio::join!(
        tokio::io::copy(&mut stdout, &mut out),
        tokio::io::copy(&mut stderr, &mut err),
    );
    let _ = tokio::join!(out.flush(), err.flush());
    let code = match child.wait().await {
        Ok(status) => exit_code(status),
        Err(_) => 255,
    };
    feed.abort();
    let _ = write.exit_status(code).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

/// A shell's way of telling a signal: 128 + its number.
fn exit_code(status: std::process::ExitStatus) -> u32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u32,
        (None, Some(sig)) => 128 + sig as u32,
        (None, None) => 255,
    }
}
