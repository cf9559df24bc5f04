//! Host key verification inside the handshake: known_hosts (hashed and
//! `[host]:port` entries, `@cert-authority`, `@revoked`) or the inventory's
//! pin; the reason of a refusal is kept for the node's error.

use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{PublicKey, PublicKeyOrCertificate};

use super::known_hosts::{self, KnownHosts, Verdict};
use crate::config::inventory::HostKeyPin;
use crate::transport::ConnectError;

/// Verifies the server key in the handshake and keeps the reason of a refusal.
pub(super) struct Verifier {
    pub host: String,
    pub port: u16,
    pub pin: Option<HostKeyPin>,
    pub known_hosts: Arc<KnownHosts>,
    pub accept_new: bool,
    pub refusal: Arc<Mutex<Option<ConnectError>>>,
}

impl Verifier {
    fn check(&self, key: &PublicKey) -> Result<(), ConnectError> {
        let fingerprint = known_hosts::fingerprint(key);
        let key_type = key.algorithm().to_string();
        let host = known_hosts::host_port(&self.host, self.port);
        if let Some(pin) = &self.pin {
            let ok = match pin {
                HostKeyPin::Fingerprint(f) => *f == fingerprint,
                HostKeyPin::PublicKey(k) => PublicKey::from_openssh(k)
                    .map(|p| p.key_data() == key.key_data())
                    .unwrap_or(false),
            };
            return if ok {
                Ok(())
            } else {
                Err(ConnectError::HostKeyChanged {
                    host,
                    key_type,
                    fingerprint,
                    recorded: "the host_key pinned in the inventory".into(),
                })
            };
        }
        let kh = &self.known_hosts;
        match kh.verify(&self.host, self.port, key) {
            Verdict::Trusted => Ok(()),
            Verdict::Changed { line } => Err(ConnectError::HostKeyChanged {
                host,
                key_type,
                fingerprint,
                recorded: format!("the key at {}:{line}", kh.path().display()),
            }),
            Verdict::Revoked { .. } => Err(ConnectError::HostKeyRevoked {
                host,
                fingerprint,
                known_hosts: kh.path().display().to_string(),
            }),
            Verdict::Unknown if self.accept_new => {
                kh.learn(&self.host, self.port, key)
                    .map_err(|e| ConnectError::Learn {
                        host: host.clone(),
                        known_hosts: kh.path().display().to_string(),
                        detail: e.to_string(),
                    })?;
                tracing::info!("learned host key of {host}: {key_type} {fingerprint}");
                Ok(())
            }
            Verdict::Unknown => Err(ConnectError::HostKeyUnknown {
                host,
                key_type,
                fingerprint,
                known_hosts: kh.path().display().to_string(),
            }),
        }
    }
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) => {
                return match self.known_hosts.verify_cert(&self.host, self.port, cert) {
                    Ok(()) => Ok(true),
                    Err(why) => {
                        let refusal = ConnectError::HostCertificate {
                            host: known_hosts::host_port(&self.host, self.port),
                            detail: why,
                        };
                        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(refusal);
                        Ok(false)
                    }
                };
            }
        };
        match self.check(key) {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Ok(false)
            }
        }
    }
}
