//! Client credentials, loaded once per run: ssh-agent keys first, then
//! identity files (decrypted once), with `<key>-cert.pub` certificates.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::client::Handle;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::Signature;
use russh::keys::{Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::known_hosts;
use super::verify::Verifier;
use crate::config::inventory::Node;
use crate::support::error::Error;
use crate::transport::ConnectError;

/// Environment variable holding the passphrase of encrypted identity files.
pub(super) const PASSPHRASE_ENV: &str = "FLEETFIX_KEY_PASSPHRASE";

/// A private key ready to sign, with its certificate when one sits beside it.
pub(crate) struct Identity {
    pub path: PathBuf,
    pub key: Arc<PrivateKey>,
    pub cert: Option<Certificate>,
    /// An ed25519 key expanded once: signing through `key` would derive
    /// and check its public half again on every connection.
    pub ed25519: Option<Arc<ed25519_dalek::SigningKey>>,
}

/// Signs a userauth request with an [`Identity::ed25519`] key.
pub(super) struct Ed25519Signer(pub Arc<ed25519_dalek::SigningKey>);

/// No signature: the session went away while one was asked for, or it
/// could not be encoded.
#[derive(Debug)]
pub(super) struct SignError;

impl From<russh::SendError> for SignError {
    fn from(_: russh::SendError) -> Self {
        SignError
    }
}

impl russh::Signer for Ed25519Signer {
    type Error = SignError;

    /// Appends the signature blob to `to_sign`, as RFC 4252 section 7
    /// lays out the request (ssh-key's encoding, as russh's own path).
    #[allow(clippy::manual_async_fn)]
    fn auth_sign(
        &mut self,
        _key: &AgentIdentity,
        _hash_alg: Option<russh::keys::HashAlg>,
        mut to_sign: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, SignError>> + Send {
        use ed25519_dalek::Signer as _;
        use russh::keys::ssh_key::encoding::Encode as _;
        let raw = self.0.sign(&to_sign).to_bytes().to_vec();
        let appended = Signature::new(russh::keys::Algorithm::Ed25519, raw)
            .ok()
            .and_then(|sig| sig.encode_prefixed(&mut to_sign).ok());
        async move { appended.map(|()| to_sign).ok_or(SignError) }
    }
}

/// Every key this run may offer.
#[derive(Default)]
pub(crate) struct Credentials {
    /// Public keys the agent holds (the agent signs; keys never leave it).
    pub agent_keys: Vec<PublicKey>,
    defaults: Vec<Arc<Identity>>,
    by_path: HashMap<PathBuf, Arc<Identity>>,
}

impl Credentials {
    /// Loads what `nodes` need. A named identity file that is missing or
    /// unreadable is bad input; the usual `~/.ssh/id_*` are tried quietly.
    pub(crate) async fn load(nodes: &[Arc<Node>]) -> Result<Self, Error> {
        let mut creds = Credentials {
            agent_keys: agent_keys().await,
            ..Default::default()
        };
        let mut wants_default = false;
        for node in nodes {
            // A node's own key, and those of the bastions on its way.
            let files = std::iter::once(&node.identity_file)
                .chain(node.jump.iter().map(|j| &j.identity_file));
            for file in files {
                match file {
                    Some(path) if !creds.by_path.contains_key(path) => {
                        let id = load_identity(path).map_err(|e| e.for_node(&node.name))?;
                        creds.by_path.insert(path.clone(), Arc::new(id));
                    }
                    Some(_) => {}
                    None => wants_default = true,
                }
            }
        }
        if wants_default {
            creds.defaults = default_identity_paths()
                .iter()
                .filter(|p| p.exists())
                .filter_map(|p| match load_identity(p) {
                    Ok(id) => Some(Arc::new(id)),
                    Err(e) => {
                        tracing::warn!("skipping identity {}: {}", p.display(), e.render());
                        None
                    }
                })
                .collect();
        }
        Ok(creds)
    }

    /// The identity files to offer a node, after the agent's keys.
    pub(crate) fn identities_for(&self, node: &Node) -> Vec<Arc<Identity>> {
        match &node.identity_file {
            Some(p) => self.by_path.get(p).cloned().into_iter().collect(),
            None => self.defaults.clone(),
        }
    }
}

/// How long a (possibly forwarded, possibly stuck) agent may take to answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the agent named by `SSH_AUTH_SOCK`, when there is one.
pub(super) async fn agent() -> Option<AgentClient<tokio::net::UnixStream>> {
    std::env::var_os("SSH_AUTH_SOCK")?;
    tokio::time::timeout(AGENT_TIMEOUT, AgentClient::connect_env())
        .await
        .ok()?
        .ok()
}

async fn agent_keys() -> Vec<PublicKey> {
    let Some(mut agent) = agent().await else {
        return Vec::new();
    };
    let listed = match tokio::time::timeout(AGENT_TIMEOUT, agent.request_identities()).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                "ssh-agent did not answer within {}s; not using it",
                AGENT_TIMEOUT.as_secs()
            );
            return Vec::new();
        }
    };
    match listed {
        Ok(ids) => ids
            .into_iter()
            .filter_map(|id| match id {
                AgentIdentity::PublicKey { key, .. } => Some(key),
                AgentIdentity::Certificate { .. } => None,
            })
            .collect(),
        Err(e) => {
            tracing::warn!("ssh-agent did not list its keys: {e}");
            Vec::new()
        }
    }
}

fn default_identity_paths() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    let ssh = PathBuf::from(home).join(".ssh");
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|f| ssh.join(f))
        .collect()
}

fn load_identity(path: &Path) -> Result<Identity, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::input(
            format!("cannot read identity file {}: {e}", path.display()),
            "check identity_file in the inventory, or remove it to use ssh-agent and ~/.ssh/id_*",
        )
    })?;
    let key = match russh::keys::decode_secret_key(&text, None) {
        Ok(k) => k,
        Err(russh::keys::Error::KeyIsEncrypted) => decrypt(&text, path)?,
        Err(e) => {
            return Err(Error::input(
                format!(
                    "identity file {} is not a usable private key: {e}",
                    path.display()
                ),
                "point identity_file at an OpenSSH private key (not the .pub file)",
            ));
        }
    };
    let cert_path = PathBuf::from(format!("{}-cert.pub", path.display()));
    let cert = match std::fs::read_to_string(&cert_path) {
        Ok(c) => Some(Certificate::from_openssh(c.trim()).map_err(|e| {
            Error::input(
                format!("certificate {} is not readable: {e}", cert_path.display()),
                "regenerate it with ssh-keygen -s, or remove it",
            )
        })?),
        Err(_) => None,
    };
    let ed25519 = key
        .key_data()
        .ed25519()
        .and_then(|k| ed25519_dalek::SigningKey::try_from(k).ok())
        .map(Arc::new);
    Ok(Identity {
        path: path.to_path_buf(),
        key: Arc::new(key),
        cert,
        ed25519,
    })
}

/// Decrypts a key with `FLEETFIX_KEY_PASSPHRASE`, or asks on the terminal.
fn decrypt(text: &str, path: &Path) -> Result<PrivateKey, Error> {
    let passphrase = match std::env::var(PASSPHRASE_ENV) {
        Ok(p) => p,
        Err(_) if console::Term::stderr().is_term() => {
            eprint!("Passphrase for {}: ", path.display());
            console::Term::stderr()
                .read_secure_line()
                .map_err(|e| Error::input(format!("cannot read the passphrase: {e}"), ""))?
        }
        Err(_) => {
            return Err(Error::input(
                format!(
                    "identity file {} is encrypted and no passphrase is available",
                    path.display()
                ),
                format!("set {PASSPHRASE_ENV}, run on a terminal, or load the key into ssh-agent"),
            ));
        }
    };
    russh::keys::decode_secret_key(text, Some(&passphrase)).map_err(|e| {
        Error::input(
            format!("cannot decrypt identity file {}: {e}", path.display()),
            format!("check the passphrase given in {PASSPHRASE_ENV} or at the prompt"),
        )
    })
}

/// Tries the agent's keys, then each identity file (its certificate first).
pub(super) async fn authenticate(
    handle: &mut Handle<Verifier>,
    node: &Node,
    creds: &Credentials,
    ids: &[Arc<Identity>],
) -> Result<(), ConnectError> {
    let user = node.user.as_str();
    let lost = |e: russh::Error| ConnectError::Protocol {
        addr: known_hosts::host_port(&node.host, node.port),
        detail: e.to_string(),
    };
    let mut tried = Vec::new();
    if !creds.agent_keys.is_empty()
        && let Some(mut agent) = agent().await
    {
        for key in &creds.agent_keys {
            tried.push(format!("agent key {}", known_hosts::fingerprint(key)));
            let hash = rsa_hash(handle, key).await;
            match handle
                .authenticate_publickey_with(user, key.clone(), hash, &mut agent)
                .await
            {
                Ok(r) if r.success() => return Ok(()),
                Ok(_) => {}
                Err(e) => tracing::debug!("agent signing failed: {e:?}"),
            }
        }
    }
    for id in ids {
        tried.push(id.path.display().to_string());
        if let Some(cert) = &id.cert {
            let r = handle
                .authenticate_openssh_cert(user, id.key.clone(), cert.clone())
                .await
                .map_err(lost)?;
            if r.success() {
                return Ok(());
            }
        }
        let r = if let Some(key) = &id.ed25519 {
            let mut signer = Ed25519Signer(key.clone());
            let public = id.key.public_key().clone();
            handle
                .authenticate_publickey_with(user, public, None, &mut signer)
                .await
                .map_err(|_| lost(russh::Error::SendError))?
        } else {
            let hash = rsa_hash(handle, id.key.public_key()).await;
            let key = PrivateKeyWithHashAlg::new(id.key.clone(), hash);
            handle
                .authenticate_publickey(user, key)
                .await
                .map_err(lost)?
        };
        if r.success() {
            return Ok(());
        }
    }
    Err(ConnectError::Auth {
        user: user.to_string(),
        host: known_hosts::host_port(&node.host, node.port),
        tried: if tried.is_empty() {
            "no key at all (no ssh-agent, no identity file)".to_string()
        } else {
            tried.join(", ")
        },
    })
}

/// RSA keys need the server's preferred hash; other keys have none.
async fn rsa_hash(handle: &Handle<Verifier>, key: &PublicKey) -> Option<HashAlg> {
    if !key.algorithm().is_rsa() {
        return None;
    }
    handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier as _;
    use russh::Signer as _;
    use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};
    use russh::keys::ssh_key::{Signature, encoding::Decode};

    #[tokio::test]
    async fn the_ed25519_signer_appends_a_signature_the_public_key_verifies() {
        let dalek = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let verifying = dalek.verifying_key();
        let public = KeyData::Ed25519(Ed25519PublicKey(verifying.to_bytes()));
        let identity = russh::keys::agent::AgentIdentity::PublicKey {
            key: PublicKey::new(public, ""),
            comment: String::new(),
        };
        let request = b"session id and userauth request".to_vec();
        let signed = Ed25519Signer(Arc::new(dalek))
            .auth_sign(&identity, None, request.clone())
            .await
            .unwrap();
        let (head, blob) = signed.split_at(request.len());
        assert_eq!(head, request);
        let len = u32::from_be_bytes(blob[..4].try_into().unwrap()) as usize;
        assert_eq!(len, blob.len() - 4, "the blob is the rest of the request");
        let sig = Signature::decode(&mut &blob[4..]).unwrap();
        assert_eq!(sig.algorithm(), russh::keys::Algorithm::Ed25519);
        let raw = ed25519_dalek::Signature::from_slice(sig.as_bytes()).unwrap();
        verifying.verify(&request, &raw).unwrap();
        assert!(verifying.verify(b"another request", &raw).is_err());
    }
}
